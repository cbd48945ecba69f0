# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest definitions as libvirt domain XML: the modelled part read into a GuestSpec, and written back by editing.

A defined guest is never written anew: edited_xml() changes the elements and attributes a GuestSpec models inside
the document libvirt has, so every device, setting and attribute the module does not know stays as it was. A new
guest is the same edit applied to a small skeleton (render_xml). ElementTree only: no user string becomes markup.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ansible_collections.arctictern.virt.plugins.module_utils._domain_model import (
    AGENT_CHANNEL, CPU_MODES, DEFAULT_VCPUS, METADATA_NS, DiskSpec, GuestSpec, NicSpec, comparable,
)
from ansible_collections.arctictern.virt.plugins.module_utils._xml import parse, place, pretty, remove_all

_MEMORY_UNITS = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000 ** 2, "m": 1024 ** 2, "mib": 1024 ** 2,
    "gb": 1000 ** 3, "g": 1024 ** 3, "gib": 1024 ** 3,
    "tb": 1000 ** 4, "t": 1024 ** 4, "tib": 1024 ** 4,
}
# The order libvirt writes children in. A new element goes to its place in it, so that an edited document reads
# like libvirt's own; tags missing here (a newer libvirt's) keep their place and new elements go before them.
_DOMAIN_ORDER = (
    "name", "uuid", "genid", "title", "description", "metadata", "maxMemory", "memory", "currentMemory",
    "blkiotune", "memtune", "memoryBacking", "vcpu", "vcpus", "iothreads", "iothreadids", "cputune", "numatune",
    "resource", "sysinfo", "bootloader", "bootloader_args", "os", "idmap", "features", "cpu", "clock",
    "on_poweroff", "on_reboot", "on_crash", "pm", "perf", "devices", "seclabel", "keywrap", "launchSecurity",
)
_OS_ORDER = ("type", "firmware", "loader", "nvram", "kernel", "initrd", "cmdline", "dtb", "acpi", "boot", "bootmenu",
             "smbios", "bios")
_DEVICE_ORDER = (
    "emulator", "disk", "controller", "lease", "filesystem", "interface", "smartcard", "serial", "parallel", "console",
    "channel", "input", "tpm", "graphics", "sound", "audio", "video", "hostdev", "redirdev", "redirfilter", "hub",
    "watchdog", "memballoon", "rng", "panic", "shmem", "memory", "iommu", "vsock",
)
_DISK_ORDER = ("driver", "auth", "source", "backingStore", "mirror", "target", "iotune", "boot", "readonly",
               "shareable", "transient", "serial", "wwn", "vendor", "product", "encryption", "alias", "address")
_NIC_ORDER = ("mac", "source", "virtualport", "target", "guest", "model", "driver", "backend", "filterref", "tune",
              "teaming", "link", "mtu", "bandwidth", "vlan", "boot", "rom", "alias", "address")
_CHARDEV_ORDER = ("source", "protocol", "log", "target", "alias", "address")
_CPU_ORDER = ("model", "vendor", "topology", "cache", "maxphysaddr", "feature", "numa")


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------

def _memory_mib(element):
    if element is None or not (element.text or "").strip():
        return None
    unit = (element.get("unit") or "KiB").lower()
    return int(element.text.strip()) * _MEMORY_UNITS.get(unit, 1024) // 1024 ** 2


def _chardev_log(element):
    log = element.find("log") if element is not None else None
    return log.get("file") if log is not None else None


def _disk_path(element):
    source = element.find("source")
    return (source.get("file") or source.get("dev")) if source is not None else None


def is_managed_disk(element):
    """A file or block device disk with a target: what ``disks`` manages. CD-ROMs, floppies, LUNs, network and
    volume disks are devices the module keeps as they are."""
    target = element.find("target")
    return (element.get("device", "disk") == "disk" and element.get("type", "file") in ("file", "block")
            and bool(_disk_path(element)) and target is not None and bool(target.get("dev")))


def is_managed_nic(element):
    """An interface on a libvirt network or a host bridge: what ``nics`` manages. Other kinds (direct, user,
    hostdev, vhostuser, ...) are kept as they are."""
    kind = element.get("type")
    source = element.find("source")
    return kind in ("network", "bridge") and source is not None and bool(source.get(kind))


