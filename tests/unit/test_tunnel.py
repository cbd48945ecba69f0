# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tunnel module against the real kernel.

Each test builds its own network namespaces (atvtest-tn-<tag>-<role>) and removes them afterwards, failed or not.
The module runs inside a namespace as a script (nsenter), as Ansible would run it on a host; what it did is read
back with ``ip -j`` and ``iptables -S``, not with the module's own code. The data path test builds two sites:

    C (client) --- R (router, strict rp_filter) --- A (old site: routes OLD into the tunnel)
                                                \\-- B (new site: replies from OLD go back through the tunnel) --- G

G (the guest) kept its old address OLD from A's subnet. R drops packets from A's subnet that arrive from B, as a
site router does, so a reply only reaches C through the tunnel.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _tunnel
from ansible_collections.arctictern.virt.plugins.modules import tunnel
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins" / "modules" / "tunnel.py"
ENV = dict(os.environ, PYTHONPATH="%s:%s" % (ROOT / ".collections", ROOT))
OLD = "198.19.210.50"
PROTO = str(_tunnel.RTPROT_TUNNEL)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

# Prints "reply" and exits 0 when `target` answers an ICMP echo within `timeout` seconds (no ping binary here).
PING = r"""
import os, socket, struct, sys, time
target, timeout = sys.argv[1], float(sys.argv[2])
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    return ~(total + (total >> 16)) & 0xffff
ident = os.getpid() & 0xffff
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"atv-tunnel-test!"
packet = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
deadline = time.monotonic() + timeout
sock.sendto(packet, (target, 0))
while time.monotonic() < deadline:
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        data, peer = sock.recvfrom(2048)
    except socket.timeout:
        break
    header = (data[0] & 0x0f) * 4
    kind, _code, _sum, rid, _seq = struct.unpack("!BBHHH", data[header:header + 8])
    if kind == 0 and rid == ident and peer[0] == target:
        print("reply")
        sys.exit(0)
sys.exit(1)
"""

# Accepts one connection on `port`, reads to the end and answers the SHA-256 of what it read; prints what it saw.
SERVER = r"""
import hashlib, json, socket, sys
port, timeout = int(sys.argv[1]), float(sys.argv[2])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
server.listen(1)
server.settimeout(timeout)
print("ready", flush=True)
try:
    conn, peer = server.accept()
except socket.timeout:
    print(json.dumps({"accepted": False}))
    sys.exit(0)
conn.settimeout(30)
mss = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
digest, size = hashlib.sha256(), 0
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    digest.update(chunk)
    size += len(chunk)
conn.sendall(digest.hexdigest().encode())
conn.close()
print(json.dumps({"accepted": True, "peer": peer[0], "mss": mss, "size": size}))
"""

# Connects to `host`:`port`, sends `size` random bytes and checks the digest that comes back; prints what it saw.
CLIENT = r"""
import hashlib, json, os, socket, sys
host, port, size, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
data = os.urandom(size)
try:
    sock = socket.create_connection((host, port), timeout=timeout)
except OSError as error:
    print(json.dumps({"connected": False, "error": str(error)}))
    sys.exit(0)
mss = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
sock.settimeout(30)
sock.sendall(data)
sock.shutdown(socket.SHUT_WR)
reply = b""
while True:
    chunk = sock.recv(128)
    if not chunk:
        break
    reply += chunk
print(json.dumps({"connected": True, "mss": mss, "intact": reply.decode() == hashlib.sha256(data).hexdigest()}))
"""


class Namespaces:
    """The test's network namespaces, all removed by ``close``."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.made = []

    def add(self, role):
        name = "atvtest-tn-%s-%s" % (self.tag, role)
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.made.append(name)
        ip(name, "link", "set", "lo", "up")
        for key, value in (("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0")):
            sysctl(name, key, value)
        return name

    def close(self):
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], check=False)


def ip(ns, *args):
    """``ip -n ns args``; its output."""
    return subprocess.run(["ip", "-n", ns] + list(args), check=True, capture_output=True, text=True).stdout


def ip_json(ns, *args):
    return json.loads(ip(ns, "-j", *args) or "[]")


def inside(ns, *argv, **kwargs):
    """Run ``argv`` in network namespace ``ns``."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    return subprocess.run(["nsenter", "--net=/run/netns/" + ns] + list(argv), check=False, **kwargs)


