# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_verify: the checks' options, the guest agent ping against the fake agent, TCP and HTTP checks against real sockets
on 127.0.0.1, the shared bound on a fake clock, and the tail of the serial console log."""

from __future__ import annotations

import http.server
import socket
import threading

import libvirt_qemu
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _validate, _verify
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import FakeAgent, qemu_agent_command
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._migration_fakes import FakeClock, domain_xml


@pytest.fixture(name="clock")
def fixture_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(_verify, "CLOCK", clock)
    monkeypatch.setattr(_verify, "SLEEP", clock.advance)
    monkeypatch.setattr(libvirt_qemu, "qemuAgentCommand", qemu_agent_command)
    return clock


@pytest.fixture(name="listening")
def fixture_listening():
    """'127.0.0.1:<port>' where a socket listens."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield "127.0.0.1:%d" % server.getsockname()[1]
    server.close()


@pytest.fixture(name="closed_port")
def fixture_closed_port():
    """'127.0.0.1:<port>' where nothing listens (the port was just free)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return "127.0.0.1:%d" % port


class _Handler(http.server.BaseHTTPRequestHandler):
    """/ok 200, /moved 302 (to /nowhere, which is not followed), anything else 503."""

    def do_GET(self):  # noqa: N802 - http.server's name
        # Recorded before the answer: the client may look at ``paths`` as soon as it has the answer.
        self.server.paths.append(self.path)
        status = {"/ok": 200, "/moved": 302}.get(self.path, 503)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/nowhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(name="web")
def fixture_web():
    """A tiny HTTP server on 127.0.0.1 in a thread: its base URL; ``paths`` records what was asked."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server, path):
    return "http://127.0.0.1:%d%s" % (server.server_address[1], path)


def running_guest(fake_conn, agent=None, **xml):
    domain = fake_conn.add_domain(domain_xml(**xml), state="running")
    domain.agent = agent
    return domain


# ---------------------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("value, option, words", [
    ({"tcp": "198.51.100.10"}, "verify.tcp", "is not host:port"),
    ({"tcp": "198.51.100.10:0"}, "verify.tcp", "must be a port between 1 and 65535, not 0"),
    ({"tcp": "bad_name:22"}, "verify.tcp", "'bad_name' is not a DNS name"),
    ({"tcp": "[fe80::1%eth0]:22"}, "verify.tcp", "has a zone"),
    ({"http": "ftp://198.51.100.10/"}, "verify.http", "is not an http:// or https:// URL"),
    ({"http": "http:///health"}, "verify.http", "is not an http:// or https:// URL with a host"),
    ({"http": "http://web1:0/"}, "verify.http", "must be a port between 1 and 65535"),
    ({"agent": "yes"}, "verify.agent", "must be true or false"),
    ({"agent": True, "timeout": 0}, "verify.timeout", "greater than 0, got 0"),
    ({"agent": True, "timeout": "soon"}, "verify.timeout", "greater than 0"),
    ({"timeout": 30}, "verify", "names no check"),
    ({"agent": False}, "verify", "names no check"),
    ({"agent": True, "ping": True}, "verify", "unknown key 'ping'"),
    ("agent", "verify", "must be a dict of checks"),
])
def test_bad_options_name_the_suboption(value, option, words):
    with pytest.raises(InvalidOption) as caught:
        _verify.VerifyOptions.from_value(value)
    assert caught.value.option == option and caught.value.msg.startswith(option + ": ")
    assert words in caught.value.msg


def test_options_from_a_task_dict():
    # As AnsibleModule gives it: every suboption present, the unset ones None.
    made = _verify.VerifyOptions.from_value({"agent": True, "tcp": "[2001:db8::10]:443", "http": None, "timeout": None})
    assert made == _verify.VerifyOptions(agent=True, tcp="[2001:db8::10]:443", timeout=60.0)
    assert made.checks() == ["agent", "tcp"]
    assert _verify.VerifyOptions.from_value(None) is None


def test_host_port_and_http_url():
    assert _validate.host_port("o", "[2001:DB8::10]:443") == ("2001:db8::10", 443)
    assert _validate.host_port("o", "web1.example.com:80") == ("web1.example.com", 80)
    assert _validate.http_url("o", "https://web1.example.com:8443/health?full=1") == "https://web1.example.com:8443/health?full=1"


# ---------------------------------------------------------------------------------------------------------
# The checks


def test_agent_that_answers_at_once(fake_conn, clock):
    domain = running_guest(fake_conn, FakeAgent(), agent_channel=True)
    results = _verify.run(_verify.VerifyOptions(agent=True), domain)
    assert results == {"agent": {"passed": True, "attempts": 1, "seconds": 0.0, "last_error": None}}
    assert domain.agent.commands == [("guest-ping", 5)]


def test_agent_that_answers_after_some_tries(fake_conn, clock):
    domain = running_guest(fake_conn, FakeAgent(answers_after=3), agent_channel=True)
    result = _verify.run(_verify.VerifyOptions(agent=True, timeout=10), domain)["agent"]
    assert result["passed"] and result["attempts"] == 4 and result["seconds"] == 3.0, "a second between tries"
    assert result["last_error"] == "Guest agent is not responding: QEMU guest agent is not connected"


