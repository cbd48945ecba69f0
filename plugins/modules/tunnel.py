#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create or remove an IP tunnel to another site, with the routes into it and the policy rules for replies."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tunnel
short_description: An IP tunnel to another site, with routes into it and policy rules that send replies back
version_added: 0.2.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Creates a tunnel interface to a host at another site (VXLAN, GRE, IPIP, or GRE and IP-in-IPv6 over an IPv6
    underlay), gives it inner addresses, routes the O(routes) through it and adds policy rules that send packets
    from the O(reply_from) addresses back through it. This is what keeps the clients of a guest that moved to
    another site with its old address; the old site sends the guest's traffic through the tunnel, the new site
    sends the replies back the same way rather than out of its own uplink with a foreign source address.
  - Keeps what leaves into the tunnel from being NATed and clamps the MSS of TCP connections through it, with
    iptables rules in chains of its own (see O(mss_clamp)).
  - With O(state=absent), removes the interface, its routes, the policy rules and the reply table's routes it made
    and its iptables chains.
  - Talks netlink directly (through pyroute2) and runs C(iptables) and C(ip6tables); nothing is written to the
    distribution's network configuration, so the tunnel does not survive a reboot.
  - An existing tunnel with another O(kind), O(vni), O(key), O(local), O(remote), O(port) or O(underlay) is deleted
    and created anew (RV(recreated)); its MTU, addresses, routes, rules and iptables rules are changed in place.
  - The routes the module makes carry the routing protocol number 171 (C(ip route show proto 171)), its policy
    rules too (C(ip rule show protocol 171)); that is how it finds them again. Routes and rules it did not make are
    left alone; routes and rules it made that are no longer listed are removed.
