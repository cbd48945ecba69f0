# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The iperf_measure module against real iperf3 servers. Two scratch network namespaces, h1-a-<tag> with the servers
and h1-b-<tag> with the client, are cabled by a veth pair; the module runs in-process, and the test thread enters
the client's namespace around each run, so the iperf3 client the module starts runs there. What the module reports
is checked against what the servers report and what the client's veth counted."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _iperf
from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as nl
from ansible_collections.arctictern.virt.plugins.modules import iperf_measure
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson
from lab.namespaces import CLONE_NEWNET, setns
from lab.netlink import create_netns, create_veth_pair, remove_netns

SERVER = "10.71.0.1"
CLIENT = "10.71.0.2"
UNROUTED = "10.99.99.99"       # the client's namespace has no route there
CLIENT_VETH = "h1cli0"
PORT = 5201                    # a server with -J (its report carries the RTT of reverse tests)
BUSY_PORT = 5202               # held by another client's long test
AUTH_PORT = 5203               # wants a username and password
DROPPED_PORT = 5204            # SYNs dropped by iptables
MUTE_PORT = 5205               # accepts connections and never says a word
ONE_OFF_PORT = 5210            # a server for one test, whose own report the test reads
CLOSED_PORT = 5299
USER, PASSWORD = "alice", "s3cret-pass"
KEY = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"   # looks like a key, is none
TOOLS = ("iperf3", "nsenter", "openssl", "iptables", "ss")


def nsenter(netns, *argv):
    return ["nsenter", "--net=/run/netns/%s" % netns, *argv]


def run_in(netns, *argv):
    return subprocess.run(nsenter(netns, *argv), check=True, capture_output=True, text=True, timeout=20).stdout


@contextlib.contextmanager
def inside(netns):
    """This thread in ``netns`` for the block; programs it starts run there too."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        setns("/run/netns/%s" % netns, CLONE_NEWNET)
        try:
            yield
        finally:
            setns("/proc/self/fd/%d" % home, CLONE_NEWNET)
    finally:
        os.close(home)


def wait_for(condition, what, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "no %s within %d s" % (what, seconds)
        time.sleep(0.05)


def make_keys(directory):
    """(public key PEM, private key path, authorized users path) for the authenticating server."""
    private, public, users = directory / "private.pem", directory / "public.pem", directory / "users.csv"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-out", str(public)], check=True,
                   capture_output=True)
    # iperf3's users file: user,sha256("{user}password") in hex.
    users.write_text("%s,%s\n" % (USER, hashlib.sha256(("{%s}%s" % (USER, PASSWORD)).encode()).hexdigest()))
    return public.read_text(), private, users


class Lab:
    """The namespaces, the servers in h1-a and what holds or blocks them."""

    def __init__(self, directory):
        tag = secrets.token_hex(3)
        self.server_ns, self.client_ns = "h1-a-%s" % tag, "h1-b-%s" % tag
        self.directory = directory
        self.processes = []
        self.mute = None
        self.public_key = None

    def build(self):
        for netns in (self.server_ns, self.client_ns):
            assert create_netns(netns)
        with nl.open_ipr(self.server_ns) as ipr:
            create_veth_pair(ipr, "h1srv0", CLIENT_VETH, peer_netns=self.client_ns)
        for netns, veth, address in ((self.server_ns, "h1srv0", SERVER), (self.client_ns, CLIENT_VETH, CLIENT)):
            with nl.open_ipr(netns) as ipr:
                nl.set_up(ipr, "lo")
                nl.set_up(ipr, veth)
                nl.add_address(ipr, veth, "%s/24" % address)
        run_in(self.server_ns, "iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", str(DROPPED_PORT), "--syn",
               "-j", "DROP")
        self.public_key, private, users = make_keys(self.directory)
        self.start_server(PORT, "--json")
        self.start_server(BUSY_PORT)
        self.start_server(AUTH_PORT, "--rsa-private-key-path", str(private), "--authorized-users-path", str(users))
        with inside(self.server_ns):
            self.mute = socket.create_server((SERVER, MUTE_PORT), backlog=8)
        return self

    def start(self, netns, *argv, stdout=subprocess.DEVNULL):
        process = subprocess.Popen(nsenter(netns, *argv), stdout=stdout, stderr=subprocess.DEVNULL, text=True)
        self.processes.append(process)
        return process

    def sockets(self, port, state):
        return run_in(self.server_ns, "ss", "-Htn", "state", state, "sport = :%d" % port).splitlines()

    def start_server(self, port, *options, stdout=subprocess.DEVNULL):
        process = self.start(self.server_ns, "iperf3", "--server", "--port", str(port), *options, stdout=stdout)
        wait_for(lambda: self.sockets(port, "listening"), "iperf3 server on port %d" % port)
        return process

    def one_off_server(self):
        """A server for one test with --json: its report is on its stdout once that test is over."""
        return self.start_server(ONE_OFF_PORT, "--one-off", "--json", stdout=subprocess.PIPE)

    def client_counters(self):
        """(bytes sent, bytes received) by the client's veth so far."""
        with nl.open_ipr(self.client_ns) as ipr:
            stats = ipr.get_links(ifname=CLIENT_VETH)[0].get_attr("IFLA_STATS64")
        return stats["tx_bytes"], stats["rx_bytes"]

    def remove(self):
        for process in self.processes:
            process.kill()
            process.wait()
        if self.mute is not None:
            self.mute.close()
        for netns in (self.server_ns, self.client_ns):
            remove_netns(netns)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip("missing: %s" % ", ".join(missing))
    built = Lab(tmp_path_factory.mktemp("iperf"))
    try:
        yield built.build()
    finally:
        built.remove()


