#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Map a new address of this host's subnet one to one onto a guest that moved here and kept its old address."""

from __future__ import annotations

DOCUMENTATION = r"""
module: address_map
short_description: Give a guest that moved to this host with its old address a new address of this host's subnet
version_added: 0.2.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Runs on the host a guest moved to from another site or subnet. The guest keeps its old address
    (O(guest_address)) and its old gateway, and needs no agent; this module makes it reachable at a new address
    of the host's own subnet (O(address)) as well, mapped one to one by NAT, so that new clients can use the new
    address while connections to the old one keep working (through a tunnel to the old site, see
    M(arctictern.virt.tunnel)).
  - "With O(state=present) it makes: the guest's old O(gateway) a C(/32) address on the O(bridge), so that the
    guest's default route still works; a route C(guest_address/32 dev bridge scope link src gateway); nat DNAT of
    O(address) to O(guest_address) (PREROUTING and OUTPUT) and SNAT of O(guest_address) to O(address)
    (appended to POSTROUTING); a mangle CONNMARK that marks connections that came in to O(address) with O(mark)
    and gives the mark back to the guest's packets of those connections; a policy rule
    C(from guest_address fwmark mark/mark lookup main priority rule_priority), so that the guest's replies to
    those connections leave by the main table (the reply's source only becomes O(address) again in
    POSTROUTING, after the routing decision); and O(address) as a C(/32) on the interface whose subnet holds
    it, so that the host answers ARP for it."
  - The iptables rules live in chains of their own, C(ATV_AMDNAT_<hash>), C(ATV_AMSNAT_<hash>) (table nat) and
    C(ATV_AMMARK_<hash>) (table mangle), named after a hash of O(guest_address) and O(address) and jumped to from
    the built-in chains. The route and the rule carry the routing protocol number 164 (C(proto 164) in C(ip route)
    and C(ip rule)), by which the module knows them again.
  - With O(announce=true), every run with O(state=present) sends gratuitous ARP (three rounds of a request and
    a reply, 100 ms apart) for the O(gateway) out of the O(bridge) and for O(address) out of its interface, so
    that the guest replaces the old site's MAC of its gateway, and the LAN any MAC it cached for the new address,
    at once. Sending them is not a change of the host and does not make the task changed; RV(announced) says
    whether they were sent.
  - With O(state=absent), removes all of it. The O(gateway) address stays while another guest mapped onto the
    same interface still uses it (as the source of its route).
  - Talks netlink (through pyroute2) and runs C(iptables); nothing is written to the distribution's network or
    firewall configuration, so the mapping does not survive a reboot or a firewall reload. Run the module again
    to restore it.
options:
  address:
    description:
      - The new address of the guest (IPv4), in a subnet of one of this host's interfaces (usually the O(bridge)).
      - It must not be an address of this host already, other than as the C(/32) this module adds, nor be mapped
        by another M(arctictern.virt.address_map) task.
    type: str
    required: true
  guest_address:
    description:
      - The address the guest kept from its old site (IPv4). It must not be an address of this host, nor be
        routed by this host as a C(/32) through anything but this module.
    type: str
    required: true
  bridge:
    description:
      - The interface the guest is connected to, usually a Linux bridge; any kind of interface will do. It must
        exist and be up for O(state=present).
    type: str
    required: true
  gateway:
    description:
      - The guest's old default gateway (IPv4). It is added as a C(/32) to the O(bridge) (unless it is there
        already), the host's route to the guest takes it as its source, and it is announced by gratuitous ARP.
      - It must not be an address of this host in any other form.
      - Without it, the guest's default route is left to the guest.
    type: str
  mark:
    description:
      - The firewall mark bits (from 0x1 to 0xffffffff) that tag connections that came in to O(address), in the
        connection mark and in the packet mark of the guest's replies. Only these bits are set, read and
        restored, so other users of marks keep theirs.
    type: int
    default: 0x4154
  rule_priority:
    description:
      - Priority (from 1 to 32765) of the policy rule that sends the guest's replies to connections made to
        O(address) through the main table. It must be lower (tried earlier) than the priority of the rule that
        sends the guest's other packets back through the tunnel (M(arctictern.virt.tunnel) uses 1000).
    type: int
    default: 900
  announce:
    description:
      - Whether to send gratuitous ARP for the O(gateway) and O(address) on each run with O(state=present).
    type: bool
    default: true
  state:
    description:
      - V(present) makes the mapping, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    description: Can run in check mode and return the changed status and the mapping it would make.
    support: full
  diff_mode:
    description: Shows the gateway and new addresses, the route, the rule and the iptables rules before and after.
    support: full
notes:
  - Needs root (CAP_NET_ADMIN) on the host, and IPv4 forwarding turned on there (C(net.ipv4.ip_forward=1), also
    on O(bridge) and on the interface of O(address)); the module fails with a clear message rather than change
    sysctls.
  - A proxy neighbour entry cannot stand for O(address), since the kernel only answers for proxy entries routed
    out of another interface than the one asking, and O(address) lies in the asking interface's own subnet. The
    host therefore holds O(address) as a C(/32), and the DNAT in PREROUTING, before the routing decision, sends
    every connection to it on to the guest.
  - The guest still believes it is on its old subnet, so it reaches hosts of that subnet directly (by ARP) only
    if something answers ARP for them on the O(bridge); the module does not arrange that.
  - Changing O(address) or O(guest_address) makes a new mapping; remove the old one with O(state=absent) and its
    old values.
requirements:
  - pyroute2 and iptables on the host that runs the module
seealso:
  - module: arctictern.virt.tunnel
"""

