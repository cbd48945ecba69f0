# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_bridge end to end: main() runs against the real kernel inside throwaway namespaces (atvtest-c-*).

Topology: namespace ``host`` has uplink 'eth0' (10.9.0.1/24, secondary 10.9.0.2/24, fd00:9::1/64, default
routes via the gateway); its veth peer 'lan0' sits in namespace ``lan`` with the gateway's addresses.
The module's ``open_ipr`` is swapped for one bound to ``host``, so nothing touches the root namespace.
"""

from __future__ import annotations

import functools
import os

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _host_bridge
from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as nl
from ansible_collections.arctictern.virt.plugins.modules import host_bridge
from ansible_collections.arctictern.virt.tests.unit.utils import result_of
from lab import netlink as lab_nl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

BRIDGE = "atvbr-c0"
UPLINK_ADDRESSES = ["10.9.0.1/24", "10.9.0.2/24", "fd00:9::1/64"]


@pytest.fixture
def namespaces(scratch_netns):
    return {role: scratch_netns() for role in ("host", "lan")}


@pytest.fixture
def host(namespaces):
    """The host namespace's IPRoute, after building the topology."""
    with nl.open_ipr(namespaces["lan"]) as lan:
        with nl.open_ipr(namespaces["host"]) as ipr:
            lab_nl.create_veth_pair(ipr, "eth0", "lan0", peer_netns=namespaces["lan"])
            nl.set_up(lan, "lan0")
            nl.add_address(lan, "lan0", "10.9.0.254/24")
            nl.add_address(lan, "lan0", "fd00:9::fe/64")
            nl.set_up(ipr, "eth0")
            for address in UPLINK_ADDRESSES:
                nl.add_address(ipr, "eth0", address)
            nl.add_default_route(ipr, "10.9.0.254", "eth0", metric=100)
            nl.add_default_route(ipr, "fd00:9::fe", "eth0")
            yield ipr


@pytest.fixture
def run(run_module, monkeypatch, namespaces):  # pylint: disable=unused-argument
    """run(**args) -> the module's result dict (failed=True on fail_json); the run_module fixture patches
    exit_json and fail_json."""
    monkeypatch.setattr(_host_bridge, "open_ipr", functools.partial(nl.open_ipr, netns=namespaces["host"]))
    return lambda **args: result_of(host_bridge.main, args)


def gateways(ipr):
    return {(route["family"], route["gateway"], route["ifname"], route["metric"])
            for family in ("ipv4", "ipv6") for route in nl.default_routes(ipr, family)}


def route_oif(ipr, destination):
    """The interface the kernel would send to ``destination`` through."""
    [msg] = ipr.route("get", dst=destination)
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    return names[msg.get_attr("RTA_OIF")]


# --- present -----------------------------------------------------------------------------------------------


def test_present_moves_uplink_behind_bridge(host, run):
    result = run(name=BRIDGE, uplink="eth0")
    assert result["changed"] is True and "failed" not in result
    assert result["bridge"] == {"name": BRIDGE, "state": "present", "ports": ["eth0"], "addresses": UPLINK_ADDRESSES,
                                "mtu": 1500, "up": True, "stp": False, "forward_delay": 0}
    assert nl.bridge_ports(host, BRIDGE) == ["eth0"]
    assert nl.addresses(host, BRIDGE, scope="global") == UPLINK_ADDRESSES
    assert nl.addresses(host, "eth0", scope="global") == []
    assert gateways(host) == {("ipv4", "10.9.0.254", BRIDGE, 100), ("ipv6", "fd00:9::fe", BRIDGE, 1024)}
    assert route_oif(host, "198.51.100.1") == BRIDGE
    assert route_oif(host, "2001:db8::1") == BRIDGE


def test_present_is_idempotent(host, run):
    run(name=BRIDGE, uplink="eth0")
    again = run(name=BRIDGE, uplink="eth0", _ansible_diff=True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]


def test_present_diff_shows_ports_and_addresses(host, run):
    result = run(name=BRIDGE, uplink="eth0", _ansible_diff=True)
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert before["bridge"] == {"name": BRIDGE, "state": "absent"}
    assert before["uplink"] == {"name": "eth0", "master": None, "mtu": 1500, "up": True, "addresses": UPLINK_ADDRESSES}
    assert after["bridge"]["ports"] == ["eth0"] and after["bridge"]["addresses"] == UPLINK_ADDRESSES
    assert after["uplink"] == {"name": "eth0", "master": BRIDGE, "mtu": 1500, "up": True, "addresses": []}