def is_agent_channel(element):
    """A <channel> of the QEMU guest agent, whatever its source path or address."""
    target = element.find("target")
    return target is not None and target.get("type") == "virtio" and target.get("name") == AGENT_CHANNEL


def _disk_spec(element):
    """The DiskSpec of a managed <disk> element."""
    target, driver = element.find("target"), element.find("driver")
    return DiskSpec(path=_disk_path(element), target=target.get("dev"), bus=target.get("bus") or "virtio",
                    format=driver.get("type", "raw") if driver is not None else "raw",
                    readonly=element.find("readonly") is not None)


def _nic_spec(element):
    """The NicSpec of a managed <interface> element (without the addresses recorded in the metadata)."""
    source_type, model = element.get("type"), element.find("model")
    return NicSpec(source_type=source_type, source=element.find("source").get(source_type), mac=_nic_mac(element),
                   model=model.get("type") if model is not None else None)


def spec_from_xml(xml):
    """The managed part of a domain definition (as returned by XMLDesc) as a GuestSpec."""
    root = parse(xml, "guest definition")
    os_type = root.find("os/type")
    virt_type = root.get("type")
    memory = _memory_mib(root.find("memory"))
    spec = GuestSpec(
        name=root.findtext("name") or "",
        virt_type=virt_type,
        uuid=(root.findtext("uuid") or "").strip().lower() or None,
        vcpus=int((root.findtext("vcpu") or str(DEFAULT_VCPUS)).strip()),
        machine=os_type.get("machine") if os_type is not None else None,
        # The module models Xen's hvmloader only; another guest's loader (UEFI firmware) is left alone.
        loader=root.findtext("os/loader") if virt_type == "xen" else None,
        kernel=root.findtext("os/kernel"),
        initrd=root.findtext("os/initrd"),
        cmdline=root.findtext("os/cmdline"),
    )
    if memory is not None:
        spec.memory_mib = memory
    if virt_type == "xen":
        spec.xen_mode = "hvm" if os_type is not None and os_type.text == "hvm" else "pv"
    cpu = root.find("cpu")
    if cpu is not None:
        mode = cpu.get("mode") or "custom"
        spec.cpu_model = cpu.findtext("model") if mode == "custom" else mode
    for disk in root.findall("devices/disk"):
        target = disk.find("target")
        if not is_managed_disk(disk):
            if target is not None and target.get("dev"):
                spec.reserved_targets[target.get("dev")] = "a %s %s" % (disk.get("type"), disk.get("device", "disk"))
            continue
        spec.disks.append(_disk_spec(disk))
    for interface in root.findall("devices/interface"):
        mac = _nic_mac(interface)
        if not is_managed_nic(interface):
            if mac:
                spec.reserved_macs[mac] = "a NIC of type %s" % interface.get("type")
            continue
        spec.nics.append(_nic_spec(interface))
    spec.serial_log = _chardev_log(root.find("devices/serial")) or _chardev_log(root.find("devices/console"))
    spec.agent_channels = sum(1 for channel in root.findall("devices/channel") if is_agent_channel(channel))
    recorded = {}
    for mac, address in metadata_addresses(root):
        recorded.setdefault(mac, []).append(address)
    for nic in spec.nics:
        nic.addresses = recorded.get(nic.mac, [])
    return spec


def metadata_addresses(root):
    """``[(mac, address), ...]`` recorded under the collection's namespace in the domain XML ``root``."""
    found = []
    for guest in root.findall("metadata/{%s}guest" % METADATA_NS):
        for address in guest.findall("{%s}address" % METADATA_NS):
            if address.get("nic") and address.text:
                found.append((address.get("nic").lower(), address.text.strip()))
    return found


def metadata_element(spec, qualified=True):
    """The collection's <atv:guest> metadata element for ``spec``, or None when it records nothing.

    Unqualified, the elements have no namespace: setMetadata() takes them so and applies the namespace itself."""
    if not spec.recorded_addresses:
        return None
    tag = ("{%s}%%s" % METADATA_NS) if qualified else "%s"
    guest = ET.Element(tag % "guest")
    for mac, addresses in spec.recorded_addresses:
        for address in addresses:
            ET.SubElement(guest, tag % "address", nic=mac).text = address
    return guest