EXAMPLES = r"""
- name: Reach the guest that moved here from 198.19.1.0/24 at 198.19.2.50 as well
  arctictern.virt.address_map:
    address: 198.19.2.50
    guest_address: 198.19.1.50
    gateway: 198.19.1.1
    bridge: site0

- name: The same with a mark and rule priority that fit this host's other policy routing
  arctictern.virt.address_map:
    address: 198.19.2.50
    guest_address: 198.19.1.50
    gateway: 198.19.1.1
    bridge: site0
    mark: 0x100
    rule_priority: 500

- name: Remove the mapping once the guest has its new address configured
  arctictern.virt.address_map:
    address: 198.19.2.50
    guest_address: 198.19.1.50
    gateway: 198.19.1.1
    bridge: site0
    state: absent
"""

RETURN = r"""
mapping:
  description: The mapping the task made or removed (would make or remove, in check mode), as validated.
  returned: always
  type: dict
  contains:
    address:
      description: The new address.
      type: str
      sample: 198.19.2.50
    guest_address:
      description: The guest's old address.
      type: str
      sample: 198.19.1.50
    bridge:
      description: The interface of the guest.
      type: str
      sample: site0
    gateway:
      description: The guest's old gateway, V(null) when not given.
      type: str
      sample: 198.19.1.1
    mark:
      description: The mark bits.
      type: int
      sample: 16724
    rule_priority:
      description: The priority of the policy rule.
      type: int
      sample: 900
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
announced:
  description:
    - Whether gratuitous ARP was sent. Never in check mode, nor with O(state=absent) or O(announce=false), nor for
      an interface without an Ethernet address.
  returned: always
  type: bool
  sample: true
"""

from ansible_collections.arctictern.virt.plugins.module_utils._address_map import ensure_address_map
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import REQUIRED_LIBS

ARGUMENT_SPEC = dict(
    address=dict(type="str", required=True),
    guest_address=dict(type="str", required=True),
    bridge=dict(type="str", required=True),
    gateway=dict(type="str"),
    mark=dict(type="int", default=0x4154),
    rule_priority=dict(type="int", default=900),
    announce=dict(type="bool", default=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, required_libs=REQUIRED_LIBS, supports_check_mode=True)
    module.run(ensure_address_map)


if __name__ == "__main__":
    main()