def sysctl(ns, key, value):
    path = "/proc/sys/" + key.replace(".", "/")
    assert inside(ns, "sh", "-c", "echo %s > %s" % (value, path)).returncode == 0


def iptables_rules(ns, binary, table):
    return inside(ns, binary, "-w", "-t", table, "-S").stdout.splitlines()


def wire(ns_a, name_a, address_a, ns_b, name_b, address_b):
    """A veth pair between two namespaces, up, with an address at each end (no DAD for IPv6)."""
    ip(ns_a, "link", "add", name_a, "type", "veth", "peer", name_b, "netns", ns_b)
    for ns, name, address in ((ns_a, name_a, address_a), (ns_b, name_b, address_b)):
        if address:
            ip(ns, "addr", "add", address, "dev", name, *(["nodad"] if ":" in address else []))
        ip(ns, "link", "set", name, "up")


def run_tunnel(ns, check_mode=False, **args):
    """Run the module inside ``ns`` (with --diff); its result, failed or not."""
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode, _ansible_diff=True)}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as args_file:
        json.dump(payload, args_file)
        args_file.flush()
        proc = inside(ns, sys.executable, str(MODULE), args_file.name, env=ENV)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("no JSON from the module: %s %s" % (proc.stdout, proc.stderr)) from None


def assert_fails_naming(result, option, *words):
    assert result.get("failed"), result
    assert result["msg"].startswith(option + ":"), result["msg"]
    for word in words:
        assert word in result["msg"], result["msg"]


def link(ns, name):
    """``ip -d -j link show`` of ``name``, or None."""
    found = [entry for entry in ip_json(ns, "-d", "link", "show") if entry["ifname"] == name]
    return found[0] if found else None


def sent_through(ns, name):
    """(bytes, packets) sent out of interface ``name`` so far (a GSO packet counts once)."""
    tx = ip_json(ns, "-s", "link", "show", "dev", name)[0]["stats64"]["tx"]
    return tx["bytes"], tx["packets"]


def tunnel_routes(ns):
    """The routes with the module's protocol number, every table, both families, as 'dst via gw table T'."""
    found = []
    for family in ("-4", "-6"):
        for route in ip_json(ns, family, "route", "show", "table", "all", "proto", PROTO):
            found.append("%s via %s table %s" % (route["dst"], route.get("gateway"), route.get("table", "main")))
    return sorted(found)


def rules(ns):
    return [(rule["priority"], rule.get("src"), rule.get("table"), rule.get("protocol"))
            for family in ("-4", "-6") for rule in ip_json(ns, family, "rule", "show")]


def tunnel_chains(ns):
    """Every rule line that names an ATV_TUN_ chain, in nat and mangle, IPv4 and IPv6."""
    return [(binary, table, line) for binary in ("iptables", "ip6tables") for table in ("nat", "mangle")
            for line in iptables_rules(ns, binary, table) if "ATV_TUN_" in line]


@pytest.fixture
def namespaces():
    made = Namespaces()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def pair(namespaces):
    """Two hosts on one wire: 'a' (198.19.200.1/30 on ua) and 'b' (198.19.200.2/30 on ub)."""
    a, b = namespaces.add("a"), namespaces.add("b")
    wire(a, "ua", "198.19.200.1/30", b, "ub", "198.19.200.2/30")
    return a, b


def vxlan_args(**overrides):
    args = dict(name="tn0", local="198.19.200.1", remote="198.19.200.2", vni=42, address=["198.19.255.1/30"],
                peer="198.19.255.2", routes=["198.19.210.50/32"], reply_from=["198.19.210.60"])
    args.update(overrides)
    return args


# ---------------------------------------------------------------------------------------------------------
# Options refused before the host is looked at (in-process; the netlink socket must never open)


