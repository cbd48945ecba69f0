# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest definitions: module options -> GuestSpec (validated), the change to a defined guest, host facts that
complete a spec, disk overlays, and the guest's life cycle.

What a task leaves out keeps the defined guest's value (UUID, MACs, disk names and formats, NIC models, machine),
which is what makes a second run report no change; the XML layer (_domain_xml.py) then changes only what differs
and keeps everything the module does not model.
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

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._domain_model import (
    BUSES_BY_TYPE, COMPARED_FIELDS, DEFAULT_NIC_MODEL, DEFINITION_OPTIONS, DISK_FORMATS, METADATA_NS,
    TARGET_PREFIX, VIRT_TYPES, DiskSpec, GuestSpec, NicSpec, comparable,
)
from ansible_collections.arctictern.virt.plugins.module_utils._domain_xml import (
    edited_xml, metadata_element, render_xml, spec_from_xml,
)
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, NotFound, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import call, domain_state, error_message, is_error, libvirt

# Characters XML 1.0 cannot carry at all; ElementTree would write them and produce a document libvirt rejects.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TARGET = re.compile(r"^(vd|xvd|sd|hd)[a-z]{1,3}$")
_MODEL = re.compile(r"^[A-Za-z0-9_.-]+$")


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


def _claim(candidates, matches):
    """The first of ``candidates`` that ``matches``, taken out of the list; None when none does."""
    for candidate in candidates:
        if matches(candidate):
            candidates.remove(candidate)
            return candidate
    return None


def _disks_from_options(spec, entries, current):
    default_bus = "xen" if spec.virt_type == "xen" else "virtio"
    allowed = BUSES_BY_TYPE[_bus_key(spec)]
    reserved = current.reserved_targets if current else {}
    unclaimed = list(current.disks) if current else []
    disks = []
    for index, entry in enumerate(entries):
        option = "disks[%d]" % index
        if not isinstance(entry, dict):
            raise InvalidOption(option, "must be a dictionary with at least a path")
        path = _path(option + ".path", entry.get("path"))
        if not path:
            raise InvalidOption(option + ".path", "is required")
        # What the entry leaves out, the defined disk with the same image keeps.
        old = _claim(unclaimed, lambda disk, path=path: disk.path == path)
        fmt = entry.get("format") or (old.format if old else "qcow2")
        if fmt not in DISK_FORMATS:
            raise InvalidOption(option + ".format", "must be one of %s, got '%s'" % (", ".join(DISK_FORMATS), fmt))
        bus = entry.get("bus") or (old.bus if old and old.bus in allowed else default_bus)
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
        if target in reserved:
            raise InvalidOption(option + ".target", "'%s' is the name of %s, which the module does not manage"
                                % (target, reserved[target]))
        if target is None and old is not None and old.bus == bus and old.target not in reserved:
            target = old.target
        readonly = entry.get("readonly")
        readonly = bool(readonly) if readonly is not None else bool(old and old.readonly)
        disks.append(DiskSpec(path=path, target=target, format=fmt, bus=bus, readonly=readonly,
                              base_image=base_image, base_format=base_format))
    # Unnamed disks get the first free name of their bus, in the order given.
    taken = {disk.target for disk in disks if disk.target} | set(reserved)
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
    return disks


def _nics_from_options(spec, entries, current):
    reserved = current.reserved_macs if current else {}
    nics = []
    for index, entry in enumerate(entries):
        option = "nics[%d]" % index
        if not isinstance(entry, dict):
            raise InvalidOption(option, "must be a dictionary with network or bridge")
        network = _text(option + ".network", entry.get("network"))
        bridge = _text(option + ".bridge", entry.get("bridge"))
        if (network is None) == (bridge is None):
            raise InvalidOption(option, "give exactly one of network or bridge")
        if bridge is not None:
            _validate.interface_name(option + ".bridge", bridge)
        model = _text(option + ".model", entry.get("model"))
        if model is not None and not _MODEL.match(model):
            raise InvalidOption(option + ".model", "'%s' is not a NIC model name like virtio or e1000" % model)
        mac = _validate.mac_address(option + ".mac", entry["mac"]) if entry.get("mac") else None
        if mac in reserved:
            raise InvalidOption(option + ".mac", "'%s' is the MAC of %s, which the module does not manage" % (mac, reserved[mac]))
        nics.append(NicSpec(source_type="network" if network is not None else "bridge",
                            source=network if network is not None else bridge, mac=mac, model=model,
                            addresses=_addresses_from_option(option + ".addresses", entry.get("addresses"), nics)))
    used = {mac: None for mac in reserved}
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
    default_model = None if spec.virt_type == "xen" else DEFAULT_NIC_MODEL
    defined = {n.mac: n for n in (current.nics if current else [])}
    for nic, entry in zip(nics, entries):
        # Left out, a NIC keeps its model and the addresses recorded for it; a new one gets the default model.
        old = defined.get(nic.mac)
        if nic.model is None:
            nic.model = old.model if old else default_model
        if entry.get("addresses") is None and old:
            nic.addresses = list(old.addresses)
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
        interface = _validate.ip_interface(option, _text("%s[%d]" % (option, index), item))
        if interface.ip in taken:
            raise InvalidOption(option, "%s is given more than once" % interface.ip)
        taken.add(interface.ip)
        addresses.append(interface.with_prefixlen)
    return addresses


