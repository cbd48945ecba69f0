# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The iperf_measure module's run: one iperf3 client test against a server, its figures read from iperf3's JSON
report, and iperf3's failures mapped to causes a play can act on.

iperf3 runs as a program (``--json``) under a deadline the module enforces itself: ``--connect-timeout`` bounds
only the TCP connect of the control connection, not the name lookup before it nor a server that accepts and then
never answers. Nothing is changed anywhere, so ``changed`` is always false.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError

PROTOCOLS = ("tcp", "udp")
DEFAULT_PORT = 5201
# iperf3's MAX_STREAMS: it refuses more parallel streams.
MAX_STREAMS = 128
# What the default deadline allows beyond the test and the connect: exchanging parameters and results.
SLACK_SECONDS = 10
# iperf3's -b: a number of bits per second with an optional K, M, G or T (powers of 1000, either case).
BITRATE_RE = re.compile(r"(\d+(\.\d*)?|\.\d+)[KMGTkmgt]?")
# iperf3 reads the key with PEM_read_bio_PUBKEY: a SubjectPublicKeyInfo block, as `openssl rsa -pubout` writes.
PUBLIC_KEY_MARKERS = ("-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----")
PASSWORD_VARIABLE = "IPERF3_PASSWORD"
# Stands for the key file in check mode, where none is written.
KEY_FILE_PLACEHOLDER = "<rsa_public_key file>"

# iperf3's own messages (src/iperf_error.c) for failures a play can act on.
CAUSE_BY_MESSAGE = (("the server is busy running a test", "busy"), ("test authorization failed", "auth"))
# After a failed system call iperf3 appends ": " and strerror(errno); LC_ALL=C keeps that text in English.
ERRNO_BY_TEXT = {os.strerror(number): number for number in errno.errorcode}
CAUSE_BY_ERRNO = {errno.ECONNREFUSED: "refused", errno.ETIMEDOUT: "timeout"}
EXPLANATIONS = {
    "refused": "connection refused: nothing listens on that port",
    "busy": "the server is busy running another test (iperf3 serves one test at a time)",
    "timeout": "the server did not answer in time (connect_timeout is %(connect_timeout)g s)",
    "auth": "authentication failed: the server refused the username, the password or the key",
}


@dataclass(frozen=True)
class Test:
    """What to measure, every option checked."""

    server: str
    port: int
    protocol: str
    duration: int
    parallel: int
    reverse: bool
    bitrate: str | None
    omit: int
    bind: str | None
    connect_timeout: float
    timeout: float
    username: str | None
    password: str | None = field(repr=False)
    rsa_public_key: str | None = field(repr=False)

    @property
    def endpoint(self):
        return ("[%s]:%d" if ":" in self.server else "%s:%d") % (self.server, self.port)


# ---------------------------------------------------------------------------------------------------------
# Options


def _whole_seconds(option, value, least):
    if value < least:
        raise InvalidOption(option, "must be %d or more seconds, not %d" % (least, value))
    return value


def _bitrate(value):
    if value is not None and not BITRATE_RE.fullmatch(value):
        raise InvalidOption("bitrate", "%r is not a bit rate like 500K, 100M, 1G or 2500000 (bits per second)"
                            % (value,))
    return value


def _credentials(params):
    """(username, password, public key), all None without authentication; the argument spec has already
    required them together."""
    username, password, key = params["username"], params["password"], params["rsa_public_key"]
    if username is None:
        return None, None, None
    for option, value in (("username", username), ("password", password)):
        if not value:
            raise InvalidOption(option, "must not be empty")
    if "," in username:
        # iperf3's authorized users file separates the name from the hash with a comma.
        raise InvalidOption("username", "%r must not contain ','" % (username,))
    if not all(marker in key for marker in PUBLIC_KEY_MARKERS):
        raise InvalidOption("rsa_public_key", "is not a PEM public key (%s ... %s), as `openssl rsa -pubout` writes"
                            % PUBLIC_KEY_MARKERS)
    return username, password, key if key.endswith("\n") else key + "\n"


def _deadline_seconds(params, duration, omit, connect_timeout):
    timeout = params["timeout"]
    if timeout is None:
        return float(duration + omit + connect_timeout + SLACK_SECONDS)
    if timeout <= duration + omit:
        raise InvalidOption("timeout", "%d seconds cannot hold a test of duration + omit = %d seconds"
                            % (timeout, duration + omit))
    return float(timeout)