@pytest.fixture
def offline(monkeypatch, run_module):
    def no_netlink(*_args, **_kwargs):
        raise AssertionError("the options should have been refused before netlink")

    monkeypatch.setattr(_tunnel, "open_ipr", no_netlink)
    return lambda **args: run_module(tunnel.main, args)


@pytest.mark.parametrize("overrides, option, words", [
    (dict(vni=0), "vni", ["1 to 16777215"]),
    (dict(vni=2 ** 24), "vni", ["16777216"]),
    (dict(vni=None), "vni", ["required with kind=vxlan"]),
    (dict(name="tn+0"), "name", ["letters, digits"]),
    (dict(name="a/b"), "name", ["'/'"]),
    (dict(name="x" * 16), "name", ["16 bytes"]),
    (dict(name="gre0"), "name", ["fallback"]),
    (dict(kind="gre", local="fd00::1", remote="fd00::2"), "local", ["IPv4"]),
    (dict(remote="fd00::2"), "remote", ["IPv4"]),
    (dict(local="not-an-address"), "local", ["not-an-address"]),
    (dict(peer=None), "peer", ["kind=vxlan", "next hop"]),
    (dict(peer="198.19.254.2"), "peer", ["not inside the subnet"]),
    (dict(address=["198.19.255.1"]), "address", ["prefix length"]),
    (dict(routes=["198.19.210.50/24"]), "routes", ["host bits"]),
    (dict(routes=["198.19.200.0/24"]), "routes", ["holds the remote"]),
    (dict(reply_table=254), "reply_table", ["main table"]),
    (dict(route_table=255), "route_table", ["local table"]),
    (dict(rule_priority=32766), "rule_priority", ["1 to 32765"]),
    (dict(port=0), "port", ["1 to 65535"]),
    (dict(mtu=60), "mtu", ["68"]),
    (dict(kind="gre", key=2 ** 32), "key", ["4294967295"]),
])
def test_bad_options_fail_naming_the_option(offline, overrides, option, words):
    with pytest.raises(AnsibleFailJson) as failed:
        offline(**vxlan_args(**overrides))
    assert_fails_naming(failed.value.result, option, *words)


def test_present_needs_local_and_remote(offline):
    with pytest.raises(AnsibleFailJson) as failed:
        offline(name="tn0", vni=42)
    assert "local" in failed.value.result["msg"] and "remote" in failed.value.result["msg"]


# ---------------------------------------------------------------------------------------------------------
# One tunnel on a wire


@needs_root
def test_check_mode_predicts_and_a_run_creates_it_idempotently(pair):
    a, _b = pair
    predicted = run_tunnel(a, check_mode=True, **vxlan_args())
    assert predicted["changed"] is True and predicted["recreated"] is False
    assert predicted["diff"]["before"] == {"name": "tn0", "state": "absent"}
    assert predicted["tunnel"]["mtu"] == 1450 and predicted["tunnel"]["underlay"] == "ua"
    # Check mode changed nothing.
    assert link(a, "tn0") is None and tunnel_routes(a) == [] and tunnel_chains(a) == []
    assert all(rule[3] is None for rule in rules(a))

    made = run_tunnel(a, **vxlan_args())
    assert made["changed"] is True
    assert made["tunnel"] == predicted["tunnel"]
    assert made["diff"]["after"] == made["tunnel"]
    device = link(a, "tn0")
    info = device["linkinfo"]["info_data"]
    assert device["linkinfo"]["info_kind"] == "vxlan" and device["mtu"] == 1450  # underlay 1500 less 50
    assert (info["id"], info["local"], info["remote"], info["port"]) == (42, "198.19.200.1", "198.19.200.2", 4789)
    assert "UP" in device["flags"]
    assert [entry["local"] for entry in ip_json(a, "-4", "addr", "show", "dev", "tn0")[0]["addr_info"]] == [
        "198.19.255.1"]
    assert tunnel_routes(a) == ["198.19.210.50 via 198.19.255.2 table main", "default via 198.19.255.2 table 100"]
    assert (1000, "198.19.210.60", "100", PROTO) in rules(a)
    chain = _tunnel.chain_name("tn0")
    for binary in ("iptables", "ip6tables"):
        assert iptables_rules(a, binary, "nat")[-2:] == ["-A POSTROUTING -j %s" % chain,
                                                         "-A %s -o tn0 -m conntrack --ctstate NEW,RELATED -j ACCEPT" % chain]
        assert "-A %s -o tn0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu" % chain \
            in iptables_rules(a, binary, "mangle")
        assert "-A FORWARD -j %s" % chain in iptables_rules(a, binary, "mangle")

    again = run_tunnel(a, **vxlan_args())
    assert again["changed"] is False and again["recreated"] is False
    assert again["diff"]["before"] == again["diff"]["after"] == made["tunnel"]

    # A change of MTU, predicted first, then made in place.
    predicted = run_tunnel(a, check_mode=True, **vxlan_args(mtu=1400))
    assert predicted["changed"] is True and predicted["tunnel"]["mtu"] == 1400
    assert predicted["diff"]["before"]["mtu"] == 1450 and link(a, "tn0")["mtu"] == 1450
    changed = run_tunnel(a, **vxlan_args(mtu=1400))
    assert changed["tunnel"] == predicted["tunnel"] and changed["recreated"] is False
    assert link(a, "tn0")["mtu"] == 1400 and link(a, "tn0")["ifindex"] == device["ifindex"]


