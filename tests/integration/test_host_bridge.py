"""arctictern.virt.host_bridge on a real kernel: a veth pair made for the test inside hv2's namespace is the
uplink (eth0, br0 and mig0 are never touched). What the module did is checked with `ip -j` in the namespace."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink
from lab.netlink import create_veth_pair

pytestmark = pytest.mark.lab

NETNS = "atv-hv2"
V4, V6 = "198.19.168.1/24", "fd00:165::1/64"
GATEWAY, TABLE = "198.19.168.254", 165


def ip_json(*argv):
    out = subprocess.run(["ip", "-n", NETNS, "-j"] + list(argv), capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def link(name):
    """``ip -j -d link show`` of one interface, or None."""
    proc = subprocess.run(["ip", "-n", NETNS, "-j", "-d", "link", "show", "dev", name], capture_output=True, text=True,
                          check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def global_addresses(name):
    found = ip_json("addr", "show", "dev", name)
    return sorted("%s/%s" % (a["local"], a["prefixlen"]) for a in found[0]["addr_info"] if a["scope"] == "global")


def table_routes():
    return [(route["dst"], route.get("gateway"), route["dev"]) for route in ip_json("route", "show", "table", str(TABLE))]


@pytest.fixture
def uplink(lab):  # pylint: disable=unused-argument
    """A veth pair in hv2's namespace; the end named by the fixture has an IPv4 and an IPv6 address and a
    default route in table 165 (so that nothing of hv2's own routing depends on it)."""
    name = "ti%sa" % uuid.uuid4().hex[:6]
    with _netlink.open_ipr(NETNS) as ipr:
        create_veth_pair(ipr, name, name[:-1] + "b")
        for ifname in (name, name[:-1] + "b"):
            _netlink.set_up(ipr, ifname)
        for address in (V4, V6):
            _netlink.add_address(ipr, name, address)
        _netlink.add_default_route(ipr, gateway=GATEWAY, ifname=name, table=TABLE)
    yield name
    with _netlink.open_ipr(NETNS) as ipr:
        _netlink.remove_link(ipr, name)  # takes its peer and the route with it


def test_bridge_takes_the_uplink_with_its_addresses_and_gives_them_back(ansible, uplink):
    bridge = "tib" + uuid.uuid4().hex[:6]
    opts = dict(name=bridge, uplink=uplink)
    try:
        check = ansible.ok("hv2", "host_bridge", check=True, diff=True, **opts)
        assert check["changed"] and check["bridge"]["ports"] == [uplink]
        assert check["diff"]["before"]["bridge"]["state"] == "absent"
        assert check["diff"]["after"]["bridge"]["addresses"] == [V4, V6]
        assert check["diff"]["before"]["uplink"]["addresses"] == [V4, V6]
        assert link(bridge) is None and global_addresses(uplink) == sorted([V4, V6])

        made = ansible.ok("hv2", "host_bridge", diff=True, **opts)
        assert made["changed"] and made["bridge"]["state"] == "present"
        assert made["diff"]["after"]["uplink"]["addresses"] == [] and made["diff"]["after"]["uplink"]["master"] == bridge
        found = link(bridge)
        assert found["linkinfo"]["info_kind"] == "bridge" and "UP" in found["flags"]
        assert link(uplink)["master"] == bridge
        assert global_addresses(bridge) == sorted([V4, V6]) and global_addresses(uplink) == []
        assert table_routes() == [("default", GATEWAY, bridge)]

        again = ansible.ok("hv2", "host_bridge", diff=True, **opts)
        assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]

        gone_check = ansible.ok("hv2", "host_bridge", state="absent", check=True, **opts)
        assert gone_check["changed"] and link(bridge) is not None and link(uplink)["master"] == bridge

        gone = ansible.ok("hv2", "host_bridge", state="absent", diff=True, **opts)
        assert gone["changed"] and gone["bridge"] == {"name": bridge, "state": "absent"}
        assert link(bridge) is None and "master" not in link(uplink)
        assert global_addresses(uplink) == sorted([V4, V6])
        assert table_routes() == [("default", GATEWAY, uplink)]
        assert not ansible.ok("hv2", "host_bridge", state="absent", **opts)["changed"]
    finally:
        with _netlink.open_ipr(NETNS) as ipr:
            _netlink.remove_link(ipr, bridge)


def test_unknown_uplink_fails_and_creates_nothing(ansible, lab):  # pylint: disable=unused-argument
    bridge = "tib" + uuid.uuid4().hex[:6]
    missing = "tinope" + uuid.uuid4().hex[:6]
    try:
        result = ansible.module("hv2", "host_bridge", name=bridge, uplink=missing)
        assert result.get("failed") and "uplink" in result["msg"] and missing in result["msg"], result
        assert "Traceback" not in json.dumps(result) and "module_stderr" not in result
        assert link(bridge) is None
    finally:
        with _netlink.open_ipr(NETNS) as ipr:
            _netlink.remove_link(ipr, bridge)
