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
      - Name of the bridge, at most 15 bytes (in UTF-8) without V(/), V(:), V(%) or white space, and neither V(.)
        nor V(..).
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
      - At least 1280 when the bridge or the O(uplink) has global IPv6 addresses or IPv6 default routes; below
        that the kernel turns IPv6 off on the interface and drops them.
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

from ansible_collections.arctictern.virt.plugins.module_utils._host_bridge import ensure_host_bridge
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import REQUIRED_LIBS

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    uplink=dict(type="str"),
    move_addresses=dict(type="bool", default=True),
    stp=dict(type="bool", default=False),
    forward_delay=dict(type="int", default=0),
    mtu=dict(type="int"),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, required_libs=REQUIRED_LIBS, supports_check_mode=True)
    module.run(ensure_host_bridge)


if __name__ == "__main__":
    main()