# ---------------------------------------------------------------------------------------------------------------
# Writing: edits of the defined document
# ---------------------------------------------------------------------------------------------------------------

def _child(parent, tag, order, **attrs):
    """``parent``'s first <tag>; made with ``attrs`` at its place in ``order`` when there is none."""
    element = parent.find(tag)
    return element if element is not None else place(parent, ET.Element(tag, attrs), order)


def _set_text(parent, tag, text, order):
    """<tag>text</tag> under ``parent``, or no <tag> at all when ``text`` is None."""
    if text is None:
        remove_all(parent, tag)
    else:
        _child(parent, tag, order).text = text


def _kib(element):
    return _memory_mib(element) * 1024 if _memory_mib(element) is not None else None


def _write_memory(root, spec, current):
    kib = spec.memory_mib * 1024
    memory = _child(root, "memory", _DOMAIN_ORDER)
    old_kib = _kib(memory)
    memory.text = str(kib)
    memory.set("unit", "KiB")
    balloon = root.find("currentMemory")
    # The balloon target follows a guest that had all its memory; a lower target the user chose stays (capped).
    if balloon is not None and (_kib(balloon) == old_kib or _kib(balloon) > kib or current is None):
        balloon.text = str(kib)
        balloon.set("unit", "KiB")


def _write_vcpus(root, spec, _current):
    vcpu = _child(root, "vcpu", _DOMAIN_ORDER, placement="static")
    vcpu.text = str(spec.vcpus)
    if vcpu.get("current") and int(vcpu.get("current")) > spec.vcpus:
        del vcpu.attrib["current"]


def _os(root):
    return _child(root, "os", _DOMAIN_ORDER)


def _write_os_type(root, spec, _current):
    _child(_os(root), "type", _OS_ORDER).text = "linux" if spec.is_xen_pv else "hvm"


def _write_machine(root, spec, _current):
    os_type = _child(_os(root), "type", _OS_ORDER)
    if spec.machine:
        os_type.set("machine", spec.machine)
    else:
        os_type.attrib.pop("machine", None)


def _write_loader(root, spec, current):
    if spec.virt_type != "xen" and (current is None or current.virt_type != "xen"):
        return  # only Xen's hvmloader is modelled; a KVM guest's firmware is not the module's
    if spec.loader:
        _child(_os(root), "loader", _OS_ORDER, type="rom").text = spec.loader
    else:
        remove_all(_os(root), "loader")


def _has_boot_order(root):
    return root.find("devices/*/boot") is not None


def _write_kernel(root, spec, _current):
    os_element = _os(root)
    _set_text(os_element, "kernel", spec.kernel, _OS_ORDER)
    if not spec.kernel and os_element.find("boot") is None and not _has_boot_order(root):
        _child(os_element, "boot", _OS_ORDER, dev="hd")


def _write_initrd(root, spec, _current):
    _set_text(_os(root), "initrd", spec.initrd, _OS_ORDER)


def _write_cmdline(root, spec, _current):
    _set_text(_os(root), "cmdline", spec.cmdline, _OS_ORDER)


def _write_cpu(root, spec, _current):
    cpu = root.find("cpu")
    if spec.cpu_model is None:
        if cpu is not None:
            for attribute in ("mode", "match", "check"):
                cpu.attrib.pop(attribute, None)
            remove_all(cpu, "model")
            if not len(cpu) and not cpu.attrib:
                root.remove(cpu)
        return
    cpu = cpu if cpu is not None else _child(root, "cpu", _DOMAIN_ORDER)
    cpu.set("mode", spec.cpu_model if spec.cpu_model in CPU_MODES else "custom")
    if spec.cpu_model in CPU_MODES:
        cpu.attrib.pop("match", None)
        remove_all(cpu, "model")
        return
    cpu.set("match", cpu.get("match") or "exact")
    model = _child(cpu, "model", _CPU_ORDER, fallback="allow")
    model.text = spec.cpu_model


def _devices(root):
    return _child(root, "devices", _DOMAIN_ORDER)