@needs_root
def test_host_checks_fail_naming_the_option_and_change_nothing(pair):
    a, _b = pair
    assert_fails_naming(run_tunnel(a, **vxlan_args(remote="198.19.250.9")), "remote", "no route to 198.19.250.9")
    assert_fails_naming(run_tunnel(a, **vxlan_args(local="198.19.200.9")), "local", "not an address of this host")
    assert_fails_naming(run_tunnel(a, **vxlan_args(mtu=1451)), "mtu", "at most 1450")
    assert_fails_naming(run_tunnel(a, **vxlan_args(underlay="nosuch0")), "underlay", "does not exist")
    assert_fails_naming(run_tunnel(a, **vxlan_args(name="ua")), "name", "veth")
    # A route to the same destination that the module did not make is in the way, and left alone.
    ip(a, "route", "add", "198.19.210.50/32", "dev", "ua")
    assert_fails_naming(run_tunnel(a, **vxlan_args()), "routes", "198.19.210.50/32")
    assert ip(a, "route", "show", "198.19.210.50/32").startswith("198.19.210.50 dev ua")
    assert link(a, "tn0") is None and tunnel_routes(a) == [] and tunnel_chains(a) == []


@needs_root
def test_changing_the_vni_recreates_the_tunnel_with_its_routes(pair):
    a, _b = pair
    first = run_tunnel(a, **vxlan_args())
    index = link(a, "tn0")["ifindex"]
    changed = run_tunnel(a, **vxlan_args(vni=43))
    assert changed["changed"] is True and changed["recreated"] is True
    assert changed["diff"]["before"]["vni"] == 42 and changed["tunnel"]["vni"] == 43
    device = link(a, "tn0")
    assert device["ifindex"] != index and device["linkinfo"]["info_data"]["id"] == 43
    assert tunnel_routes(a) == ["198.19.210.50 via 198.19.255.2 table main", "default via 198.19.255.2 table 100"]
    assert dict(changed["tunnel"], vni=42) == first["tunnel"]
    again = run_tunnel(a, **vxlan_args(vni=43))
    assert again["changed"] is False and again["recreated"] is False


