# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a guest is alive where it runs: its QEMU guest agent answers guest-ping, a TCP port accepts a connection,
an HTTP URL answers 2xx or 3xx. Each check is retried until it passes or a bound shared by all ends. For a guest
that fails them, the tail of its serial console log tells what it was doing.

``VerifyOptions`` holds the checks (the ``verify`` option of arctictern.virt.migrate); ``run(options, domain)``
runs them against a libvirt domain and returns what each did.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import time
import xml.etree.ElementTree as ET
from typing import Optional
from urllib.parse import urlsplit

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt, _validate
from ansible_collections.arctictern.virt.plugins.module_utils._domain_model import AGENT_CHANNEL
from ansible_collections.arctictern.virt.plugins.module_utils._domain_xml import is_agent_channel
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption
from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import libvirt

try:
    import libvirt_qemu
except ImportError:  # pragma: no cover - libvirt-python ships it; the module base reports a missing libvirt
    libvirt_qemu = None

OPTION = "verify"
GUEST_PING = '{"execute":"guest-ping"}'
# Pause between two rounds of the checks that have not passed yet.
RETRY_INTERVAL = 1.0
# Longest single attempt; the first attempt of each check gets at least MIN_ATTEMPT even when the bound has passed.
ATTEMPT_TIMEOUT = 5.0
MIN_ATTEMPT = 1.0
SERIAL_TAIL_LINES = 40
# Enough for 40 long lines; a console log can grow to gigabytes, so only its end is read.
SERIAL_TAIL_BYTES = 64 * 1024
# The checks' clock and pause (the unit tests put a fake clock here).
CLOCK = time.monotonic
SLEEP = time.sleep


@dataclasses.dataclass(frozen=True)
class VerifyOptions:
    """The checks: ``agent`` (guest-ping), ``tcp`` ('host:port'), ``http`` (a URL), all within ``timeout`` seconds.

    An instance is valid (at least one check, each value checked); InvalidOption names ``verify.<suboption>``."""

    agent: bool = False
    tcp: Optional[str] = None
    http: Optional[str] = None
    timeout: float = 60.0

    @classmethod
    def from_value(cls, value):
        """The options from a dict as a task gives it (missing keys take their defaults); None stays None."""
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise InvalidOption(OPTION, "must be a dict of checks (agent, tcp, http, timeout), got %r" % (value,))
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise InvalidOption(OPTION, "unknown key '%s'; known are %s" % (unknown[0], ", ".join(known)))
        return cls(**{key: item for key, item in value.items() if item is not None})

    @staticmethod
    def argument_spec():
        """The suboptions of the module's ``verify`` option."""
        return {"agent": {"type": "bool", "default": False}, "tcp": {"type": "str"}, "http": {"type": "str"},
                "timeout": {"type": "float", "default": 60.0}}

    def __post_init__(self):
        if not isinstance(self.agent, bool):
            raise InvalidOption(OPTION + ".agent", "must be true or false, got %r" % (self.agent,))
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise InvalidOption(OPTION + ".timeout", "must be a number of seconds greater than 0, got %r" % (self.timeout,))
        if self.tcp is not None:
            _validate.host_port(OPTION + ".tcp", self.tcp)
        if self.http is not None:
            _validate.http_url(OPTION + ".http", self.http)
        if not self.checks():
            raise InvalidOption(OPTION, "names no check; set agent=true, tcp or http (or leave verify out)")

    def checks(self):
        """The names of the checks asked for, in the order they run."""
        return [name for name, wanted in (("agent", self.agent), ("tcp", self.tcp), ("http", self.http)) if wanted]


# ---------------------------------------------------------------------------------------------------------
# Before anything moves


def has_agent_channel(domain_xml):
    """Whether the domain XML has the virtio channel of the QEMU guest agent."""
    return any(is_agent_channel(channel) for channel in ET.fromstring(domain_xml).findall("devices/channel"))


def require_agent_channel(options, domain, hostname):
    """InvalidOption naming verify.agent when the agent check is asked for a guest libvirt cannot ping."""
    if not options.agent:
        return
    xml = _libvirt.call("reading the definition of guest '%s'" % domain.name(), domain.XMLDesc, 0)
    if not has_agent_channel(xml):
        raise InvalidOption(OPTION + ".agent", "guest '%s' on %s has no QEMU guest agent channel (<channel type='unix'> with "
                            "<target type='virtio' name='%s'/>), so libvirt cannot ping its agent; add one or set verify.agent=false"
                            % (domain.name(), hostname, AGENT_CHANNEL))


# ---------------------------------------------------------------------------------------------------------
# The checks: each attempt takes its time limit and returns None when it passed, else why not