def _take(elements, matches):
    """The first of ``elements`` that ``matches``, removed from the list; None when none does."""
    for element in elements:
        if matches(element):
            elements.remove(element)
            return element
    return None


def _replace_devices(devices, old, new):
    """Swap the managed devices ``old`` for ``new`` (in order), where the first of ``old`` stood, or at the place
    libvirt gives their kind; the devices around them stay where they are."""
    position = list(devices).index(old[0]) if old else None
    for element in old:
        devices.remove(element)
    if position is None:
        for element in new:
            place(devices, element, _DEVICE_ORDER)
        return
    for offset, element in enumerate(new):
        devices.insert(position + offset, element)


def _write_disk(element, disk):
    block = disk.path.startswith("/dev/")
    element.set("type", "block" if block else "file")
    element.set("device", "disk")
    _child(element, "driver", _DISK_ORDER, name="qemu").set("type", disk.format)
    source = _child(element, "source", _DISK_ORDER)
    source.attrib.pop("file", None)
    source.attrib.pop("dev", None)
    source.set("dev" if block else "file", disk.path)
    target = _child(element, "target", _DISK_ORDER)
    if target.get("bus") not in (None, disk.bus):
        remove_all(element, "address")  # the slot belongs to the old bus; libvirt assigns one on the new bus
    target.set("dev", disk.target)
    target.set("bus", disk.bus)
    if disk.readonly:
        _child(element, "readonly", _DISK_ORDER)
    else:
        remove_all(element, "readonly")


def _write_disks(root, spec, _current):
    devices = _devices(root)
    free = [element for element in devices.findall("disk") if is_managed_disk(element)]
    for disk in spec.disks:
        # A disk keeps its element, with all the settings the module does not model, by its image; else by its name.
        element = (_take(free, lambda e, d=disk: _disk_path(e) == d.path)
                   or _take(free, lambda e, d=disk: e.find("target").get("dev") == d.target))
        if element is None:
            # libvirt orders disks itself (by bus, then name), so a new one simply follows the others.
            element = ET.Element("disk", {"type": "file", "device": "disk"})
            last = devices.findall("disk")
            if last:
                devices.insert(list(devices).index(last[-1]) + 1, element)
            else:
                place(devices, element, _DEVICE_ORDER)
        if element.find("target") is None or _disk_spec(element) != disk:
            _write_disk(element, disk)  # a disk that does not change keeps even the attributes libvirt left out
    for element in free:
        devices.remove(element)


def _write_nic(element, nic):
    if element.get("type") != nic.source_type:
        element.set("type", nic.source_type)
        source = element.find("source")
        if source is not None:
            source.attrib.clear()  # a portgroup or another kind's attributes mean nothing on the new source
    _child(element, "mac", _NIC_ORDER).set("address", nic.mac)
    _child(element, "source", _NIC_ORDER).set(nic.source_type, nic.source)
    if nic.model:
        _child(element, "model", _NIC_ORDER).set("type", nic.model)
    else:
        remove_all(element, "model")


def _nic_mac(element):
    mac = element.find("mac")
    return mac.get("address").lower() if mac is not None and mac.get("address") else None


def _write_nics(root, spec, _current):
    devices = _devices(root)
    old = [element for element in devices.findall("interface") if is_managed_nic(element)]
    free = list(old)
    new = []
    for nic in spec.nics:
        # A NIC keeps its element (driver, bandwidth, vlan, filterref, link state, ...) by MAC, else by its source.
        element = (_take(free, lambda e, n=nic: _nic_mac(e) == n.mac)
                   or _take(free, lambda e, n=nic: (e.get("type"), e.find("source").get(e.get("type"))) == (n.source_type, n.source))
                   or ET.Element("interface", type=nic.source_type))
        if element.find("source") is None or _nic_spec(element) != nic:
            _write_nic(element, nic)
        new.append(element)
    _replace_devices(devices, old, new)


