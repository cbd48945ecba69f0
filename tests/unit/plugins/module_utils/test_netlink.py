# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netlink layer against the real kernel, inside throwaway network namespaces (atvtest-c-*)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as nl
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, NotFound, VirtError
from ansible_collections.arctictern.virt.tests.unit.utils import scratch_netns_name
from lab import netlink as lab_nl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def netns(scratch_netns):
    return scratch_netns()


@pytest.fixture
def ipr(netns):
    with nl.open_ipr(netns) as socket:
        yield socket


@pytest.fixture
def wire(ipr):
    """A veth pair 'a0'<->'a1' with both ends up, so that both have carrier; 'a0' has 10.9.0.1/24, fd00:9::1/64."""
    lab_nl.create_veth_pair(ipr, "a0", "a1")
    for name in ("a0", "a1"):
        nl.set_up(ipr, name)
    nl.add_address(ipr, "a0", "10.9.0.1/24")
    nl.add_address(ipr, "a0", "fd00:9::1/64")
    return ipr


# --- namespaces --------------------------------------------------------------------------------------------


def test_open_ipr_on_missing_namespace_is_not_found_and_creates_nothing():
    name = scratch_netns_name()
    with pytest.raises(NotFound, match="network namespace '%s' does not exist" % name):
        with nl.open_ipr(name):
            pass  # pragma: no cover - never reached
    assert name not in nl.netns_names()


def test_open_ipr_sees_only_its_namespace(ipr):
    assert nl.link_info(ipr, "lo")["loopback"] is True
    # A fresh namespace holds nothing but its loopback.
    assert [msg.get_attr("IFLA_IFNAME") for msg in ipr.get_links()] == ["lo"]


# --- links -------------------------------------------------------------------------------------------------


def test_link_index_and_info(ipr):
    lab_nl.create_veth_pair(ipr, "v0", "v1")
    info = nl.link_info(ipr, "v0")
    assert info["index"] == nl.link_index(ipr, "v0")
    assert info["name"] == "v0" and info["master"] is None and info["up"] is False
    assert info["mtu"] == 1500 and len(info["mac"].split(":")) == 6
    assert nl.link_info(ipr, "nosuch") is None
    with pytest.raises(NotFound, match="interface 'nosuch' does not exist"):
        nl.link_index(ipr, "nosuch")


def test_set_up_and_set_mtu_are_idempotent(ipr):
    lab_nl.create_veth_pair(ipr, "v0", "v1")
    assert nl.set_up(ipr, "v0") is True
    assert nl.set_up(ipr, "v0") is False
    assert nl.link_info(ipr, "v0")["up"] is True
    assert nl.set_mtu(ipr, "v0", 1400) is True
    assert nl.set_mtu(ipr, "v0", 1400) is False
    assert nl.link_info(ipr, "v0")["mtu"] == 1400


def test_kernel_refusal_is_a_readable_error(ipr):
    lab_nl.create_veth_pair(ipr, "v0", "v1")
    with pytest.raises(VirtError, match="setting MTU 10 on interface 'v0': Invalid argument"):
        nl.set_mtu(ipr, "v0", 10)


def test_changes_to_missing_interfaces_are_not_found(ipr):
    for change in (lambda: nl.set_up(ipr, "ghost"), lambda: nl.set_mtu(ipr, "ghost", 1500),
                   lambda: nl.set_master(ipr, "ghost", None), lambda: nl.add_address(ipr, "ghost", "10.0.0.1/8")):
        with pytest.raises(NotFound, match="interface 'ghost' does not exist"):
            change()


def test_remove_link_is_idempotent_and_takes_the_peer(ipr):
    lab_nl.create_veth_pair(ipr, "v0", "v1")
    assert nl.remove_link(ipr, "v0") is True
    assert not lab_nl.link_exists(ipr, "v0") and not lab_nl.link_exists(ipr, "v1")
    assert nl.remove_link(ipr, "v0") is False


# --- bridges -----------------------------------------------------------------------------------------------


def test_create_bridge_is_idempotent_and_updates_settings(ipr):
    assert nl.create_bridge(ipr, "br0") is True
    info = nl.bridge_info(ipr, "br0")
    assert (info["stp"], info["forward_delay"], info["ports"], info["state"]) == (False, 0, [], "present")
    assert nl.create_bridge(ipr, "br0") is False
    assert nl.create_bridge(ipr, "br0", stp=True, forward_delay=4) is True
    info = nl.bridge_info(ipr, "br0")
    assert (info["stp"], info["forward_delay"]) == (True, 4)
    assert nl.create_bridge(ipr, "br0", stp=True, forward_delay=4) is False


def test_create_bridge_over_other_kind_is_refused(ipr):
    lab_nl.create_veth_pair(ipr, "v0", "v1")
    with pytest.raises(VirtError, match="'v0' exists and is not a bridge"):
        nl.create_bridge(ipr, "v0")
    with pytest.raises(VirtError, match="'v0' exists and is not a bridge"):
        nl.bridge_info(ipr, "v0")
    assert nl.bridge_info(ipr, "nosuch") is None


@pytest.mark.parametrize("stp, delay", [(True, 0), (True, 1), (True, 31), (False, -1), (False, 31)])
def test_forward_delay_out_of_range_names_the_option(ipr, stp, delay):
    with pytest.raises(InvalidOption, match="^forward_delay: must be between") as caught:
        nl.create_bridge(ipr, "br0", stp=stp, forward_delay=delay)
    assert caught.value.option == "forward_delay"
    assert not lab_nl.link_exists(ipr, "br0")


