"""arctictern.virt.route_info on the lab client, whose namespace has no default route until the test adds one.
`ip -j` inside the namespace is the independent check."""

from __future__ import annotations

import json
import subprocess

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink

pytestmark = pytest.mark.lab

NETNS = "atv-client"
GATEWAY4, MTU4, METRIC4 = "198.18.0.11", 1400, 50
ADDRESS6, GATEWAY6 = "fd00:165::100/64", "fd00:165::1"


def ip_json(*argv):
    out = subprocess.run(["ip", "-n", NETNS, "-j"] + list(argv), capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def test_no_default_route_is_null(ansible, lab):  # pylint: disable=unused-argument
    assert ip_json("-4", "route", "show", "default") == [] and ip_json("-6", "route", "show", "default") == []
    result = ansible.ok("client", "route_info", family="both")
    assert not result["changed"]
    assert result["route_info"] == {"ipv4": None, "ipv6": None}
    assert result["ansible_facts"]["arctictern_default_route"] == result["route_info"]
    assert ansible.ok("client", "route_info", family="ipv4")["route_info"] == {"ipv4": None}


def test_default_routes_of_both_families(ansible, lab):
    client = lab["hosts"]["client"]["lan_address"]
    interface = ip_json("-4", "route", "get", GATEWAY4)[0]["dev"]
    try:
        with _netlink.open_ipr(NETNS) as ipr:
            _netlink.add_default_route(ipr, gateway=GATEWAY4, metric=METRIC4, mtu=MTU4)
            _netlink.add_address(ipr, interface, ADDRESS6)
            _netlink.add_default_route(ipr, gateway=GATEWAY6, ifname=interface)
        (route4,) = ip_json("-4", "route", "show", "default")
        (route6,) = ip_json("-6", "route", "show", "default")
        assert (route4["gateway"], route4["dev"], route4["metric"]) == (GATEWAY4, interface, METRIC4)
        link_mtu = ip_json("link", "show", "dev", interface)[0]["mtu"]

        result = ansible.ok("client", "route_info", family="both", check=True)
        assert not result["changed"]
        assert result["route_info"]["ipv4"] == {
            "gateway": GATEWAY4, "interface": interface, "source": client, "mtu": MTU4, "metric": METRIC4, "table": 254}
        assert result["route_info"]["ipv6"] == {
            "gateway": GATEWAY6, "interface": route6["dev"], "source": ADDRESS6.split("/", maxsplit=1)[0], "mtu": link_mtu,
            "metric": route6["metric"], "table": 254}
        assert result["ansible_facts"]["arctictern_default_route"] == result["route_info"]
        only6 = ansible.ok("client", "route_info", family="ipv6")["route_info"]
        assert list(only6) == ["ipv6"] and only6["ipv6"]["gateway"] == GATEWAY6
    finally:
        with _netlink.open_ipr(NETNS) as ipr:
            for route in _netlink.default_routes(ipr, "ipv4") + _netlink.default_routes(ipr, "ipv6"):
                if route["gateway"] in (GATEWAY4, GATEWAY6):
                    _netlink.remove_default_route(ipr, route)
            _netlink.remove_address(ipr, interface, ADDRESS6)
    assert ip_json("-4", "route", "show", "default") == [] and ip_json("-6", "route", "show", "default") == []
