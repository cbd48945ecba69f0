"""arctictern.virt.network against the lab's real libvirt daemons, with real traffic from the client.

Every check of what the module did is made independently: libvirt read from the root namespace, iptables
read inside the hypervisor's namespace, and HTTP probes to a guest's agent from the client or the hypervisor.
Subnets 198.19.165-167.0/24 and port 18165/18166 belong to these tests (site.yml has 198.18.100/200.0/24, 8080).
The networks are made on both hypervisor generations, hv1 and hv2 (Debian 12's libvirt 9) then hv3 and hv4 (Debian
13's libvirt 11); bad input, which the module refuses whatever the daemon answers, is checked once, on hv1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink
from lab.ansible import client_http, run_in
from lab.netlink import replace_route

pytestmark = pytest.mark.lab

NAT_NET = "198.19.165"
ISOLATED_NET = "198.19.166"
BAD_NET = "198.19.167"
NAT_MAC = "52:54:00:13:a5:0a"
NAT_MAC2 = "52:54:00:13:a5:0b"
PORT, PORT2 = 18165, 18166

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _suffix():
    return uuid.uuid4().hex[:8]


@contextlib.contextmanager
def daemon(lab, host):
    """A libvirt connection to a lab hypervisor's daemon, from the root namespace (not through the module)."""
    conn = libvirt.open(lab["hosts"][host]["uri"])
    try:
        yield conn
    finally:
        conn.close()


def network_state(lab, host, name):
    """(defined, active, autostart, inactive XML root, live XML root) as libvirt sees the network; None if absent."""
    with daemon(lab, host) as conn:
        try:
            net = conn.networkLookupByName(name)
        except libvirt.libvirtError:
            return None
        return dict(active=bool(net.isActive()), autostart=bool(net.autostart()),
                    persistent=bool(net.isPersistent()),
                    xml=ET.fromstring(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)),
                    live=ET.fromstring(net.XMLDesc(0)))


def iptables(host, table, chain=None):
    """``iptables -S`` inside a hypervisor's namespace (read only, as the check the module cannot fake)."""
    argv = ["ip", "netns", "exec", "atv-" + host, "iptables", "-w", "-t", table, "-S"] + ([chain] if chain else [])
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def chains_of(network):
    digest = hashlib.sha256(network.encode()).hexdigest()[:12]
    return "ATV_DNAT_" + digest, "ATV_FWD_" + digest


def assert_no_forward_rules(host, network, *needles):
    dnat, accept = chains_of(network)
    rules = iptables(host, "nat") + iptables(host, "filter")
    for needle in (dnat, accept) + needles:
        assert needle not in rules, "leftover iptables rule with %s:\n%s" % (needle, rules)


@contextlib.contextmanager
def client_route(subnet, gateway):
    """A temporary route in the client's namespace, so that 'unreachable' is the firewall's doing."""
    network, prefix = subnet.split("/")
    with _netlink.open_ipr("atv-client") as ipr:
        replace_route(ipr, subnet, gateway=gateway)
    try:
        yield
    finally:
        with _netlink.open_ipr("atv-client") as ipr:
            ipr.route("del", dst=network, dst_len=int(prefix), gateway=gateway)


def assert_refused_by_firewall(answer):
    """Not answered, and not for lack of a route: the hypervisor's firewall turned the connection away."""
    assert not answer["ok"], "the guest answered where it must not: %s" % answer
    # libvirt's rules REJECT (refused); a missing route would be "Network is unreachable".
    assert "refused" in answer["error"] or "timed out" in answer["error"], answer


