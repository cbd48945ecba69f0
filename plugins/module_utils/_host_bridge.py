# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host_bridge module's run: put an uplink behind a Linux bridge, moving its global addresses and default
routes onto the bridge (and back for state=absent).

Every option is checked against the host first; the change is then a list of steps (netlink calls that each say
whether they changed something), which check mode predicts instead of running.
"""

from __future__ import annotations

import functools

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import (
    add_address,
    add_default_route,
    addresses,
    bridge_info,
    check_forward_delay,
    create_bridge,
    default_routes,
    link_info,
    open_ipr,
    remove_address,
    remove_default_route,
    remove_link,
    set_master,
    set_mtu,
    set_up,
)

# Router-advertised routes belong to the kernel's SLAAC machinery; a static copy would outlive them.
RTPROT_RA = 9


def validate(ipr, params):
    """Check every option against the host before anything changes; return (bridge_info, uplink link_info)."""
    name, uplink_name = params["name"], params["uplink"]
    _validate.interface_name("name", name)
    if uplink_name is not None:
        _validate.interface_name("uplink", uplink_name)
        if uplink_name == name:
            raise InvalidOption("uplink", "must not be the bridge itself ('%s')" % name)
    if params["state"] == "present":
        check_forward_delay(params["stp"], params["forward_delay"])
    bridge = link_info(ipr, name)
    if bridge is not None and bridge["kind"] != "bridge":
        raise InvalidOption("name", "interface '%s' exists and is not a bridge (kind: %s)" % (name, bridge["kind"]))
    uplink = None
    if uplink_name is not None:
        uplink = link_info(ipr, uplink_name)
        if uplink is None:
            raise InvalidOption("uplink", "interface '%s' does not exist" % uplink_name)
        if uplink["loopback"] or uplink["kind"] == "bridge":
            raise InvalidOption("uplink", "'%s' is a %s and cannot be a bridge port" % (
                uplink_name, "loopback" if uplink["loopback"] else "bridge"))
        if uplink["master"] not in (None, name):
            raise InvalidOption("uplink", "'%s' is already a port of '%s'" % (uplink_name, uplink["master"]))
    if params["state"] == "present" and params["mtu"] is not None:
        # Both get the MTU: IPv6 on either needs 1280.
        links = [link_name for link_name, link in ((name, bridge), (uplink_name, uplink)) if link is not None]
        _validate.mtu("mtu", params["mtu"], ipv6=carries_ipv6(ipr, links))
    return (bridge_info(ipr, name) if bridge is not None else None), uplink


def carries_ipv6(ipr, ifnames):
    """Whether any of ``ifnames`` has a global IPv6 address or an IPv6 default route, which an MTU below 1280
    would take away (the kernel turns IPv6 off on the interface)."""
    if any(addresses(ipr, ifname, "ipv6", scope="global") for ifname in ifnames):
        return True
    return any(route["ifname"] in ifnames for route in default_routes(ipr, "ipv6", table=None))


def movable_routes(ipr, ifname):
    """The default routes (every table, both families) out of ``ifname`` that move with its addresses."""
    return [route for family in ("ipv4", "ipv6") for route in default_routes(ipr, family, table=None)
            if route["ifname"] == ifname and not route["multipath"] and route["proto"] != RTPROT_RA]


def route_to(route, ifname):
    """A step that re-creates ``route`` out of ``ifname``."""
    return functools.partial(add_default_route, gateway=route["gateway"], ifname=ifname, family=route["family"],
                             metric=route["metric"], table=route["table"], mtu=route["mtu"],
                             prefsrc=route["prefsrc"], proto=route["proto"])


def plan_present(ipr, params, bridge, uplink):
    """The steps (callables taking the IPRoute) that bring the host to state=present, in order."""
    name, uplink_name, mtu = params["name"], params["uplink"], params["mtu"]
    steps = []
    if bridge is None or (bridge["stp"], bridge["forward_delay"]) != (params["stp"], params["forward_delay"]):
        steps.append(functools.partial(create_bridge, name=name, stp=params["stp"], forward_delay=params["forward_delay"]))
    if uplink is not None and uplink["master"] != name:
        steps.append(functools.partial(set_master, ifname=uplink_name, bridge=name))
    for link, link_name in ((bridge, name), (uplink, uplink_name)):
        if mtu is not None and link_name is not None and (link is None or link["mtu"] != mtu):
            steps.append(functools.partial(set_mtu, name=link_name, mtu=mtu))
        if link_name is not None and (link is None or not link["up"]):
            steps.append(functools.partial(set_up, name=link_name))
    if uplink is not None and params["move_addresses"]:
        moving = addresses(ipr, uplink_name, scope="global")
        routes = movable_routes(ipr, uplink_name)
        have = bridge["addresses"] if bridge is not None else []
        steps.extend(functools.partial(add_address, ifname=name, address=address) for address in moving if address not in have)
        # IPv4 allows one default route per metric: the old one goes before the new one comes.
        steps.extend(functools.partial(remove_default_route, route=route) for route in routes)
        # Secondary IPv4 addresses first: removing a primary drops its secondaries with it.
        steps.extend(functools.partial(remove_address, ifname=uplink_name, address=address) for address in reversed(moving))
        steps.extend(route_to(route, name) for route in routes)
    return steps


def plan_absent(ipr, params, bridge, uplink):
    """The steps that release the uplink, give it the bridge's addresses and routes back and delete the bridge."""
    name, uplink_name = params["name"], params["uplink"]
    if bridge is None:
        return []
    steps = []
    routes = []
    if uplink is not None:
        if uplink["master"] == name:
            steps.append(functools.partial(set_master, ifname=uplink_name, bridge=None))
        if not uplink["up"]:
            steps.append(functools.partial(set_up, name=uplink_name))
        if params["move_addresses"]:
            have = addresses(ipr, uplink_name, scope="global")
            routes = movable_routes(ipr, name)
            steps.extend(functools.partial(add_address, ifname=uplink_name, address=address)
                         for address in bridge["addresses"] if address not in have)
    # Deleting the bridge drops its addresses and routes; the routes then come back through the uplink.
    steps.append(functools.partial(remove_link, name=name))
    steps.extend(route_to(route, uplink_name) for route in routes)
    return steps


