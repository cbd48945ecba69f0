# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest definitions: module options <-> GuestSpec <-> libvirt domain XML, and the guest's life cycle.

The XML is built and read with ElementTree only, so no user string can add elements. Everything the user did
not say is carried over from the defined guest (UUID, MACs, device addresses, machine), which is what makes a
second run report no change.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, NotFound, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import call, domain_state, error_message, is_error, libvirt

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
DEFINITION_OPTIONS = ("memory", "vcpus", "cpu_model", "machine", "kernel", "initrd", "cmdline", "disks", "nics", "serial_log")

# Characters XML 1.0 cannot carry at all; ElementTree would write them and produce a document libvirt rejects.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_TARGET = re.compile(r"^(vd|xvd|sd|hd)[a-z]{1,3}$")
_MODEL = re.compile(r"^[A-Za-z0-9_.-]+$")
# A Linux interface name (at most 15 characters) within what libvirt's schema allows for a bridge.
_BRIDGE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_MEMORY_UNITS = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000 ** 2, "m": 1024 ** 2, "mib": 1024 ** 2,
    "gb": 1000 ** 3, "g": 1024 ** 3, "gib": 1024 ** 3,
    "tb": 1000 ** 4, "t": 1024 ** 4, "tib": 1024 ** 4,
}


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
    # libvirt's <address> attributes, kept so that the guest sees its devices in the same slots.
    address: dict | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass
class NicSpec:
    """A NIC on a libvirt network (source_type 'network') or a host bridge (source_type 'bridge')."""

    source_type: str
    source: str
    mac: str | None = None
    model: str | None = None
    address: dict | None = dataclasses.field(default=None, compare=False, repr=False)
    # Static addresses the guest configures on this NIC itself; only recorded in <metadata>, compared apart
    # (GuestSpec.recorded_addresses) since changing them needs no restart.
    addresses: list = dataclasses.field(default_factory=list, compare=False)


@dataclasses.dataclass
class GuestSpec:
    """The part of a domain definition the guest module manages."""

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
    xen_mode: str | None = None
    # Other tools' <metadata> children, written back as they were.
    foreign_metadata: list = dataclasses.field(default_factory=list, compare=False, repr=False)

    @property
    def is_xen_pv(self):
        return self.virt_type == "xen" and self.xen_mode == "pv"

    @property
    def recorded_addresses(self):
        """[(mac, [ip/prefix, ...]), ...] of the NICs with static addresses, as the metadata records them."""
        return [(nic.mac, nic.addresses) for nic in self.nics if nic.addresses]


# GuestSpec field -> the module option a user would change it with; diff_specs reports option names.
COMPARED_FIELDS = (
    ("virt_type", "hypervisor"), ("xen_mode", "xen_mode"), ("uuid", "uuid"), ("memory_mib", "memory"),
    ("vcpus", "vcpus"), ("cpu_model", "cpu_model"), ("machine", "machine"), ("loader", "xen_mode"), ("kernel", "kernel"),
    ("initrd", "initrd"), ("cmdline", "cmdline"), ("disks", "disks"), ("nics", "nics"), ("serial_log", "serial_log"),
    ("recorded_addresses", ADDRESSES_CHANGE),
)


# ---------------------------------------------------------------------------------------------------------------
# Options -> GuestSpec
# ---------------------------------------------------------------------------------------------------------------

def definition_requested(params):
    """Whether the task describes the definition at all (else an existing guest's definition is left alone)."""
    if any(params.get(option) is not None for option in DEFINITION_OPTIONS):
        return True
    return params.get("hypervisor") not in (None, "auto") or params.get("xen_mode") not in (None, "auto")


def _text(option, value, empty_ok=False):
    """A string option checked for characters XML cannot hold; None stays None."""
    if value is None:
        return None
    value = str(value)
    if _XML_ILLEGAL.search(value):
        raise InvalidOption(option, "contains a control character that a libvirt definition cannot hold")
    if not value and not empty_ok:
        raise InvalidOption(option, "must not be empty")
    return value


def _path(option, value, empty_ok=False):
    value = _text(option, value, empty_ok)
    if value and not os.path.isabs(value):
        raise InvalidOption(option, "'%s' is not an absolute path" % value)
    return value


