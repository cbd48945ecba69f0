# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""connections against the real kernel's conntrack, inside throwaway network namespaces (atvtest-ct-*).

Topology (one per test): ``client`` (10.77.1.2, fd77:1::2) -- ``router`` -- ``server`` (10.77.2.2, fd77:2::2).
The router forwards between its veths and tracks what it forwards: an iptables FORWARD rule uses conntrack, and
byte accounting and timestamps are on unless a test turns them off. The server echoes TCP on ports 8080 and 8081
and UDP on 5353; the client opens and closes connections on command. The module runs as a script inside the
router namespace, as Ansible would run it on the host that forwards a moved guest's old address; the filters
(port, protocol, states, NAT) are tried on the same table in-process, through a conntrack socket opened in the
router namespace, since each start of the module costs about half a second.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest
from pyroute2 import NFCTSocket

from ansible_collections.arctictern.virt.plugins.module_utils import _conntrack
from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as nl
from ansible_collections.arctictern.virt.plugins.modules import connections
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson
from lab import netlink as lab_nl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "plugins", "modules", "connections.py")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
MODULE_ENV = dict(os.environ, PYTHONPATH="%s:%s" % (os.path.join(ROOT, ".collections"), ROOT))
SERVER_V4, SERVER_V6, CLIENT_V4, CLIENT_V6, ROUTER_CLIENT_SIDE = "10.77.2.2", "fd77:2::2", "10.77.1.2", "fd77:1::2", "10.77.1.1"
PAYLOAD = 3000

SERVER = r"""
import socket, sys, threading

def dual_stack(kind, port):
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    return sock

def echo(conn):
    with conn:
        for data in iter(lambda: conn.recv(65536), b""):
            conn.sendall(data)

def serve_tcp(port):
    sock = dual_stack(socket.SOCK_STREAM, port)
    sock.listen(64)
    ready.release()
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()

def serve_udp(port):
    sock = dual_stack(socket.SOCK_DGRAM, port)
    ready.release()
    while True:
        data, peer = sock.recvfrom(65536)
        sock.sendto(data, peer)

ready = threading.Semaphore(0)
for target, port in ((serve_tcp, 8080), (serve_tcp, 8081), (serve_udp, 5353)):
    threading.Thread(target=target, args=(port,), daemon=True).start()
for _ in range(3):
    ready.acquire()
print("ok", flush=True)
sys.stdin.read()  # serve until the test closes stdin
"""

CLIENT = r"""
import socket, sys

def receive(sock, size):
    got = 0
    while got < size:
        got += len(sock.recv(65536))

opened = []
for line in sys.stdin:
    command, *args = line.split()
    try:
        if command == "tcp":
            sock = socket.create_connection((args[0], int(args[1])), timeout=5)
            sock.sendall(b"x" * int(args[2]))
            receive(sock, int(args[2]))
        elif command == "udp":
            sock = socket.socket(socket.AF_INET6 if ":" in args[0] else socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(5)
            sock.sendto(b"x" * int(args[2]), (args[0], int(args[1])))
            sock.recv(65536)
        elif command == "close":
            # An orderly close on both sides, so that the router's entry goes to TIME_WAIT before the answer.
            sock = opened[int(args[0])]
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
            sock.close()
            print("ok", flush=True)
            continue
        opened.append(sock)
        print("ok", sock.getsockname()[1], flush=True)
    except OSError as error:
        print("error", error, flush=True)
"""


def in_netns(netns, *argv, **kwargs):
    return subprocess.run(["nsenter", "--net=/run/netns/%s" % netns, *argv], check=True, capture_output=True,
                          text=True, timeout=30, **kwargs)


def set_sysctls(netns, *settings):
    in_netns(netns, "sysctl", "-qw", *settings)