def validate(params):
    """The Test the options ask for; InvalidOption naming the first bad one."""
    duration = _whole_seconds("duration", params["duration"], 1)
    omit = _whole_seconds("omit", params["omit"], 0)
    if not 1 <= params["parallel"] <= MAX_STREAMS:
        raise InvalidOption("parallel", "must be between 1 and %d streams, not %d" % (MAX_STREAMS, params["parallel"]))
    connect_timeout = params["connect_timeout"]
    if not connect_timeout > 0:
        raise InvalidOption("connect_timeout", "must be a positive number of seconds, not %r" % (connect_timeout,))
    username, password, key = _credentials(params)
    return Test(
        server=_validate.host("server", params["server"]), port=_validate.port("port", params["port"]),
        protocol=params["protocol"], duration=duration, parallel=params["parallel"], reverse=params["reverse"],
        bitrate=_bitrate(params["bitrate"]), omit=omit,
        bind=_validate.host("bind", params["bind"], names=False) if params["bind"] is not None else None,
        connect_timeout=connect_timeout, timeout=_deadline_seconds(params, duration, omit, connect_timeout),
        username=username, password=password, rsa_public_key=key)


# ---------------------------------------------------------------------------------------------------------
# The iperf3 run


def command(test, iperf3, key_file):
    """The argv of the client; the password never is in it (iperf3 reads it from IPERF3_PASSWORD)."""
    argv = [iperf3, "--client", test.server, "--port", str(test.port), "--json", "--time", str(test.duration),
            "--parallel", str(test.parallel), "--omit", str(test.omit),
            "--connect-timeout", str(max(1, round(test.connect_timeout * 1000)))]
    if test.protocol == "udp":
        argv.append("--udp")
    if test.reverse:
        argv.append("--reverse")
        if test.protocol == "tcp":
            # The server sends, so only its own report holds the RTT of the sending streams.
            argv.append("--get-server-output")
    if test.bitrate is not None:
        argv += ["--bitrate", test.bitrate]
    if test.bind is not None:
        argv += ["--bind", test.bind]
    if test.username is not None:
        argv += ["--username", test.username, "--rsa-public-key-path", key_file]
    return argv


@contextlib.contextmanager
def public_key_file(pem):
    """The path of a file only this user can read holding ``pem`` for the block (None without a key)."""
    if pem is None:
        yield None
        return
    with tempfile.NamedTemporaryFile("w", prefix="iperf3-", suffix=".pem") as handle:
        handle.write(pem)
        handle.flush()
        yield handle.name


class Failure(VirtError):
    """The test did not run or gave no figures: ``cause`` tells why (see the module's RETURN)."""

    def __init__(self, test, cause, detail, argv=None, iperf3_error=None, errno_name=None):
        super().__init__("iperf3 test against %s failed: %s" % (test.endpoint, detail), cause=cause,
                         server=test.server, port=test.port, command=argv, iperf3_error=iperf3_error,
                         errno=errno_name)


def cause_of(message):
    """(cause, errno name or None) of iperf3's error message."""
    for text, cause in CAUSE_BY_MESSAGE:
        if text in message:
            return cause, None
    number = ERRNO_BY_TEXT.get(message.rsplit(": ", 1)[-1].strip())
    return CAUSE_BY_ERRNO.get(number, "error"), errno.errorcode.get(number)


def iperf3_failure(test, argv, message):
    cause, errno_name = cause_of(message)
    detail = "iperf3: %s" % message
    if cause in EXPLANATIONS:
        detail = "%s (%s)" % (EXPLANATIONS[cause] % {"connect_timeout": test.connect_timeout}, detail)
    return Failure(test, cause, detail, argv, message, errno_name)


def _lookup_error(server, port):
    """None when ``server`` resolves, else why not."""
    try:
        socket.getaddrinfo(server, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        return str(error)
    return None


def check_resolves(test, seconds):
    """Fail with cause 'unresolved' unless the server's name resolves within ``seconds``. iperf3 reports a failed
    lookup with whatever errno the resolver left behind, which cannot be told from other failures."""
    try:
        ipaddress.ip_address(test.server)
        return
    except ValueError:
        pass
    outcome = []
    # A thread, since a lookup cannot be interrupted; the module process ends soon after all the same.
    lookup = threading.Thread(target=lambda: outcome.append(_lookup_error(test.server, test.port)), daemon=True)
    lookup.start()
    lookup.join(seconds)
    if not outcome or outcome[0] is not None:
        why = outcome[0] if outcome else "no answer from the resolver within %g s (timeout)" % seconds
        raise Failure(test, "unresolved", "cannot resolve %r: %s" % (test.server, why))


def run_iperf3(test, argv, seconds):
    """iperf3's CompletedProcess; Failure with cause 'timeout' when it has not ended within ``seconds`` (it is
    killed then)."""
    env = dict(os.environ, LC_ALL="C")
    if test.password is not None:
        env[PASSWORD_VARIABLE] = test.password
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              env=env, timeout=max(seconds, 0), check=False)
    except subprocess.TimeoutExpired:
        raise Failure(test, "timeout", "no result within %g s (the timeout option); iperf3 was killed"
                      % test.timeout, argv) from None