def _positive(option, value):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise InvalidOption(option, "'%s' is not an integer" % value) from None
    if value < 1:
        raise InvalidOption(option, "must be at least 1, got %d" % value)
    return value


def check_name(name):
    """The guest name, or InvalidOption('name') for one libvirt cannot define."""
    name = _text("name", name)
    if "/" in name:
        raise InvalidOption("name", "a guest name cannot contain '/'")
    return name


def normalize_mac(option, value):
    """A MAC in libvirt's form (lower case, colons), or InvalidOption when it is not a unicast MAC."""
    mac = _text(option, value).strip().lower().replace("-", ":")
    if not _MAC.match(mac):
        raise InvalidOption(option, "'%s' is not a MAC address like 52:54:00:12:34:56" % value)
    if int(mac[:2], 16) & 1:
        raise InvalidOption(option, "'%s' is a multicast MAC address; a NIC needs a unicast one" % value)
    if mac == "00:00:00:00:00:00":
        raise InvalidOption(option, "the all-zero MAC address cannot be used")
    return mac


def stable_mac(guest_name, index, attempt=0):
    """A MAC derived from the guest name and NIC position only, so every host computes the same one."""
    seed = "%s\n%d" % (guest_name, index) if not attempt else "%s\n%d\n%d" % (guest_name, index, attempt)
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return "52:54:00:%02x:%02x:%02x" % (digest[0], digest[1], digest[2])