class Peer:
    """A script run in a namespace that answers each line it reads with one line."""

    def __init__(self, netns, script):
        self.proc = subprocess.Popen(["nsenter", "--net=/run/netns/%s" % netns, PYTHON, "-c", script],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def answer(self):
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "ok", "peer answered %r" % line
        return line[1:]

    def ask(self, *words):
        self.proc.stdin.write(" ".join(str(word) for word in words) + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Client(Peer):
    def __init__(self, netns):
        super().__init__(netns, CLIENT)

    def tcp(self, host, port, size=PAYLOAD):
        """Open a TCP connection, send ``size`` bytes and read the echo; the client's port."""
        return int(self.ask("tcp", host, port, size)[0])

    def udp(self, host, port, size=PAYLOAD):
        return int(self.ask("udp", host, port, size)[0])

    def close(self, index):
        self.ask("close", index)


def module_args(args, check_mode):
    return {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode, _ansible_diff=True)}


def start_module(netns, args, tmp_path, check_mode=True, privileges=()):
    """Start the module as a script in ``netns`` (``privileges``: a command that runs it, like setpriv)."""
    path = tmp_path / ("args-%s.json" % secrets.token_hex(4))
    path.write_text(json.dumps(module_args(args, check_mode)))
    argv = ["nsenter", "--net=/run/netns/%s" % netns, *privileges, PYTHON, MODULE, str(path)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=MODULE_ENV)


def finish(proc):
    out, err = proc.communicate(timeout=60)
    assert out, "the module printed nothing; stderr: %s" % err
    return json.loads(out)


def run_in(netns, args, tmp_path, **kwargs):
    return finish(start_module(netns, args, tmp_path, **kwargs))


def wait_for_first_read(proc, netns):
    """Return once the module started in ``proc`` has opened its conntrack socket, so its first read is under
    way, however slow the start of a Python process is on a loaded machine."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            inodes = {os.readlink("/proc/%d/fd/%s" % (proc.pid, fd)) for fd in os.listdir("/proc/%d/fd" % proc.pid)}
            with open("/proc/%d/net/netlink" % proc.pid) as table:
                rows = [line.split() for line in table.readlines()[1:]]
        except OSError:
            rows, inodes = [], set()
        # Columns: sk, Eth (the netlink protocol; 12 is NETLINK_NETFILTER), ..., Inode.
        if any(row[1] == "12" and "socket:[%s]" % row[-1] in inodes for row in rows):
            time.sleep(0.3)
            return
        assert proc.poll() is None, "the module ended before reading the table"
        time.sleep(0.05)
    raise AssertionError("the module in %s opened no conntrack socket within 30 seconds" % netns)


def read(netns, address, port=None, protocol="any", states=_conntrack.LIVE_TCP_STATES):
    """The connections the module's reader finds in ``netns``, through a conntrack socket opened there."""
    params = {"port": port, "protocol": protocol, "states": list(states)}
    with NFCTSocket(nfgen_family=socket.AF_INET, netns=netns) as ct:
        return _conntrack.read_connections(ct, 4, address, params)


class Topology:
    """Client, router and server namespaces (atvtest-ct-<tag>-c, -r, -s) with the server and client scripts."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.client_ns, self.router_ns, self.server_ns = ("atvtest-ct-%s-%s" % (tag, role) for role in "crs")
        self.peers = []

    def build(self, accounting, nat):
        for netns in (self.client_ns, self.router_ns, self.server_ns):
            assert lab_nl.create_netns(netns)
            # No duplicate address detection: the IPv6 addresses are usable at once.
            set_sysctls(netns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        with nl.open_ipr(self.router_ns) as router:
            lab_nl.create_veth_pair(router, "r0", "c0", peer_netns=self.client_ns)
            lab_nl.create_veth_pair(router, "r1", "s0", peer_netns=self.server_ns)
            for name, addresses in (("r0", ("10.77.1.1/24", "fd77:1::1/64")), ("r1", ("10.77.2.1/24", "fd77:2::1/64"))):
                nl.set_up(router, name)
                for address in addresses:
                    nl.add_address(router, name, address)
        for netns, name, addresses, gateways in (
                (self.client_ns, "c0", ("10.77.1.2/24", "fd77:1::2/64"), ("10.77.1.1", "fd77:1::1")),
                (self.server_ns, "s0", ("10.77.2.2/24", "fd77:2::2/64"), ("10.77.2.1", "fd77:2::1"))):
            with nl.open_ipr(netns) as ipr:
                nl.set_up(ipr, "lo")
                nl.set_up(ipr, name)
                for address in addresses:
                    nl.add_address(ipr, name, address)
                for gateway in gateways:
                    lab_nl.replace_route(ipr, "default", gateway=gateway)
        flag = int(accounting)
        set_sysctls(self.router_ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                    "net.netfilter.nf_conntrack_acct=%d" % flag, "net.netfilter.nf_conntrack_timestamp=%d" % flag)
        # Conntrack tracks only once a rule uses it.
        for iptables in ("iptables", "ip6tables"):
            in_netns(self.router_ns, iptables, "-w", "-A", "FORWARD", "-m", "conntrack", "--ctstate",
                     "NEW,ESTABLISHED", "-j", "ACCEPT")
        if nat:
            in_netns(self.router_ns, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", ROUTER_CLIENT_SIDE,
                     "-p", "tcp", "--dport", "9000", "-j", "DNAT", "--to-destination", "%s:8080" % SERVER_V4)
        server = Peer(self.server_ns, SERVER)
        self.peers.append(server)
        server.answer()
        self.client = Client(self.client_ns)
        self.peers.append(self.client)
        return self

    def remove(self):
        for peer in self.peers:
            peer.stop()
        for netns in (self.client_ns, self.router_ns, self.server_ns):
            lab_nl.remove_netns(netns)


@pytest.fixture
def topology():
    """``topology(accounting=True, nat=False)``: a built Topology, removed after the test (also on failure)."""
    if os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("iptables"):
        pytest.skip("network namespaces need root, nsenter and iptables")
    made = []

    def build(accounting=True, nat=False):
        made.append(Topology())
        return made[-1].build(accounting, nat)

    yield build
    for each in made:
        each.remove()


def tuples(found):
    """The original tuples of a result's (or a list of) connections, sorted."""
    found = found["connections"] if isinstance(found, dict) else found
    return sorted((c["protocol"], c["source"], c["source_port"], c["destination"], c["destination_port"])
                  for c in found)


# ---------------------------------------------------------------------------------------------------------
# Reading


def test_tcp_connections_through_the_router(topology, tmp_path):
    net = topology()
    ports = [net.client.tcp(SERVER_V4, 8080) for number in range(3)] + [net.client.tcp(SERVER_V4, 8081)]
    time.sleep(0.05)  # an age above 0

    result = run_in(net.router_ns, {"address": SERVER_V4}, tmp_path)
    assert result["changed"] is False
    assert result["count"] == result["count_at_start"] == 4
    assert result["waited"] == 0 and "drained" not in result and "diff" not in result
    assert result["notes"] == []
    assert tuples(result) == sorted([("tcp", CLIENT_V4, port, SERVER_V4, 8080) for port in ports[:3]]
                                    + [("tcp", CLIENT_V4, ports[3], SERVER_V4, 8081)])
    for conn in result["connections"]:
        assert (conn["reply_source"], conn["reply_source_port"]) == (SERVER_V4, conn["destination_port"])
        assert (conn["reply_destination"], conn["reply_destination_port"]) == (CLIENT_V4, conn["source_port"])
        assert conn["state"] == "ESTABLISHED"
        # PAYLOAD bytes each way, plus headers, handshake and acknowledgements.
        assert conn["bytes"] > 2 * PAYLOAD and conn["packets"] >= 6
        assert 0 < conn["age"] < 30
        assert conn["mark"] == 0 and conn["expires_in"] > 0

    # The client's side of the same connections, and the same outside check mode.
    from_client = run_in(net.router_ns, {"address": CLIENT_V4}, tmp_path, check_mode=False)
    assert from_client["changed"] is False
    assert tuples(from_client) == tuples(result)


def test_port_is_taken_on_the_address_side(topology):
    net = topology()
    ports = [net.client.tcp(SERVER_V4, 8080), net.client.tcp(SERVER_V4, 8080), net.client.tcp(SERVER_V4, 8081)]

    def count(address, port):
        return len(read(net.router_ns, address, port=port))

    assert count(SERVER_V4, None) == 3
    assert count(SERVER_V4, 8080) == 2
    assert count(SERVER_V4, 8081) == 1
    assert count(SERVER_V4, 9999) == 0
    assert count(CLIENT_V4, ports[2]) == 1
    # 8080 is the server's port: on the client's side it matches nothing.
    assert count(CLIENT_V4, 8080) == 0


def test_udp_flows_count_and_protocol_filters(topology):
    net = topology()
    tcp_port = net.client.tcp(SERVER_V4, 8080)
    udp_port = net.client.udp(SERVER_V4, 5353)

    def found(**options):
        return tuples(read(net.router_ns, SERVER_V4, **options))

    tcp, udp = ("tcp", CLIENT_V4, tcp_port, SERVER_V4, 8080), ("udp", CLIENT_V4, udp_port, SERVER_V4, 5353)
    assert found() == [tcp, udp]
    assert found(protocol="udp") == [udp]
    assert found(protocol="tcp") == [tcp]
    assert found(protocol="icmp") == []
    # TCP counts by state; a UDP flow has none and counts until it times out.
    assert found(states=["TIME_WAIT"]) == [udp]
    [flow] = read(net.router_ns, SERVER_V4, protocol="udp")
    assert (flow["reply_source"], flow["reply_source_port"]) == (SERVER_V4, 5353)
    assert flow["state"] is None
    assert flow["bytes"] > 2 * PAYLOAD and flow["packets"] == 2


def test_ipv6_connections(topology, tmp_path):
    net = topology()
    port = net.client.tcp(SERVER_V6, 8080)
    net.client.tcp(SERVER_V4, 8080)

    result = run_in(net.router_ns, {"address": "FD77:2:0::2"}, tmp_path)
    assert tuples(result) == [("tcp", CLIENT_V6, port, SERVER_V6, 8080)]
    assert result["connections"][0]["reply_destination"] == CLIENT_V6
    assert result["connections"][0]["state"] == "ESTABLISHED"


def test_dnat_entries_are_found_by_their_reply_tuple(topology):
    net = topology(nat=True)
    port = net.client.tcp(ROUTER_CLIENT_SIDE, 9000)

    [conn] = read(net.router_ns, SERVER_V4)
    assert (conn["source"], conn["source_port"], conn["destination"], conn["destination_port"]) == (
        CLIENT_V4, port, ROUTER_CLIENT_SIDE, 9000)
    assert (conn["reply_source"], conn["reply_source_port"], conn["reply_destination"], conn["reply_destination_port"]) == (
        SERVER_V4, 8080, CLIENT_V4, port)
    assert len(read(net.router_ns, SERVER_V4, port=8080)) == 1
    assert len(read(net.router_ns, SERVER_V4, port=9000)) == 0
    assert len(read(net.router_ns, ROUTER_CLIENT_SIDE, port=9000)) == 1


# ---------------------------------------------------------------------------------------------------------
# Waiting


def test_wait_until_returns_once_connections_drained(topology, tmp_path):
    net = topology()
    ports = [net.client.tcp(SERVER_V4, 8080) for number in range(3)]

    proc = start_module(net.router_ns, {"address": SERVER_V4, "wait_until": 1, "timeout": 30, "interval": 0.2},
                        tmp_path)
    wait_for_first_read(proc, net.router_ns)
    net.client.close(0)
    time.sleep(0.5)
    closed_last = time.monotonic()
    net.client.close(1)
    result = finish(proc)

    assert result["drained"] is True
    assert result["count_at_start"] == 3
    assert tuples(result) == [("tcp", CLIENT_V4, ports[2], SERVER_V4, 8080)]
    # It waited through both closes, and returned soon after the second.
    assert 0.5 < result["waited"] < 30
    assert time.monotonic() - closed_last < 5
    # The closed connections are still tracked, in TIME_WAIT, which is not a live state.
    closed = read(net.router_ns, SERVER_V4, states=["TIME_WAIT"])
    assert tuples(closed) == sorted(("tcp", CLIENT_V4, port, SERVER_V4, 8080) for port in ports[:2])
    assert {conn["state"] for conn in closed} == {"TIME_WAIT"}


def test_wait_until_already_met_returns_at_once(topology, tmp_path):
    net = topology()
    net.client.tcp(SERVER_V4, 8080)
    result = run_in(net.router_ns, {"address": SERVER_V4, "wait_until": 1, "timeout": 30}, tmp_path)
    assert result["drained"] is True and result["count"] == 1
    assert result["waited"] < 1


def test_timeout_reports_what_is_left(topology, tmp_path):
    net = topology()
    ports = [net.client.tcp(SERVER_V4, 8080) for number in range(2)]
    args = {"address": SERVER_V4, "wait_until": 0, "timeout": 1.0, "interval": 0.8}

    result = run_in(net.router_ns, args, tmp_path)
    assert "failed" not in result
    assert result["drained"] is False
    assert result["count"] == result["count_at_start"] == 2
    assert tuples(result) == sorted(("tcp", CLIENT_V4, port, SERVER_V4, 8080) for port in ports)
    # Reads at 0 and 0.8 s, and the last one at the deadline (1.0 s), not a whole interval later (1.6 s).
    assert 1.0 <= result["waited"] < 1.5

    failed = run_in(net.router_ns, dict(args, fail_on_timeout=True), tmp_path)
    assert failed["failed"] is True
    assert failed["msg"] == "2 connections to or from 10.77.2.2 are left after 1.0 seconds; wait_until is 0"
    assert failed["drained"] is False and failed["count"] == 2 and len(failed["connections"]) == 2


# ---------------------------------------------------------------------------------------------------------
# Notes and failures


def test_notes_name_the_sysctls_when_counters_are_off(topology, tmp_path):
    net = topology(accounting=False)
    net.client.tcp(SERVER_V4, 8080)

    result = run_in(net.router_ns, {"address": SERVER_V4}, tmp_path)
    conn = result["connections"][0]
    assert (conn["bytes"], conn["packets"], conn["age"]) == (None, None, None)
    assert conn["state"] == "ESTABLISHED"
    assert result["notes"] == [
        "bytes and packets are null: the kernel keeps no byte and packet counters while "
        "net.netfilter.nf_conntrack_acct is not 1 in this network namespace",
        "age is null: the kernel keeps no start times while net.netfilter.nf_conntrack_timestamp is not 1 in this "
        "network namespace",
    ]

    # Turned on later: the connection tracked before still has no counters, a new one has.
    set_sysctls(net.router_ns, "net.netfilter.nf_conntrack_acct=1")
    net.client.tcp(SERVER_V4, 8081)
    result = run_in(net.router_ns, {"address": SERVER_V4}, tmp_path)
    assert {conn["destination_port"]: conn["bytes"] is None for conn in result["connections"]} == {8080: True, 8081: False}
    assert result["notes"][0] == ("bytes and packets are null for connections tracked before "
                                  "net.netfilter.nf_conntrack_acct was set to 1")


def test_empty_table_is_noted(topology, tmp_path):
    net = topology()
    net.client.tcp(SERVER_V4, 8080)
    # The client namespace has no rule that uses conntrack: its own connection is not tracked.
    result = run_in(net.client_ns, {"address": SERVER_V4}, tmp_path)
    assert result["count"] == 0
    assert any(note.startswith("the connection tracking table of this network namespace was empty")
               for note in result["notes"])


def test_without_cap_net_admin_the_message_says_so(topology, tmp_path):
    net = topology()
    result = run_in(net.router_ns, {"address": SERVER_V4}, tmp_path,
                    privileges=("setpriv", "--bounding-set", "-net_admin", "--"))
    assert result["failed"] is True
    assert result["msg"] == ("cannot read the connection tracking table: Operation not permitted; reading it needs "
                             "CAP_NET_ADMIN: run the task as root (become: true)")
    assert "exception" not in result


# ---------------------------------------------------------------------------------------------------------
# Without namespaces


@pytest.mark.parametrize("args, option, message", [
    ({"address": "10.0.0.300"}, "address", "'10.0.0.300' is not an IP address"),
    ({"address": "fe80::1%eth0"}, "address", "has a zone"),
    ({"address": "10.0.0.1", "port": 0}, "port", "between 1 and 65535, not 0"),
    ({"address": "10.0.0.1", "port": 65536}, "port", "between 1 and 65535, not 65536"),
    ({"address": "10.0.0.1", "wait_until": -1}, "wait_until", "0 or more, not -1"),
    ({"address": "10.0.0.1", "timeout": -5}, "timeout", "0 or more seconds"),
    ({"address": "10.0.0.1", "interval": 0}, "interval", "more than 0 seconds"),
    ({"address": "10.0.0.1", "states": []}, "states", "at least one TCP state"),
])
def test_bad_options_fail_naming_the_option(run_module, args, option, message):
    with pytest.raises(AnsibleFailJson) as failed:
        run_module(connections.main, args)
    assert failed.value.result["msg"].startswith(option + ": ")
    assert message in failed.value.result["msg"]
    assert "exception" not in failed.value.result


def test_unknown_state_is_refused_by_the_argument_spec(run_module):
    with pytest.raises(AnsibleFailJson, match="states"):
        run_module(connections.main, {"address": "10.0.0.1", "states": ["ESTABLISHED", "OPEN"]})


@pytest.mark.parametrize("code, hint", [
    (errno.EINVAL, "the nf_conntrack and nf_conntrack_netlink kernel modules must be loaded"),
    (errno.EPROTONOSUPPORT, "the nf_conntrack and nf_conntrack_netlink kernel modules must be loaded"),
    (errno.EACCES, "needs CAP_NET_ADMIN"),
])
def test_failures_say_what_to_do(code, hint):
    # A kernel without ctnetlink cannot be had here: the errors it answers with are mapped directly.
    error = _conntrack._failure(OSError(code, os.strerror(code)))
    assert error.msg.startswith("cannot read the connection tracking table: %s; " % os.strerror(code))
    assert hint in error.msg


def _entry(ct_id, source, status=0):
    return _conntrack.Entry(ct_id, status, {"source": source, "destination": "10.0.0.9"})


def test_collect_stops_when_the_kernel_ignored_a_filter():
    table = [_entry(1, "10.0.0.1"), _entry(2, "10.0.0.2")]
    calls = []

    def unfiltered_dump(filters):
        calls.append(filters)
        return iter(table)

    found = _conntrack.collect(unfiltered_dump, _conntrack.queries(4, "10.0.0.1"))
    assert [entry.ct_id for entry in found] == [1, 2]
    assert len(calls) == 1


def test_collect_merges_filtered_dumps_once_each():
    dumps = iter([[_entry(1, "10.0.0.1")], [], [_entry(1, "10.0.0.1", _conntrack.IPS_SRC_NAT)],
                  [_entry(3, "10.0.0.3", _conntrack.IPS_DST_NAT)]])
    found = _conntrack.collect(lambda filters: next(dumps), _conntrack.queries(4, "10.0.0.1"))
    assert sorted(entry.ct_id for entry in found) == [1, 3]
    assert next(dumps, None) is None


def test_idle_is_the_timeout_of_the_state_less_what_is_left(monkeypatch):
    timeouts = {"nf_conntrack_tcp_timeout_established": 432000, "nf_conntrack_tcp_timeout_unacknowledged": 300,
                "nf_conntrack_tcp_timeout_max_retrans": 300, "nf_conntrack_udp_timeout_stream": 120,
                "nf_conntrack_udp_timeout": 30}
    monkeypatch.setattr(_conntrack, "_sysctl", timeouts.get)
    tcp = {"protocol": "tcp", "state": "ESTABLISHED", "expires_in": 431990}
    assert _conntrack._idle(tcp, 0) == 10
    # 250 s left may be a reset to the unacknowledged-data timeout just now: unknown, so it counts.
    assert _conntrack._idle(dict(tcp, expires_in=250), 0) is None
    udp = {"protocol": "udp", "state": None, "expires_in": 100}
    assert _conntrack._idle(udp, _conntrack.IPS_ASSURED) == 20
    assert _conntrack._idle(dict(udp, expires_in=25), 0) == 5
    assert not _conntrack.counts(dict(tcp, idle=61), None, ["ESTABLISHED"], idle_timeout=60)
    assert _conntrack.counts(dict(tcp, idle=59), None, ["ESTABLISHED"], idle_timeout=60)
    assert _conntrack.counts(dict(tcp, idle=None), None, ["ESTABLISHED"], idle_timeout=60)
    assert _conntrack.counts(dict(tcp, idle=10 ** 6), None, ["ESTABLISHED"])


def test_a_connection_whose_packets_stop_moving_stops_counting(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(_conntrack.time, "monotonic", lambda: clock[0])
    keep = _conntrack.without_stalled(10)
    moving = {"protocol": "tcp", "source": "192.0.2.1", "source_port": 1, "destination": "192.0.2.2",
              "destination_port": 7, "packets": 5}
    stalled = dict(moving, source_port=2)
    assert keep([moving, stalled]) == [moving, stalled]
    clock[0] += 8
    moving = dict(moving, packets=9)
    assert keep([moving, stalled]) == [moving, stalled], "8 s without a packet is within the 10 s"
    clock[0] += 5
    assert keep([moving, stalled]) == [moving], "13 s without a packet"
    assert _conntrack.without_stalled(None)([stalled, stalled]) == [stalled, stalled]
    uncounted = dict(stalled, packets=None)
    assert keep([uncounted]) == [uncounted]
    clock[0] += 60
    assert keep([uncounted]) == [uncounted], "without counters a connection is never taken for stalled"