@pytest.fixture
def measure(lab, run_module):
    """``measure(check_mode=False, **options)``: the module's result, run from the client's namespace."""
    def run(check_mode=False, **options):
        args = dict(server=SERVER, duration=1, connect_timeout=2)
        args.update(options)
        with inside(lab.client_ns):
            return run_module(iperf_measure.main, args, check_mode=check_mode)
    return run


@pytest.fixture
def measure_fails(measure):
    """Like ``measure``, for a run that must fail: (its result, seconds it took)."""
    def run(**options):
        start = time.monotonic()
        with pytest.raises(AnsibleFailJson) as failed:
            measure(**options)
        return failed.value.result, time.monotonic() - start
    return run


def wire_bytes(lab, run):
    """(bytes the client's veth sent, bytes it received) during ``run()``, and what ``run()`` returned."""
    sent, received = lab.client_counters()
    result = run()
    sent_after, received_after = lab.client_counters()
    return sent_after - sent, received_after - received, result


def payload_bytes(bits_per_second, seconds):
    return bits_per_second * seconds / 8


# ---------------------------------------------------------------------------------------------------------------------
# Measurements


def test_tcp_figures_are_positive_and_consistent_with_the_wire(lab, measure):
    sent_on_wire, _received, result = wire_bytes(lab, measure)

    assert result["changed"] is False
    assert (result["server"], result["port"], result["protocol"], result["parallel"]) == (SERVER, PORT, "tcp", 1)
    assert 0.9 <= result["duration"] <= 1.5
    assert result["sent_bps"] > 1e6 and result["received_bps"] > 1e6
    assert result["received_bps"] <= result["sent_bps"] * 1.05
    # What iperf3 says it sent went over the client's veth, headers and the control connection on top.
    assert sent_on_wire >= payload_bytes(result["sent_bps"], result["duration"]) * 0.99
    assert isinstance(result["retransmits"], int) and result["retransmits"] >= 0
    assert 0 < result["rtt_ms"] <= result["rtt_max_ms"] < 1000
    assert result["cpu"]["local_percent"] > 0 and result["cpu"]["remote_percent"] > 0
    assert [result[key] for key in ("jitter_ms", "lost_packets", "packets", "lost_percent")] == [None] * 4
    assert result["command"][:3] == [shutil.which("iperf3"), "--client", SERVER]
    assert result["command"][result["command"].index("--time") + 1] == "1"


def test_udp_at_a_bitrate_reports_jitter_and_loss(lab, measure):
    sent_on_wire, _received, result = wire_bytes(lab, lambda: measure(protocol="udp", bitrate="20M"))

    assert result["protocol"] == "udp"
    assert 0.8 * 20e6 <= result["sent_bps"] <= 1.2 * 20e6
    assert 0 < result["received_bps"] <= result["sent_bps"] * 1.05
    assert sent_on_wire >= payload_bytes(result["sent_bps"], result["duration"]) * 0.99
    assert result["jitter_ms"] >= 0 and isinstance(result["jitter_ms"], float)
    assert isinstance(result["packets"], int) and result["packets"] > 100
    assert 0 <= result["lost_packets"] <= result["packets"]
    assert result["lost_percent"] == pytest.approx(100.0 * result["lost_packets"] / result["packets"], abs=0.01)
    assert (result["retransmits"], result["rtt_ms"], result["rtt_max_ms"]) == (None, None, None)
    assert "--udp" in result["command"] and "20M" in result["command"]


def server_report(server):
    out, _err = server.communicate(timeout=15)
    return json.loads(out)