def _target_name(prefix, index):
    """libvirt's disk naming: vda..vdz, vdaa..."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return prefix + letters


def _bus_key(spec):
    if spec.virt_type != "xen":
        return spec.virt_type
    return "xen-pv" if spec.xen_mode == "pv" else "xen-hvm"


def _disks_from_options(spec, entries, current):
    default_bus = "xen" if spec.virt_type == "xen" else "virtio"
    allowed = BUSES_BY_TYPE[_bus_key(spec)]
    disks = []
    for index, entry in enumerate(entries):
        option = "disks[%d]" % index
        if not isinstance(entry, dict):
            raise InvalidOption(option, "must be a dictionary with at least a path")
        path = _path(option + ".path", entry.get("path"))
        if not path:
            raise InvalidOption(option + ".path", "is required")
        fmt = entry.get("format") or "qcow2"
        if fmt not in DISK_FORMATS:
            raise InvalidOption(option + ".format", "must be one of %s, got '%s'" % (", ".join(DISK_FORMATS), fmt))
        bus = entry.get("bus") or default_bus
        if bus not in allowed:
            raise InvalidOption(option + ".bus", "'%s' cannot be used with this %s guest; use one of %s"
                                % (bus, _bus_key(spec).replace("-", " "), ", ".join(allowed)))
        base_image = _path(option + ".base_image", entry.get("base_image"))
        base_format = entry.get("base_format")
        if base_format is not None and base_format not in DISK_FORMATS:
            raise InvalidOption(option + ".base_format", "must be one of %s" % ", ".join(DISK_FORMATS))
        if base_image and fmt != "qcow2":
            raise InvalidOption(option + ".base_image", "an overlay on a base image must have format qcow2")
        target = _text(option + ".target", entry.get("target"))
        if target is not None and not _TARGET.match(target):
            raise InvalidOption(option + ".target", "'%s' is not a disk name like vda, vdb, xvda, sda or hda" % target)
        disks.append(DiskSpec(path=path, target=target, format=fmt, bus=bus, readonly=bool(entry.get("readonly")),
                              base_image=base_image, base_format=base_format))
    # Unnamed disks get the first free name of their bus, in the order given.
    taken = {disk.target for disk in disks if disk.target}
    for disk in disks:
        if disk.target is None:
            index = 0
            while _target_name(TARGET_PREFIX[disk.bus], index) in taken:
                index += 1
            disk.target = _target_name(TARGET_PREFIX[disk.bus], index)
            taken.add(disk.target)
    seen = set()
    for index, disk in enumerate(disks):
        if disk.target in seen:
            raise InvalidOption("disks[%d].target" % index, "'%s' is used by more than one disk" % disk.target)
        seen.add(disk.target)
    # Keep the slot of a disk that stays on the same target and bus.
    old = {(disk.target, disk.bus): disk.address for disk in (current.disks if current else [])}
    for disk in disks:
        disk.address = copy.deepcopy(old.get((disk.target, disk.bus)))
    return disks


def _nics_from_options(spec, entries, current):
    default_model = None if spec.virt_type == "xen" else DEFAULT_NIC_MODEL
    nics = []
    for index, entry in enumerate(entries):
        option = "nics[%d]" % index
        if not isinstance(entry, dict):
            raise InvalidOption(option, "must be a dictionary with network or bridge")
        network = _text(option + ".network", entry.get("network"))
        bridge = _text(option + ".bridge", entry.get("bridge"))
        if (network is None) == (bridge is None):
            raise InvalidOption(option, "give exactly one of network or bridge")
        if bridge is not None and not _BRIDGE.match(bridge):
            raise InvalidOption(option + ".bridge", "'%s' is not a network interface name" % bridge)
        model = _text(option + ".model", entry.get("model")) or default_model
        if model is not None and not _MODEL.match(model):
            raise InvalidOption(option + ".model", "'%s' is not a NIC model name like virtio or e1000" % model)
        mac = normalize_mac(option + ".mac", entry["mac"]) if entry.get("mac") else None
        nics.append(NicSpec(source_type="network" if network is not None else "bridge",
                            source=network if network is not None else bridge, mac=mac, model=model,
                            addresses=_addresses_from_option(option + ".addresses", entry.get("addresses"), nics)))
    used = {}
    for index, nic in enumerate(nics):
        if nic.mac:
            if nic.mac in used:
                raise InvalidOption("nics[%d].mac" % index, "'%s' is also the MAC of nics[%d]" % (nic.mac, used[nic.mac]))
            used[nic.mac] = index
    old = [n for n in (current.nics if current else []) if n.mac]
    for index, nic in enumerate(nics):
        if nic.mac:
            continue
        # The NIC at the same position on the same source keeps its MAC; else any unclaimed NIC on that source.
        candidates = ([old[index]] if index < len(old) else []) + old
        for candidate in candidates:
            if (candidate.source_type, candidate.source) == (nic.source_type, nic.source) and candidate.mac not in used:
                nic.mac = candidate.mac
                break
        attempt = 0
        while nic.mac is None or (nic.mac in used and used[nic.mac] != index):
            nic.mac = stable_mac(spec.name, index, attempt)
            attempt += 1
        used[nic.mac] = index
    defined = {n.mac: n for n in (current.nics if current else [])}
    for nic, entry in zip(nics, entries):
        old = defined.get(nic.mac)
        nic.address = copy.deepcopy(old.address) if old else None
        if entry.get("addresses") is None and old:
            nic.addresses = list(old.addresses)  # left out: the NIC keeps the addresses recorded for it
    return nics


def _addresses_from_option(option, value, earlier_nics):
    """Validated ip/prefix strings of one NIC; an address may stand on one NIC only."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidOption(option, "must be a list of addresses like 192.0.2.10/24")
    taken = {ipaddress.ip_interface(address).ip for nic in earlier_nics for address in nic.addresses}
    addresses = []
    for index, item in enumerate(value):
        text = _text("%s[%d]" % (option, index), item)
        try:
            interface = ipaddress.ip_interface(text)
        except ValueError:
            raise InvalidOption(option, "'%s' is not an IP address with a prefix length like 192.0.2.10/24" % text) from None
        if "/" not in text:
            raise InvalidOption(option, "'%s' needs a prefix length, like %s/24" % (text, text))
        if interface.ip in taken:
            raise InvalidOption(option, "%s is given more than once" % interface.ip)
        taken.add(interface.ip)
        addresses.append(interface.with_prefixlen)
    return addresses


def default_cpu_model(virt_type):
    """KVM passes the host CPU through libvirt's host-model; TCG needs a model it can emulate anywhere."""
    return {"kvm": "host-model", "qemu": "qemu64"}.get(virt_type)


