#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts about the host's default routes, like BSD's ``route -n get default``."""

from __future__ import annotations

DOCUMENTATION = r"""
module: route_info
short_description: Facts about the host's IPv4 and IPv6 default routes
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Reads the default route of each address family from the kernel's main routing table over netlink
    (through pyroute2), like BSD's C(route -n get default).
  - For each family, reports the gateway, the outgoing interface, the source address, the MTU, the metric and
    the table of the default route with the lowest metric.
  - A family without a default route is reported as V(null); that is not a failure.
options:
  family:
    description:
      - Which address families to report.
    type: str
    choices: [ipv4, ipv6, both]
    default: both
attributes:
  check_mode:
    description: Only reads; runs the same in check mode.
    support: full
  diff_mode:
    description: Changes nothing, so there is nothing to diff.
    support: N/A
  facts:
    description: Sets C(ansible_facts.arctictern_default_route).
    support: full
notes:
  - Policy routing rules are not followed; only the main table (254) is read.
requirements:
  - pyroute2 on the host that runs the module
"""

EXAMPLES = r"""
- name: Find the default gateway
  arctictern.virt.route_info:
  register: route

- name: Show the IPv4 gateway and the address guests will be NATed to
  ansible.builtin.debug:
    msg: "via {{ route.route_info.ipv4.gateway }} from {{ route.route_info.ipv4.source }}"
  when: route.route_info.ipv4 is not none

- name: Only IPv6, read from the facts
  arctictern.virt.route_info:
    family: ipv6

- name: Fail early on a host without IPv6 uplink
  ansible.builtin.assert:
    that: ansible_facts.arctictern_default_route.ipv6 is not none
"""

RETURN = r"""
route_info:
  description:
    - The default route of each requested family; V(null) for a family without one. Families not requested
      are left out.
  returned: always
  type: dict
  contains:
    ipv4:
      description: The IPv4 default route.
      returned: when O(family) is V(ipv4) or V(both)
      type: dict
      contains:
        gateway:
          description: Address of the next hop; V(null) for a route straight out of the interface (for example PPP).
          type: str
          sample: 192.0.2.1
        interface:
          description: Name of the outgoing interface.
          type: str
          sample: br0
        source:
          description:
            - Preferred source address of the route, else the first global IPv4 address of the interface;
              V(null) when the interface has none.
          type: str
          sample: 192.0.2.10
        mtu:
          description: MTU of the route when it sets one, else the MTU of the interface.
          type: int
          sample: 1500
        metric:
          description: Metric (priority) of the route.
          type: int
          sample: 100
        table:
          description: Routing table of the route.
          type: int
          sample: 254
    ipv6:
      description: The IPv6 default route.
      returned: when O(family) is V(ipv6) or V(both)
      type: dict
      contains:
        gateway:
          description: Address of the next hop; V(null) for a route straight out of the interface (for example PPP).
          type: str
          sample: "fe80::1"
        interface:
          description: Name of the outgoing interface.
          type: str
          sample: br0
        source:
          description:
            - Preferred source address of the route, else the first global IPv6 address of the interface;
              V(null) when the interface has none.
          type: str
          sample: "2001:db8::10"
        mtu:
          description: MTU of the route when it sets one, else the MTU of the interface.
          type: int
          sample: 1500
        metric:
          description: Metric (priority) of the route.
          type: int
          sample: 1024
        table:
          description: Routing table of the route.
          type: int
          sample: 254
ansible_facts:
  description: The same data as RV(route_info), as a fact.
  returned: always
  type: dict
  contains:
    arctictern_default_route:
      description: Same as RV(route_info).
      type: dict
      sample: {ipv4: {gateway: 192.0.2.1, interface: br0, source: 192.0.2.10, mtu: 1500, metric: 100, table: 254}, ipv6: null}
"""

from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import REQUIRED_LIBS
from ansible_collections.arctictern.virt.plugins.module_utils._route_info import default_route_facts

ARGUMENT_SPEC = dict(
    family=dict(type="str", default="both", choices=["ipv4", "ipv6", "both"]),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, required_libs=REQUIRED_LIBS, supports_check_mode=True)
    module.run(default_route_facts)


if __name__ == "__main__":
    main()
