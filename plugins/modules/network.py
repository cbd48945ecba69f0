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
  - When O(mode) is given, the options describe the whole definition; options left out are left out of it.
    libvirt's UUID, the bridge's MAC address and a bridge name libvirt chose are kept.
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
      - How the network reaches the outside. Required to define a network that does not exist, and to change
        a definition. Without it the definition of an existing network is left as it is and only its state,
        autostart and port forwards are managed; O(bridge), O(address), O(dhcp), O(static_leases),
        O(domain) and O(mtu) then cannot be given.
      - V(nat) routes the guests to the outside behind the host's addresses. Needs O(address).
      - V(isolated) connects the guests with each other and the host only.
      - V(bridge) connects the guests to the existing host bridge O(bridge); libvirt neither addresses nor
        serves it, so O(address), O(dhcp), O(static_leases), O(domain), O(mtu) and O(port_forwards) are not
        possible.
    type: str
    choices: [nat, bridge, isolated]
  bridge:
    description:
      - Name of the bridge. For V(nat) and V(isolated), the bridge libvirt creates; without it libvirt picks
        a free C(virbrN) name, which later runs keep.
      - For O(mode=bridge), the existing host bridge; required there.
    type: str
  address:
    description:
      - The host's IPv4 address on the network with the prefix length of the subnet, for example
        V(198.18.100.1/24). The guests' addresses come from this subnet.
      - Required for O(mode=nat); optional for O(mode=isolated), which is then a bare bridge.
    type: str
  dhcp:
    description:
      - The range of addresses libvirt's DHCP server hands out. Without it there is no DHCP range
        (O(static_leases) are still served).
    type: dict
    suboptions:
      start:
        description:
          - First address of the range, inside the subnet of O(address).
        type: str
        required: true
      end:
        description:
          - Last address of the range, inside the subnet of O(address) and not before O(dhcp.start).
        type: str
        required: true
  static_leases:
    description:
      - Fixed DHCP leases. Each MAC address, IP address and name can appear once.
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
        When O(mode) and O(port_forwards) are both left out, the forwards are left as they are.
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
      - DNS domain of the network; the guests' names are served in it.
    type: str
  mtu:
    description:
      - MTU of the network's bridge.
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
    description: Shows the network (definition, state, autostart and port forwards) before and after.
notes:
  - Parts of a definition that the module does not model (IPv6 addresses, DNS records, routes, port groups)
    are kept as long as the modelled parts are unchanged, and dropped when the module writes a new definition.
  - Networks of other modes (route, open, ...) can be started, stopped, removed and described, but only
    redefined as V(nat), V(isolated) or V(bridge).
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

import os
from urllib.parse import urlsplit

from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption
from ansible_collections.arctictern.virt.plugins.module_utils._firewall import Iptables, current_forwards, plan
from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import REQUIRED_LIBS, call, connection, lookup_network
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule
from ansible_collections.arctictern.virt.plugins.module_utils._network import (
    XML_INACTIVE, describe, render_xml, spec_from_options, spec_from_xml,
)

LOCAL_HOSTS = (None, "", "localhost", "127.0.0.1", "::1")


def _iptables(module, forwards):
    """Iptables of this host, or None where forwards cannot be managed from here (and none are asked for)."""
    uri = module.params["uri"]
    binary = None
    if urlsplit(uri).hostname not in LOCAL_HOSTS:
        why = "the rules are made on the host that runs the module, and uri %s is another host" % uri
    elif os.geteuid() != 0:
        why = "changing iptables rules needs root (become: true)"
    else:
        binary = module.get_bin_path("iptables")
        why = "iptables is not installed on the host that runs the module"
    if binary:
        return Iptables(binary, module.run_command)
    if forwards:
        raise InvalidOption("port_forwards", why)
    return None