def test_reverse_makes_the_server_send_and_takes_the_rtt_from_its_report(lab, measure):
    server = lab.one_off_server()
    sent_on_wire, received_on_wire, result = wire_bytes(lab, lambda: measure(port=ONE_OFF_PORT, reverse=True))
    report = server_report(server)

    assert result["reverse"] is True and "--reverse" in result["command"]
    assert report["start"]["test_start"]["reverse"] == 1
    assert received_on_wire >= payload_bytes(result["received_bps"], result["duration"]) * 0.99
    assert sent_on_wire < received_on_wire / 10, "the client sent, it should have received"
    server_rtts = [stream["sender"]["mean_rtt"] for stream in report["end"]["streams"]]
    assert result["rtt_ms"] == pytest.approx(sum(server_rtts) / len(server_rtts) / 1000.0)
    assert result["rtt_ms"] > 0
    assert result["sent_bps"] == pytest.approx(report["end"]["sum_sent"]["bits_per_second"], rel=1e-9)


def test_parallel_streams_reach_the_server(lab, measure):
    server = lab.one_off_server()
    result = measure(port=ONE_OFF_PORT, parallel=2)
    report = server_report(server)

    assert result["parallel"] == 2
    assert report["start"]["test_start"]["num_streams"] == 2
    assert len(report["end"]["streams"]) == 2
    # What the server received, as it reports it itself.
    assert result["received_bps"] == pytest.approx(report["end"]["sum_received"]["bits_per_second"], rel=1e-9)
    assert 0 < result["received_bps"] <= result["sent_bps"] * 1.05


def test_authentication_with_the_right_password(lab, measure):
    result = measure(port=AUTH_PORT, username=USER, password=PASSWORD, rsa_public_key=lab.public_key)

    assert result["sent_bps"] > 0
    command = result["command"]
    assert command[command.index("--username") + 1] == USER
    assert not any(PASSWORD in part for part in command)
    # The key file lived for the test only.
    assert not os.path.exists(command[command.index("--rsa-public-key-path") + 1])


# ---------------------------------------------------------------------------------------------------------------------
# Failures, each with its cause and within its bound


def test_wrong_password_is_an_auth_failure(lab, measure_fails):
    result, _took = measure_fails(port=AUTH_PORT, username=USER, password="not-it", rsa_public_key=lab.public_key)

    assert result["cause"] == "auth"
    assert "%s:%d" % (SERVER, AUTH_PORT) in result["msg"] and "authentication failed" in result["msg"]
    assert "not-it" not in json.dumps(result["command"])


def test_closed_port_is_refused_at_once(measure_fails):
    result, took = measure_fails(port=CLOSED_PORT)

    assert (result["cause"], result["errno"]) == ("refused", "ECONNREFUSED")
    assert "%s:%d" % (SERVER, CLOSED_PORT) in result["msg"] and "refused" in result["msg"]
    assert took < 2


def test_busy_server(lab, measure_fails):
    holder = lab.start(lab.client_ns, "iperf3", "--client", SERVER, "--port", str(BUSY_PORT), "--time", "30",
                       "--bitrate", "1M")
    try:
        # The control connection and one data stream: the holder's test runs.
        wait_for(lambda: len(lab.sockets(BUSY_PORT, "established")) >= 2, "test holding the server")
        result, took = measure_fails(port=BUSY_PORT)
    finally:
        holder.kill()
        holder.wait()

    assert result["cause"] == "busy"
    assert "%s:%d" % (SERVER, BUSY_PORT) in result["msg"] and "busy" in result["msg"]
    assert result["iperf3_error"].startswith("the server is busy running a test")
    assert took < 3


def test_dropped_syns_time_out_after_connect_timeout(measure_fails):
    result, took = measure_fails(port=DROPPED_PORT, connect_timeout=1)

    assert (result["cause"], result["errno"]) == ("timeout", "ETIMEDOUT")
    assert "%s:%d" % (SERVER, DROPPED_PORT) in result["msg"]
    assert 0.9 <= took < 3