options:
  name:
    description:
      - Name of the tunnel interface, at most 15 bytes of letters, digits, V(.), V(-) and V(_), starting with a
        letter or digit (it is used in iptables rules, where V(+) is a wildcard).
      - The kernel's own fallback devices (V(gre0), V(tunl0), V(ip6tnl0), ...) are refused.
    type: str
    required: true
  state:
    description:
      - V(present) creates the tunnel (or brings it to the options), V(absent) removes it with its routes, rules
        and iptables chains.
    type: str
    choices: [present, absent]
    default: present
  kind:
    description:
      - V(vxlan) carries Ethernet frames in UDP, over IPv4 or IPv6 (as O(local) and O(remote) are); the next hop
        through it must answer ARP or NDP, so routes and replies through it need a O(peer).
      - V(gre) and V(ipip) carry IP packets over IPv4; V(ip6gre) and V(ip6tnl) over IPv6 (V(ip6tnl) carries IPv4
        and IPv6 inside, and neither adds the encapsulation limit option). Routes through them need no O(peer).
      - A kernel without the kind fails naming O(kind).
    type: str
    choices: [vxlan, gre, ipip, ip6gre, ip6tnl]
    default: vxlan
  local:
    description:
      - This host's underlay address, the source of the encapsulated packets. It must be an address of this host.
      - IPv4 for V(gre) and V(ipip), IPv6 for V(ip6gre) and V(ip6tnl), either for V(vxlan).
      - Required with O(state=present).
    type: str
  remote:
    description:
      - The far end's underlay address, of the same IP version as O(local). There must be a route to it.
      - Required with O(state=present).
    type: str
  vni:
    description:
      - VXLAN network identifier, from 1 to 16777215; the same at both ends.
      - Required with O(kind=vxlan); ignored by other kinds.
    type: int
  key:
    description:
      - GRE key, from 0 to 4294967295, the same at both ends; adds 4 bytes to the encapsulation.
      - Only for O(kind=gre) and O(kind=ip6gre); ignored by other kinds. Without it the GRE header has no key.
    type: int
  port:
    description:
      - UDP destination port of V(vxlan); ignored by other kinds.
    type: int
    default: 4789
  underlay:
    description:
      - The interface the encapsulated packets leave through; the tunnel is bound to it.
      - When not set, the interface of the route to O(remote). Either way the module fails naming O(remote) when
        there is no route to it (through the O(underlay) when set).
    type: str
  mtu:
    description:
      - MTU of the tunnel interface. When not set, the MTU of the O(underlay) less what the encapsulation adds
        (V(vxlan) 50 bytes over IPv4, 70 over IPv6; V(gre) 24; V(ipip) 20; V(ip6gre) 44; V(ip6tnl) 40; a GRE
        O(key) 4 more), so that an encapsulated packet fits the underlay. Set, it must not exceed that.
      - At least 68, or 1280 when O(address), O(routes) or O(reply_from) hold IPv6.
    type: int
  address:
    description:
      - Inner addresses of the tunnel interface, as address/prefix (V(198.19.255.1/30)). Other addresses of the
        interface are removed, except the IPv6 link-local ones the kernel gives it.
    type: list
    elements: str
  peer:
    description:
      - The far end's inner address, the next hop of the O(routes) and of the reply routes of its IP version. It
        must be inside the subnet of one of the O(address)es.
      - Required with O(kind=vxlan) when O(routes) or O(reply_from) are set (for each IP version they hold). For
        the other kinds routes go out of the tunnel interface without a next hop when it is not set.
    type: str
  routes:
    description:
      - Destinations, as address/prefix or a bare address (one host), routed through the tunnel in O(route_table).
      - A route to the same destination in that table that the module did not make is an error, and so is a
        destination that holds O(remote).
    type: list
    elements: str
  route_table:
    description:
      - Routing table of the O(routes), from 1 to 4294967295 but not 253 or 255; 254 is the main table.
    type: int
    default: 254
  reply_from:
    description:
      - Source addresses (or address/prefix networks) whose packets go back through the tunnel, whatever their
        destination. Each gets a policy rule C(from <address> lookup <reply_table> priority <rule_priority>), and
        O(reply_table) a default route through the tunnel (via O(peer) when given) for each IP version among them.
    type: list
    elements: str
  reply_table:
    description:
      - Routing table of the reply routes, from 1 to 4294967295 but not 253, 254 (main) or 255. Each tunnel with
        O(reply_from) needs a table of its own.
    type: int
    default: 100
  rule_priority:
    description:
      - Priority of the O(reply_from) rules, from 1 to 32765; rules with a lower number are looked at first (a
        rule that must win over them, such as C(from <address> fwmark <mark> lookup main), needs a lower one).
    type: int
    default: 1000
  mss_clamp:
    description:
      - Whether TCP connections forwarded into the tunnel announce a maximum segment size that fits its MTU, so that
        large transfers do not depend on path MTU discovery (whose ICMP messages firewalls often drop).
      - The rule is C(-o <name> -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu) in a mangle chain
        C(ATV_TUN_<hash of name>) jumped to from the first rule of C(FORWARD), for IPv4 and IPv6.
      - Independent of it, the module always puts C(-o <name> -m conntrack --ctstate NEW,RELATED -j ACCEPT) in a nat
        chain C(ATV_TUN_<hash of name>) jumped to from the first rule of C(POSTROUTING), for IPv4 and IPv6, so that
        no SNAT or MASQUERADE rule after it rewrites what leaves into the tunnel. Its state match makes the kernel
        track connections on this host (it does so only once a rule needs it), which M(arctictern.virt.connections)
        counts.
    type: bool
    default: true
  verify:
    description:
      - After the change, send ICMP echo requests out of the tunnel to O(peer) and fail, naming O(remote), unless the
        far end answers within O(verify_timeout) seconds. Use it on the second end brought up, when both exist.
      - Not in check mode.
    type: bool
    default: false
  verify_timeout:
    description: Seconds O(verify) waits for an answer.
    type: float
    default: 5.0
  wait_for_departure:
    description:
      - Name of a libvirt guest that is being migrated away from this host. Before changing anything the module
        waits until the guest no longer runs here or is paused for the switch-over of its migration, so that
        O(routes) into the tunnel take over the moment it leaves (what reaches the destination before the guest
        resumes there waits in its network device). Run it as an async task next to the migration (see the role
        C(arctictern.virt.wan_migration)).
      - Fails, naming this option and changing nothing, when the guest is still here after O(departure_timeout)
        seconds or when no migration job of it has run for 60 seconds (its migration failed or never started).
      - Not in check mode. Needs libvirt-python.
    type: str
  departure_uri:
    description: libvirt URI of this host, for O(wait_for_departure).
    type: str
    default: qemu:///system
  departure_timeout:
    description: Seconds O(wait_for_departure) waits at the most.
    type: float
    default: 600.0
attributes:
  check_mode:
    description: Can run in check mode and return the changed status and the tunnel it would produce.
    support: full
  diff_mode:
    description: Shows the tunnel (interface, addresses, routes, reply rules, iptables rules) before and after.
    support: full
notes:
  - Needs root (CAP_NET_ADMIN) on the managed host, and the kernel's support for the O(kind).
  - Forwarding (C(net.ipv4.ip_forward), C(net.ipv6.conf.all.forwarding)) is not changed; a host that routes clients
    into the tunnel needs it on.
  - Both ends need the module, with O(local) and O(remote) swapped.
requirements:
  - pyroute2 on the host that runs the module
  - iptables and ip6tables (nf_tables or legacy) with the TCPMSS target on the host that runs the module
seealso:
  - module: arctictern.virt.route_info
"""

EXAMPLES = r"""
- name: On the old site, send the moved guest's address through a VXLAN tunnel to the new site
  arctictern.virt.tunnel:
    name: wanmig0
    local: 198.19.0.2
    remote: 198.19.0.6
    vni: 4242
    address: [169.254.86.1/30]
    peer: 169.254.86.2
    routes: [198.19.1.50/32]

