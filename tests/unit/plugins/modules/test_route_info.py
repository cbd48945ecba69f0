# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""route_info against the real kernel inside a throwaway namespace (atvtest-c-*)."""

from __future__ import annotations

import functools
import os

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as nl
from ansible_collections.arctictern.virt.plugins.module_utils import _route_info
from ansible_collections.arctictern.virt.plugins.modules import route_info
from ansible_collections.arctictern.virt.tests.unit.utils import result_of
from lab import netlink as lab_nl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def netns(scratch_netns):
    return scratch_netns()


@pytest.fixture
def ipr(netns):
    """'eth0' (10.9.0.1/24, 10.9.0.2/24, fd00:9::1/64) with its veth peer up, and no default route yet."""
    with nl.open_ipr(netns) as socket:
        lab_nl.create_veth_pair(socket, "eth0", "peer0")
        nl.set_up(socket, "peer0")
        nl.set_up(socket, "eth0")
        for address in ("10.9.0.1/24", "10.9.0.2/24", "fd00:9::1/64"):
            nl.add_address(socket, "eth0", address)
        yield socket


@pytest.fixture
def run(run_module, monkeypatch, netns):  # pylint: disable=unused-argument
    """run(**args) -> the module's result dict (failed=True on fail_json); the run_module fixture patches
    exit_json and fail_json."""
    monkeypatch.setattr(_route_info, "open_ipr", functools.partial(nl.open_ipr, netns=netns))
    return lambda **args: result_of(route_info.main, args)


def test_no_default_route_is_null_not_a_failure(ipr):
    assert _route_info.route_facts(ipr) == {"ipv4": None, "ipv6": None}


def test_ipv4_and_ipv6_default_routes(ipr):
    nl.add_default_route(ipr, "10.9.0.254", metric=100)
    nl.add_default_route(ipr, "fd00:9::fe")
    assert _route_info.route_facts(ipr) == {
        "ipv4": {"gateway": "10.9.0.254", "interface": "eth0", "source": "10.9.0.1", "mtu": 1500, "metric": 100,
                 "table": 254},
        "ipv6": {"gateway": "fd00:9::fe", "interface": "eth0", "source": "fd00:9::1", "mtu": 1500, "metric": 1024,
                 "table": 254},
    }


def test_route_prefsrc_and_mtu_win_over_the_interface(ipr):
    nl.add_default_route(ipr, "10.9.0.254", prefsrc="10.9.0.2", mtu=1400)
    facts = _route_info.default_route(ipr, "ipv4")
    assert (facts["source"], facts["mtu"]) == ("10.9.0.2", 1400)


def test_lowest_metric_wins(ipr):
    nl.add_default_route(ipr, "10.9.0.254", metric=100)
    nl.add_default_route(ipr, "10.9.0.253", metric=50)
    assert _route_info.default_route(ipr, "ipv4")["gateway"] == "10.9.0.253"


def test_route_without_gateway(ipr):
    nl.add_default_route(ipr, ifname="eth0", metric=10)
    facts = _route_info.default_route(ipr, "ipv4")
    assert (facts["gateway"], facts["interface"], facts["metric"]) == (None, "eth0", 10)


def test_link_local_gateway_and_no_global_source(ipr):
    nl.remove_address(ipr, "eth0", "fd00:9::1/64")
    nl.add_default_route(ipr, "fe80::1", "eth0")
    facts = _route_info.default_route(ipr, "ipv6")
    assert (facts["gateway"], facts["interface"], facts["source"]) == ("fe80::1", "eth0", None)


def test_other_tables_are_ignored(ipr):
    nl.add_default_route(ipr, "10.9.0.254", table=100)
    assert _route_info.default_route(ipr, "ipv4") is None


def test_module_returns_facts_and_never_changes(ipr, run):
    nl.add_default_route(ipr, "10.9.0.254")
    result = run(family="ipv4", _ansible_check_mode=True)
    assert result["changed"] is False
    assert result["route_info"] == {"ipv4": {"gateway": "10.9.0.254", "interface": "eth0", "source": "10.9.0.1",
                                             "mtu": 1500, "metric": 0, "table": 254}}
    assert result["ansible_facts"] == {"arctictern_default_route": result["route_info"]}


def test_module_both_families_by_default(ipr, run):
    result = run()
    assert result["route_info"] == {"ipv4": None, "ipv6": None}
    assert result["changed"] is False


def test_module_rejects_unknown_family(ipr, run):
    result = run(family="ipx")
    assert result["failed"] is True and "family" in result["msg"]
