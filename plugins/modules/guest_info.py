#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: guest_info
short_description: Describe the guests of a libvirt hypervisor and the hypervisor itself
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Lists the guests (libvirt domains) of a hypervisor with their state, size, platform (architecture, machine
    type, CPU), network interfaces and the addresses known for them, and describes the hypervisor (versions,
    memory, CPUs, the guests it can run, its libvirt networks and host bridges).
  - The guests' platform and NICs and the hypervisor's offer are what the P(arctictern.virt.placement#filter) filter
    compares to place a guest only on a hypervisor that can run it.
  - Addresses are best effort and come from the sources in O(address_sources), most trusted first.
  - Never changes anything.
options:
  name:
    description:
      - Describe only the guest of this name. The module fails when the hypervisor has no guest of that name.
      - Without it, every guest of the hypervisor is described.
    type: str
  state:
    description:
      - Describe only guests in one of these states.
      - Without it, guests in any state are described.
    type: list
    elements: str
    choices: [running, blocked, paused, shutdown, shutoff, crashed, pmsuspended, nostate]
  include_xml:
    description:
      - Also return each guest's libvirt XML definition (without secrets such as VNC passwords).
    type: bool
    default: false
  address_sources:
    description:
      - Where to look for the guests' IP addresses, most trusted first; addresses are merged in that order.
      - V(metadata) reads the static addresses that M(arctictern.virt.guest) records in the guest's metadata.
      - V(lease) reads the DHCP leases of libvirt networks (NAT or isolated networks).
      - V(arp) reads the hypervisor's ARP table, which knows bridged guests the hypervisor has talked to.
      - V(agent) asks the QEMU guest agent inside the guest; it can take seconds when the agent does not answer.
      - A source that knows nothing about a guest is skipped silently.
    type: list
    elements: str
    choices: [metadata, lease, arp, agent]
    default: [metadata, lease, arp]
extends_documentation_fragment:
  - arctictern.virt.libvirt
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Reads only; there is nothing to compare.
notes:
  - Loopback and link-local addresses are never reported, since they cannot reach the guest from outside.
seealso:
  - module: arctictern.virt.guest
"""

EXAMPLES = r"""
- name: Describe every guest of the local hypervisor
  arctictern.virt.guest_info:
  register: fleet

- name: Print the address of each running guest
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.addresses | first | default('no address known') }}"
  loop: "{{ fleet.guests | selectattr('state', 'equalto', 'running') }}"
  loop_control:
    label: "{{ item.name }}"

- name: Describe one guest on a remote hypervisor, asking its guest agent too
  arctictern.virt.guest_info:
    uri: qemu+ssh://root@hv2.example.com/system
    name: web1
    address_sources: [metadata, lease, arp, agent]
  register: web1

- name: Keep the definitions of the stopped guests
  arctictern.virt.guest_info:
    state: [shutoff]
    include_xml: true
  register: stopped