def spec_from_options(params, virt_type, current=None):
    """The guest the task asks for: options over ``current`` (the defined guest's spec, or None to create).

    ``virt_type`` is already resolved (see resolve_virt_type). Options left out (None) keep the defined value,
    or take the default for a new guest; an empty string removes kernel, initrd, cmdline, cpu_model or
    serial_log. Raises InvalidOption naming the first bad option.
    """
    name = check_name(params.get("name"))
    if virt_type not in VIRT_TYPES:
        raise InvalidOption("hypervisor", "must be one of %s, got '%s'" % (", ".join(VIRT_TYPES), virt_type))
    if current is None:
        spec = GuestSpec(name=name, virt_type=virt_type, cpu_model=default_cpu_model(virt_type))
    else:
        spec = copy.deepcopy(current)
        spec.name = name
        if spec.virt_type != virt_type:
            spec.virt_type = virt_type
            spec.cpu_model = default_cpu_model(virt_type)
            spec.machine = spec.loader = None
    if params.get("memory") is not None:
        spec.memory_mib = _positive("memory", params["memory"])
    if params.get("vcpus") is not None:
        spec.vcpus = _positive("vcpus", params["vcpus"])
    if params.get("cpu_model") is not None:
        spec.cpu_model = _text("cpu_model", params["cpu_model"], empty_ok=True) or default_cpu_model(virt_type)
    if params.get("machine") is not None:
        spec.machine = _text("machine", params["machine"])
    for option in ("kernel", "initrd"):
        if params.get(option) is not None:
            setattr(spec, option, _path(option, params[option], empty_ok=True) or None)
    if params.get("cmdline") is not None:
        spec.cmdline = _text("cmdline", params["cmdline"], empty_ok=True) or None
    if params.get("serial_log") is not None:
        spec.serial_log = _path("serial_log", params["serial_log"], empty_ok=True) or None

    xen_mode = params.get("xen_mode") or "auto"
    if virt_type != "xen":
        if xen_mode != "auto":
            raise InvalidOption("xen_mode", "only applies to Xen guests, not to a %s guest" % virt_type)
        spec.xen_mode = None
    elif xen_mode != "auto":
        spec.xen_mode = xen_mode
    elif current is None or current.virt_type != "xen":
        spec.xen_mode = "pv" if spec.kernel else "hvm"
    if spec.xen_mode != "hvm":
        spec.loader = None

    if spec.initrd and not spec.kernel:
        raise InvalidOption("initrd", "needs kernel: an initrd is only used when booting a kernel directly")
    if spec.cmdline and not spec.kernel:
        raise InvalidOption("cmdline", "needs kernel: a command line is only used when booting a kernel directly")
    if spec.is_xen_pv and not spec.kernel:
        raise InvalidOption("kernel", "a Xen PV guest boots a kernel given here; give kernel or use xen_mode: hvm")

    if params.get("disks") is not None:
        spec.disks = _disks_from_options(spec, params["disks"], current)
    else:
        allowed = BUSES_BY_TYPE[_bus_key(spec)]
        for index, disk in enumerate(spec.disks):
            if disk.bus not in allowed:
                raise InvalidOption("disks", "defined disk %d is on bus %s, which this guest cannot use; give disks"
                                    % (index, disk.bus))
    if params.get("nics") is not None:
        spec.nics = _nics_from_options(spec, params["nics"], current)
    if not spec.kernel and not spec.disks:
        raise InvalidOption("disks", "the guest needs a kernel or at least one disk to boot from")
    return spec


# ---------------------------------------------------------------------------------------------------------------
# XML -> GuestSpec
# ---------------------------------------------------------------------------------------------------------------

def _memory_mib(element):
    if element is None or not (element.text or "").strip():
        return DEFAULT_MEMORY_MIB
    unit = (element.get("unit") or "KiB").lower()
    return int(element.text.strip()) * _MEMORY_UNITS.get(unit, 1024) // 1024 ** 2


def _chardev_log(element):
    log = element.find("log") if element is not None else None
    return log.get("file") if log is not None else None


