# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check a tinyproxy configuration (or a filter file) with tinyproxy itself, without starting a second proxy.

tinyproxy 1.11 has no switch that only tests its configuration. On start it reads the configuration, then the
filter file, and binds its port next; only after that does it write its PID file and log, and change user. So this
runs it in a new network namespace of its own, where the configured port is already taken: a configuration that
tinyproxy accepts ends at once in "Could not create listening sockets", and nothing it binds is reachable from, or
collides with, a proxy already running. Any other end is the configuration's error, printed as tinyproxy said it.

Usage: python3 tinyproxy_config_check.py [--tinyproxy BINARY] CONFIG
       python3 tinyproxy_config_check.py [--tinyproxy BINARY] --filter FILE [--filter-type bre|ere|fnmatch]
Needs root (a network namespace). Exit status 0: accepted; 1: refused; 2: could not check.
"""

import argparse
import ctypes
import os
import re
import socket
import subprocess
import sys
import tempfile

CLONE_NEWNET = 0x40000000
# tinyproxy's own pattern for the Port directive (keywords are case-insensitive; the last one counts).
PORT_LINE = re.compile(r"^[ \t]*port[ \t]+([0-9]+)[ \t]*$", re.IGNORECASE | re.MULTILINE)
ACCEPTED = "Could not create listening sockets"
# A filter file is checked through a configuration of its own, which needs a port (any: the namespace is new).
FILTER_CHECK_PORT = 8888
TIMEOUT = 10


def enter_new_network_namespace():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "cannot make a network namespace (%s); run as root" % os.strerror(errno))


def configured_port(text):
    ports = [int(value) for value in PORT_LINE.findall(text)]
    return ports[-1] if ports and 0 < ports[-1] < 65536 else None


def occupy(port):
    """Listening sockets on the port at every address, so that tinyproxy cannot bind it."""
    held = [listening(socket.AF_INET, "0.0.0.0", port)]
    try:
        held.append(listening(socket.AF_INET6, "::", port))
    except OSError:  # IPv6 is off here: tinyproxy cannot bind it either
        pass
    return held


def listening(family, address, port):
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address, port))
    sock.listen(1)
    return sock


def run_tinyproxy(binary, config):
    """(accepted, what tinyproxy said) for tinyproxy started on the configuration in this namespace."""
    try:
        proc = subprocess.run([binary, "-d", "-c", config], capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        return False, "tinyproxy did not stop within %d s: it could bind its port" % TIMEOUT
    said = (proc.stderr + proc.stdout).strip()
    return proc.returncode != 0 and ACCEPTED in proc.stderr, said


def check_config(binary, config):
    with open(config, encoding="utf-8", errors="replace") as handle:
        port = configured_port(handle.read())
    held = occupy(port) if port else []
    try:
        return run_tinyproxy(binary, config)
    finally:
        for sock in held:
            sock.close()


def check_filter(binary, filter_file, filter_type):
    lines = ["Port %d" % FILTER_CHECK_PORT, 'Filter "%s"' % os.path.abspath(filter_file)]
    if filter_type:
        lines.append("FilterType %s" % filter_type)
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as config:
        config.write("\n".join(lines) + "\n")
        config.flush()
        return check_config(binary, config.name)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--tinyproxy", default="/usr/bin/tinyproxy", help="the tinyproxy binary")
    parser.add_argument("--filter", action="store_true", help="PATH is a filter file, not a configuration")
    parser.add_argument("--filter-type", choices=["bre", "ere", "fnmatch"])
    parser.add_argument("path")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    try:
        enter_new_network_namespace()
        if args.filter:
            accepted, said = check_filter(args.tinyproxy, args.path, args.filter_type)
        else:
            accepted, said = check_config(args.tinyproxy, args.path)
    except OSError as err:
        print("tinyproxy_config_check: %s" % err, file=sys.stderr)
        return 2
    if accepted:
        return 0
    print("tinyproxy refuses %s:\n%s" % (args.path, said), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