def iperf3_clients_of(port):
    """The running iperf3 clients of ``port``, from their command lines."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == "iperf3" and "--client" in argv and str(port) in argv:
            found.append(pid)
    return found


def test_a_server_that_never_answers_is_stopped_at_the_timeout(lab, measure_fails):
    result, took = measure_fails(port=MUTE_PORT, timeout=3)

    assert result["cause"] == "timeout"
    assert "%s:%d" % (SERVER, MUTE_PORT) in result["msg"] and "within 3 s" in result["msg"]
    assert 2.9 <= took < 5
    assert iperf3_clients_of(MUTE_PORT) == []


def test_unresolvable_name(measure_fails):
    result, took = measure_fails(server="no-such-host.invalid")

    assert result["cause"] == "unresolved"
    assert "no-such-host.invalid:5201" in result["msg"]
    assert result["command"] is None
    assert took < 10


def test_other_failures_carry_iperf3s_message_and_errno(measure_fails):
    result, _took = measure_fails(server=UNROUTED)

    assert (result["cause"], result["errno"]) == ("error", "ENETUNREACH")
    assert result["iperf3_error"] == "unable to connect to server: Network is unreachable"
    assert result["iperf3_error"] in result["msg"]


def test_a_key_iperf3_cannot_read_fails_with_its_parameter_error(measure_fails):
    # iperf3 refuses it before its JSON output starts: a usage text, and its message on stderr.
    result, _took = measure_fails(port=AUTH_PORT, username=USER, password=PASSWORD, rsa_public_key=KEY)

    assert result["cause"] == "error"
    assert result["iperf3_error"] == ("parameter error - you must specify a username, password, and path to a valid "
                                      "RSA public key")
    assert result["msg"].endswith("failed: iperf3: %s" % result["iperf3_error"])


def test_missing_iperf3(run_module, monkeypatch, tmp_path):
    # Ansible also looks in the sbin directories, which do not hold iperf3 (Debian puts it in /usr/bin).
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AnsibleFailJson) as failed:
        run_module(iperf_measure.main, dict(server=SERVER))

    assert failed.value.result["cause"] == "iperf3_missing"
    assert "iperf3 is not installed" in failed.value.result["msg"]


# ---------------------------------------------------------------------------------------------------------------------
# Check mode and bad options: nothing runs


@pytest.fixture
def nothing_runs(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the module ran something or looked a name up")

    monkeypatch.setattr(_iperf.subprocess, "run", refuse)
    monkeypatch.setattr(_iperf.socket, "getaddrinfo", refuse)


def test_check_mode_returns_the_command_and_runs_nothing(run_module, nothing_runs):
    result = run_module(iperf_measure.main, dict(
        server="iperf.example.net", protocol="udp", bitrate="100M", reverse=True, parallel=3, omit=2,
        bind="2001:db8::7", username=USER, password=PASSWORD, rsa_public_key=KEY), check_mode=True)

    assert result["changed"] is False
    assert result["sent_bps"] is None and result["cpu"] is None
    assert (result["duration"], result["timeout"]) == (5, 5 + 2 + 5.0 + 10)
    assert result["command"] == [
        shutil.which("iperf3"), "--client", "iperf.example.net", "--port", "5201", "--json", "--time", "5",
        "--parallel", "3", "--omit", "2", "--connect-timeout", "5000", "--udp", "--reverse", "--bitrate", "100M",
        "--bind", "2001:db8::7", "--username", USER, "--rsa-public-key-path", _iperf.KEY_FILE_PLACEHOLDER]


@pytest.mark.parametrize("options, option, words", [
    (dict(port=0), "port", "between 1 and 65535"),
    (dict(port=70000), "port", "between 1 and 65535"),
    (dict(duration=0), "duration", "1 or more seconds"),
    (dict(omit=-1), "omit", "0 or more seconds"),
    (dict(parallel=0), "parallel", "between 1 and 128"),
    (dict(parallel=129), "parallel", "between 1 and 128"),
    (dict(bitrate="100x"), "bitrate", "not a bit rate"),
    (dict(bitrate="fast"), "bitrate", "not a bit rate"),
    (dict(bitrate="-5M"), "bitrate", "not a bit rate"),
    (dict(connect_timeout=0), "connect_timeout", "positive"),
    (dict(duration=5, omit=1, timeout=6), "timeout", "cannot hold a test of duration + omit = 6"),
    (dict(server="not a host!"), "server", "not a DNS name"),
    (dict(server="fe80::1%eth0"), "server", "has a zone"),
    (dict(bind="client.example"), "bind", "not an IP address"),
    (dict(username=USER, password="", rsa_public_key=KEY), "password", "must not be empty"),
    (dict(username="a,b", password=PASSWORD, rsa_public_key=KEY), "username", "must not contain ','"),
    (dict(username=USER, password=PASSWORD, rsa_public_key="ssh-rsa AAAA"), "rsa_public_key", "not a PEM public key"),
])
def test_bad_options_fail_naming_the_option(run_module, nothing_runs, options, option, words):
    with pytest.raises(AnsibleFailJson) as failed:
        run_module(iperf_measure.main, dict(dict(server=SERVER), **options))

    result = failed.value.result
    assert result["option"] == option
    assert result["msg"].startswith("%s: " % option)
    assert words in result["msg"]


@pytest.mark.parametrize("given", ["username", "password", "rsa_public_key"])
def test_credentials_only_together(run_module, nothing_runs, given):
    with pytest.raises(AnsibleFailJson) as failed:
        run_module(iperf_measure.main, {"server": SERVER, given: KEY})

    assert "required together: username, password, rsa_public_key" in failed.value.result["msg"]