def spec_from_xml(xml):
    """The managed part of a domain definition (as returned by XMLDesc) as a GuestSpec."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise VirtError("cannot read the guest definition: %s" % error) from None
    os_type = root.find("os/type")
    virt_type = root.get("type")
    spec = GuestSpec(
        name=root.findtext("name") or "",
        virt_type=virt_type,
        uuid=(root.findtext("uuid") or "").strip().lower() or None,
        memory_mib=_memory_mib(root.find("memory")),
        vcpus=int((root.findtext("vcpu") or str(DEFAULT_VCPUS)).strip()),
        machine=os_type.get("machine") if os_type is not None else None,
        loader=root.findtext("os/loader"),
        kernel=root.findtext("os/kernel"),
        initrd=root.findtext("os/initrd"),
        cmdline=root.findtext("os/cmdline"),
    )
    if virt_type == "xen":
        spec.xen_mode = "hvm" if os_type is not None and os_type.text == "hvm" else "pv"
    cpu = root.find("cpu")
    if cpu is not None:
        mode = cpu.get("mode") or "custom"
        spec.cpu_model = cpu.findtext("model") if mode == "custom" else mode
    for disk in root.findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        source, target, driver = disk.find("source"), disk.find("target"), disk.find("driver")
        path = source.get("file") or source.get("dev") if source is not None else None
        if not path or target is None:
            continue
        address = disk.find("address")
        spec.disks.append(DiskSpec(
            path=path, target=target.get("dev"), bus=target.get("bus") or "virtio",
            format=driver.get("type", "raw") if driver is not None else "raw",
            readonly=disk.find("readonly") is not None,
            address=dict(address.attrib) if address is not None else None,
        ))
    for interface in root.findall("devices/interface"):
        source_type = interface.get("type")
        source = interface.find("source")
        if source_type not in ("network", "bridge") or source is None:
            continue
        mac, model, address = interface.find("mac"), interface.find("model"), interface.find("address")
        spec.nics.append(NicSpec(
            source_type=source_type, source=source.get(source_type),
            mac=mac.get("address").lower() if mac is not None and mac.get("address") else None,
            model=model.get("type") if model is not None else None,
            address=dict(address.attrib) if address is not None else None,
        ))
    spec.serial_log = _chardev_log(root.find("devices/serial")) or _chardev_log(root.find("devices/console"))
    recorded = {}
    for mac, address in metadata_addresses(root):
        recorded.setdefault(mac, []).append(address)
    for nic in spec.nics:
        nic.addresses = recorded.get(nic.mac, [])
    spec.foreign_metadata = [copy.deepcopy(child) for child in root.findall("metadata/*")
                             if child.tag != "{%s}guest" % METADATA_NS]
    return spec


def metadata_addresses(root):
    """``[(mac, address), ...]`` recorded under the collection's namespace in the domain XML ``root``."""
    found = []
    for guest in root.findall("metadata/{%s}guest" % METADATA_NS):
        for address in guest.findall("{%s}address" % METADATA_NS):
            if address.get("nic") and address.text:
                found.append((address.get("nic").lower(), address.text.strip()))
    return found


# ---------------------------------------------------------------------------------------------------------------
# GuestSpec -> XML
# ---------------------------------------------------------------------------------------------------------------

def _sub(parent, tag, text=None, **attrs):
    element = ET.SubElement(parent, tag, {key: value for key, value in attrs.items() if value is not None})
    if text is not None:
        element.text = text
    return element


def _render_os(root, spec):
    os_element = _sub(root, "os")
    _sub(os_element, "type", "linux" if spec.is_xen_pv else "hvm", machine=spec.machine)
    if spec.loader:
        _sub(os_element, "loader", spec.loader, type="rom")
    if spec.kernel:
        _sub(os_element, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_element, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_element, "cmdline", spec.cmdline)
    else:
        _sub(os_element, "boot", dev="hd")
    if not spec.is_xen_pv:
        # ACPI is what makes a graceful shutdown (virDomainShutdown) reach the guest.
        features = _sub(root, "features")
        _sub(features, "acpi")
        _sub(features, "apic")
        if spec.virt_type == "xen":
            _sub(features, "pae")


def _render_cpu(root, spec):
    if not spec.cpu_model:
        return
    if spec.cpu_model in CPU_MODES:
        _sub(root, "cpu", mode=spec.cpu_model)
    else:
        cpu = _sub(root, "cpu", mode="custom", match="exact")
        _sub(cpu, "model", spec.cpu_model, fallback="allow")