@needs_root
def test_routes_rules_and_clamp_converge_and_foreign_ones_stay(pair):
    a, _b = pair
    run_tunnel(a, **vxlan_args(routes=["198.19.210.50/32", "198.19.212.0/24"]))
    # Made by someone else through the tunnel, and a rule of someone else into the reply table.
    ip(a, "route", "add", "198.19.213.0/24", "via", "198.19.255.2", "dev", "tn0")
    ip(a, "rule", "add", "from", "198.19.214.1", "lookup", "100", "priority", "1500")
    result = run_tunnel(a, **vxlan_args(routes=["198.19.210.50/32"], reply_from=["198.19.210.61"], rule_priority=1100,
                                        mss_clamp=False))
    assert result["changed"] is True
    assert result["diff"]["before"]["routes"] == ["198.19.210.50/32", "198.19.212.0/24"]
    assert result["tunnel"]["routes"] == ["198.19.210.50/32"]
    assert tunnel_routes(a) == ["198.19.210.50 via 198.19.255.2 table main", "default via 198.19.255.2 table 100"]
    assert "198.19.213.0/24 via 198.19.255.2 dev tn0" in ip(a, "route", "show")
    owned = [rule for rule in rules(a) if rule[3] == PROTO]
    assert owned == [(1100, "198.19.210.61", "100", PROTO)]
    assert (1500, "198.19.214.1", "100", None) in rules(a)
    assert result["tunnel"]["mss_clamp"] is False and result["tunnel"]["nat_exempt"] is True
    assert [entry for entry in tunnel_chains(a) if entry[1] == "mangle"] == []
    assert run_tunnel(a, **vxlan_args(routes=["198.19.210.50/32"], reply_from=["198.19.210.61"], rule_priority=1100,
                                      mss_clamp=False))["changed"] is False


@needs_root
def test_absent_removes_everything_the_module_made(pair):
    a, _b = pair
    run_tunnel(a, **vxlan_args())
    ip(a, "rule", "add", "from", "198.19.214.1", "lookup", "100", "priority", "1500")
    before_rules = [rule for rule in rules(a) if rule[3] != PROTO]

    predicted = run_tunnel(a, check_mode=True, name="tn0", state="absent")
    assert predicted["changed"] is True and predicted["tunnel"] == {"name": "tn0", "state": "absent"}
    assert link(a, "tn0") is not None and tunnel_chains(a) != []

    removed = run_tunnel(a, name="tn0", state="absent")
    assert removed["changed"] is True and removed["diff"]["before"]["state"] == "present"
    assert link(a, "tn0") is None
    assert tunnel_routes(a) == [] and ip(a, "route", "show", "table", "100") == ""
    assert rules(a) == before_rules  # the foreign rule into table 100 stays
    assert tunnel_chains(a) == []
    assert run_tunnel(a, name="tn0", state="absent")["changed"] is False


@needs_root
def test_vxlan_over_ipv6_carries_ipv4(namespaces):
    a, b = namespaces.add("a6"), namespaces.add("b6")
    wire(a, "ua", "fd00:198:19:200::1/64", b, "ub", "fd00:198:19:200::2/64")
    common = dict(name="tn6", vni=7, routes=[], reply_from=[])
    made_a = run_tunnel(a, local="fd00:198:19:200::1", remote="fd00:198:19:200::2", address=["198.19.255.1/30"],
                        peer="198.19.255.2", **common)
    made_b = run_tunnel(b, local="fd00:198:19:200::2", remote="fd00:198:19:200::1", address=["198.19.255.2/30"],
                        peer="198.19.255.1", **common)
    assert made_a["tunnel"]["mtu"] == made_b["tunnel"]["mtu"] == 1430  # underlay 1500 less 70
    assert link(a, "tn6")["linkinfo"]["info_data"]["remote6"] == "fd00:198:19:200::2"
    ping = inside(a, sys.executable, "-c", PING, "198.19.255.2", "5")
    assert ping.returncode == 0, ping.stderr


# ---------------------------------------------------------------------------------------------------------
# Kinds this kernel may lack


def kernel_supports(namespaces, kind):
    """Whether the kernel makes a ``kind`` device (tried in a namespace of its own)."""
    ns = namespaces.add("probe-" + kind)
    probe = subprocess.run(["ip", "-n", ns, "link", "add", "probe0", "type", kind], capture_output=True, check=False)
    return probe.returncode == 0


L3_KINDS = [  # kind, underlay addresses, extra options, MTU over a 1500 underlay
    ("gre", ("198.19.200.1", "198.19.200.2"), dict(key=17), 1476),
    ("ipip", ("198.19.200.1", "198.19.200.2"), {}, 1480),
    ("ip6gre", ("fd00:198:19:200::1", "fd00:198:19:200::2"), {}, 1456),
    ("ip6tnl", ("fd00:198:19:200::1", "fd00:198:19:200::2"), {}, 1460),
]