def _by_family(addrs):
    """IPv4 before IPv6, each in kernel order, as the kernel lists them."""
    return sorted(addrs, key=lambda address: ":" in address)


def snapshot(ipr, params):
    """What the diff shows: the bridge and, when given, the uplink."""
    name, uplink_name = params["name"], params["uplink"]
    view = {"bridge": bridge_info(ipr, name) or {"name": name, "state": "absent"}}
    if uplink_name is not None:
        link = link_info(ipr, uplink_name)
        view["uplink"] = {"name": uplink_name, "master": link["master"], "mtu": link["mtu"], "up": link["up"],
                          "addresses": addresses(ipr, uplink_name, scope="global")}
    return view


def predict(before, params):
    """The snapshot the steps would produce, for check mode."""
    after = {key: dict(value) for key, value in before.items()}
    bridge, uplink = after["bridge"], after.get("uplink")
    moving = params["move_addresses"] and uplink is not None
    if params["state"] == "absent":
        if bridge["state"] == "present" and uplink is not None:
            uplink["up"] = True
            if uplink["master"] == params["name"]:
                uplink["master"] = None
            if moving:
                uplink["addresses"] = _by_family(uplink["addresses"] + [
                    address for address in bridge["addresses"] if address not in uplink["addresses"]])
        after["bridge"] = {"name": params["name"], "state": "absent"}
        return after
    if bridge["state"] == "absent":
        # The kernel gives a new bridge the MTU of its first port.
        bridge.update(state="present", ports=[], addresses=[], mtu=uplink["mtu"] if uplink else 1500)
    bridge.update(up=True, stp=params["stp"], forward_delay=params["forward_delay"])
    if params["mtu"] is not None:
        bridge["mtu"] = params["mtu"]
    if uplink is not None:
        bridge["ports"] = sorted(set(bridge["ports"]) | {uplink["name"]})
        uplink.update(master=params["name"], up=True)
        if params["mtu"] is not None:
            uplink["mtu"] = params["mtu"]
        if moving:
            bridge["addresses"] = _by_family(bridge["addresses"] + [
                address for address in uplink["addresses"] if address not in bridge["addresses"]])
            uplink["addresses"] = []
    return after


def ensure(ipr, params, changes):
    """Bring the host to the state the params ask for (in check mode: predict it), recording it in ``changes``;
    returns the snapshot after."""
    bridge, uplink = validate(ipr, params)
    before = snapshot(ipr, params)
    plan = plan_present if params["state"] == "present" else plan_absent
    steps = plan(ipr, params, bridge, uplink)
    if changes.check_mode:
        if steps:
            changes.record()
        after = predict(before, params)
    else:
        # Each step says whether it changed something, and every step must run.
        for step in steps:
            if step(ipr):
                changes.record()
        after = snapshot(ipr, params)
    changes.diff(before, after)
    return after


def ensure_host_bridge(module):
    """The module's run: the result dict (bridge, changed, diff)."""
    changes = Changes(module)
    with open_ipr() as ipr:
        after = ensure(ipr, module.params, changes)
    return changes.result({"bridge": after["bridge"]})