def test_a_silent_agent_is_bounded_by_the_timeout(fake_conn, clock):
    start = clock()
    domain = running_guest(fake_conn, FakeAgent(answers_after=None, silent=True, clock=clock), agent_channel=True)
    result = _verify.run(_verify.VerifyOptions(agent=True, timeout=12), domain)["agent"]
    assert not result["passed"] and result["last_error"] == "Guest agent is not responding: Guest agent not available for now"
    # 5 s + 1 s pause + 5 s + 1 s pause: the bound is reached, no attempt starts after it.
    assert [timeout for _command, timeout in domain.agent.commands] == [5, 5]
    assert clock() - start == 12.0 and result["seconds"] == 11.0


def test_agent_without_a_channel_is_refused_before_anything(fake_conn, clock):
    domain = running_guest(fake_conn, FakeAgent())
    with pytest.raises(InvalidOption, match="^verify.agent: guest 'web1' on hv1 has no QEMU guest agent channel"):
        _verify.require_agent_channel(_verify.VerifyOptions(agent=True), domain, "hv1")
    _verify.require_agent_channel(_verify.VerifyOptions(tcp="192.0.2.1:22"), domain, "hv1")
    # Asked anyway, libvirt refuses: what the check would report.
    result = _verify.run(_verify.VerifyOptions(agent=True, timeout=1), domain)["agent"]
    assert result["last_error"] == "argument unsupported: QEMU guest agent is not configured"


def test_tcp_to_a_listening_port_passes(clock, listening):
    results = _verify.run(_verify.VerifyOptions(tcp=listening), None)
    assert results["tcp"]["passed"] and results["tcp"]["attempts"] == 1


def test_tcp_to_a_closed_port_fails_after_the_bound(clock, closed_port):
    result = _verify.run(_verify.VerifyOptions(tcp=closed_port, timeout=3), None)["tcp"]
    assert not result["passed"] and result["attempts"] == 3, "tries at 0, 1 and 2 s; none starts at the bound"
    assert result["last_error"] == "connecting to 127.0.0.1 port %s: Connection refused" % closed_port.split(":")[1]


@pytest.mark.parametrize("path, passed, error", [
    ("/ok", True, None),
    ("/moved", True, None),
    ("/broken", False, "HTTP status 503"),
])
def test_http_status_decides(clock, web, path, passed, error):
    result = _verify.run(_verify.VerifyOptions(http=url(web, path), timeout=2), None)["http"]
    assert result["passed"] is passed
    assert result["last_error"] == (None if error is None else "GET %s: %s" % (url(web, path), error))
    assert "/nowhere" not in web.paths, "redirects are not followed"


def test_every_check_in_rounds_until_all_pass(fake_conn, clock, listening, web):
    domain = running_guest(fake_conn, FakeAgent(answers_after=2), agent_channel=True)
    results = _verify.run(_verify.VerifyOptions(agent=True, tcp=listening, http=url(web, "/ok")), domain)
    assert [results[name]["attempts"] for name in ("agent", "tcp", "http")] == [3, 1, 1]
    assert all(result["passed"] for result in results.values())
    assert web.paths == ["/ok"], "a check that passed is not tried again"


def test_a_check_is_tried_once_even_when_an_earlier_one_used_the_bound(fake_conn, clock, closed_port):
    domain = running_guest(fake_conn, FakeAgent(answers_after=None, silent=True, clock=clock), agent_channel=True)
    options = _verify.VerifyOptions(agent=True, tcp=closed_port, timeout=3)
    results = _verify.run(options, domain)
    assert results["agent"]["attempts"] == 1 and results["tcp"]["attempts"] == 1
    assert [phrase.split(" failed")[0] for phrase in _verify.failures(options, results)] == ["guest agent (guest-ping)", "tcp " + closed_port]
    assert "failed 1 attempt within 3 s, last: Guest agent is not responding" in _verify.failures(options, results)[0]


# ---------------------------------------------------------------------------------------------------------
# The serial console


def test_serial_log_paths_from_file_devices_and_logs():
    xml = """<domain><devices>
      <serial type='file'><source path='/var/log/web1.serial'/><log file='/var/log/web1.log'/></serial>
      <serial type='pty'/>
      <console type='pty'><log file='/var/log/web1.log'/></console>
    </devices></domain>"""
    assert _verify.serial_log_paths(xml) == ["/var/log/web1.serial", "/var/log/web1.log"]


def test_serial_tail_reads_the_last_lines(fake_conn, tmp_path, monkeypatch):
    log = tmp_path / "web1-serial0.log"
    log.write_bytes(b"".join(b"line %d\r\n" % number for number in range(1, 5001)) + b"web1 login: \xff")
    domain = running_guest(fake_conn, serial_log=str(log))
    tail = _verify.serial_tail(domain)
    assert tail["path"] == str(log) and tail["error"] is None
    assert len(tail["lines"]) == 40 and tail["lines"][0] == "line 4962" and tail["lines"][-1] == "web1 login: \ufffd"
    monkeypatch.setattr(_verify, "SERIAL_TAIL_BYTES", 20)
    assert _verify.serial_tail(domain)["lines"][-1] == "web1 login: \ufffd", "only the end of the file is read"


def test_serial_tail_says_why_there_are_no_lines(fake_conn, tmp_path):
    assert "logs no serial console to a file" in _verify.serial_tail(running_guest(fake_conn))["error"]
    fake_conn.domains.clear()
    missing = str(tmp_path / "elsewhere" / "web1.log")
    tail = _verify.serial_tail(running_guest(fake_conn, serial_log=missing))
    assert tail == {"path": missing, "lines": [], "error": "not readable from where the module runs (%s: No such file or directory)" % missing}