- name: On the new site, send the guest's replies back through the tunnel
  arctictern.virt.tunnel:
    name: wanmig0
    local: 198.19.0.6
    remote: 198.19.0.2
    vni: 4242
    address: [169.254.86.2/30]
    peer: 169.254.86.1
    reply_from: [198.19.1.50]
    reply_table: 100

- name: A GRE tunnel with a key, routing a subnet without a next hop
  arctictern.virt.tunnel:
    name: gre-siteb
    kind: gre
    local: 192.0.2.1
    remote: 203.0.113.9
    key: 17
    address: [10.255.0.1/30]
    routes: [10.20.0.0/16]

- name: Remove the tunnel once the old connections drained
  arctictern.virt.tunnel:
    name: wanmig0
    state: absent
"""

RETURN = r"""
tunnel:
  description: The tunnel after the task (as it would be, in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the tunnel interface.
      type: str
      sample: wanmig0
    state:
      description: V(present) or V(absent); the other keys are only there when V(present).
      type: str
      sample: present
    kind:
      description: Kind of the tunnel.
      type: str
      sample: vxlan
    local:
      description: Local underlay address.
      type: str
      sample: 198.19.0.2
    remote:
      description: Remote underlay address.
      type: str
      sample: 198.19.0.6
    vni:
      description: VXLAN network identifier; V(null) for other kinds.
      type: int
      sample: 4242
    key:
      description: GRE key; V(null) without one and for kinds other than V(gre) and V(ip6gre).
      type: int
      sample: null
    port:
      description: VXLAN UDP destination port; V(null) for other kinds.
      type: int
      sample: 4789
    underlay:
      description: The interface the tunnel is bound to.
      type: str
      sample: eth0
    mtu:
      description: MTU of the tunnel interface.
      type: int
      sample: 1450
    up:
      description: Whether the interface is administratively up.
      type: bool
      sample: true
    addresses:
      description: Inner addresses as address/prefix, IPv4 first (without the kernel's own IPv6 link-local ones).
      type: list
      elements: str
      sample: [169.254.86.1/30]
    peer:
      description: Next hop of the routes through the tunnel, or V(null).
      type: str
      sample: 169.254.86.2
    routes:
      description: Destinations the module routes through the tunnel, as networks, IPv4 first.
      type: list
      elements: str
      sample: [198.19.1.50/32]
    route_table:
      description: Routing table of the routes.
      type: int
      sample: 254
    reply_from:
      description: Sources whose packets go back through the tunnel, as networks, IPv4 first.
      type: list
      elements: str
      sample: [198.19.1.50/32]
    reply_table:
      description: Routing table of the reply routes, which the reply rules look up.
      type: int
      sample: 100
    rule_priority:
      description: Priority of the reply rules.
      type: int
      sample: 1000
    mss_clamp:
      description: Whether the MSS clamp rules are in place (IPv4 and IPv6).
      type: bool
      sample: true
    nat_exempt:
      description: Whether the rules that keep traffic into the tunnel from being NATed are in place (IPv4 and IPv6).
      type: bool
      sample: true
recreated:
  description:
    - Whether the tunnel interface was (or, in check mode, would be) deleted and created anew because its kind,
      VNI, key, local or remote address, port or underlay differed.
  returned: always
  type: bool
  sample: false
"""

from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import REQUIRED_LIBS
from ansible_collections.arctictern.virt.plugins.module_utils._tunnel import ensure_tunnel

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    kind=dict(type="str", default="vxlan", choices=["vxlan", "gre", "ipip", "ip6gre", "ip6tnl"]),
    local=dict(type="str"),
    remote=dict(type="str"),
    vni=dict(type="int"),
    key=dict(type="int", no_log=False),
    port=dict(type="int", default=4789),
    underlay=dict(type="str"),
    mtu=dict(type="int"),
    address=dict(type="list", elements="str"),
    peer=dict(type="str"),
    routes=dict(type="list", elements="str"),
    route_table=dict(type="int", default=254),
    reply_from=dict(type="list", elements="str"),
    reply_table=dict(type="int", default=100),
    rule_priority=dict(type="int", default=1000),
    mss_clamp=dict(type="bool", default=True),
    verify=dict(type="bool", default=False),
    verify_timeout=dict(type="float", default=5.0),
    wait_for_departure=dict(type="str"),
    departure_uri=dict(type="str", default="qemu:///system"),
    departure_timeout=dict(type="float", default=600.0),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, required_libs=REQUIRED_LIBS, supports_check_mode=True,
                              required_if=[("state", "present", ("local", "remote"))])
    module.run(ensure_tunnel)


if __name__ == "__main__":
    main()
