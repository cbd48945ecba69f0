#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create or remove a Linux bridge that puts a host's uplink (and so bridged guests) on its LAN."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_bridge
short_description: Put a host's uplink behind a Linux bridge, moving its addresses and default routes
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Creates a Linux bridge, makes the O(uplink) one of its ports and moves the uplink's global IPv4 and IPv6
    addresses and its default routes to the bridge, which is what an administrator does before putting
    bridged guests on a host's LAN.
  - With O(state=absent), moves the addresses and default routes back to the O(uplink), releases it and
    deletes the bridge.
  - Talks netlink directly (through pyroute2); nothing is written to the distribution's network configuration,
    so the change does not survive a reboot unless that configuration is updated too.
  - Addresses move as static addresses. A DHCP or SLAAC client that managed them must be pointed at the
    bridge. Default routes that came from router advertisements and multipath default routes are left where
    they are; other routes through the uplink are not moved.
options:
  name:
    description:
      - Name of the bridge, 1 to 15 characters without V(/), V(:) or whitespace.
    type: str
    required: true
  state:
    description:
      - V(present) creates the bridge (or updates its settings), V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  uplink:
    description:
      - Existing interface (usually the host's NIC or bond) to make a port of the bridge; with O(state=absent),
        the interface that gets the addresses and default routes back.
      - It must not be a bridge or the loopback, nor a port of another master.
    type: str
  move_addresses:
    description:
      - Whether to move the global addresses and default routes between the O(uplink) and the bridge.
    type: bool
    default: true
  stp:
    description:
      - Whether the bridge runs the spanning tree protocol.
    type: bool
    default: false
  forward_delay:
    description:
      - Forward delay of the bridge in seconds, from 0 to 30; from 2 to 30 with O(stp=true).
    type: int
    default: 0
  mtu:
    description:
      - MTU of the bridge, from 68 to 65535. The O(uplink) gets the same MTU, since a bridge cannot forward a
        frame larger than its port's MTU.
      - When not set, the bridge keeps the MTU the kernel gives it (the smallest MTU of its ports).
    type: int
attributes:
  check_mode:
    description: Can run in check mode and return the changed status and bridge it would produce.
    support: full
  diff_mode:
    description: Shows the bridge and the uplink (ports, addresses, MTU) before and after.
    support: full
notes:
  - Needs root (CAP_NET_ADMIN) on the managed host.
  - Run it from the console or with an C(async) task when O(uplink) carries the Ansible connection, which
    pauses while the addresses move.
requirements:
  - pyroute2 on the host that runs the module
"""

EXAMPLES = r"""
- name: Put eth0 behind br0 so that guests can be bridged onto the LAN
  arctictern.virt.host_bridge:
    name: br0
    uplink: eth0

- name: A bridge with jumbo frames and STP
  arctictern.virt.host_bridge:
    name: br-san
    uplink: bond1
    mtu: 9000
    stp: true
    forward_delay: 4

- name: An isolated bridge without uplink
  arctictern.virt.host_bridge:
    name: br-lab

- name: Give eth0 its addresses back and delete br0
  arctictern.virt.host_bridge:
    name: br0
    uplink: eth0
    state: absent
"""

RETURN = r"""
bridge:
  description: The bridge after the task (as it would be, in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the bridge.
      type: str
      sample: br0
    state:
      description: V(present) or V(absent); the other keys are only there when V(present).
      type: str
      sample: present
    ports:
      description: Names of the bridge's ports, sorted.
      type: list
      elements: str
      sample: [eth0]
    addresses:
      description: The bridge's global-scope addresses as address/prefix, IPv4 first.
      type: list
      elements: str
      sample: [192.0.2.10/24, 2001:db8::10/64]
    mtu:
      description: MTU of the bridge.
      type: int
      sample: 1500
    up:
      description: Whether the bridge is administratively up.
      type: bool
      sample: true
    stp:
      description: Whether the bridge runs STP.
      type: bool
      sample: false
    forward_delay:
      description: Forward delay in seconds.
      type: int
      sample: 0
"""

import functools

from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import (
    REQUIRED_LIBS,
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
    validate_ifname,
)

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    uplink=dict(type="str"),
    move_addresses=dict(type="bool", default=True),
    stp=dict(type="bool", default=False),
    forward_delay=dict(type="int", default=0),
    mtu=dict(type="int"),
)

MTU_RANGE = (68, 65535)
# Router-advertised routes belong to the kernel's SLAAC machinery; a static copy would outlive them.
RTPROT_RA = 9


def validate(ipr, params):
    """Check every option against the host before anything changes; return (bridge_info, uplink link_info)."""
    name, uplink_name = params["name"], params["uplink"]
    validate_ifname(name, "name")
    if uplink_name is not None:
        validate_ifname(uplink_name, "uplink")
        if uplink_name == name:
            raise InvalidOption("uplink", "must not be the bridge itself ('%s')" % name)
    if params["state"] == "present":
        check_forward_delay(params["stp"], params["forward_delay"])
        if params["mtu"] is not None and not MTU_RANGE[0] <= params["mtu"] <= MTU_RANGE[1]:
            raise InvalidOption("mtu", "must be between %d and %d, not %s" % (MTU_RANGE + (params["mtu"],)))
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
    return (bridge_info(ipr, name) if bridge is not None else None), uplink


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


def ensure(ipr, params, check_mode=False):
    """Bring the host to the state the params ask for; return (changed, before, after)."""
    bridge, uplink = validate(ipr, params)
    before = snapshot(ipr, params)
    plan = plan_present if params["state"] == "present" else plan_absent
    steps = plan(ipr, params, bridge, uplink)
    if check_mode:
        return bool(steps), before, predict(before, params)
    # Each step says whether it changed something; every step must run, so no short-circuiting any().
    results = [step(ipr) for step in steps]
    return any(results), before, snapshot(ipr, params)


def handle(module):
    with open_ipr() as ipr:
        changed, before, after = ensure(ipr, module.params, module.check_mode)
    result = {"changed": changed, "bridge": after["bridge"]}
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    return result


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, required_libs=REQUIRED_LIBS, supports_check_mode=True)
    module.run(handle)


if __name__ == "__main__":
    main()
