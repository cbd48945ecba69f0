#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: network
short_description: Manage libvirt virtual networks (NAT, isolated or on a host bridge) and their port forwards
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Defines, starts, stops and removes a libvirt virtual network.
  - A V(nat) network is a bridge that libvirt creates, with the host's address on it, DHCP and DNS for the
    guests and NAT to the outside. An V(isolated) network is the same without the way out. A V(bridge)
    network puts guests on an existing host bridge (see M(arctictern.virt.host_bridge)).
  - The module edits the network's definition, it never writes a new one. It changes only what its options
    model (the forward mode, the bridge name, the first IPv4 address with its DHCP range and static leases, the
    DNS domain and the MTU) and only where the definition differs from them. Everything else is kept as libvirt
    has it, for example IPv6 addresses, further IPv4 addresses, DNS hosts, SRV and TXT records and forwarders,
    static routes, bandwidth limits, port groups, NAT address and port ranges, the bridge's other settings and
    metadata; so are libvirt's UUID, the bridge's MAC address and a bridge name libvirt chose.
  - An option left out keeps what is defined, also when O(mode) is given. Each option has a value that removes
    what it models, given with that option.
  - libvirt applies most changes to a running network only when it restarts. The module then returns
    RV(restart_needed=true), or restarts the network with O(restart=true).
  - O(port_forwards) publishes guest ports of a V(nat) network on the host, with iptables rules
    (libvirt has none of its own).