def _render_disk(devices, disk):
    block = disk.path.startswith("/dev/")
    element = _sub(devices, "disk", type="block" if block else "file", device="disk")
    _sub(element, "driver", name="qemu", type=disk.format)
    _sub(element, "source", **{"dev" if block else "file": disk.path})
    _sub(element, "target", dev=disk.target, bus=disk.bus)
    if disk.readonly:
        _sub(element, "readonly")
    if disk.address:
        _sub(element, "address", **disk.address)


def _render_nic(devices, nic):
    element = _sub(devices, "interface", type=nic.source_type)
    if nic.mac:
        _sub(element, "mac", address=nic.mac)
    _sub(element, "source", **{nic.source_type: nic.source})
    if nic.model:
        _sub(element, "model", type=nic.model)
    if nic.address:
        _sub(element, "address", **nic.address)


def _render_console(devices, spec):
    if spec.is_xen_pv:
        console = _sub(devices, "console", type="pty")
        if spec.serial_log:
            _sub(console, "log", file=spec.serial_log, append="off")
        _sub(console, "target", type="xen", port="0")
        return
    serial = _sub(devices, "serial", type="pty")
    if spec.serial_log:
        _sub(serial, "log", file=spec.serial_log, append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")


def metadata_element(spec, qualified=True):
    """The collection's <atv:guest> metadata element for ``spec``, or None when it records nothing.

    Unqualified, the elements have no namespace: setMetadata() takes them so and applies the namespace itself."""
    if not spec.recorded_addresses:
        return None
    tag = ("{%s}%%s" % METADATA_NS) if qualified else "%s"
    guest = ET.Element(tag % "guest")
    for mac, addresses in spec.recorded_addresses:
        for address in addresses:
            _sub(guest, tag % "address", address, nic=mac)
    return guest


def _render_metadata(root, spec):
    ours = metadata_element(spec)
    if ours is None and not spec.foreign_metadata:
        return
    metadata = _sub(root, "metadata")
    metadata.extend(copy.deepcopy(spec.foreign_metadata))
    if ours is not None:
        metadata.append(ours)


def render_xml(spec):
    """The libvirt domain XML for ``spec``, indented, as a str."""
    root = ET.Element("domain", {"type": spec.virt_type})
    _sub(root, "name", spec.name)
    if spec.uuid:
        _sub(root, "uuid", spec.uuid)
    _render_metadata(root, spec)
    _sub(root, "memory", str(spec.memory_mib * 1024), unit="KiB")
    _sub(root, "vcpu", str(spec.vcpus), placement="static")
    _render_os(root, spec)
    _render_cpu(root, spec)
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    for disk in spec.disks:
        _render_disk(devices, disk)
    for nic in spec.nics:
        _render_nic(devices, nic)
    _render_console(devices, spec)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SpecDiff:
    """What differs between the defined guest and the wanted one, with both as XML for Ansible's --diff."""

    changes: list
    before: str
    after: str

    @property
    def changed(self):
        return bool(self.changes)

    def for_ansible(self, name):
        return dict(before=self.before, after=self.after,
                    before_header="guest %s (defined)" % name, after_header="guest %s (wanted)" % name)


def diff_specs(current, desired):
    """Compare specs. ``current`` None means the guest is not defined yet: every option set is a change."""
    changes = []
    for field, option in COMPARED_FIELDS:
        wanted = getattr(desired, field)
        differs = wanted not in (None, []) if current is None else getattr(current, field) != wanted
        if differs and option not in changes:
            changes.append(option)
    return SpecDiff(changes=changes, before=render_xml(current) if current else "", after=render_xml(desired))


def describe(spec, state, autostart=None):
    """The ``guest`` return value of the module."""
    nics = []
    for nic in spec.nics:
        nics.append({"mac": nic.mac, nic.source_type: nic.source, "model": nic.model, "addresses": nic.addresses})
    return dict(name=spec.name, uuid=spec.uuid, state=state, memory=spec.memory_mib, vcpus=spec.vcpus,
                virt_type=spec.virt_type, nics=nics, autostart=autostart)


# ---------------------------------------------------------------------------------------------------------------
# Host facts
# ---------------------------------------------------------------------------------------------------------------

def _host_guests(caps):
    """The <guest> entries of a capabilities document that run on the host's own architecture."""
    arch = caps.findtext("host/cpu/arch")
    return [guest for guest in caps.findall("guest")
            if guest.find("arch") is not None and (arch is None or guest.find("arch").get("name") == arch)]


def host_capabilities(conn):
    """The host's capabilities document (conn.getCapabilities) as an Element."""
    try:
        return ET.fromstring(call("reading host capabilities", conn.getCapabilities))
    except ET.ParseError as error:
        raise VirtError("cannot read host capabilities: %s" % error) from None


def offered_virt_types(caps):
    """Domain types the host offers for its own architecture, e.g. {'qemu', 'kvm'}."""
    return {domain.get("type") for guest in _host_guests(caps) for domain in guest.findall("arch/domain")}


def is_xen_uri(uri):
    return urlsplit(uri or "").scheme.split("+")[0] in ("xen", "libxl")


def resolve_virt_type(conn, caps, hypervisor, current=None):
    """The domain type to use: the explicit choice (checked against the host), the defined guest's, or detected.

    auto: xen for a Xen URI, else kvm when the host offers kvm for its architecture, else qemu (TCG).
    """
    if hypervisor in (None, "auto"):
        if current is not None:
            return current.virt_type
        if is_xen_uri(call("reading the connection URI", conn.getURI)):
            return "xen"
        return "kvm" if "kvm" in offered_virt_types(caps) else "qemu"
    offered = offered_virt_types(caps)
    if offered and hypervisor not in offered:
        raise InvalidOption("hypervisor", "this host offers %s guests, not %s" % (", ".join(sorted(offered)), hypervisor))
    return hypervisor


def complete_from_host(spec, caps):
    """Fill in what libvirt would: the versioned machine for an alias, and the Xen HVM loader.

    libvirt stores an alias such as 'pc' or 'q35' as 'pc-i440fx-7.2'; comparing against the stored form keeps a
    second run unchanged. The hvmloader path differs between distributions, so it comes from the host too.
    """
    for guest in _host_guests(caps):
        for element in guest.iter("machine"):
            if spec.machine and element.text == spec.machine and element.get("canonical"):
                spec.machine = element.get("canonical")
        if spec.virt_type == "xen" and spec.xen_mode == "hvm" and not spec.loader and guest.findtext("os_type") == "hvm":
            spec.loader = guest.findtext("arch/loader")
    return spec


# ---------------------------------------------------------------------------------------------------------------
# Disks
# ---------------------------------------------------------------------------------------------------------------

def missing_overlays(spec):
    """Disks with a base image whose file does not exist yet; checks that their base images exist."""
    todo = []
    for index, disk in enumerate(spec.disks):
        if disk.base_image and not os.path.exists(disk.path):
            if not os.path.exists(disk.base_image):
                raise InvalidOption("disks[%d].base_image" % index, "'%s' does not exist" % disk.base_image)
            todo.append((index, disk))
    return todo


def _base_format(module, index, disk):
    if disk.base_format:
        return disk.base_format
    qemu_img = module.get_bin_path("qemu-img", required=True)
    # --force-share: the base image may be open by running guests.
    rc, out, err = module.run_command([qemu_img, "info", "--force-share", "--output=json", disk.base_image])
    if rc != 0:
        raise InvalidOption("disks[%d].base_image" % index, "qemu-img cannot read '%s': %s" % (disk.base_image, err.strip()))
    try:
        return json.loads(out)["format"]
    except (ValueError, KeyError):
        raise VirtError("disks[%d].base_image: qemu-img info gave no format for '%s'" % (index, disk.base_image)) from None


def create_overlays(module, todo):
    """Create each qcow2 overlay (see missing_overlays); returns the paths made, removing them all on failure."""
    created = []
    try:
        for index, disk in todo:
            base_format = _base_format(module, index, disk)
            qemu_img = module.get_bin_path("qemu-img", required=True)
            argv = [qemu_img, "create", "-f", "qcow2", "-F", base_format, "-b", disk.base_image, disk.path]
            # The path did not exist, so whatever a failed create leaves there is ours to remove.
            created.append(disk.path)
            rc, _out, err = module.run_command(argv)
            if rc != 0:
                raise VirtError("disks[%d]: qemu-img create of '%s' failed: %s" % (index, disk.path, err.strip()))
    except Exception:
        remove_files(created)
        raise
    return created


def remove_files(paths):
    """Undo create_overlays when the guest could not be defined."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------------------------
# Life cycle
# ---------------------------------------------------------------------------------------------------------------

def inactive_xml(domain):
    return call("reading the definition of guest '%s'" % domain.name(), domain.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE)


def define(conn, spec):
    """Define (or redefine) the guest; returns the domain."""
    return call("defining guest '%s'" % spec.name, conn.defineXML, render_xml(spec))


def record_live_addresses(domain, spec):
    """Give a running guest the recorded addresses of ``spec`` in its live metadata too (define() only changes the
    definition), so that guest_info sees them before the next boot."""
    ours = metadata_element(spec, qualified=False)
    fragment = ET.tostring(ours, encoding="unicode") if ours is not None else None  # None removes the element
    call("recording the addresses of guest '%s'" % spec.name, domain.setMetadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT,
         fragment, "atv", METADATA_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def is_active(domain):
    return bool(call("reading state of guest '%s'" % domain.name(), domain.isActive))


def start(domain):
    """Make the guest run: boot it, resume it when paused, wake it when suspended to RAM."""
    state = domain_state(domain)
    name = domain.name()
    if state == "paused":
        call("resuming guest '%s'" % name, domain.resume)
    elif state == "pmsuspended":
        call("waking guest '%s'" % name, domain.pmWakeup, 0)
    elif not is_active(domain):
        call("starting guest '%s'" % name, domain.create)


def shutdown(domain, timeout, force):
    """Ask the guest to power off (ACPI) and wait ``timeout`` seconds; then destroy if ``force`` else fail.

    Returns 'shutdown' or 'destroyed' saying how the guest went down.
    """
    name = domain.name()
    if domain_state(domain) in ("paused", "pmsuspended"):
        # A paused guest cannot see the ACPI event.
        start(domain)
    deadline = time.monotonic() + timeout
    asked = None
    while is_active(domain):
        now = time.monotonic()
        # Asked again every few seconds: a guest that is still booting can miss the first request.
        if asked is None or now - asked >= 5:
            try:
                call("shutting down guest '%s'" % name, domain.shutdown)
            except VirtError:
                if is_active(domain):
                    raise
                break
            asked = now
            continue
        if now >= deadline:
            if not force:
                raise VirtError("shutdown_timeout: guest '%s' did not shut down within %s seconds and is still running; "
                                "set force: true to power it off after the timeout" % (name, timeout), guest=name)
            destroy(domain)
            return "destroyed"
        time.sleep(min(0.5, deadline - now))
    return "shutdown"


def destroy(domain):
    if is_active(domain):
        call("powering off guest '%s'" % domain.name(), domain.destroy)


def undefine(domain):
    """Remove the definition with its managed save image, snapshot/checkpoint metadata and NVRAM; disks stay.

    Drivers refuse flags they do not know (libxl takes only MANAGED_SAVE), so fewer are tried on that refusal.
    """
    name = domain.name()
    wanted = (
        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM,
        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE,
    )
    for flags in wanted[:-1]:
        try:
            domain.undefineFlags(flags)
            return
        except libvirt.libvirtError as error:
            if not (is_error(error, "VIR_ERR_INVALID_ARG") or is_error(error, "VIR_ERR_NO_SUPPORT")):
                raise VirtError("removing guest '%s': %s" % (name, error_message(error))) from None
    call("removing guest '%s'" % name, domain.undefineFlags, wanted[-1])


def require_guest(domain, name, state):
    """Fail when a task that gives no definition names a guest that does not exist."""
    if domain is None:
        raise NotFound("name: there is no guest '%s' to make %s; give its definition (kernel or disks) to create it"
                       % (name, state), guest=name)