@needs_root
@pytest.mark.parametrize("kind, underlay, extra, mtu", L3_KINDS)
def test_l3_tunnels(namespaces, kind, underlay, extra, mtu):
    if not kernel_supports(namespaces, kind):
        pytest.skip("this kernel has no %s support (Unknown device type)" % kind)
    a, b = namespaces.add("a"), namespaces.add("b")
    wire(a, "ua", underlay[0] + ("/64" if ":" in underlay[0] else "/30"),
         b, "ub", underlay[1] + ("/64" if ":" in underlay[1] else "/30"))
    args = dict(name="tl0", kind=kind, local=underlay[0], remote=underlay[1], address=["198.19.255.1/30"],
                routes=["198.19.210.50/32"], **extra)
    made = run_tunnel(a, **args)
    assert made["changed"] is True and made["tunnel"]["mtu"] == mtu and made["tunnel"]["key"] == extra.get("key")
    assert tunnel_routes(a) == ["198.19.210.50 via None table main"]
    assert run_tunnel(a, **args)["changed"] is False
    assert run_tunnel(a, name="tl0", state="absent")["changed"] is True and link(a, "tl0") is None


@needs_root
@pytest.mark.parametrize("kind, underlay, extra, _mtu", L3_KINDS)
def test_a_kind_the_kernel_lacks_fails_naming_kind(namespaces, kind, underlay, extra, _mtu):
    if kernel_supports(namespaces, kind):
        pytest.skip("this kernel supports %s" % kind)
    a, b = namespaces.add("a"), namespaces.add("b")
    wire(a, "ua", underlay[0] + ("/64" if ":" in underlay[0] else "/30"),
         b, "ub", underlay[1] + ("/64" if ":" in underlay[1] else "/30"))
    result = run_tunnel(a, name="tl0", kind=kind, local=underlay[0], remote=underlay[1], **extra)
    assert_fails_naming(result, "kind", "no support for %s" % kind)
    assert link(a, "tl0") is None


# ---------------------------------------------------------------------------------------------------------
# The data path between two sites


@pytest.fixture
def sites(namespaces):
    """C, R, A, B and G as in the module docstring; ICMP 'fragmentation needed' is dropped on A and B, so
    anything larger than the tunnel's MTU black-holes unless the MSS clamp keeps segments small."""
    c, r, a, b, g = (namespaces.add(role) for role in ("c", "r", "a", "b", "g"))
    wire(r, "r-a", "198.19.200.1/30", a, "a-r", "198.19.200.2/30")
    wire(r, "r-b", "198.19.200.5/30", b, "b-r", "198.19.200.6/30")
    wire(r, "r-c", "198.19.202.1/24", c, "c-r", "198.19.202.10/24")
    wire(b, "b-g", "198.19.211.1/24", g, "g-b", OLD + "/24")
    ip(a, "link", "add", "site0", "type", "bridge")  # A's own subnet, where OLD used to be
    ip(a, "addr", "add", "198.19.210.1/24", "dev", "site0")
    ip(a, "route", "add", "default", "via", "198.19.200.1")
    ip(b, "route", "add", "default", "via", "198.19.200.5")
    ip(b, "route", "add", OLD + "/32", "dev", "b-g")
    ip(c, "route", "add", "default", "via", "198.19.202.1")
    ip(g, "route", "add", "default", "via", "198.19.211.1", "dev", "g-b", "onlink")
    ip(r, "route", "add", "198.19.210.0/24", "via", "198.19.200.2")
    ip(r, "route", "add", "198.19.211.0/24", "via", "198.19.200.6")
    for ns in (r, a, b):
        sysctl(ns, "net.ipv4.ip_forward", "1")
    for key in ("all", "r-b"):  # a site router drops sources that cannot come from where they arrive
        sysctl(r, "net.ipv4.conf.%s.rp_filter" % key, "1")
    for ns in (a, b):
        assert inside(ns, "iptables", "-w", "-I", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed",
                      "-j", "DROP").returncode == 0
    return {"c": c, "r": r, "a": a, "b": b, "g": g}


