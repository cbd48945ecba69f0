# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the guest module models of a libvirt domain: the spec types and their constants.

Shared by the options layer (_domain.py) and the XML layer (_domain_xml.py), which both depend on this and on
nothing else of the collection.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

VIRT_TYPES = ("kvm", "qemu", "xen")
XEN_MODES = ("pv", "hvm")
DISK_FORMATS = ("qcow2", "raw")
DISK_BUSES = ("virtio", "xen", "sata", "scsi", "ide")
# Buses each hypervisor can attach a disk to; a Xen PV guest only has the paravirtual one.
BUSES_BY_TYPE = {
    "kvm": ("virtio", "sata", "scsi", "ide"),
    "qemu": ("virtio", "sata", "scsi", "ide"),
    "xen-hvm": ("xen", "sata", "scsi", "ide"),
    "xen-pv": ("xen",),
}
TARGET_PREFIX = {"virtio": "vd", "xen": "xvd", "sata": "sd", "scsi": "sd", "ide": "hd"}
# CPU modes that are written as <cpu mode='...'/>; any other cpu_model is a named model.
CPU_MODES = ("host-model", "host-passthrough", "maximum")
DEFAULT_MEMORY_MIB = 256
DEFAULT_VCPUS = 1
DEFAULT_NIC_MODEL = "virtio"
# Namespace of the collection's own data in a domain's <metadata>: the static addresses a guest configures itself,
# as <atv:guest><atv:address nic="MAC">ip/prefix</atv:address></atv:guest>, which guest_info and the inventory read.
METADATA_NS = "https://arctictern.dev/virt/1"
ET.register_namespace("atv", METADATA_NS)
# The change diff_specs reports for recorded addresses: libvirt applies it to a running guest too
# (record_live_addresses), so it never makes a restart needed.
ADDRESSES_CHANGE = "nics[].addresses"
# Options that describe the definition; a task that gives none of them leaves the definition alone.
DEFINITION_OPTIONS = ("memory", "vcpus", "cpu_model", "machine", "kernel", "initrd", "cmdline", "disks", "nics",
                      "serial_log", "guest_agent")
# Target name of the virtio channel through which libvirt talks to the QEMU guest agent (ping, addresses, fsfreeze).
AGENT_CHANNEL = "org.qemu.guest_agent.0"


@dataclasses.dataclass
class DiskSpec:
    """A file or block device disk. base_image/base_format only matter when creating the file."""

    path: str
    target: str
    format: str = "qcow2"
    bus: str = "virtio"
    readonly: bool = False
    base_image: str | None = dataclasses.field(default=None, compare=False)
    base_format: str | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass
class NicSpec:
    """A NIC on a libvirt network (source_type 'network') or a host bridge (source_type 'bridge')."""

    source_type: str
    source: str
    mac: str | None = None
    model: str | None = None
    # Static addresses the guest configures on this NIC itself; only recorded in <metadata>, compared apart
    # (GuestSpec.recorded_addresses) since changing them needs no restart.
    addresses: list = dataclasses.field(default_factory=list, compare=False)


@dataclasses.dataclass
class GuestSpec:
    """The part of a domain definition the guest module manages. Everything else stays in the defined XML, which
    the module edits (_domain_xml.edited_xml) rather than writes anew."""

    name: str
    virt_type: str = "kvm"
    uuid: str | None = None
    memory_mib: int = DEFAULT_MEMORY_MIB
    vcpus: int = DEFAULT_VCPUS
    cpu_model: str | None = None
    machine: str | None = None
    loader: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    disks: list = dataclasses.field(default_factory=list)
    nics: list = dataclasses.field(default_factory=list)
    serial_log: str | None = None
    # How many QEMU guest agent channels the definition has: the option makes it 1 or 0; a count, not a bool, so
    # that a definition with two reads as different from what guest_agent=true wants.
    agent_channels: int = 0
    xen_mode: str | None = None
    # Disk names and MACs of the devices the module does not manage (CD-ROMs, network disks, direct NICs, ...):
    # new managed devices must not take them.
    reserved_targets: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    reserved_macs: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def is_xen_pv(self):
        return self.virt_type == "xen" and self.xen_mode == "pv"

    @property
    def recorded_addresses(self):
        """[(mac, [ip/prefix, ...]), ...] of the NICs with static addresses, as the metadata records them."""
        return [(nic.mac, nic.addresses) for nic in self.nics if nic.addresses]


def comparable(spec, field):
    """``spec``'s value of ``field`` as it is compared with another spec's. libvirt keeps disks in its own order
    (by bus, then name), so the order in which a task lists them is no difference."""
    value = getattr(spec, field)
    return sorted(value, key=lambda disk: (disk.bus, disk.target)) if field == "disks" else value


# GuestSpec field -> the module option a user would change it with; changed_options reports option names.
COMPARED_FIELDS = (
    ("virt_type", "hypervisor"), ("xen_mode", "xen_mode"), ("uuid", "uuid"), ("memory_mib", "memory"),
    ("vcpus", "vcpus"), ("cpu_model", "cpu_model"), ("machine", "machine"), ("loader", "xen_mode"), ("kernel", "kernel"),
    ("initrd", "initrd"), ("cmdline", "cmdline"), ("disks", "disks"), ("nics", "nics"), ("serial_log", "serial_log"),
    ("agent_channels", "guest_agent"), ("recorded_addresses", ADDRESSES_CHANGE),
)