def _reason(error):
    """An exception as the message shows it: the C library's words for an OSError, else its text or its kind."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def agent_attempt(domain):
    def attempt(limit):
        try:
            libvirt_qemu.qemuAgentCommand(domain, GUEST_PING, max(1, int(limit)), 0)
        except libvirt.libvirtError as error:
            return _libvirt.error_message(error)
        return None
    return attempt


def tcp_attempt(address):
    host, port = address

    def attempt(limit):
        try:
            with socket.create_connection((host, port), limit):
                return None
        except OSError as error:
            return "connecting to %s port %d: %s" % (host, port, _reason(error))
    return attempt


def http_attempt(url):
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")

    def attempt(limit):
        # http.client follows no redirect and takes no proxy: the answer is the guest's own.
        connection = connection_class(parts.hostname, parts.port, timeout=limit)
        try:
            connection.request("GET", target)
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException) as error:
            return "GET %s: %s" % (url, _reason(error))
        finally:
            connection.close()
        return None if 200 <= status < 400 else "GET %s: HTTP status %d" % (url, status)
    return attempt


def _attempts(options, domain):
    """(name, attempt) of each check asked for."""
    makers = {"agent": lambda: agent_attempt(domain),
              "tcp": lambda: tcp_attempt(_validate.host_port(OPTION + ".tcp", options.tcp)),
              "http": lambda: http_attempt(options.http)}
    return [(name, makers[name]()) for name in options.checks()]


def run(options, domain):
    """Run the checks of ``options`` (VerifyOptions) on ``domain``, where the guest runs now, in rounds until all
    passed or the bound ends; each is tried at least once. What each did, by name: passed, attempts, seconds (from
    the start until it passed, or until its last attempt), last_error."""
    start = CLOCK()
    deadline = start + options.timeout
    results = {name: {"passed": False, "attempts": 0, "seconds": None, "last_error": None} for name in options.checks()}
    pending = _attempts(options, domain)
    while pending:
        for name, attempt in list(pending):
            result = results[name]
            limit = min(ATTEMPT_TIMEOUT, max(deadline - CLOCK(), 0 if result["attempts"] else MIN_ATTEMPT))
            if limit <= 0:
                continue
            result["attempts"] += 1
            error = attempt(limit)
            result["seconds"] = round(CLOCK() - start, 3)
            if error is None:
                result["passed"] = True
                pending.remove((name, attempt))
            else:
                result["last_error"] = error
        if not pending or CLOCK() >= deadline:
            break
        SLEEP(min(RETRY_INTERVAL, deadline - CLOCK()))
    return results


def failures(options, results):
    """One phrase per failed check, for the message: which check, how often tried, its last error."""
    what = {"agent": "guest agent (guest-ping)", "tcp": "tcp %s" % options.tcp, "http": "http %s" % options.http}
    return ["%s failed %d attempt%s within %g s, last: %s" % (
        what[name], result["attempts"], "" if result["attempts"] == 1 else "s", options.timeout, result["last_error"])
        for name, result in results.items() if not result["passed"]]


# ---------------------------------------------------------------------------------------------------------
# The serial console


def serial_log_paths(domain_xml):
    """The files a guest's serial ports and consoles write to: a file-backed device's source, a device's log."""
    root = ET.fromstring(domain_xml)
    paths = []
    for device in root.findall("devices/serial") + root.findall("devices/console"):
        candidates = [device.find("log").get("file") if device.find("log") is not None else None]
        if device.get("type") == "file" and device.find("source") is not None:
            candidates.insert(0, device.find("source").get("path"))
        paths.extend(path for path in candidates if path and path not in paths)
    return paths


def tail(path, lines=SERIAL_TAIL_LINES):
    """The last ``lines`` lines of the file at ``path`` (its end only is read), as text."""
    with open(path, "rb") as log:
        log.seek(0, 2)
        log.seek(max(0, log.tell() - SERIAL_TAIL_BYTES))
        data = log.read()
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def serial_tail(domain):
    """The tail of the guest's serial console log where this process can read it: {path, lines, error}; error says
    why there are no lines (no file-backed serial, or none readable from here)."""
    try:
        paths = serial_log_paths(domain.XMLDesc(0))
    except libvirt.libvirtError as error:
        return {"path": None, "lines": [], "error": "cannot read the guest's definition: %s" % _libvirt.error_message(error)}
    if not paths:
        return {"path": None, "lines": [],
                "error": "the guest logs no serial console to a file (no <serial type='file'> and no <log file=...> on a serial or console)"}
    reasons = []
    for path in paths:
        try:
            return {"path": path, "lines": tail(path), "error": None}
        except OSError as error:
            reasons.append("%s: %s" % (path, _reason(error)))
    return {"path": paths[0], "lines": [], "error": "not readable from where the module runs (%s)" % "; ".join(reasons)}