def assert_refused_soon(address, port, seconds=5):
    """New connections to a dropped forward are refused. Polled, because a connection tracked while the forward
    existed keeps its translation until it expires; each try opens a new connection from a new source port."""
    deadline = time.monotonic() + seconds
    while (answer := client_http(address, port=port))["ok"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not answer["ok"] and "refused" in answer["error"], "port %d still answers: %s" % (port, answer)


def assert_failed_cleanly(result, option):
    assert result.get("failed"), result
    assert option in result["msg"], result["msg"]
    blob = json.dumps(result)
    assert "Traceback" not in blob and "exception" not in result and "module_stderr" not in result, blob


def dhcp_cmdline(name):
    return "console=ttyS0 quiet panic=-1 atv.name=%s atv.ip=dhcp" % name


@pytest.mark.slow
def test_nat_network_publishes_a_guest_through_a_port_forward_only(ansible, guests, lab, pair):
    host = pair[0]
    name, bridge, guest = "ti-nat-" + _suffix(), "tib" + _suffix(), "ti-natg-" + _suffix()
    lease = dict(mac=NAT_MAC, ip=NAT_NET + ".10", name="ti-web")
    forward = dict(proto="tcp", host_port=PORT, guest_ip=NAT_NET + ".10", guest_port=80, host_address=None)
    opts = dict(name=name, mode="nat", bridge=bridge, address=NAT_NET + ".1/24",
                dhcp=dict(start=NAT_NET + ".100", end=NAT_NET + ".199"), static_leases=[lease],
                port_forwards=[dict(host_port=PORT, guest_ip=NAT_NET + ".10", guest_port=80)])
    host_address = lab["hosts"][host]["lan_address"]
    try:
        # Check mode: reports the network it would make, makes nothing.
        check = ansible.ok(host, "network", check=True, diff=True, **opts)
        assert check["changed"] and check["diff"][0]["before"] == "" and check["diff"][1]["before"] == {}
        assert check["network"]["port_forwards"] == [forward] and check["network"]["active"]
        assert network_state(lab, host, name) is None
        assert_no_forward_rules(host, name, "--dport %d" % PORT)

        created = ansible.ok(host, "network", **opts)
        assert created["changed"] and not created["restart_needed"]
        assert created["network"]["bridge"] == bridge and created["network"]["port_forwards"] == [forward]
        state = network_state(lab, host, name)
        assert state["active"] and state["persistent"]
        assert state["xml"].find("forward").get("mode") == "nat"
        assert state["xml"].find("ip").get("address") == NAT_NET + ".1"
        assert state["xml"].find("ip/dhcp/range").attrib == dict(start=NAT_NET + ".100", end=NAT_NET + ".199")
        assert state["xml"].find("ip/dhcp/host").get("mac") == NAT_MAC
        dnat, accept = chains_of(name)
        assert "--dport %d -j DNAT --to-destination %s.10:80" % (PORT, NAT_NET) in iptables(host, "nat", dnat)
        assert "-A %s -d %s.10/32" % (accept, NAT_NET) in iptables(host, "filter", accept)

        again = ansible.ok(host, "network", **opts)
        assert not again["changed"] and again["firewall_commands"] == [], again

        # A guest that gets its address from the static lease.
        guests.boot(host, guest, address=NAT_NET + ".10", wait=False, nics=[{"network": name, "mac": NAT_MAC}],
                    cmdline=dhcp_cmdline(guest))
        published = client_http(host_address, port=PORT, wait=90)
        assert published["ok"] and published["answer"]["name"] == guest, published
        from_host = json.loads(run_in(host, "-m", "lab.client", "http", NAT_NET + ".10", "--wait", "10").stdout)
        assert from_host["ok"] and from_host["answer"]["name"] == guest, from_host
        # The client routed to the NAT subnet through the host still cannot open a connection to the guest.
        with client_route(NAT_NET + ".0/24", host_address):
            assert_refused_by_firewall(client_http(NAT_NET + ".10"))
        assert client_http(host_address, port=PORT)["ok"], "the forward stopped working"

        # The forward list is exact: moving the forward to another port drops the old one.
        moved = dict(opts, port_forwards=[dict(host_port=PORT2, guest_ip=NAT_NET + ".10", guest_port=80)])
        result = ansible.ok(host, "network", **moved)
        assert result["changed"] and result["firewall_commands"] and not result["restart_needed"]
        assert client_http(host_address, port=PORT2, wait=5)["ok"]
        assert "--dport %d " % PORT not in iptables(host, "nat", dnat)
        assert_refused_soon(host_address, PORT)
        assert not ansible.ok(host, "network", **moved)["changed"]

        # A new static lease: diff shows it, check mode leaves libvirt alone, the running network needs a restart.
        leases = dict(moved, static_leases=[lease, dict(mac=NAT_MAC2, ip=NAT_NET + ".11", name="ti-web2")])
        preview = ansible.ok(host, "network", check=True, diff=True, **leases)
        assert preview["changed"] and preview["changes"] == ["static_leases"]
        definition = preview["diff"][0]
        assert definition["before"].count("<host ") == 1 and definition["after"].count("<host ") == 2
        assert '<host mac="%s" name="ti-web2" ip="%s.11" />' % (NAT_MAC2, NAT_NET) in definition["after"]
        assert len(network_state(lab, host, name)["xml"].findall("ip/dhcp/host")) == 1
        changed = ansible.ok(host, "network", diff=True, **leases)
        assert changed["changed"] and changed["restart_needed"]
        state = network_state(lab, host, name)
        assert len(state["xml"].findall("ip/dhcp/host")) == 2 and len(state["live"].findall("ip/dhcp/host")) == 1
        steady = ansible.ok(host, "network", **leases)
        assert not steady["changed"] and steady["restart_needed"]
        restarted = ansible.ok(host, "network", restart=True, **leases)
        assert restarted["changed"] and not restarted["restart_needed"]
        assert len(network_state(lab, host, name)["live"].findall("ip/dhcp/host")) == 2
        # libvirt puts its own jumps back on top of FORWARD when the network starts; ours must still come first.
        forward_chain = [line for line in iptables(host, "filter", "FORWARD").splitlines() if line.startswith("-A")]
        ours = forward_chain.index("-A FORWARD -j %s" % accept)
        assert all("LIBVIRT" not in line for line in forward_chain[:ours]), forward_chain

        ansible.ok(host, "guest", name=guest, state="absent")
        guests.forget(host, guest)
        # A stopped network keeps its definition and loses its forwards.
        stopped = ansible.ok(host, "network", state="inactive", **leases)
        assert stopped["changed"] and stopped["network"]["port_forwards"] == []
        assert not network_state(lab, host, name)["active"]
        assert_no_forward_rules(host, name, "--dport %d" % PORT2)
        removed = ansible.ok(host, "network", name=name, state="absent")
        assert removed["changed"] and removed["network"] == {}
        assert network_state(lab, host, name) is None
        assert_no_forward_rules(host, name, "--dport %d" % PORT2, NAT_NET + ".10")
        assert not ansible.ok(host, "network", name=name, state="absent")["changed"]
    finally:
        if (host, guest) in guests.created:  # the guest goes before its network
            ansible.module(host, "guest", name=guest, state="absent")
        ansible.module(host, "network", name=name, state="absent")


@pytest.mark.slow
def test_isolated_network_reaches_only_its_host(ansible, guests, lab, pair):
    host = pair[1]
    name, bridge, guest = "ti-iso-" + _suffix(), "tib" + _suffix(), "ti-isog-" + _suffix()
    opts = dict(name=name, mode="isolated", bridge=bridge, address=ISOLATED_NET + ".1/24")
    host_address = lab["hosts"][host]["lan_address"]
    try:
        created = ansible.ok(host, "network", **opts)
        assert created["changed"] and created["network"]["mode"] == "isolated"
        state = network_state(lab, host, name)
        assert state["active"] and state["xml"].find("forward") is None
        assert state["xml"].find("bridge").get("name") == bridge
        assert not ansible.ok(host, "network", **opts)["changed"]

        guests.boot(host, guest, address=ISOLATED_NET + ".10", wait=False, nics=[{"network": name}])
        probe = run_in(host, "-m", "lab.client", "http", ISOLATED_NET + ".10", "--wait", "60", timeout=90)
        answer = json.loads(probe.stdout)
        assert answer["ok"] and answer["answer"]["name"] == guest, answer
        with client_route(ISOLATED_NET + ".0/24", host_address):
            assert_refused_by_firewall(client_http(ISOLATED_NET + ".10"))

        # A DHCP range added to the running network: shown in the diff, applied at the next restart.
        with_dhcp = dict(opts, dhcp=dict(start=ISOLATED_NET + ".100", end=ISOLATED_NET + ".150"))
        result = ansible.ok(host, "network", diff=True, **with_dhcp)
        assert result["changed"] and result["restart_needed"] and result["changes"] == ["dhcp"]
        assert "<range " not in result["diff"][0]["before"]
        assert '<range start="%s.100" end="%s.150" />' % (ISOLATED_NET, ISOLATED_NET) in result["diff"][0]["after"]
        state = network_state(lab, host, name)
        assert state["xml"].find("ip/dhcp/range") is not None and state["live"].find("ip/dhcp/range") is None
    finally:
        # The guest goes before its network, so that libvirt never holds a port of a network that is gone.
        ansible.module(host, "guest", name=guest, state="absent")
        ansible.module(host, "network", name=name, state="absent")
    assert network_state(lab, host, name) is None


def test_bridge_network_states(ansible, lab, pair):
    """present / active / inactive / absent on a network over a host bridge: check mode, then real, then again."""
    host = pair[0]
    name, host_bridge = "ti-br-" + _suffix(), "tib" + _suffix()
    opts = dict(name=name, mode="bridge", bridge=host_bridge)
    # (state, then defined, then active); present leaves a new network stopped.
    steps = [("present", True, False), ("active", True, True), ("inactive", True, False), ("absent", False, False)]
    try:
        ansible.ok(host, "host_bridge", name=host_bridge)
        for state, defined, active in steps:
            before = network_state(lab, host, name)
            check = ansible.ok(host, "network", state=state, check=True, autostart=True, **opts)
            assert check["changed"], (state, check)
            after_check = network_state(lab, host, name)
            assert (before is None) == (after_check is None), state
            assert before is None or before["active"] == after_check["active"], state

            result = ansible.ok(host, "network", state=state, autostart=True, **opts)
            assert result["changed"], (state, result)
            found = network_state(lab, host, name)
            assert (found is not None) == defined, state
            if defined:
                assert found["active"] == active and found["autostart"], state
                assert result["network"]["active"] == active
                assert found["xml"].find("forward").get("mode") == "bridge"
                assert found["xml"].find("bridge").get("name") == host_bridge
            again = ansible.ok(host, "network", state=state, autostart=True, **opts)
            assert not again["changed"], (state, again)
    finally:
        ansible.module(host, "network", name=name, state="absent")
        ansible.module(host, "host_bridge", name=host_bridge, state="absent")


BAD_INPUT = [
    ("mode", dict(mode="route", address=BAD_NET + ".1/24")),
    ("address", dict(mode="nat", address="198.19.300.1/24")),
    ("address", dict(mode="nat", address="not-a-cidr")),
    ("dhcp", dict(mode="nat", address=BAD_NET + ".1/24", dhcp=dict(start="198.19.168.10", end="198.19.168.20"))),
    ("port_forwards", dict(mode="nat", address=BAD_NET + ".1/24",
                           port_forwards=[dict(host_port=70000, guest_ip=BAD_NET + ".10")])),
    ("port_forwards", dict(mode="isolated", address=BAD_NET + ".1/24",
                           port_forwards=[dict(host_port=18167, guest_ip=BAD_NET + ".10")])),
    ("address", dict(mode="bridge", bridge="br0", address=BAD_NET + ".1/24")),
    ("uri", dict(mode="nat", address=BAD_NET + ".1/24", uri="qemu+tcp://198.18.1.99/system", connect_timeout=3)),
]


@pytest.mark.parametrize("option,args", BAD_INPUT, ids=["%s-%d" % (case[0], i) for i, case in enumerate(BAD_INPUT)])
def test_bad_input_fails_naming_the_option_and_defines_nothing(ansible, lab, option, args):
    """Refused on the options alone, whatever the daemon answers (the uri reaches none): on hv1 only."""
    name = "ti-bad-" + _suffix()
    result = ansible.module("hv1", "network", name=name, **args)
    assert_failed_cleanly(result, option)
    assert network_state(lab, "hv1", name) is None
    assert_no_forward_rules("hv1", name, "--dport 18167", "--dport 70000")