def test_check_mode_predicts_without_touching(host, run, namespaces):
    predicted = run(name=BRIDGE, uplink="eth0", mtu=1400, _ansible_check_mode=True, _ansible_diff=True)
    assert predicted["changed"] is True
    assert not lab_nl.link_exists(host, BRIDGE)
    assert nl.addresses(host, "eth0", scope="global") == UPLINK_ADDRESSES
    assert nl.link_info(host, "eth0")["mtu"] == 1500
    real = run(name=BRIDGE, uplink="eth0", mtu=1400, _ansible_diff=True)
    assert predicted["diff"] == real["diff"]
    assert predicted["bridge"] == real["bridge"]


def test_check_mode_reports_no_change_when_in_place(host, run):
    run(name=BRIDGE, uplink="eth0")
    assert run(name=BRIDGE, uplink="eth0", _ansible_check_mode=True)["changed"] is False


def test_nothing_reaches_the_root_namespace(host, run):
    run(name=BRIDGE, uplink="eth0")
    assert lab_nl.link_exists(host, BRIDGE)
    with nl.open_ipr() as root:
        assert not lab_nl.link_exists(root, BRIDGE)


def test_mtu_goes_to_bridge_and_uplink(host, run):
    result = run(name=BRIDGE, uplink="eth0", mtu=1400)
    assert result["bridge"]["mtu"] == 1400
    assert nl.link_info(host, "eth0")["mtu"] == 1400
    assert run(name=BRIDGE, uplink="eth0", mtu=1400)["changed"] is False


def test_stp_and_forward_delay_are_updated_in_place(host, run):
    run(name=BRIDGE, uplink="eth0")
    result = run(name=BRIDGE, uplink="eth0", stp=True, forward_delay=4)
    assert result["changed"] is True
    assert (result["bridge"]["stp"], result["bridge"]["forward_delay"]) == (True, 4)
    assert result["bridge"]["addresses"] == UPLINK_ADDRESSES
    assert run(name=BRIDGE, uplink="eth0", stp=True, forward_delay=4)["changed"] is False


def test_without_move_addresses_the_uplink_keeps_them(host, run):
    result = run(name=BRIDGE, uplink="eth0", move_addresses=False)
    assert result["bridge"]["ports"] == ["eth0"] and result["bridge"]["addresses"] == []
    assert nl.addresses(host, "eth0", scope="global") == UPLINK_ADDRESSES
    assert ("ipv4", "10.9.0.254", "eth0", 100) in gateways(host)


def test_bridge_without_uplink(host, run):
    result = run(name=BRIDGE)
    assert result["changed"] is True
    assert result["bridge"]["ports"] == [] and result["bridge"]["up"] is True
    assert nl.addresses(host, "eth0", scope="global") == UPLINK_ADDRESSES
    assert run(name=BRIDGE)["changed"] is False


def test_addresses_left_on_uplink_move_on_next_run(host, run):
    run(name=BRIDGE, uplink="eth0")
    nl.add_address(host, "eth0", "10.9.1.1/24")  # e.g. a DHCP client still bound to the uplink
    result = run(name=BRIDGE, uplink="eth0")
    assert result["changed"] is True
    assert "10.9.1.1/24" in result["bridge"]["addresses"]
    assert nl.addresses(host, "eth0", scope="global") == []


# --- absent ------------------------------------------------------------------------------------------------


def test_absent_gives_everything_back(host, run):
    run(name=BRIDGE, uplink="eth0")
    result = run(name=BRIDGE, uplink="eth0", state="absent", _ansible_diff=True)
    assert result["changed"] is True
    assert result["bridge"] == {"name": BRIDGE, "state": "absent"}
    assert result["diff"]["after"]["uplink"] == {"name": "eth0", "master": None, "mtu": 1500, "up": True,
                                                 "addresses": UPLINK_ADDRESSES}
    assert not lab_nl.link_exists(host, BRIDGE)
    assert nl.addresses(host, "eth0", scope="global") == UPLINK_ADDRESSES
    assert gateways(host) == {("ipv4", "10.9.0.254", "eth0", 100), ("ipv6", "fd00:9::fe", "eth0", 1024)}
    assert route_oif(host, "198.51.100.1") == "eth0"
    assert run(name=BRIDGE, uplink="eth0", state="absent")["changed"] is False