options:
  name:
    description:
      - Name of the network.
    type: str
    required: true
  state:
    description:
      - V(present) defines the network and leaves it running or stopped as it is.
      - V(active) defines and starts it.
      - V(inactive) defines it and stops it.
      - V(absent) stops and undefines it, and removes its port forwards.
    type: str
    choices: [present, active, inactive, absent]
    default: active
  mode:
    description:
      - How the network reaches the outside. Required to define a network that does not exist. For an existing
        network it changes the forward mode when given, and keeps it when left out.
      - V(nat) routes the guests to the outside behind the host's addresses. Needs an address (O(address), or
        the one defined).
      - V(isolated) connects the guests with each other and the host only; the network has no C(<forward>).
        Changing a V(nat) network to V(isolated) removes its C(<forward>) element with what it holds (NAT ranges,
        a forward device), which is what the mode means.
      - V(bridge) connects the guests to the existing host bridge O(bridge); libvirt neither addresses nor
        serves it, so O(address), O(dhcp), O(static_leases), O(domain), O(mtu) and O(port_forwards) are not
        possible. Moving a network onto a host bridge removes what libvirt refuses in that mode (its addresses
        with DHCP, static routes, DNS, domain, MTU, MAC address, and the bridge's STP and delay settings); moving
        it off one drops the host bridge's name, so that libvirt names the bridge it creates unless O(bridge)
        is given.
      - A network in a mode the module does not model (V(route), V(open), V(private), ...) keeps its mode when
        O(mode) is left out, and its modelled parts are edited in place as for V(nat) (for V(route) and V(open))
        or as for V(bridge) (for the modes without a bridge of libvirt's own, where also O(bridge) is refused).
    type: str
    choices: [nat, bridge, isolated]
  bridge:
    description:
      - Name of the bridge. For V(nat) and V(isolated), the bridge libvirt creates; without it libvirt picks
        a free C(virbrN) name, which later runs keep.
      - For O(mode=bridge), the existing host bridge; required to move a network onto a host bridge.
      - It cannot be removed, since a network always has a bridge; its other settings (STP, delay, MAC table
        manager) are kept.
    type: str
  address:
    description:
      - The host's IPv4 address on the network with the prefix length of the subnet, for example
        V(198.18.100.1/24). The guests' addresses come from this subnet.
      - This is the first IPv4 C(<ip>) of the definition, whose address and prefix length change in place
        (written as a netmask or as a prefix, as the definition has it). Further addresses are kept.
      - Needed for O(mode=nat); optional for O(mode=isolated), which is then a bare bridge.
      - V("") removes the address, with its DHCP range and static leases (not possible for O(mode=nat)).
      - A new address must still hold the DHCP range and the leases that are kept; give O(dhcp) and
        O(static_leases) along with it otherwise.
    type: str
  dhcp:
    description:
      - The range of addresses libvirt's DHCP server hands out, the first C(<range>) of the address of
        O(address). Its other settings (a C(<lease>) time) and further ranges are kept.
      - An empty dict, V({}), removes the DHCP ranges (O(static_leases) are still served). Left out, the defined
        range is kept.
      - O(dhcp.start) and O(dhcp.end) are given together, or both left out to remove the ranges.
    type: dict
    suboptions:
      start:
        description:
          - First address of the range, inside the subnet of O(address).
        type: str
      end:
        description:
          - Last address of the range, inside the subnet of O(address) and not before O(dhcp.start).
        type: str
  static_leases:
    description:
      - Fixed DHCP leases (the C(<host>) elements with an IP address of the address of O(address)). Each MAC
        address, IP address and name can appear once.
      - The list is exact. Leases of that address that are not listed are removed, and V([]) removes them all.
        A lease that was defined with the same MAC address (else IP address) keeps what the module does not
        model, such as its C(<lease>) time. Left out, the defined leases are kept.
    type: list
    elements: dict
    suboptions:
      mac:
        description:
          - MAC address of the guest's interface.
        type: str
        required: true
      ip:
        description:
          - The address the guest always gets, inside the subnet of O(address).
        type: str
        required: true
      name:
        description:
          - Host name served for the guest by the network's DNS.
        type: str
  port_forwards:
    description:
      - Ports of the host forwarded to guests, for O(mode=nat) only.
      - The list is exact. Forwards of this network that are not listed are removed, and V([]) removes all.
        When O(port_forwards) is left out, the forwards are left as they are.
      - Forwards are iptables rules in chains of the network's own (C(ATV_DNAT_*) in the nat table,
        C(ATV_FWD_*) in the filter table). They are in place while the network is active and removed when it
        is stopped or removed. They are not kept across reboots of the host, and a restart of the network
        outside Ansible puts libvirt's rules ahead of them, so run the task again then.
      - The rules are programmed on the host that runs the module, as root, so O(uri) must be the local
        daemon.
      - Connections to 127.0.0.1 are not forwarded; use one of the host's other addresses.
    type: list
    elements: dict
    suboptions:
      proto:
        description:
          - Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      host_port:
        description:
          - Port on the host.
        type: int
        required: true
      guest_ip:
        description:
          - Address of the guest, inside the subnet of O(address); usually one of O(static_leases).
        type: str
        required: true
      guest_port:
        description:
          - Port on the guest. Defaults to O(port_forwards[].host_port).
        type: int
      host_address:
        description:
          - Forward only connections to this IPv4 address of the host. Without it, connections to any
            address of the host are forwarded.
        type: str
  domain:
    description:
      - DNS domain of the network; the guests' names are served in it. Other settings of the defined
        C(<domain>) (C(localOnly), C(register)) are kept.
      - V("") removes the domain. Left out, the defined domain is kept.
    type: str
  mtu:
    description:
      - MTU of the network's bridge.
      - V(0) removes it, so that libvirt's default applies. Left out, the defined MTU is kept.
    type: int
  autostart:
    description:
      - Whether libvirt starts the network when its daemon starts. Left as it is when not given.
    type: bool
  restart:
    description:
      - Restart an active network whose running configuration differs from its definition, so that a change
        takes effect.
      - Guests on the network lose their connection to it until their interfaces are reattached (for example
        by restarting them), which libvirt does not do by itself.
    type: bool
    default: false
extends_documentation_fragment:
  - arctictern.virt.libvirt
attributes:
  check_mode:
    support: full
    description: Reports what would change without changing the network or the iptables rules.
  diff_mode:
    support: full
    description:
      - Two entries. The network's definition as libvirt XML before and after, both indented the same way, so
        that only the lines the task changes differ; then the run state (active, autostart, port forwards).
notes:
  - Parts of a definition that the module does not model (IPv6 addresses, DNS records, routes, port groups,
    bandwidth, metadata, ...) are kept whatever the module changes, except where a change of O(mode) makes
    libvirt refuse them (see O(mode)).
seealso:
  - module: arctictern.virt.guest
  - module: arctictern.virt.host_bridge
"""

EXAMPLES = r"""
- name: A NAT network with DHCP, a fixed lease and a published SSH port
  arctictern.virt.network:
    name: lab
    mode: nat
    address: 198.18.100.1/24
    dhcp:
      start: 198.18.100.100
      end: 198.18.100.199
    static_leases:
      - mac: "52:54:00:00:64:0a"
        ip: 198.18.100.10
        name: web1
    domain: lab.example
    port_forwards:
      - host_port: 2210
        guest_ip: 198.18.100.10
        guest_port: 22
      - proto: udp
        host_port: 5353
        guest_ip: 198.18.100.10
        guest_port: 53
        host_address: 192.0.2.10
    autostart: true

- name: An isolated network for storage traffic, restarted when its definition changed
  arctictern.virt.network:
    name: storage
    mode: isolated
    bridge: virbr-stor
    address: 198.18.200.1/24
    mtu: 9000
    restart: true

- name: Guests straight on the host bridge br0
  arctictern.virt.network:
    name: lan
    mode: bridge
    bridge: br0
    state: present
    autostart: true

- name: Stop the lab network, keeping its definition (its port forwards go)
  arctictern.virt.network:
    name: lab
    state: inactive

- name: Remove the network on a remote hypervisor
  arctictern.virt.network:
    uri: qemu+ssh://root@hv2.example.com/system
    name: storage
    state: absent
"""

RETURN = r"""
network:
  description:
    - The network after the task (what it would be, in check mode). Empty when O(state=absent).
  returned: success
  type: dict
  contains:
    name:
      description: Name of the network.
      type: str
      sample: lab
    uuid:
      description: libvirt's UUID of the network; null in check mode before it is defined.
      type: str
      sample: 0a7ec05c-5c36-4f53-8e7a-1f2b25f1a3c9
    mode:
      description: V(nat), V(isolated), V(bridge), or the mode libvirt names for another kind of network.
      type: str
      sample: nat
    bridge:
      description: Name of the bridge.
      type: str
      sample: virbr1
    mac:
      description: MAC address of a bridge libvirt creates.
      type: str
      sample: "52:54:00:3c:1a:07"
    address:
      description: The host's address on the network, with prefix length.
      type: str
      sample: 198.18.100.1/24
    dhcp:
      description: The DHCP range, or null.
      type: dict
      sample: {start: 198.18.100.100, end: 198.18.100.199}
    static_leases:
      description: The fixed DHCP leases, ordered by IP address, each with C(mac), C(ip) and C(name).
      type: list
      elements: dict
      sample: [{mac: "52:54:00:00:64:0a", ip: 198.18.100.10, name: web1}]
    domain:
      description: DNS domain, or null.
      type: str
      sample: lab.example
    mtu:
      description: MTU of the bridge, or null for libvirt's default.
      type: int
      sample: 9000
    active:
      description: Whether the network is running.
      type: bool
      sample: true
    autostart:
      description: Whether libvirt starts it with the daemon.
      type: bool
      sample: true
    port_forwards:
      description:
        - The port forwards in place, each with C(proto), C(host_port), C(guest_ip), C(guest_port) and
          C(host_address). Empty where they are not managed from this host.
      type: list
      elements: dict
      sample: [{proto: tcp, host_port: 2210, guest_ip: 198.18.100.10, guest_port: 22, host_address: null}]
changes:
  description: Options whose value in the network's definition changed (or would change, in check mode).
  returned: success
  type: list
  elements: str
  sample: [dhcp, static_leases]
xml:
  description: The libvirt XML definition of the network (what it would be, in check mode).
  returned: when O(state) is not V(absent)
  type: str
  sample: "<network>\n  <name>lab</name>\n  ...\n</network>"
restart_needed:
  description: Whether the network is running with a configuration other than its definition.
  returned: success
  type: bool
  sample: false
firewall_commands:
  description: The iptables commands run (or that would run, in check mode) for the port forwards.
  returned: success
  type: list
  elements: list
  sample: [["/usr/sbin/iptables", "-w", "-t", "nat", "-N", "ATV_DNAT_5d41402abc4b"]]
"""

from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import REQUIRED_LIBS
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule
from ansible_collections.arctictern.virt.plugins.module_utils._network import MODES
from ansible_collections.arctictern.virt.plugins.module_utils._network_task import run

LEASE_OPTIONS = dict(mac=dict(type="str", required=True), ip=dict(type="str", required=True), name=dict(type="str"))
FORWARD_OPTIONS = dict(
    proto=dict(type="str", choices=["tcp", "udp"], default="tcp"),
    host_port=dict(type="int", required=True),
    guest_ip=dict(type="str", required=True),
    guest_port=dict(type="int"),
    host_address=dict(type="str"),
)
ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "active", "inactive", "absent"], default="active"),
    mode=dict(type="str", choices=list(MODES)),
    bridge=dict(type="str"),
    address=dict(type="str"),
    # start and end are both given or both left out (dhcp: {} removes the range); _network checks it, naming dhcp.
    dhcp=dict(type="dict", options=dict(start=dict(type="str"), end=dict(type="str"))),
    static_leases=dict(type="list", elements="dict", options=LEASE_OPTIONS),
    port_forwards=dict(type="list", elements="dict", options=FORWARD_OPTIONS),
    domain=dict(type="str"),
    mtu=dict(type="int"),
    autostart=dict(type="bool"),
    restart=dict(type="bool", default=False),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, required_libs=REQUIRED_LIBS, supports_check_mode=True)
    module.run(run)


if __name__ == "__main__":
    main()
