"""A BIND 9 name server: the lab's authoritative server of its zone, which the ddns module updates (RFC 2136, TSIG),
and the unit tests' real server. Everything it reads and writes (configuration, zone, journal, key, pid file, log)
lives in one directory, so several can run side by side, each on its own address and port."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from lab.daemon import running_pid, terminate

NAMED = "/usr/sbin/named"
KEY_NAME = "atv-lab-key"
KEY_ALGORITHM = "hmac-sha256"
INITIAL_SERIAL = 1
READY_TIMEOUT = 10
LOG_TAIL_LINES = 20

NAMED_CONF = """\
// Written by arctictern.virt's lab (lab/dns.py): an authoritative-only server of {zone}.
include "{directory}/key.conf";
options {{
    directory "{directory}";
    pid-file "{directory}/named.pid";
    session-keyfile "{directory}/session.key";
    managed-keys-directory "{directory}";
    listen-on port {port} {{ {address}; }};
    listen-on-v6 {{ none; }};
    // Zone transfers and notifies come from the server's own address, which its peers allow.
    transfer-source {address};
    notify-source {address};
    recursion no;
    dnssec-validation no;
    // Only the secondaries named below hear of changes, on their own ports.
    notify explicit;
}};
// No rndc channel: stop() signals the process, and several servers must not fight over port 953.
controls {{ }};
zone "{zone}" {{
{zone_options}
}};
"""
PRIMARY_OPTIONS = """\
    type primary;
    file "{zone}.db";
    allow-update {{ key "{key}"; }};
    allow-transfer {{ {transfer} }};
    also-notify {{ {notify} }};
    // Tell the secondaries at once (the default waits 5 s to batch changes).
    notify-delay 0;"""
SECONDARY_OPTIONS = """\
    type secondary;
    file "{zone}.db";
    primaries {{ {primary} port {primary_port}; }};
    allow-transfer {{ none; }};"""
ZONE_FILE = """\
; Written by arctictern.virt's lab (lab/dns.py); named keeps dynamic updates in the journal beside it.
$TTL 300
@ IN SOA ns.{zone}. hostmaster.{zone}. {serial} 3600 600 86400 60
{records}"""


class DnsServer:
    """named serving ``zone`` on ``address``:``port``, with its files in ``directory``; updates need its TSIG key.

    A primary by default; with ``primary=(address, port)`` a secondary that transfers the zone from there. A
    primary's zone names every server in ``secondaries`` (addresses, on the same port) as a name server
    (ns2.<zone>, ns3.<zone>, ...) and tells them of each change.

    ``enter``: a callable run in the child before named starts (its preexec_fn), e.g. to move it into a network
    namespace. Like the lab's other daemons, named may outlive the Python that started it; ``pid()`` finds it
    again through its pid file.
    """

    program = NAMED
    name = "named"

    def __init__(self, directory, address, zone, enter=None, port=53, key_name=KEY_NAME, primary=None,
                 secondaries=()):
        self.directory = Path(directory)
        self.address = address
        self.zone = zone.rstrip(".")
        self.enter = enter
        self.port = port
        self.key_name = key_name
        self.primary = primary
        self.secondaries = tuple(secondaries)
        self.conf_file = self.directory / "named.conf"
        self.key_file = self.directory / "key.conf"
        self.zone_file = self.directory / ("%s.db" % self.zone)
        self.pid_file = self.directory / "named.pid"
        self.log_file = self.directory / "named.log"
        self._process = None

    @property
    def key(self):
        """The TSIG key that may update the zone: name, algorithm and base64 secret, as tsig-keygen wrote them."""
        secret = None
        for line in self.key_file.read_text().splitlines():
            words = line.split()
            if words and words[0] == "secret":
                secret = words[1].strip('";')
        return {"name": self.key_name, "algorithm": KEY_ALGORITHM, "secret": secret}

    def prepare(self):
        """The key, configuration and zone file, checked with named-checkconf; idempotent: an existing key and zone
        (with its journal of updates) are kept."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            keygen = _run(["tsig-keygen", "-a", KEY_ALGORITHM, self.key_name])
            # Readable by root only from the start: it holds the secret.
            self.key_file.touch(mode=0o600)
            self.key_file.write_text(keygen.stdout)
        if self.primary is None:
            zone_options = PRIMARY_OPTIONS.format(
                zone=self.zone, key=self.key_name,
                transfer="".join("%s; " % address for address in self.secondaries) or "none;",
                notify="".join("%s port %d; " % (address, self.port) for address in self.secondaries))
            if not self.zone_file.exists():
                self.zone_file.write_text(self._zone_text())
        else:
            zone_options = SECONDARY_OPTIONS.format(zone=self.zone, primary=self.primary[0], primary_port=self.primary[1])
        self.conf_file.write_text(NAMED_CONF.format(
            directory=self.directory, zone=self.zone, address=self.address, port=self.port, zone_options=zone_options))
        _run(["named-checkconf", "-z", str(self.conf_file)] if self.primary is None else
             ["named-checkconf", str(self.conf_file)])

    def _zone_text(self):
        servers = [("ns", self.address)] + [("ns%d" % number, address)
                                            for number, address in enumerate(self.secondaries, start=2)]
        records = "".join("@ IN NS %s.%s.\n" % (host, self.zone) for host, _address in servers)
        records += "".join("%s IN A %s\n" % (host, address) for host, address in servers)
        return ZONE_FILE.format(zone=self.zone, serial=INITIAL_SERIAL, records=records)

    def pid(self):
        """The running named's PID, or None (a zombie, or a PID another program now has, counts as not running)."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None
        return running_pid(self.pid_file, self.program)

    def start(self, timeout=READY_TIMEOUT):
        """Start named unless it runs; True if started. Returns once it answers an SOA query of the zone, and
        raises RuntimeError (with the end of its log) when it does not within ``timeout`` seconds."""
        if self.pid():
            return False
        self.pid_file.unlink(missing_ok=True)
        with open(self.log_file, "ab") as log:
            # -f: foreground (our child, so stop() can reap it); -L: the log file (-g would log to stderr but skip the pid file).
            self._process = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn,consider-using-with
                [NAMED, "-f", "-4", "-n", "1", "-L", str(self.log_file), "-c", str(self.conf_file)], preexec_fn=self.enter,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self.pid() and self._answers():
                return True
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("named for %s on %s port %d did not answer within %g s; the end of %s:\n%s" % (
            self.zone, self.address, self.port, timeout, self.log_file, self._log_tail()))

    def _answers(self):
        """Whether named answers an SOA query of the zone with authority (asked from where named runs, since
        its address may be reachable only there)."""
        dig = subprocess.run(  # pylint: disable=subprocess-popen-preexec-fn
            ["dig", "+norecurse", "+time=1", "+tries=1", "-p", str(self.port), "@%s" % self.address, self.zone, "SOA"],
            preexec_fn=self.enter, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        return "status: NOERROR" in dig.stdout and " aa" in dig.stdout.split("flags:", 1)[-1].split(";", 1)[0]

    def _log_tail(self):
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        except OSError:
            return "(no log)"

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after ``timeout`` seconds; False when it was not running."""
        pid = self.pid()
        if pid:
            terminate(pid, self.pid, timeout, interval=0.05)
        if self._process is not None:
            self._process.wait()
            self._process = None
        return bool(pid)


def _run(argv):
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), (result.stderr or result.stdout).strip()))
    return result