def site_args(side, **overrides):
    ours, theirs = ("198.19.200.2", "198.19.200.6") if side == "a" else ("198.19.200.6", "198.19.200.2")
    inner, peer = ("198.19.255.1", "198.19.255.2") if side == "a" else ("198.19.255.2", "198.19.255.1")
    args = dict(name="wanmig0", local=ours, remote=theirs, vni=4242, address=[inner + "/30"], peer=peer)
    if side == "a":
        args["routes"] = [OLD + "/32"]
    else:
        args["reply_from"] = [OLD]
    args.update(overrides)
    return args


@contextlib.contextmanager
def server(ns, port, timeout=20.0):
    """A SERVER in ``ns``; yields a function that returns what it printed once it is done."""
    proc = subprocess.Popen(["nsenter", "--net=/run/netns/" + ns, sys.executable, "-c", SERVER, str(port),
                             str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield lambda: json.loads(proc.communicate(timeout=timeout + 30)[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def transfer(ns, host, port, size, timeout=10.0):
    proc = inside(ns, sys.executable, "-c", CLIENT, host, str(port), str(size), str(timeout))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@needs_root
def test_clients_reach_the_moved_guest_through_the_tunnel_and_replies_come_back_through_it(sites):
    a, b, c, g = sites["a"], sites["b"], sites["c"], sites["g"]
    assert run_tunnel(a, **site_args("a"))["changed"] is True
    assert run_tunnel(b, **site_args("b"))["changed"] is True
    assert inside(c, sys.executable, "-c", PING, OLD, "5").returncode == 0

    # 4 MB from the client to the guest: A forwards 1500-byte packets into a 1450-byte tunnel only if the
    # SYN-ACK's MSS was clamped on B; the guest's own MSS shows the clamp of the SYN on A.
    a_before, b_before = sent_through(a, "wanmig0"), sent_through(b, "wanmig0")
    with server(g, 5001) as done:
        sent = transfer(c, OLD, 5001, 4 * 2 ** 20)
        seen = done()
    assert sent["connected"] and sent["intact"], sent
    tunnel_mtu = link(a, "wanmig0")["mtu"]
    assert tunnel_mtu == 1450
    assert sent["mss"] <= tunnel_mtu - 40 and seen["mss"] <= tunnel_mtu - 40
    assert seen == dict(seen, accepted=True, peer="198.19.202.10", size=4 * 2 ** 20)
    a_after, b_after = sent_through(a, "wanmig0"), sent_through(b, "wanmig0")
    assert a_after[0] - a_before[0] > 4 * 2 ** 20  # the data went into the tunnel at A...
    assert b_after[1] - b_before[1] > 10  # ...and the guest's acknowledgements came back through it from B

    # A connection the guest opens keeps its address through the tunnel, even with an SNAT rule for it (as the
    # address_map module adds) after the tunnel's exemption.
    assert inside(b, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", OLD + "/32", "-j", "SNAT",
                  "--to-source", "198.19.211.1").returncode == 0
    with server(c, 5002) as done:
        sent = transfer(g, "198.19.202.10", 5002, 2 ** 20)
        seen = done()
    assert sent["connected"] and sent["intact"], sent
    assert seen["peer"] == OLD and seen["mss"] <= tunnel_mtu - 40
    snat = [line for line in inside(b, "iptables", "-w", "-t", "nat", "-L", "POSTROUTING", "-n", "-v", "-x").stdout
            .splitlines() if "SNAT" in line]
    assert snat and snat[0].split()[0] == "0"  # the SNAT rule never saw a packet

    # Without the reply rule on B, the guest's replies leave B towards R with A's address, which R drops.
    assert run_tunnel(b, **site_args("b", reply_from=[]))["changed"] is True
    with server(g, 5003, timeout=4.0) as done:
        sent = transfer(c, OLD, 5003, 1024, timeout=2.0)
        done()
    assert sent["connected"] is False