def _agent_channels(guest_agent, virt_type):
    """The number of agent channels ``guest_agent`` asks for: exactly one, or none."""
    if guest_agent and virt_type == "xen":
        raise InvalidOption("guest_agent", "a Xen guest cannot have the QEMU guest agent channel (libxl has no virtio "
                            "channels); leave guest_agent out or set it to false")
    return 1 if guest_agent else 0


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
    if params.get("guest_agent") is not None:
        spec.agent_channels = _agent_channels(params["guest_agent"], virt_type)

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
# Comparing
# ---------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class DefinitionChange:
    """What a run changes in a guest's definition: the options (``changes``), and the defined and the wanted XML,
    which is what gets defined and what Ansible's --diff shows (the same layout on both sides, so only the changed
    lines differ). ``before`` is empty for a guest that is not defined yet."""

    changes: list
    before: str
    after: str

    @property
    def changed(self):
        return bool(self.changes)


def changed_options(current, desired):
    """The options whose value differs. ``current`` None means the guest is not defined yet: every option set
    (not None, no empty list, no zero count of agent channels)."""
    changes = []
    for field, option in COMPARED_FIELDS:
        wanted = comparable(desired, field)
        differs = wanted not in (None, [], 0) if current is None else comparable(current, field) != wanted
        if differs and option not in changes:
            changes.append(option)
    return changes


def plan_definition(defined_xml, desired):
    """The change from the guest's inactive XML ``defined_xml`` (None: not defined yet) to ``desired``: libvirt's
    document edited where ``desired`` differs, everything else carried over."""
    if defined_xml is None:
        return DefinitionChange(changed_options(None, desired), "", render_xml(desired))
    before, after = edited_xml(defined_xml, desired)
    return DefinitionChange(changed_options(spec_from_xml(defined_xml), desired), before, after)


def describe(spec, state, autostart=None):
    """The ``guest`` return value of the module."""
    nics = []
    for nic in spec.nics:
        nics.append({"mac": nic.mac, nic.source_type: nic.source, "model": nic.model, "addresses": nic.addresses})
    return dict(name=spec.name, uuid=spec.uuid, state=state, memory=spec.memory_mib, vcpus=spec.vcpus,
                virt_type=spec.virt_type, nics=nics, autostart=autostart, guest_agent=spec.agent_channels > 0)


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


def define(conn, name, xml):
    """Define (or redefine) the guest ``name`` from ``xml``; returns the domain."""
    return call("defining guest '%s'" % name, conn.defineXML, xml)


def record_live_addresses(domain, spec):
    """Give a running guest the recorded addresses of ``spec`` in its live metadata too (define() only changes the
    definition), so that guest_info sees them before the next boot."""
    ours = metadata_element(spec, qualified=False)
    fragment = ET.tostring(ours, encoding="unicode") if ours is not None else None  # None removes the element
    call("recording the addresses of guest '%s'" % spec.name, domain.setMetadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT,
         fragment, "atv", METADATA_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def is_active(domain):
    return bool(call("reading state of guest '%s'" % domain.name(), domain.isActive))


def set_autostart(domain, autostart):
    call("setting autostart of guest '%s'" % domain.name(), domain.setAutostart, int(autostart))


def pause(domain):
    call("pausing guest '%s'" % domain.name(), domain.suspend)


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