def test_absent_check_mode_predicts_without_touching(host, run):
    run(name=BRIDGE, uplink="eth0")
    predicted = run(name=BRIDGE, uplink="eth0", state="absent", _ansible_check_mode=True, _ansible_diff=True)
    assert predicted["changed"] is True
    assert nl.bridge_ports(host, BRIDGE) == ["eth0"]
    real = run(name=BRIDGE, uplink="eth0", state="absent", _ansible_diff=True)
    assert predicted["diff"] == real["diff"]


def test_absent_without_uplink_just_deletes(host, run):
    run(name=BRIDGE, uplink="eth0")
    result = run(name=BRIDGE, state="absent")
    assert result["changed"] is True and not lab_nl.link_exists(host, BRIDGE)
    assert nl.link_info(host, "eth0")["master"] is None


def test_absent_when_missing_is_unchanged(host, run):
    assert run(name=BRIDGE, state="absent") == {"changed": False, "bridge": {"name": BRIDGE, "state": "absent"}}


# --- bad input ---------------------------------------------------------------------------------------------


def test_unknown_uplink_fails_and_creates_nothing(host, run):
    result = run(name=BRIDGE, uplink="nosuch0")
    assert result["failed"] is True
    assert result["msg"] == "uplink: interface 'nosuch0' does not exist"
    assert not lab_nl.link_exists(host, BRIDGE)


@pytest.mark.parametrize("args, message", [
    (dict(name="b" * 16), "name: interface name '%s' is 16 bytes long in UTF-8; Linux allows at most 15" % ("b" * 16)),
    (dict(name="br/0"), "name: interface name 'br/0' must not contain"),
    (dict(name="br 0"), "name: interface name 'br 0' must not contain"),
    (dict(name=""), "name: an interface name must not be empty"),
    (dict(name=BRIDGE, uplink="eth 0"), "uplink: interface name 'eth 0' must not contain"),
    (dict(name=BRIDGE, uplink=BRIDGE), "uplink: must not be the bridge itself"),
    (dict(name=BRIDGE, mtu=67), "mtu: must be between 68 and 65535, not 67"),
    (dict(name=BRIDGE, mtu=65536), "mtu: must be between 68 and 65535"),
    (dict(name=BRIDGE, stp=True), "forward_delay: must be between 2 and 30 seconds with STP on, not 0"),
    (dict(name=BRIDGE, forward_delay=31), "forward_delay: must be between 0 and 30 seconds, not 31"),
    (dict(name=BRIDGE, uplink="lo"), "uplink: 'lo' is a loopback and cannot be a bridge port"),
    (dict(name="eth0"), "name: interface 'eth0' exists and is not a bridge (kind: veth)"),
])
def test_bad_options_fail_naming_the_option(host, run, args, message):
    result = run(**args)
    assert result["failed"] is True
    assert result["msg"].startswith(message)
    assert not lab_nl.link_exists(host, BRIDGE)
    assert nl.addresses(host, "eth0", scope="global") == UPLINK_ADDRESSES


def test_mtu_below_1280_is_refused_while_ipv6_is_carried(host, run):
    result = run(name=BRIDGE, uplink="eth0", mtu=1000)
    assert result["msg"] == "mtu: must be between 1280 and 65535 for IPv6, not 1000"
    assert not lab_nl.link_exists(host, BRIDGE)
    assert nl.addresses(host, "eth0", scope="global") == UPLINK_ADDRESSES
    for route in nl.default_routes(host, "ipv6"):
        nl.remove_default_route(host, route)
    nl.remove_address(host, "eth0", "fd00:9::1/64")
    assert run(name=BRIDGE, uplink="eth0", mtu=1000)["bridge"]["mtu"] == 1000


def test_uplink_that_is_a_bridge_is_refused(host, run):
    nl.create_bridge(host, "br-other")
    result = run(name=BRIDGE, uplink="br-other")
    assert result["msg"] == "uplink: 'br-other' is a bridge and cannot be a bridge port"
    assert not lab_nl.link_exists(host, BRIDGE)


def test_uplink_of_another_bridge_is_refused(host, run):
    nl.create_bridge(host, "br-other")
    nl.set_master(host, "eth0", "br-other")
    result = run(name=BRIDGE, uplink="eth0")
    assert result["msg"] == "uplink: 'eth0' is already a port of 'br-other'"
    assert not lab_nl.link_exists(host, BRIDGE)
    assert nl.link_info(host, "eth0")["master"] == "br-other"


def test_bad_choice_is_reported_by_ansible(host, run):
    result = run(name=BRIDGE, state="gone")
    assert result["failed"] is True and "state" in result["msg"]
