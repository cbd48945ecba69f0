#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: guest
short_description: Define, start, stop and remove KVM, QEMU and Xen guests through libvirt
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Makes a libvirt guest (domain) match a declared definition and power state, on KVM, QEMU (TCG) or Xen hosts.
  - Options that describe the definition are only needed to create or change the guest. An option left out keeps
    what the defined guest has, so for an existing guest O(state=running) with only O(name) just starts it.
  - What the task does not say is carried over from the defined guest, so a second run reports no change. The UUID
    stays, NICs keep their MACs (matched by position and source) and disks and NICs keep their device addresses.
  - A new NIC without O(nics[].mac) gets a MAC derived from the guest name and the NIC's position
    (52:54:00:xx:xx:xx), so the same task gives the same MAC on any host.
  - When the definition of a running guest changes, the new definition applies from the next boot and the module
    returns RV(restart_needed=true).
  - The module edits the defined guest; it does not write it anew. It changes only the elements and attributes its
    options model, and everything else stays as libvirt has it, including devices it does not manage (graphics,
    channels other than the guest agent's of O(guest_agent), RNG, watchdog, CD-ROMs, network and volume disks,
    interfaces of other types, host devices, TPM, ...), firmware (loader and NVRAM), features, clock, tuning,
    security labels, lifecycle actions, other tools' C(<metadata>), and the attributes it does not set on the
    elements it does (a disk's cache mode or I/O limits, a NIC's driver, bandwidth, VLAN, filter or link state).