class NetworkTask:
    """One run of the module against one network: reads first, validates, then changes (unless check mode)."""

    def __init__(self, module, conn):
        self.module = module
        self.params = module.params
        self.conn = conn
        self.name = module.params["name"]
        self.changed = False

    def change(self, what, obj, method, *args):
        """Count a change; make it (``obj.method(*args)``) outside check mode, where ``obj`` may not exist yet."""
        self.changed = True
        if self.module.check_mode:
            return None
        return call("%s network '%s'" % (what, self.name), getattr(obj, method), *args)

    def read(self, what, func, *args):
        return call("%s network '%s'" % (what, self.name), func, *args)

    def run(self):
        state = self.params["state"]
        net = lookup_network(self.conn, self.name)
        current = spec_from_xml(self.read("reading", net.XMLDesc, XML_INACTIVE)) if net else None
        spec = None if state == "absent" else spec_from_options(self.params, current)
        if state != "absent" and spec is None:
            raise InvalidOption("mode", "needed to define network '%s', which does not exist" % self.name)
        iptables = _iptables(self.module, spec and spec.port_forwards)
        # Everything is read and validated above; changes start below.
        tables = iptables.tables() if iptables else {}
        was_active = bool(net) and bool(self.read("reading state of", net.isActive))
        autostart = bool(net) and bool(self.read("reading autostart of", net.autostart))
        before = describe(current, was_active, autostart, current_forwards(tables, self.name)) if net else {}
        if state == "absent":
            result = self.remove(net, was_active, iptables, tables)
        else:
            result = self.ensure(net, current, spec, was_active, autostart, iptables, tables)
        result["changed"] = self.changed
        if self.module._diff:
            result["diff"] = dict(before=before, after=result["network"])
        return result

    def remove(self, net, was_active, iptables, tables):
        # Asked first: a transient network is gone once stopped.
        persistent = bool(net) and self.read("reading persistence of", net.isPersistent)
        if was_active:
            self.change("stopping", net, "destroy")
        if persistent:
            self.change("undefining", net, "undefine")
        commands = self.forwards(iptables, tables, ())
        return dict(network={}, restart_needed=False, firewall_commands=commands)

    def ensure(self, net, current, spec, was_active, autostart, iptables, tables):
        state = self.params["state"]
        persistent = bool(net) and bool(self.read("reading persistence of", net.isPersistent))
        xml = None
        if self.params["mode"] is not None:
            if not persistent or spec != current:
                xml = render_xml(spec)
        elif not persistent:
            xml = self.read("reading", net.XMLDesc, 0)  # keep a transient network as it runs
        if xml is not None:
            net = self.change("defining", self.conn, "networkDefineXML", xml) or net

        wanted_autostart = self.params["autostart"]
        if wanted_autostart is not None and wanted_autostart != autostart:
            self.change("setting autostart of", net, "setAutostart", int(wanted_autostart))
            autostart = wanted_autostart

        stale = was_active and spec_from_xml(self.read("reading", net.XMLDesc, 0)) != spec
        started = restart_needed = False
        if state == "active" and not was_active:
            started = True
            self.change("starting", net, "create")
        elif state == "inactive" and was_active:
            self.change("stopping", net, "destroy")
        elif stale and self.params["restart"]:
            started = True
            self.change("stopping", net, "destroy")
            self.change("starting", net, "create")
        else:
            restart_needed = stale
        active = state == "active" or (state == "present" and was_active)

        if iptables and started and not self.module.check_mode:
            tables = iptables.tables()  # starting the network put libvirt's jumps on top of FORWARD
        if not active or spec.mode != "nat":
            wanted = ()
        elif spec.port_forwards is None:
            wanted = current_forwards(tables, self.name)
        else:
            wanted = spec.port_forwards
        commands = self.forwards(iptables, tables, wanted)

        if self.module.check_mode or xml is None:
            xml = xml or self.read("reading", net.XMLDesc, XML_INACTIVE)
            final = spec
        else:
            xml = self.read("reading", net.XMLDesc, XML_INACTIVE)
            final = spec_from_xml(xml)  # with what libvirt filled in: UUID, bridge name, MAC
        network = describe(final, active, autostart, wanted if iptables else ())
        return dict(network=network, xml=xml, restart_needed=restart_needed, firewall_commands=commands)

    def forwards(self, iptables, tables, wanted):
        """Bring the network's iptables rules to ``wanted``; the argv lists run (or to run, in check mode)."""
        if not iptables:
            return []
        commands = plan(tables, self.name, wanted)
        if commands:
            self.changed = True
            if not self.module.check_mode:
                iptables.apply(commands)
        return [iptables.argv(command) for command in commands]


def handler(module):
    with connection(module.params["uri"], module.params["connect_timeout"]) as conn:
        return NetworkTask(module, conn).run()


def main():
    lease = dict(mac=dict(type="str", required=True), ip=dict(type="str", required=True), name=dict(type="str"))
    forward = dict(
        proto=dict(type="str", choices=["tcp", "udp"], default="tcp"),
        host_port=dict(type="int", required=True),
        guest_ip=dict(type="str", required=True),
        guest_port=dict(type="int"),
        host_address=dict(type="str"),
    )
    module = ArcticternModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "active", "inactive", "absent"], default="active"),
            mode=dict(type="str", choices=["nat", "bridge", "isolated"]),
            bridge=dict(type="str"),
            address=dict(type="str"),
            dhcp=dict(type="dict", options=dict(start=dict(type="str", required=True), end=dict(type="str", required=True))),
            static_leases=dict(type="list", elements="dict", options=lease),
            port_forwards=dict(type="list", elements="dict", options=forward),
            domain=dict(type="str"),
            mtu=dict(type="int"),
            autostart=dict(type="bool"),
            restart=dict(type="bool", default=False),
        ),
        required_libs=REQUIRED_LIBS,
        supports_check_mode=True,
    )
    module.run(handler)


if __name__ == "__main__":
    main()