def test_set_master_and_release(ipr):
    nl.create_bridge(ipr, "br0")
    lab_nl.create_veth_pair(ipr, "v0", "v1")
    assert nl.set_master(ipr, "v0", "br0") is True
    assert nl.set_master(ipr, "v0", "br0") is False
    assert nl.bridge_ports(ipr, "br0") == ["v0"]
    assert nl.link_info(ipr, "v0")["master"] == "br0"
    assert nl.set_master(ipr, "v0", None) is True
    assert nl.set_master(ipr, "v0", None) is False
    assert nl.bridge_ports(ipr, "br0") == []


def test_set_master_to_missing_bridge_is_not_found(ipr):
    lab_nl.create_veth_pair(ipr, "v0", "v1")
    with pytest.raises(NotFound, match="interface 'br9' does not exist"):
        nl.set_master(ipr, "v0", "br9")


def test_enslaving_loopback_error_names_both_interfaces(ipr):
    nl.create_bridge(ipr, "br0")
    with pytest.raises(VirtError, match="adding interface 'lo' to bridge 'br0': "):
        nl.set_master(ipr, "lo", "br0")


# --- addresses ---------------------------------------------------------------------------------------------


def test_addresses_add_remove_and_filters(wire):
    ipr = wire
    assert nl.add_address(ipr, "a0", "10.9.0.1/24") is False
    assert nl.add_address(ipr, "a0", "10.9.0.2/24") is True
    assert nl.add_address(ipr, "a0", "fd00:9:0:0::1/64") is False  # same address, other spelling
    assert nl.addresses(ipr, "a0", "ipv4") == ["10.9.0.1/24", "10.9.0.2/24"]
    assert nl.addresses(ipr, "a0", "ipv6", scope="global") == ["fd00:9::1/64"]
    # The kernel adds an IPv6 link-local address once the link is up; it is not global.
    assert any(address.startswith("fe80::") for address in nl.addresses(ipr, "a0", "ipv6", scope="link"))
    assert set(nl.addresses(ipr, "a0", scope="global")) == {"10.9.0.1/24", "10.9.0.2/24", "fd00:9::1/64"}
    assert nl.remove_address(ipr, "a0", "10.9.0.2/24") is True
    assert nl.remove_address(ipr, "a0", "10.9.0.2/24") is False
    assert nl.addresses(ipr, "a0", "ipv4") == ["10.9.0.1/24"]


def test_ipv4_address_gets_its_broadcast(wire):
    [msg] = [m for m in wire.get_addr() if m.get_attr("IFA_ADDRESS") == "10.9.0.1"]
    assert msg.get_attr("IFA_BROADCAST") == "10.9.0.255"


@pytest.mark.parametrize("bad", ["10.9.0.300/24", "fd00::g/64", "nonsense"])
def test_invalid_address_is_refused(wire, bad):
    with pytest.raises(VirtError, match="invalid IP address"):
        nl.add_address(wire, "a0", bad)


def test_unknown_family_is_refused(wire):
    with pytest.raises(VirtError, match="unknown address family"):
        nl.addresses(wire, "a0", "ipx")


# --- routes ------------------------------------------------------------------------------------------------


def test_default_routes_add_read_remove(wire):
    ipr = wire
    assert nl.default_routes(ipr, "ipv4") == [] and nl.default_routes(ipr, "ipv6") == []
    assert nl.add_default_route(ipr, "10.9.0.254", "a0", metric=100, mtu=1400) is True
    assert nl.add_default_route(ipr, "10.9.0.254", "a0", metric=100) is False
    assert nl.add_default_route(ipr, "fd00:9::fe") is True
    [v4] = nl.default_routes(ipr, "ipv4")
    assert v4 == {"family": "ipv4", "gateway": "10.9.0.254", "ifname": "a0", "prefsrc": None, "metric": 100,
                  "table": 254, "mtu": 1400, "proto": 4, "multipath": False}
    [v6] = nl.default_routes(ipr, "ipv6")
    assert (v6["gateway"], v6["ifname"], v6["metric"], v6["mtu"]) == ("fd00:9::fe", "a0", 1024, None)
    assert nl.remove_default_route(ipr, v4) is True
    assert nl.remove_default_route(ipr, v4) is False
    assert nl.remove_default_route(ipr, v6) is True
    assert nl.default_routes(ipr, "ipv4") == [] and nl.default_routes(ipr, "ipv6") == []


def test_default_route_conflict_names_the_route(wire):
    nl.add_default_route(wire, "10.9.0.254", "a0")
    with pytest.raises(VirtError, match="adding route default via 10.9.0.253 dev 'a0': another default route"):
        nl.add_default_route(wire, "10.9.0.253", "a0")


def test_default_routes_of_other_tables(wire):
    nl.add_default_route(wire, "10.9.0.254", table=100, metric=5)
    assert nl.default_routes(wire, "ipv4") == []
    [route] = nl.default_routes(wire, "ipv4", table=None)
    assert (route["table"], route["metric"], route["ifname"]) == (100, 5, "a0")


def test_default_route_with_unreachable_gateway_is_a_readable_error(wire):
    with pytest.raises(VirtError, match="adding route default via 192.0.2.1: Network is unreachable"):
        nl.add_default_route(wire, "192.0.2.1")


def test_default_route_needs_a_hop_and_one_family(wire):
    with pytest.raises(VirtError, match="needs a gateway, an interface or both"):
        nl.add_default_route(wire)
    with pytest.raises(VirtError, match="needs one address family"):
        nl.default_routes(wire, None)