def _add_console(devices, spec):
    """The guest's console device(s); returns the one that carries the log: the serial port, or Xen PV's console."""
    if spec.is_xen_pv:
        console = place(devices, ET.Element("console", type="pty"), _DEVICE_ORDER)
        ET.SubElement(console, "target", type="xen", port="0")
        return console
    serial = place(devices, ET.Element("serial", type="pty"), _DEVICE_ORDER)
    ET.SubElement(serial, "target", port="0")
    console = place(devices, ET.Element("console", type="pty"), _DEVICE_ORDER)
    ET.SubElement(console, "target", type="serial", port="0")
    return serial


def _write_serial_log(root, spec, _current):
    devices = _devices(root)
    chardev = devices.find("console" if spec.is_xen_pv else "serial")
    if chardev is None:
        if not spec.serial_log:
            return
        chardev = _add_console(devices, spec)
    if spec.serial_log:
        _child(chardev, "log", _CHARDEV_ORDER, append="off").set("file", spec.serial_log)
    else:
        remove_all(chardev, "log")


def _write_agent_channels(root, spec, _current):
    """Keep the first ``spec.agent_channels`` agent channels as they are (libvirt's path and address), remove the
    rest, add one when none is left to keep; other channels (SPICE, a user's own) are not touched."""
    devices = _devices(root)
    channels = [channel for channel in devices.findall("channel") if is_agent_channel(channel)]
    for extra in channels[spec.agent_channels:]:
        devices.remove(extra)
    if spec.agent_channels and not channels:
        channel = place(devices, ET.Element("channel", type="unix"), _DEVICE_ORDER)
        ET.SubElement(channel, "source", mode="bind")  # libvirt picks the socket path
        ET.SubElement(channel, "target", type="virtio", name=AGENT_CHANNEL)


def _write_recorded_addresses(root, spec, _current):
    metadata = root.find("metadata")
    if metadata is not None:
        remove_all(metadata, "{%s}guest" % METADATA_NS)
    ours = metadata_element(spec)
    if ours is not None:
        metadata = metadata if metadata is not None else _child(root, "metadata", _DOMAIN_ORDER)
        metadata.append(ours)
    if metadata is not None and not len(metadata):
        root.remove(metadata)


def _write_uuid(root, spec, _current):
    if spec.uuid:
        _child(root, "uuid", _DOMAIN_ORDER).text = spec.uuid


def _write_type(root, spec, _current):
    root.set("type", spec.virt_type)


# GuestSpec field -> the edit that writes it; a field is written only where it differs from the defined guest's.
_WRITERS = (
    ("virt_type", _write_type), ("uuid", _write_uuid), ("memory_mib", _write_memory), ("vcpus", _write_vcpus),
    ("xen_mode", _write_os_type), ("machine", _write_machine), ("loader", _write_loader), ("kernel", _write_kernel),
    ("initrd", _write_initrd), ("cmdline", _write_cmdline), ("cpu_model", _write_cpu), ("disks", _write_disks),
    ("nics", _write_nics), ("serial_log", _write_serial_log), ("agent_channels", _write_agent_channels),
    ("recorded_addresses", _write_recorded_addresses),
)


def _apply(root, current, spec):
    for field, write in _WRITERS:
        if current is None or comparable(current, field) != comparable(spec, field):
            write(root, spec, current)


def edited_xml(defined_xml, spec):
    """``defined_xml`` (the guest's inactive XML) with the parts ``spec`` models changed to ``spec``'s values and
    nothing else: returns (the defined document, the edited document), both as pretty() writes them."""
    root = parse(defined_xml, "guest definition")
    before = pretty(root)
    _apply(root, spec_from_xml(defined_xml), spec)
    return before, pretty(root)


def render_xml(spec):
    """The domain XML of a new guest: the edit of a skeleton with what a new guest gets besides ``spec``."""
    root = ET.Element("domain", type=spec.virt_type)
    ET.SubElement(root, "name").text = spec.name
    if not spec.is_xen_pv:
        # ACPI is what makes a graceful shutdown (virDomainShutdown) reach the guest.
        features = _child(root, "features", _DOMAIN_ORDER)
        for feature in ("acpi", "apic") + (("pae",) if spec.virt_type == "xen" else ()):
            ET.SubElement(features, feature)
    _child(root, "on_crash", _DOMAIN_ORDER).text = "destroy"
    _add_console(_devices(root), spec)
    _apply(root, None, spec)
    return pretty(root)