options:
  name:
    description:
      - Name of the guest.
    type: str
    required: true
  state:
    description:
      - V(present) defines the guest, or updates its definition, and leaves it in the power state it is in.
      - V(running) also starts it (or resumes it when paused). V(paused) runs it and then suspends it.
      - V(shutdown) asks the guest to power off (ACPI) and waits O(shutdown_timeout) seconds for it.
      - V(destroyed) powers the guest off at once, like pulling the plug; the definition stays.
      - V(absent) powers the guest off and removes its definition with its managed save image, snapshot and
        checkpoint metadata and NVRAM. Disk files are never deleted.
      - A guest that does not exist can only be made V(running), V(paused), V(shutdown) or V(destroyed) when the
        task also gives its definition.
    type: str
    choices: [present, running, shutdown, paused, destroyed, absent]
    default: present
  hypervisor:
    description:
      - Domain type of the guest.
      - V(auto) keeps the type of a defined guest. For a new guest it is V(xen) when O(uri) is a Xen URI, else V(kvm)
        when the host capabilities offer KVM for the host architecture, else V(qemu) (software emulation).
    type: str
    choices: [auto, kvm, qemu, xen]
    default: auto
  memory:
    description:
      - Memory of the guest in MiB.
      - A new guest gets 256 when this is left out.
    type: int
  vcpus:
    description:
      - Number of virtual CPUs.
      - A new guest gets 1 when this is left out.
    type: int
  cpu_model:
    description:
      - CPU model the guest sees, for example V(Skylake-Server), or one of the modes V(host-model),
        V(host-passthrough) and V(maximum).
      - A new guest gets V(host-model) on KVM, V(qemu64) on QEMU and no CPU element on Xen. An empty string sets
        that default again.
    type: str
  machine:
    description:
      - Machine type, for example V(q35) or V(pc). An alias is compared as the versioned machine libvirt stores.
      - Left out, libvirt picks its default for a new guest and a defined guest keeps its machine.
    type: str
  kernel:
    description:
      - Kernel to boot directly, a path on the hypervisor. Without it the guest boots from its first disk.
      - An empty string removes direct kernel boot from a defined guest.
      - A Xen PV guest needs it.
    type: path
  initrd:
    description:
      - Initial ramdisk for O(kernel). An empty string removes it.
    type: path
  cmdline:
    description:
      - Kernel command line for O(kernel). An empty string removes it.
    type: str
  disks:
    description:
      - The guest's file and block device disks, in order. This list replaces those disks; leave it out to keep
        them. Disks of other kinds (CD-ROMs, floppies, network and volume disks) are not affected, and a listed
        disk cannot take the name of one.
      - A listed disk keeps the settings the module does not model (cache, I/O limits, serial, boot order, device
        address, ...) from the defined disk with the same O(disks[].path), else the one with the same name.
      - The module never deletes disk files.
    type: list
    elements: dict
    suboptions:
      path:
        description:
          - Image file or block device (under C(/dev/)) on the hypervisor.
        type: path
        required: true
      base_image:
        description:
          - When O(disks[].path) does not exist, create it as a qcow2 copy-on-write overlay on this image with
            C(qemu-img) on the host that runs the module. Nothing is created in check mode.
          - An existing O(disks[].path) is used as it is.
        type: path
      base_format:
        description:
          - Format of O(disks[].base_image). Left out, C(qemu-img info) detects it.
        type: str
        choices: [qcow2, raw]
      format:
        description:
          - Format of the image at O(disks[].path).
          - Left out, a defined disk with this path keeps its format, and a new disk is V(qcow2).
        type: str
        choices: [qcow2, raw]
      target:
        description:
          - Device name in the guest, for example V(vda), V(vdb), V(xvda) or V(sda).
          - Left out, a defined disk with this path keeps its name; a new one gets the first free name of its bus
            (V(vda), V(vdb), ... on virtio; V(xvda), ... on xen), skipping the names of disks the module does not
            manage.
        type: str
      bus:
        description:
          - Disk bus. Left out, a defined disk with this path keeps its bus; a new one is on V(virtio) on KVM and
            QEMU and on V(xen) on Xen. A Xen PV guest only has V(xen).
        type: str
        choices: [virtio, xen, sata, scsi, ide]
      readonly:
        description:
          - Attach the disk read-only.
          - Left out, a defined disk with this path keeps its setting, and a new disk is writable.
        type: bool
  nics:
    description:
      - The guest's interfaces on libvirt networks and host bridges, in order. This list replaces those
        interfaces; leave it out to keep them. Interfaces of other types (direct, user, hostdev, ...) are not
        affected, and a listed NIC cannot take the MAC of one.
      - A listed NIC keeps the settings the module does not model (driver, bandwidth, VLAN, filter, link state,
        MTU, boot order, device address, ...) from the defined NIC with the same MAC.
      - Each needs exactly one of O(nics[].network) and O(nics[].bridge).
    type: list
    elements: dict
    suboptions:
      network:
        description:
          - Name of a libvirt network. The module fails, changing nothing, when the host has no such network.
        type: str
      bridge:
        description:
          - Name of a host bridge.
        type: str
      mac:
        description:
          - Unicast MAC address. Left out, a NIC keeps the MAC it has, and a new NIC gets one derived from the
            guest name and its position.
        type: str
      model:
        description:
          - NIC model, for example V(virtio) or V(e1000).
          - Left out, a defined NIC keeps its model. A new NIC gets V(virtio) on KVM and QEMU; on Xen none, so that
            libxl gives the guest a paravirtual NIC.
        type: str
      addresses:
        description:
          - Static addresses the guest itself configures on this NIC, as V(address/prefix), for example from its
            kernel command line or cloud-init. libvirt does not configure guest addresses; the module records these
            in the guest's C(<metadata>), so that M(arctictern.virt.guest_info) and the P(arctictern.virt.libvirt#inventory)
            inventory report them at once, even for a guest that is off.
          - Left out, a NIC keeps the addresses recorded for it (NICs are matched by MAC); an empty list removes them.
          - Changing them never needs a restart; a running guest's live metadata is updated too.
        type: list
        elements: str
  serial_log:
    description:
      - File on the hypervisor that receives the output of the guest's serial console (the Xen console for a Xen
        PV guest). An empty string stops the logging.
    type: path
  guest_agent:
    description:
      - Whether the guest has the virtio channel of the QEMU guest agent
        (C(<channel type='unix'>) with C(<target type='virtio' name='org.qemu.guest_agent.0'/>)), through which
        libvirt reaches the agent running in the guest, for example for the
        O(arctictern.virt.migrate#module:verify.agent) check after a migration.
      - V(true) makes the definition have exactly one such channel. One that is defined already is kept as it is,
        with the socket path and device address libvirt gave it (a second one is removed); a new one gets a socket
        path chosen by libvirt.
      - V(false) removes that channel. Other channels (SPICE, a user's own) are never touched.
      - Left out, the guest's channels are not changed, and a new guest gets no agent channel.
      - The guest also needs the agent (C(qemu-guest-agent)) installed and running.
      - Like other definition changes, adding or removing the channel of a running guest applies from its next
        boot, and the module returns RV(restart_needed=true).
      - A Xen guest cannot have this channel; V(true) fails for it.
    type: bool
  autostart:
    description:
      - Whether the guest starts when the host boots. Left out, the setting is not changed.
    type: bool
  xen_mode:
    description:
      - How a Xen guest runs. V(pv) is paravirtualized and boots O(kernel); V(hvm) is fully virtualized.
      - V(auto) keeps the mode of a defined Xen guest; a new one is V(pv) when O(kernel) is given, else V(hvm).
      - Only V(auto) can be used with KVM and QEMU guests.
    type: str
    choices: [auto, pv, hvm]
    default: auto
  shutdown_timeout:
    description:
      - Seconds to wait for the guest to power off after the ACPI request of O(state=shutdown).
    type: int
    default: 60
  force:
    description:
      - When the guest is still running after O(shutdown_timeout), power it off (V(true)) or fail saying that it
        still runs (V(false)).
    type: bool
    default: false
extends_documentation_fragment:
  - arctictern.virt.libvirt
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the guest's whole definition as libvirt XML, as defined and as wanted; only the lines
      the task changes differ.
  platform:
    platforms: posix
notes:
  - Disks with O(disks[].base_image) are created on the host that runs the module, so run it on the hypervisor
    when O(uri) points to a remote host.
seealso:
  - name: libvirt domain XML format
    description: The definition the module writes.
    link: https://libvirt.org/formatdomain.html
"""

EXAMPLES = r"""
- name: A KVM guest booting a kernel, on the default network, started
  arctictern.virt.guest:
    name: web1
    state: running
    memory: 512
    vcpus: 2
    kernel: /var/lib/arctictern/images/vmlinuz
    initrd: /var/lib/arctictern/images/initrd.img
    cmdline: console=ttyS0 root=/dev/vda
    disks:
      - path: /var/lib/libvirt/images/web1.qcow2
        base_image: /var/lib/libvirt/images/debian-12.qcow2
    nics:
      - network: default
    serial_log: /var/log/arctictern/web1.log
    guest_agent: true
    autostart: true
  register: web1

- name: Start an existing guest, whatever its definition
  arctictern.virt.guest:
    name: web1
    state: running

- name: A Xen HVM guest on a host bridge with a fixed MAC
  arctictern.virt.guest:
    uri: xen:///system
    name: legacy1
    xen_mode: hvm
    disks:
      - path: /dev/vg0/legacy1
        format: raw
    nics:
      - bridge: xenbr0
        mac: "00:16:3e:12:34:56"

- name: Power off gracefully, pulling the plug after two minutes
  arctictern.virt.guest:
    name: web1
    state: shutdown
    shutdown_timeout: 120
    force: true

- name: Remove the guest; its disk files stay
  arctictern.virt.guest:
    name: web1
    state: absent
"""

RETURN = r"""
guest:
  description:
    - The guest as it is after the task (as it would be, in check mode).
    - After O(state=absent) only RV(guest.name) and RV(guest.state) are set.
  returned: always
  type: dict
  contains:
    name:
      description: Name of the guest.
      type: str
      sample: web1
    uuid:
      description: UUID of the guest; null for a guest that check mode did not create.
      type: str
      sample: 9d1c2a3e-7f5b-4c1e-8a6d-0f2b3c4d5e6f
    state:
      description: Power state, one of V(running), V(paused), V(shutoff), V(shutdown), V(crashed),
        V(pmsuspended), V(blocked), V(nostate), or V(absent) for a removed guest.
      type: str
      sample: running
    memory:
      description: Memory in MiB.
      type: int
      sample: 512
    vcpus:
      description: Number of virtual CPUs.
      type: int
      sample: 2
    virt_type:
      description: Domain type, V(kvm), V(qemu) or V(xen).
      type: str
      sample: kvm
    autostart:
      description: Whether the guest starts with the host.
      type: bool
      sample: true
    nics:
      description: The managed NICs, in order; each has C(network) or C(bridge), and the static C(addresses) recorded for it.
      type: list
      elements: dict
      sample: [{"mac": "52:54:00:3c:91:0e", "network": "default", "model": "virtio", "addresses": ["192.0.2.10/24"]}]
    guest_agent:
      description: Whether the definition has the QEMU guest agent channel (see O(guest_agent)).
      type: bool
      sample: true
restart_needed:
  description: The guest is running and its definition changed; the change applies from its next boot.
  returned: always
  type: bool
  sample: false
changes:
  description: Options whose defined value changed (or would change, in check mode).
  returned: always
  type: list
  elements: str
  sample: [memory, nics]
xml:
  description: The guest's defined XML (in check mode, the XML that would be defined).
  returned: unless O(state=absent)
  type: str
"""

from ansible_collections.arctictern.virt.plugins.module_utils import _domain_model as model
from ansible_collections.arctictern.virt.plugins.module_utils._guest import ensure_guest
from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import REQUIRED_LIBS
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "running", "shutdown", "paused", "destroyed", "absent"]),
    hypervisor=dict(type="str", default="auto", choices=["auto"] + list(model.VIRT_TYPES)),
    memory=dict(type="int"),
    vcpus=dict(type="int"),
    cpu_model=dict(type="str"),
    machine=dict(type="str"),
    kernel=dict(type="path"),
    initrd=dict(type="path"),
    cmdline=dict(type="str"),
    disks=dict(type="list", elements="dict", options=dict(
        path=dict(type="path", required=True),
        base_image=dict(type="path"),
        base_format=dict(type="str", choices=list(model.DISK_FORMATS)),
        format=dict(type="str", choices=list(model.DISK_FORMATS)),
        target=dict(type="str"),
        bus=dict(type="str", choices=list(model.DISK_BUSES)),
        readonly=dict(type="bool"),
    )),
    nics=dict(type="list", elements="dict", options=dict(
        network=dict(type="str"),
        bridge=dict(type="str"),
        mac=dict(type="str"),
        model=dict(type="str"),
        addresses=dict(type="list", elements="str"),
    )),
    serial_log=dict(type="path"),
    guest_agent=dict(type="bool"),
    autostart=dict(type="bool"),
    xen_mode=dict(type="str", default="auto", choices=["auto"] + list(model.XEN_MODES)),
    shutdown_timeout=dict(type="int", default=60),
    force=dict(type="bool", default=False),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, required_libs=REQUIRED_LIBS, supports_check_mode=True)
    module.run(ensure_guest)


if __name__ == "__main__":
    main()
