# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""address_map against the real kernel, in throwaway namespaces (atvtest-am-*), and its pure parts in-process.

Topology (namespace ``host`` is where the module runs, as the module file run as a script inside it):

    guest  g0 198.19.201.50/24, default via 198.19.201.1 (its old site's gateway)  --+
    lan    l0 198.19.202.77/24 (a host of the new site's LAN)                      --+-- host: bridge site0
                                                                                        198.19.202.1/24
    client c0 198.19.203.2/24, default via 198.19.203.1  ------------------------------ host: cport 198.19.203.1/24

The guest keeps 198.19.201.50 (OLD); the module maps 198.19.202.50 (NEW) onto it. Connections are real sockets.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _address_map as amap
from ansible_collections.arctictern.virt.plugins.module_utils._iptables import parse_rules
from ansible_collections.arctictern.virt.plugins.modules import address_map
from ansible_collections.arctictern.virt.tests.unit.utils import result_of

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "plugins", "modules", "address_map.py")
PYTHON = sys.executable
ENV = dict(os.environ, PYTHONPATH="%s:%s" % (os.path.join(ROOT, ".collections"), ROOT))

OLD, NEW, GATEWAY = "198.19.201.50", "198.19.202.50", "198.19.201.1"
CLIENT, LAN_HOST = "198.19.203.2", "198.19.202.77"
BOGUS_MAC = "02:00:00:00:be:ef"
ARGS = {"address": NEW, "guest_address": OLD, "bridge": "site0", "gateway": GATEWAY}
# The tunnel module's reply rule: everything from OLD goes back to the old site (here: nowhere).
TUNNEL_RULE = ["from", OLD, "lookup", "1000", "priority", "1000"]
TUNNEL_ROUTE = ["blackhole", "default", "table", "1000"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

# A TCP server: prints "ready", then answers each connection with the peer address it sees, 'ip port'.
SERVER = """
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    conn, peer = server.accept()
    conn.sendall(("%s %d" % peer).encode())
    conn.close()
"""
CLIENT_SCRIPT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as conn:
    print(conn.recv(100).decode())
"""


def sh(*argv, check=True):
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(argv), done.stderr))
    return done.stdout


def in_ns(ns, *argv, check=True):
    return sh("ip", "netns", "exec", ns, *argv, check=check)


class Site:
    """The namespaces, named atvtest-am-<role>-<hex>, and how to run things in them."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.ns = {role: "atvtest-am-%s-%s" % (role, tag) for role in ("host", "guest", "client", "lan")}
        self.servers = []

    def build(self):
        host, guest, client, lan = (self.ns[role] for role in ("host", "guest", "client", "lan"))
        for name in self.ns.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", host, "link", "add", "site0", "type", "bridge")
        sh("ip", "-n", host, "addr", "add", "198.19.202.1/24", "dev", "site0")
        sh("ip", "-n", host, "link", "set", "site0", "up")
        for port, peer, peer_ns, address, gateway in (
                ("gport", "g0", guest, OLD + "/24", GATEWAY),
                ("lport", "l0", lan, LAN_HOST + "/24", None),
                ("cport", "c0", client, CLIENT + "/24", "198.19.203.1")):
            sh("ip", "-n", host, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", peer_ns)
            sh("ip", "-n", peer_ns, "addr", "add", address, "dev", peer)
            sh("ip", "-n", peer_ns, "link", "set", peer, "up")
            if gateway:
                sh("ip", "-n", peer_ns, "route", "add", "default", "via", gateway)
            if port != "cport":
                sh("ip", "-n", host, "link", "set", port, "master", "site0")
            sh("ip", "-n", host, "link", "set", port, "up")
        sh("ip", "-n", host, "addr", "add", "198.19.203.1/24", "dev", "cport")
        self.sysctl("net.ipv4.ip_forward", 1)

    def remove(self):
        for server in self.servers:
            server.kill()
            server.wait()
        for name in self.ns.values():
            sh("ip", "netns", "del", name, check=False)

    def sysctl(self, key, value):
        in_ns(self.ns["host"], "sysctl", "-qw", "%s=%s" % (key, value))

    def run(self, tmp_path, **args):
        """The module's result, run as a script inside the host namespace (failed=True when it fails)."""
        module_args = dict(args)
        module_args["_ansible_check_mode"] = module_args.pop("check_mode", False)
        module_args["_ansible_diff"] = True
        path = tmp_path / ("args-%s.json" % secrets.token_hex(4))
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
        done = subprocess.run(["nsenter", "--net=/run/netns/" + self.ns["host"], PYTHON, MODULE, str(path)],
                              capture_output=True, text=True, env=ENV, timeout=60, check=False)
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise AssertionError("no JSON from the module: %s %s" % (done.stdout, done.stderr)) from None

    def serve(self, role, port):
        server = subprocess.Popen(["ip", "netns", "exec", self.ns[role], PYTHON, "-c", SERVER, str(port)],
                                  stdout=subprocess.PIPE, text=True)
        self.servers.append(server)
        assert server.stdout.readline().strip() == "ready"

    def connect(self, role, address, port):
        """What the server at ``address`` saw as the peer of a connection from ``role``: 'ip port', or None when
        the connection failed."""
        done = subprocess.run(["ip", "netns", "exec", self.ns[role], PYTHON, "-c", CLIENT_SCRIPT, address, str(port)],
                              capture_output=True, text=True, timeout=30, check=False)
        return done.stdout.split()[0] if done.returncode == 0 else None

    def host_state(self):
        """Everything of the host the module may touch, without counters."""
        host = self.ns["host"]
        return {
            "addresses": sh("ip", "-n", host, "-4", "-o", "addr", "show"),
            "routes": sh("ip", "-n", host, "-4", "route", "show", "table", "all"),
            "rules": sh("ip", "-n", host, "-4", "rule", "show"),
            "iptables": [in_ns(host, "iptables", "-t", table, "-S") for table in ("nat", "mangle", "filter")],
        }

    def guest_gateway_mac(self):
        out = in_ns(self.ns["guest"], "ip", "-j", "neigh", "show", GATEWAY, "dev", "g0")
        entries = json.loads(out)
        return entries[0].get("lladdr") if entries else None

    def bridge_mac(self):
        return json.loads(sh("ip", "-n", self.ns["host"], "-j", "link", "show", "site0"))[0]["address"]


@pytest.fixture(scope="module")
def site():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    made = Site()
    try:
        made.build()
        yield made
    finally:
        made.remove()


@pytest.fixture
def clean(site, tmp_path):
    """The site with no mapping; whatever a test maps is removed afterwards, also when it fails."""
    baseline = site.host_state()
    yield site
    for args in (ARGS, dict(ARGS, address="198.19.202.51", guest_address="198.19.201.51")):
        site.run(tmp_path, **dict(args, state="absent"))
    sh("ip", "-n", site.ns["host"], "rule", "del", *TUNNEL_RULE, check=False)
    sh("ip", "-n", site.ns["host"], "route", "del", *TUNNEL_ROUTE, check=False)
    assert site.host_state() == baseline


# --- the mapping on a real kernel ------------------------------------------------------------------------------


@needs_root
def test_check_mode_predicts_and_changes_nothing(clean, tmp_path):
    site = clean
    in_ns(site.ns["guest"], "ip", "neigh", "replace", GATEWAY, "lladdr", BOGUS_MAC, "dev", "g0", "nud", "reachable")
    before = site.host_state()
    predicted = site.run(tmp_path, check_mode=True, **ARGS)
    assert predicted["changed"] is True and not predicted.get("failed")
    assert predicted["announced"] is False
    assert site.host_state() == before
    assert site.guest_gateway_mac() == BOGUS_MAC
    real = site.run(tmp_path, **ARGS)
    assert real["changed"] is True
    assert real["diff"] == predicted["diff"]
    assert site.run(tmp_path, check_mode=True, **ARGS)["changed"] is False
    predicted_absent = site.run(tmp_path, check_mode=True, state="absent", **ARGS)
    assert predicted_absent["changed"] is True
    assert site.run(tmp_path, state="absent", **ARGS)["diff"] == predicted_absent["diff"]


@needs_root
def test_present_maps_new_onto_old_and_absent_removes_everything(clean, tmp_path):
    site = clean
    in_ns(site.ns["guest"], "ip", "neigh", "replace", GATEWAY, "lladdr", BOGUS_MAC, "dev", "g0", "nud", "reachable")
    # As the tunnel module has it: without the mark, the guest's replies would all go back to the old site.
    sh("ip", "-n", site.ns["host"], "route", "add", *TUNNEL_ROUTE)
    sh("ip", "-n", site.ns["host"], "rule", "add", *TUNNEL_RULE)

    result = site.run(tmp_path, **ARGS)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["announced"] is True
    assert result["mapping"] == dict(ARGS, mark=0x4154, rule_priority=900, state="present")
    # The gratuitous ARP replaced the old site's MAC the guest had for its gateway.
    assert site.guest_gateway_mac() == site.bridge_mac()
    chains = amap.Mapping(NEW, OLD, "site0", GATEWAY, 0x4154, 900).chains()
    assert result["diff"]["after"] == {
        "gateway_addresses": ["198.19.201.1/32 dev site0"],
        "route": "198.19.201.50/32 dev site0 scope link src 198.19.201.1",
        "rules": ["from 198.19.201.50 fwmark 0x4154/0x4154 lookup main priority 900"],
        "iptables": [
            "-t nat -N %s" % chains["dnat"],
            "-t nat -A %s -d 198.19.202.50/32 -j DNAT --to-destination 198.19.201.50" % chains["dnat"],
            "-t nat -N %s" % chains["snat"],
            "-t nat -A %s -s 198.19.201.50/32 -j SNAT --to-source 198.19.202.50" % chains["snat"],
            "-t mangle -N %s" % chains["mark"],
            "-t mangle -A %s -d 198.19.202.50/32 -j CONNMARK --set-xmark 0x4154/0x4154" % chains["mark"],
            "-t mangle -A %s -s 198.19.201.50/32 -j CONNMARK --restore-mark --nfmask 0x4154 --ctmask 0x4154"
            % chains["mark"],
            "-t mangle -A PREROUTING -j %s" % chains["mark"],
            "-t nat -A OUTPUT -j %s" % chains["dnat"],
            "-t nat -A POSTROUTING -j %s" % chains["snat"],
            "-t nat -A PREROUTING -j %s" % chains["dnat"],
        ],
        "addresses": ["198.19.202.50/32 dev site0"],
    }
    assert result["diff"]["before"] == {"gateway_addresses": [], "route": None, "rules": [], "iptables": [],
                                        "addresses": []}
    assert "proto 164" in sh("ip", "-n", site.ns["host"], "rule", "show", "priority", "900")

    site.serve("guest", 8080)
    # A client of another subnet, routed through the host, reaches the guest at NEW; the guest sees the client.
    assert site.connect("client", NEW, 8080) == CLIENT
    # A host of the new site's LAN finds NEW by ARP (the host holds it) and reaches the guest too.
    assert site.connect("lan", NEW, 8080) == LAN_HOST
    # The guest's own connections leave as NEW (SNAT), once the tunnel's rule is out of the way.
    sh("ip", "-n", site.ns["host"], "rule", "del", *TUNNEL_RULE)
    site.serve("client", 8081)
    assert site.connect("guest", CLIENT, 8081) == NEW

    again = site.run(tmp_path, **ARGS)
    assert again["changed"] is False and again["announced"] is True
    assert again["diff"]["before"] == again["diff"]["after"] == result["diff"]["after"]

    gone = site.run(tmp_path, state="absent", **ARGS)
    assert gone["changed"] is True and gone["announced"] is False
    assert gone["diff"]["after"] == result["diff"]["before"]
    host = site.ns["host"]
    assert "ATV_AM" not in in_ns(host, "iptables", "-t", "nat", "-S") + in_ns(host, "iptables", "-t", "mangle", "-S")
    assert "proto 164" not in sh("ip", "-n", host, "rule", "show")
    assert OLD not in sh("ip", "-n", host, "route", "show", "table", "all")
    assert GATEWAY not in sh("ip", "-n", host, "addr", "show") and NEW not in sh("ip", "-n", host, "addr", "show")
    assert site.run(tmp_path, state="absent", **ARGS)["changed"] is False


@needs_root
def test_replies_to_new_need_the_rule_ahead_of_the_tunnel(clean, tmp_path):
    site = clean
    sh("ip", "-n", site.ns["host"], "route", "add", *TUNNEL_ROUTE)
    sh("ip", "-n", site.ns["host"], "rule", "add", *TUNNEL_RULE)
    site.serve("guest", 8082)
    assert site.run(tmp_path, announce=False, rule_priority=1100, **ARGS)["changed"] is True
    assert site.connect("client", NEW, 8082) is None
    assert site.run(tmp_path, announce=False, **ARGS)["changed"] is True
    assert site.connect("client", NEW, 8082) == CLIENT


@needs_root
def test_gateway_stays_while_another_moved_guest_uses_it(clean, tmp_path):
    site = clean
    second = dict(ARGS, address="198.19.202.51", guest_address="198.19.201.51", announce=False)
    assert site.run(tmp_path, announce=False, **ARGS)["changed"] is True
    assert site.run(tmp_path, **second)["changed"] is True
    first_gone = site.run(tmp_path, state="absent", **ARGS)
    assert first_gone["diff"]["after"]["gateway_addresses"] == ["198.19.201.1/32 dev site0"]
    assert "198.19.201.1/32" in sh("ip", "-n", site.ns["host"], "addr", "show", "site0")
    assert "198.19.201.51 dev site0" in sh("ip", "-n", site.ns["host"], "route", "show")
    second_gone = site.run(tmp_path, **dict(second, state="absent"))
    assert second_gone["diff"]["after"]["gateway_addresses"] == []
    assert "198.19.201.1/32" not in sh("ip", "-n", site.ns["host"], "addr", "show", "site0")


@needs_root
def test_changed_mark_and_priority_replace_the_old_ones(clean, tmp_path):
    site = clean
    site.run(tmp_path, announce=False, **ARGS)
    moved = site.run(tmp_path, announce=False, mark=0x10, rule_priority=800, **ARGS)
    assert moved["changed"] is True
    assert moved["diff"]["after"]["rules"] == ["from 198.19.201.50 fwmark 0x10/0x10 lookup main priority 800"]
    rules = sh("ip", "-n", site.ns["host"], "rule", "show")
    assert "priority 900" not in rules and "800:\tfrom 198.19.201.50 fwmark 0x10/0x10 lookup main proto 164" in rules
    assert "--set-xmark 0x10/0x10" in in_ns(site.ns["host"], "iptables", "-t", "mangle", "-S")


@needs_root
@pytest.mark.parametrize("args, option, words", [
    ({"address": "198.19.99.50"}, "address", "in no subnet"),
    ({"address": "198.19.202.1"}, "address", "already an address of this host"),
    ({"address": "198.19.202.255"}, "address", "broadcast"),
    ({"bridge": "nosuchbr"}, "bridge", "does not exist"),
    ({"gateway": "198.19.203.1"}, "gateway", "already an address of this host"),
    ({"guest_address": "198.19.203.1"}, "guest_address", "is an address of this host"),
])
def test_bad_input_on_the_host_fails_naming_the_option(clean, tmp_path, args, option, words):
    result = clean.run(tmp_path, **dict(ARGS, **args))
    assert result.get("failed") is True
    assert result["msg"].startswith(option + ": ") and words in result["msg"], result["msg"]
    assert "exception" not in result


@needs_root
def test_a_new_address_mapped_to_another_guest_is_refused(clean, tmp_path):
    clean.run(tmp_path, announce=False, **ARGS)
    result = clean.run(tmp_path, **dict(ARGS, guest_address="198.19.201.51"))
    assert result.get("failed") is True
    assert result["msg"] == "address: 198.19.202.50 is already mapped to 198.19.201.50 by another address_map; " \
                            "remove that mapping first"


@needs_root
def test_forwarding_off_fails_without_changing_sysctls(clean, tmp_path):
    clean.sysctl("net.ipv4.ip_forward", 0)
    try:
        result = clean.run(tmp_path, **ARGS)
        assert result.get("failed") is True and "net.ipv4.ip_forward = 0" in result["msg"]
        assert in_ns(clean.ns["host"], "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
    finally:
        clean.sysctl("net.ipv4.ip_forward", 1)
        # Turning forwarding on again turns it on on every interface too.


# --- options checked before the host is looked at (in-process) -------------------------------------------------


@pytest.mark.parametrize("args, message", [
    ({"address": OLD}, "address: 198.19.201.50 is the guest_address itself; the new address must be another one"),
    ({"mark": 0}, "mark: must be an integer from 0x1 to 0xffffffff, not 0"),
    ({"mark": 2 ** 32}, "mark: must be an integer from 0x1 to 0xffffffff, not 4294967296"),
    ({"rule_priority": 32766}, "rule_priority: must be an integer from 1 to 32765, not 32766"),
    ({"guest_address": "2001:db8::50"}, "guest_address: 2001:db8::50 is an IPv6 address; IPv6 is not supported yet"),
    ({"gateway": "fe80::1"}, "gateway: fe80::1 is an IPv6 address; IPv6 is not supported yet"),
    ({"address": "198.19.202.300"}, "address: '198.19.202.300' is not an IP address"),
    ({"gateway": NEW}, "gateway: 198.19.202.50 is the address, not the guest's gateway"),
    ({"address": "224.0.0.5"}, "address: 224.0.0.5 is not a unicast address"),
    ({"bridge": "a/b"}, "bridge: interface name 'a/b' must not contain '/'"),
])
def test_bad_options_fail_naming_the_option(run_module, monkeypatch, args, message):  # pylint: disable=unused-argument
    def host_reached(_module):
        raise AssertionError("the options were taken: the run would change this (the root) namespace")

    monkeypatch.setattr(amap, "_iptables", host_reached)
    result = result_of(address_map.main, dict(ARGS, **args))
    assert result.get("failed") is True and result["msg"] == message


# --- pure parts ---------------------------------------------------------------------------------------------------


MAPPING = amap.Mapping(NEW, OLD, "site0", GATEWAY, 0x4154, 900)


def test_iptables_plan_repairs_drift_and_removes_strays():
    chains = MAPPING.chains()
    wanted = (amap.wanted_chains(MAPPING), amap.wanted_jumps(MAPPING))
    # The mangle chain lost a rule, the SNAT jump is doubled, the DNAT chain is missing.
    have_chains = [("nat", chains["snat"], wanted[0][1][2]), ("mangle", chains["mark"], wanted[0][2][2][:1])]
    have_jumps = sorted(wanted[1] + [("nat", "POSTROUTING", ("-j", chains["snat"]))])
    have_jumps.remove(("nat", "OUTPUT", ("-j", chains["dnat"])))
    commands = amap.iptables_commands((have_chains, have_jumps), wanted)
    mark_rules = [["-t", "mangle", "-A", chains["mark"]] + list(rule) for rule in wanted[0][2][2]]
    assert commands == [
        ["-t", "nat", "-D", "POSTROUTING", "-j", chains["snat"]],
        ["-t", "nat", "-N", chains["dnat"]],
        ["-t", "nat", "-A", chains["dnat"], "-d", NEW + "/32", "-j", "DNAT", "--to-destination", OLD],
        ["-t", "mangle", "-F", chains["mark"]],
    ] + mark_rules + [
        ["-t", "nat", "-A", "OUTPUT", "-j", chains["dnat"]],
    ]
    assert amap.iptables_commands(wanted, wanted) == []
    removals = [["-t", table, "-D", parent] + list(rule) for table, parent, rule in wanted[1]]
    for table, chain, _rules in wanted[0]:
        removals += [["-t", table, "-F", chain], ["-t", table, "-X", chain]]
    assert amap.iptables_commands(wanted, ([], [])) == removals


def test_current_iptables_reads_back_what_the_plan_writes():
    chains = MAPPING.chains()
    text = {
        "nat": "-P PREROUTING ACCEPT\n-N %s\n-N OTHER\n-A PREROUTING -j %s\n-A PREROUTING -j OTHER\n"
               "-A %s -d 198.19.202.50/32 -j DNAT --to-destination 198.19.201.50\n" % (
                   chains["dnat"], chains["dnat"], chains["dnat"]),
        "mangle": "-P PREROUTING ACCEPT\n",
    }
    tables = {table: parse_rules(text[table]) for table in amap.TABLES}
    assert amap.current_iptables(tables, MAPPING) == (
        [("nat", chains["dnat"], (("-d", "198.19.202.50/32", "-j", "DNAT", "--to-destination", OLD),))],
        [("nat", "PREROUTING", ("-j", chains["dnat"]))],
    )


def test_chain_names_fit_iptables_and_differ_per_mapping():
    names = MAPPING.chains()
    other = amap.Mapping("198.19.202.51", OLD, "site0", GATEWAY, 0x4154, 900).chains()
    assert all(len(name) <= 28 for name in names.values())
    assert set(names.values()).isdisjoint(other.values())


def test_arp_frames_announce_the_address_at_the_mac():
    request = amap.arp_frame("16:ff:d2:ad:4a:34", GATEWAY, amap.ARP_REQUEST)
    reply = amap.arp_frame("16:ff:d2:ad:4a:34", GATEWAY, amap.ARP_REPLY)
    mac, ip = bytes.fromhex("16ffd2ad4a34"), bytes([198, 19, 201, 1])
    assert len(request) == len(reply) == 60
    assert request[:14] == b"\xff" * 6 + mac + b"\x08\x06"
    # htype 1, ptype IPv4, hlen 6, plen 4, operation; sender = target address: gratuitous.
    assert request[14:22] == bytes.fromhex("0001080006040001") and reply[14:22] == bytes.fromhex("0001080006040002")
    assert request[22:42] == mac + ip + b"\x00" * 6 + ip
    assert reply[22:42] == mac + ip + b"\xff" * 6 + ip
