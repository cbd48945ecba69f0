"""Netlink helpers only the lab needs: network namespaces, the veth pairs that cable them, and static routes.

Built on the modules' netlink layer (plugins/module_utils/_netlink.py), with its errors and its rule that a
change returns False when the state already was as asked.
"""

from __future__ import annotations

from pyroute2 import netns as pyroute2_netns

from ansible_collections.arctictern.virt.plugins.module_utils._errors import NotFound, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import (
    _change, _check_netns_name, _describe, _failure, _kind, _link_msg, _route_spec, netns_names,
)


def create_netns(name):
    """Create the named network namespace; False when it already exists."""
    _check_netns_name(name)
    if name in netns_names():
        return False
    try:
        pyroute2_netns.create(name)
    except OSError as error:
        raise _failure("creating network namespace '%s'" % name, error) from None
    return True


def remove_netns(name):
    """Remove the named network namespace (and so every interface inside it); False when there is none."""
    _check_netns_name(name)
    if name not in netns_names():
        return False
    try:
        pyroute2_netns.remove(name)
    except OSError as error:
        raise _failure("removing network namespace '%s'" % name, error) from None
    return True


def link_exists(ipr, name):
    """Whether this namespace has an interface called ``name``."""
    return _link_msg(ipr, name) is not None


def create_veth_pair(ipr, name, peer, peer_netns=None):
    """Create veth ``name`` with its ``peer``, the peer created straight inside ``peer_netns`` when given.

    False when ``name`` already is a veth; VirtError when it exists as something else.
    """
    msg = _link_msg(ipr, name)
    if msg is not None:
        if _kind(msg) != "veth":
            raise VirtError("interface '%s' exists and is not a veth (kind: %s)" % (name, _kind(msg)))
        return False
    peer_spec = {"ifname": peer}
    if peer_netns is not None:
        _check_netns_name(peer_netns)
        if peer_netns not in netns_names():
            raise NotFound("network namespace '%s' does not exist" % peer_netns)
        peer_spec["net_ns_fd"] = peer_netns
    return _change("creating veth pair '%s'/'%s'" % (name, peer), ipr.link, "add", ifname=name, kind="veth", peer=peer_spec)


def replace_route(ipr, dst, gateway=None, ifname=None, metric=None, table=None, family=None):
    """Create or overwrite the route to ``dst`` ('default' or a network such as '10.0.0.0/8')."""
    spec = _route_spec(ipr, dst, gateway, ifname, family, metric, table)
    _change("replacing %s" % _describe(dst, gateway, ifname), ipr.route, "replace", **spec)