"""

RETURN = r"""
guests:
  description: The guests described, sorted by name.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Name of the guest.
      type: str
      sample: web1
    uuid:
      description: UUID of the guest.
      type: str
      sample: 0b8e3b9c-2f7a-4d0e-9a51-6b7c1d2e3f40
    state:
      description: State of the guest.
      type: str
      sample: running
    memory_mib:
      description: Current memory of the guest in MiB.
      type: int
      sample: 1024
    max_memory_mib:
      description: Maximum memory of the guest in MiB.
      type: int
      sample: 2048
    vcpus:
      description: Number of virtual CPUs in use.
      type: int
      sample: 2
    virt_type:
      description: libvirt domain type, for example C(kvm), C(qemu) or C(xen).
      type: str
      sample: kvm
    arch:
      description: CPU architecture of the guest.
      type: str
      sample: x86_64
    guest_agent:
      description:
        - Whether the guest has the QEMU guest agent's channel (C(org.qemu.guest_agent.0)), through which libvirt
          and M(arctictern.virt.migrate)'s O(arctictern.virt.migrate#module:verify.agent) reach its agent.
      type: bool
      sample: true
    machine:
      description:
        - Machine type of the guest as libvirt stores it, that is the versioned machine an alias such as C(pc)
          stood for when the guest was defined. Null where the definition has none.
      type: str
      sample: pc-i440fx-7.2
    cpu:
      description:
        - The guest's CPU, from its live definition while it runs.
        - A running guest defined with V(host-model) is shown as the V(custom) model libvirt expanded it to when it
          started, which is the CPU a destination has to offer.
      type: dict
      contains:
        mode:
          description:
            - libvirt's CPU mode, V(custom), V(host-model), V(host-passthrough) or V(maximum).
            - Null when the definition has no C(<cpu>) element (the hypervisor's default CPU).
          type: str
          sample: custom
        model:
          description: The named CPU model of a V(custom) CPU, null otherwise.
          type: str
          sample: qemu64
        host_cpu_model:
          description:
            - For a guest that sees its host's CPU (V(host-passthrough), or V(maximum) with hardware acceleration),
              the host's CPU model (RV(host.cpu_model)); null otherwise.
          type: str
          sample: Skylake-Client-IBRS
      sample: {"mode": "custom", "model": "qemu64", "host_cpu_model": null}
    autostart:
      description: Whether the guest starts when the hypervisor boots.
      type: bool
      sample: true
    persistent:
      description: Whether the guest has a persistent definition (a transient guest vanishes when it stops).
      type: bool
      sample: true
    nics:
      description:
        - The guest's network interfaces, in definition order.
        - A guest can only run where every libvirt network its V(network) NICs use is active and every host bridge
          its V(bridge) NICs use exists.
      type: list
      elements: dict
      contains:
        mac:
          description: MAC address, lower case.
          type: str
          sample: "52:54:00:12:34:56"
        type:
          description: libvirt interface type, for example C(network), C(bridge) or C(direct).
          type: str
          sample: network
        source:
          description: The libvirt network, host bridge or host device the interface is attached to.
          type: str
          sample: default
        model:
          description: Device model, for example C(virtio).
          type: str
          sample: virtio
        target:
          description: Host side device of the interface (for example C(vnet3)) while the guest runs; null otherwise.
          type: str
          sample: vnet3
        addresses:
          description: Addresses known for this interface, with their prefix length, most trusted source first.
          type: list
          elements: str
          sample: ["198.18.0.21/24"]
    addresses:
      description: Every address known for the guest, without prefix length, first interface and most trusted source first.
      type: list
      elements: str
      sample: ["198.18.0.21"]
    job:
      description:
        - The job the guest is in the middle of, as libvirt's job statistics tell it, or null when there is none.
        - While M(arctictern.virt.migrate) moves the guest, this is how to watch the migration from another task or
          terminal, on the source (V(migration_out)) or the destination (V(migration_in)).
      type: dict
      contains:
        operation:
          description: What the job does, for example V(migration_out), V(migration_in), V(save), V(dump) or V(unknown).
          type: str
          sample: migration_out
        elapsed_ms:
          description: How long the job has run.
          type: int
          sample: 4200
        percent:
          description: Share of the job's data sent so far (a migration's falls back when the guest dirties pages again).
          type: float
          sample: 75.0
        data_total:
          description: Bytes the job has to handle in all (for a migration, the guest's memory and copied disks).
          type: int
        data_processed:
          description: Bytes handled so far (a migration sends dirtied memory again, so this can exceed the total).
          type: int
        data_remaining:
          description: Bytes still to handle.
          type: int
        memory_iteration:
          description: The pass over the guest's memory a migration is in.
          type: int
        memory_dirty_rate:
          description: Pages per second the guest dirties while a migration runs.
          type: int
      sample: {"operation": "migration_out", "elapsed_ms": 4200, "percent": 75.0, "data_total": 136314880,
               "data_processed": 120586240, "data_remaining": 34078720, "memory_iteration": 3, "memory_dirty_rate": 1200}
    xml:
      description: The libvirt XML definition of the guest.
      type: str
      returned: when O(include_xml=true)
host:
  description: The hypervisor the module talked to.
  returned: success
  type: dict
  contains:
    hostname:
      description: Host name of the hypervisor.
      type: str
      sample: hv1
    uri:
      description: libvirt URI of the connection.
      type: str
      sample: qemu:///system
    hypervisor:
      description: Hypervisor type as libvirt names it.
      type: str
      sample: QEMU
    hypervisor_version:
      description: Version of the hypervisor.
      type: str
      sample: 7.2.0
    libvirt_version:
      description: Version of the libvirt daemon.
      type: str
      sample: 9.0.0
    arch:
      description: CPU architecture of the hypervisor.
      type: str
      sample: x86_64
    cpus:
      description: Number of active CPUs of the hypervisor.
      type: int
      sample: 16
    memory_mib:
      description: Memory of the hypervisor in MiB.
      type: int
      sample: 64000
    free_memory_mib:
      description: Free memory of the hypervisor in MiB.
      type: int
      sample: 31000
    virt_types:
      description: libvirt domain types the hypervisor can run, for example C(kvm) and C(qemu).
      type: list
      elements: str
      sample: [kvm, qemu]
    os_types:
      description: Guest OS types the hypervisor can run, for example C(hvm) or C(xen).
      type: list
      elements: str
      sample: [hvm]
    cpu_model:
      description: Model of the hypervisor's CPU as libvirt names it (its capabilities), null when libvirt does not say.
      type: str
      sample: Skylake-Client-IBRS
    cpu_vendor:
      description: Vendor of the hypervisor's CPU, null when libvirt does not say.
      type: str
      sample: Intel
    arches:
      description:
        - The guests the hypervisor can run, by architecture (for example C(x86_64)), from libvirt's capabilities.
        - Each architecture has C(os_types) and C(virt_types), which maps each domain type offered for the
          architecture (C(kvm), C(qemu), C(xen)) to C(machines), C(cpu_modes) and C(cpu_models).
        - C(machines) lists the machine types, both versioned names (C(pc-i440fx-7.2)) and aliases (C(pc)).
        - C(cpu_modes) lists the CPU modes libvirt supports there (V(custom), V(host-model), V(host-passthrough),
          V(maximum)), and C(cpu_models) the named CPU models it found usable on this host, from libvirt's domain
          capabilities for the default machine of that architecture and domain type. Both are null when libvirt
          could not tell (for example an old daemon, or an emulator that fails to start); that does not fail the
          module.
      type: dict
      sample:
        x86_64:
          os_types: [hvm]
          virt_types:
            qemu:
              machines: [pc, pc-i440fx-7.2, pc-q35-7.2, q35]
              cpu_modes: [custom, host-model, maximum]
              cpu_models: [Nehalem, qemu64]
    networks:
      description: Names of the active libvirt networks; null when libvirt cannot list networks.
      type: list
      elements: str
      sample: [lan, nat]
    inactive_networks:
      description: Names of the defined libvirt networks that are not active; null when libvirt cannot list networks.
      type: list
      elements: str
      sample: []
    bridges:
      description:
        - Names of the Linux bridges of the hypervisor, which guests' C(bridge) NICs plug into; null when they cannot
          be read.
        - For a local O(uri) they are read over netlink in the network namespace the module runs in (correct inside
          a network namespace, where /sys may show another namespace's devices); for a remote one, from libvirt's
          interface driver.
      type: list
      elements: str
      sample: [br0, virbr1]
"""

from ansible_collections.arctictern.virt.plugins.module_utils import _facts, _libvirt
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule

ARGUMENT_SPEC = dict(
    name=dict(type="str"),
    state=dict(type="list", elements="str", choices=["running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended", "nostate"]),
    include_xml=dict(type="bool", default=False),
    address_sources=dict(type="list", elements="str", choices=list(_facts.ADDRESS_SOURCES), default=list(_facts.DEFAULT_ADDRESS_SOURCES)),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, required_libs=_libvirt.REQUIRED_LIBS, supports_check_mode=True)
    module.run(_facts.gather)


if __name__ == "__main__":
    main()