def report_of(test, argv, done):
    """iperf3's JSON report of a test that ran; Failure with iperf3's message otherwise."""
    try:
        report = json.loads(done.stdout)
    except ValueError:
        # Parameter errors come before the JSON output starts: a usage text, and "iperf3: <message>" on stderr.
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        message = lines[-1].strip() if lines else "exit status %d and no report" % done.returncode
        message = message[len("iperf3: "):] if message.startswith("iperf3: ") else message
        raise iperf3_failure(test, argv, message) from None
    if report.get("error") or done.returncode != 0:
        raise iperf3_failure(test, argv, report.get("error") or "exit status %d" % done.returncode)
    return report


# ---------------------------------------------------------------------------------------------------------
# Figures


def _float(section, key):
    value = section.get(key)
    return float(value) if value is not None else None


def sending_streams(report):
    """The figures of the streams that the side which wrote ``report`` sent (each stream's ``sender`` flag says
    whether that side sent it)."""
    streams = (report.get("end") or {}).get("streams") or []
    return [stream["sender"] for stream in streams if (stream.get("sender") or {}).get("sender")]


def round_trip_times(test, report):
    """(mean, max) RTT in ms of the sending side's streams; (None, None) when no report of that side holds any.
    iperf3 gives microseconds."""
    if test.protocol != "tcp":
        return None, None
    sender_report = (report.get("server_output_json") or {}) if test.reverse else report
    streams = [stream for stream in sending_streams(sender_report) if "mean_rtt" in stream]
    if not streams:
        return None, None
    return (sum(stream["mean_rtt"] for stream in streams) / len(streams) / 1000.0,
            max(stream["max_rtt"] for stream in streams) / 1000.0)


def figures(test, report):
    """The result's figures from iperf3's report."""
    end = report.get("end") or {}
    sent, received = end.get("sum_sent") or {}, end.get("sum_received") or {}
    cpu = end.get("cpu_utilization_percent") or {}
    udp = test.protocol == "udp"
    # iperf3 before 3.12 wrote the UDP receiver's figures in "sum" only.
    losses = (received if "jitter_ms" in received else end.get("sum") or {}) if udp else {}
    rtt, rtt_max = round_trip_times(test, report)
    return {
        "duration": _float(sent, "seconds"),
        "sent_bps": _float(sent, "bits_per_second"),
        "received_bps": _float(received, "bits_per_second"),
        "retransmits": sent.get("retransmits") if not udp else None,
        "rtt_ms": rtt,
        "rtt_max_ms": rtt_max,
        "cpu": {"local_percent": _float(cpu, "host_total"), "remote_percent": _float(cpu, "remote_total")},
        "jitter_ms": _float(losses, "jitter_ms"),
        "lost_packets": losses.get("lost_packets"),
        "packets": losses.get("packets"),
        "lost_percent": _float(losses, "lost_percent"),
    }


NO_FIGURES = dict.fromkeys(("sent_bps", "received_bps", "retransmits", "rtt_ms", "rtt_max_ms", "cpu", "jitter_ms",
                            "lost_packets", "packets", "lost_percent"))


def summary(test, argv):
    """The options of the test as the result gives them, with the command and no figures yet."""
    result = {"server": test.server, "port": test.port, "protocol": test.protocol, "duration": test.duration,
              "parallel": test.parallel, "reverse": test.reverse, "bitrate": test.bitrate, "omit": test.omit,
              "bind": test.bind, "connect_timeout": test.connect_timeout, "timeout": test.timeout,
              "command": argv, "changed": False}
    result.update(NO_FIGURES)
    return result


# ---------------------------------------------------------------------------------------------------------
# The run


def measure(module):
    """The module's run: in check mode the command it would run, else the test's figures."""
    test = validate(module.params)
    iperf3 = module.get_bin_path("iperf3")
    if iperf3 is None:
        raise Failure(test, "iperf3_missing", "iperf3 is not installed on this host (no iperf3 in PATH); install "
                                              "the iperf3 package")
    if module.check_mode:
        return summary(test, command(test, iperf3, KEY_FILE_PLACEHOLDER))
    deadline = time.monotonic() + test.timeout
    check_resolves(test, test.timeout)
    with public_key_file(test.rsa_public_key) as key_file:
        argv = command(test, iperf3, key_file)
        done = run_iperf3(test, argv, deadline - time.monotonic())
    result = summary(test, argv)
    result.update(figures(test, report_of(test, argv, done)))
    return result
