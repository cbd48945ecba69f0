# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's own netlink helpers (lab/netlink.py) against the real kernel, inside throwaway network namespaces
(atvtest-c-*)."""

from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as nl
from ansible_collections.arctictern.virt.plugins.module_utils._errors import NotFound, VirtError
from ansible_collections.arctictern.virt.tests.unit.utils import scratch_netns_name
from lab import netlink as lab_nl

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def ipr(scratch_netns):
    with nl.open_ipr(scratch_netns()) as socket:
        yield socket


@pytest.fixture
def other_netns(scratch_netns):
    return scratch_netns()


@pytest.fixture
def wire(ipr):
    """A veth pair 'a0'<->'a1' with both ends up; 'a0' has 10.9.0.1/24."""
    lab_nl.create_veth_pair(ipr, "a0", "a1")
    for name in ("a0", "a1"):
        nl.set_up(ipr, name)
    nl.add_address(ipr, "a0", "10.9.0.1/24")
    return ipr


def test_netns_create_and_remove_are_idempotent():
    name = scratch_netns_name()
    try:
        assert lab_nl.create_netns(name) is True
        assert name in nl.netns_names()
        assert lab_nl.create_netns(name) is False
    finally:
        assert lab_nl.remove_netns(name) is True
    assert name not in nl.netns_names()
    assert lab_nl.remove_netns(name) is False


@pytest.mark.parametrize("bad", ["", "a/b", "..", "."])
def test_netns_bad_names_are_refused(bad):
    with pytest.raises(VirtError, match="invalid network namespace name"):
        lab_nl.create_netns(bad)


def test_veth_pair_with_peer_in_another_namespace(ipr, other_netns):
    assert lab_nl.create_veth_pair(ipr, "v0", "v1", peer_netns=other_netns) is True
    assert nl.link_info(ipr, "v0")["kind"] == "veth"
    assert not lab_nl.link_exists(ipr, "v1")
    with nl.open_ipr(other_netns) as peer_ipr:
        assert nl.link_info(peer_ipr, "v1")["kind"] == "veth"
    assert lab_nl.create_veth_pair(ipr, "v0", "v1", peer_netns=other_netns) is False


def test_veth_pair_into_missing_namespace_is_not_found(ipr):
    with pytest.raises(NotFound, match="does not exist"):
        lab_nl.create_veth_pair(ipr, "v0", "v1", peer_netns=scratch_netns_name())
    assert not lab_nl.link_exists(ipr, "v0")


def test_veth_pair_over_other_kind_is_refused(ipr):
    nl.create_bridge(ipr, "v0")
    with pytest.raises(VirtError, match="'v0' exists and is not a veth"):
        lab_nl.create_veth_pair(ipr, "v0", "v1")


def test_veth_pair_with_taken_peer_name_names_both(ipr):
    nl.create_bridge(ipr, "v1")
    with pytest.raises(VirtError, match="creating veth pair 'v0'/'v1': File exists") as caught:
        lab_nl.create_veth_pair(ipr, "v0", "v1")
    assert caught.value.details["errno"] == errno.EEXIST


def test_replace_route(wire):
    lab_nl.replace_route(wire, "default", "10.9.0.254")
    lab_nl.replace_route(wire, "default", "10.9.0.253")
    assert [route["gateway"] for route in nl.default_routes(wire, "ipv4")] == ["10.9.0.253"]
    lab_nl.replace_route(wire, "198.51.100.0/24", "10.9.0.250", metric=7)
    [msg] = [m for m in wire.get_routes(family=2) if m.get_attr("RTA_DST") == "198.51.100.0"]
    assert (msg["dst_len"], msg.get_attr("RTA_GATEWAY"), msg.get_attr("RTA_PRIORITY")) == (24, "10.9.0.250", 7)
    with pytest.raises(VirtError, match="mixes IPv4 and IPv6"):
        lab_nl.replace_route(wire, "198.51.100.0/24", "fd00:9::fe")
