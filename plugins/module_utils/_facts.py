# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Describing live guests and hypervisors as plain data, for guest_info and the inventory plugin."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt, _netlink, _placement, _validate
from ansible_collections.arctictern.virt.plugins.module_utils._domain_xml import is_agent_channel, metadata_addresses
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, NotFound, VirtError

# Where guest addresses can come from; the order given by the caller is the order of preference.
ADDRESS_SOURCES = ("metadata", "lease", "arp", "agent")
DEFAULT_ADDRESS_SOURCES = ("metadata", "lease", "arp")

# libvirt states in which a domain has no running process, so nothing can report its addresses.
_INACTIVE_STATES = ("shutoff",)


def _text(element, path):
    found = element.find(path)
    return found.text if found is not None else None


def _kib_to_mib(text):
    # libvirt always writes memory sizes in KiB in the XML it returns.
    return int(text) // 1024 if text else None


def _attr(element, path, name):
    found = element.find(path)
    return found.get(name) if found is not None else None


def _nic(interface):
    source = interface.find("source")
    source = {} if source is None else source.attrib
    return {
        "mac": (_attr(interface, "mac", "address") or "").lower() or None,
        "type": interface.get("type"),
        # A network NIC also names its bridge once running: the network is what the user chose.
        "source": source.get("network") or source.get("bridge") or source.get("dev"),
        "model": _attr(interface, "model", "type"),
        "target": _attr(interface, "target", "dev"),
        "addresses": [],
    }


def _add_address(nic, address):
    """Add ``address`` (ip or ip/prefix) to the NIC unless it is unusable to reach the guest or its IP is known."""
    try:
        interface = ipaddress.ip_interface(address)
    except ValueError:
        return  # metadata edited by hand or a source reporting garbage: addresses are best effort
    # Loopback and link-local addresses (the guest agent reports them) cannot reach the guest from outside.
    if interface.ip.is_loopback or interface.ip.is_link_local:
        return
    # An address one source already gave (with its real prefix, say from a DHCP lease) is not repeated with
    # another prefix by a later source (the neighbour table knows no prefix).
    if all(ipaddress.ip_interface(known).ip != interface.ip for known in nic["addresses"]):
        nic["addresses"].append(interface.with_prefixlen)


def _reported_addresses(domain, source):
    """What libvirt's ``source`` knows of the guest's interfaces; empty where that source is unavailable."""
    flag = getattr(_libvirt.libvirt, "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_%s" % source.upper())
    try:
        return domain.interfaceAddresses(flag) or {}
    except _libvirt.libvirt.libvirtError:
        # No DHCP lease, no ARP entry yet, no guest agent: normal, and another source may know better.
        return {}


def _neighbour_addresses(domain):
    """``{mac: [ip, ...]}`` from this host's neighbour table, for a guest of a daemon on this host.

    libvirt's own ARP source fails on some kernels (libvirt 9.0 on Linux 6.x: "wrong nlmsg len"), so the table
    is read here too; for a remote URI this host's table says nothing about the guest's host."""
    if _netlink.PYROUTE2_IMPORT_ERROR is not None or not _is_local(domain):
        return {}
    try:
        with _netlink.open_ipr() as ipr:
            entries = _netlink.neighbours(ipr)
    except VirtError:
        return {}
    found = {}
    for entry in entries:
        found.setdefault(entry["mac"], []).append(entry["address"])
    return found


def _is_local(domain):
    try:
        uri = domain.connect().getURI()
    except _libvirt.libvirt.libvirtError:
        return False
    return _validate.is_local_uri(uri)


def _collect_addresses(domain, root, nics, sources, live):
    by_mac = {nic["mac"]: nic for nic in nics if nic["mac"]}
    by_target = {nic["target"]: nic for nic in nics if nic["target"]}
    for source in dict.fromkeys(sources):  # asking a source twice would only repeat its answer
        if source == "metadata":
            for mac, address in metadata_addresses(root):
                if mac in by_mac:
                    _add_address(by_mac[mac], address)
        elif live:
            for ifname, interface in _reported_addresses(domain, source).items():
                nic = by_mac.get((interface.get("hwaddr") or "").lower()) or by_target.get(ifname)
                for address in (interface.get("addrs") or []) if nic else []:
                    _add_address(nic, "%s/%s" % (address["addr"], address["prefix"]))
            if source == "arp":
                for mac, addresses in _neighbour_addresses(domain).items():
                    for address in addresses if mac in by_mac else []:
                        _add_address(by_mac[mac], address)


def job_progress(stats):
    """A guest's running job (an outgoing or incoming migration, a save, a dump, ...) as plain data, from a
    jobStats() dict; None when there is no job."""
    if not stats or stats.get("type", _libvirt.libvirt.VIR_DOMAIN_JOB_NONE) == _libvirt.libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    figures = _libvirt.job_figures(stats)
    total, remaining = figures["data_total"], figures["data_remaining"]
    return dict(
        operation=_libvirt.JOB_OPERATIONS.get(stats.get("operation", 0), "unknown"),
        elapsed_ms=stats.get("time_elapsed"),
        percent=round(100.0 * (total - remaining) / total, 1) if total and remaining is not None else None,
        **figures,
    )


def _running_job(domain):
    try:
        return job_progress(domain.jobStats())
    except _libvirt.libvirt.libvirtError:
        return None  # the guest stopped or left meanwhile, or the driver keeps no job statistics


def _guest_cpu(root, virt_type, host_cpu_model):
    """The guest's CPU as placement needs it: mode, named model, and the host CPU a host-passthrough guest sees."""
    cpu = root.find("cpu")
    # No <cpu>: the hypervisor's default CPU; a <cpu> without mode is a custom one (libvirt's default).
    mode = None if cpu is None else cpu.get("mode") or "custom"
    model = (cpu.findtext("model") or None) if mode == "custom" else None
    return {"mode": mode, "model": model,
            "host_cpu_model": host_cpu_model if _placement.sees_host_cpu(mode, virt_type) else None}


def _guest_call(what, func):
    """Call a libvirt method of a guest like _libvirt.call, but NotFound when the guest is gone (undefined, or
    migrated away, since it was listed): libvirt then raises VIR_ERR_NO_DOMAIN for any call on it."""
    try:
        return func()
    except _libvirt.libvirt.libvirtError as error:
        if _libvirt.is_error(error, "VIR_ERR_NO_DOMAIN"):
            raise NotFound("guest disappeared while being read: %s" % _libvirt.error_message(error)) from None
        raise VirtError("%s: %s" % (what, _libvirt.error_message(error))) from None


def describe_guest(domain, sources=DEFAULT_ADDRESS_SOURCES, include_xml=False, host_cpu_model=None):
    """A guest as plain data: identity, state, size, platform (arch, machine, CPU), NICs with their addresses.

    ``sources`` are address sources from ADDRESS_SOURCES, most trusted first. ``host_cpu_model`` is the CPU
    model of the guest's host (describe_host's cpu_model), reported for a guest that sees the host's CPU.
    Raises NotFound when the domain disappeared meanwhile (destroyed, or migrated away).
    """
    try:
        xml = domain.XMLDesc(0)
    except _libvirt.libvirt.libvirtError as error:
        if _libvirt.is_error(error, "VIR_ERR_NO_DOMAIN"):
            raise NotFound("guest disappeared while being read: %s" % _libvirt.error_message(error)) from None
        raise VirtError("reading definition of guest '%s': %s" % (domain.name(), _libvirt.error_message(error))) from None
    root = ET.fromstring(xml)
    name = _text(root, "name")
    state = _libvirt.DOMAIN_STATES.get(_guest_call("reading state of guest '%s'" % name, domain.state)[0], "unknown")
    vcpu = root.find("vcpu")
    nics = [_nic(interface) for interface in root.findall("devices/interface")]
    _collect_addresses(domain, root, nics, sources, state not in _INACTIVE_STATES)
    guest = {
        "name": name,
        "uuid": _text(root, "uuid"),
        "state": state,
        "memory_mib": _kib_to_mib(_text(root, "currentMemory") or _text(root, "memory")),
        "max_memory_mib": _kib_to_mib(_text(root, "memory")),
        "vcpus": int(vcpu.get("current") or vcpu.text) if vcpu is not None else None,
        "virt_type": root.get("type"),
        # The live definition of a running guest: the versioned machine, and a host-model CPU as the model it
        # was expanded to when it started, which is what a destination must offer.
        "arch": _attr(root, "os/type", "arch"),
        "machine": _attr(root, "os/type", "machine"),
        "cpu": _guest_cpu(root, root.get("type"), host_cpu_model),
        "autostart": bool(_guest_call("reading autostart of guest '%s'" % name, domain.autostart)),
        "persistent": bool(_guest_call("reading persistence of guest '%s'" % name, domain.isPersistent)),
        "guest_agent": any(is_agent_channel(channel) for channel in root.findall("devices/channel")),
        "nics": nics,
        "addresses": list(dict.fromkeys(address.split("/")[0] for nic in nics for address in nic["addresses"])),
        "job": _running_job(domain) if state not in _INACTIVE_STATES else None,
    }
    if include_xml:
        guest["xml"] = xml
    return guest


def describe_guests(conn, sources=DEFAULT_ADDRESS_SOURCES, include_xml=False, active_only=False, host_cpu_model=None):
    """Every guest of the connection (only running ones with ``active_only``), sorted by name."""
    flags = _libvirt.libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if active_only else 0
    guests = []
    for domain in _libvirt.call("listing guests", conn.listAllDomains, flags):
        try:
            guests.append(describe_guest(domain, sources, include_xml, host_cpu_model))
        except NotFound:
            continue  # gone between listing and reading: it is no longer a guest of this host
    return sorted(guests, key=lambda guest: guest["name"])


def _version(number):
    """libvirt's packed version number (major * 1000000 + minor * 1000 + micro) as text."""
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


def _machines(elements):
    """Machine type names of <machine> elements, each with the versioned machine its alias stands for."""
    names = set()
    for element in elements:
        names.update(name for name in (element.text, element.get("canonical")) if name)
    return names


def guest_arches(capabilities):
    """``{arch: {"os_types": set, "virt_types": {type: set of machines}}}`` from a capabilities document.

    A <domain> element may list machines of its own (for example kvm on some hosts); otherwise the arch's
    machines apply to it."""
    arches = {}
    for guest in capabilities.findall("guest"):
        arch = guest.find("arch")
        if arch is None or not arch.get("name"):
            continue
        entry = arches.setdefault(arch.get("name"), {"os_types": set(), "virt_types": {}})
        if guest.findtext("os_type"):
            entry["os_types"].add(guest.findtext("os_type"))
        arch_machines = _machines(arch.findall("machine"))
        for domain in arch.findall("domain"):
            if domain.get("type"):
                own = _machines(domain.findall("machine"))
                entry["virt_types"].setdefault(domain.get("type"), set()).update(own or arch_machines)
    return arches


def _cpu_support(xml):
    """CPU modes and usable named models from a domain capabilities document; None for what it does not say."""
    cpu = ET.fromstring(xml).find("cpu")
    if cpu is None:
        return {"cpu_modes": None, "cpu_models": None}
    modes = sorted(mode.get("name") for mode in cpu.findall("mode") if mode.get("supported") == "yes" and mode.get("name"))
    custom = cpu.find("mode[@name='custom']")
    models = set()
    if custom is not None and custom.get("supported") == "yes":
        for model in custom.findall("model"):
            # Only what libvirt checked against this host; 'unknown' (some architectures) is not a promise.
            if model.get("usable") == "yes":
                models.update(name for name in (model.text, model.get("canonical")) if name)
    return {"cpu_modes": modes, "cpu_models": sorted(models)}


class _DomainCapabilities:
    """conn.getDomainCapabilities, read once per (arch, machine, virt type); a failure is remembered as unknown."""

    def __init__(self, conn):
        self.conn = conn
        self.cache = {}

    def cpu_support(self, arch, machine, virt_type):
        key = (arch, machine, virt_type)
        if key not in self.cache:
            try:
                self.cache[key] = _cpu_support(self.conn.getDomainCapabilities(None, arch, machine, virt_type, 0))
            except (_libvirt.libvirt.libvirtError, ET.ParseError):
                # No emulator for the arch, a virt type the driver refuses, an old daemon: unknown, not an error.
                self.cache[key] = {"cpu_modes": None, "cpu_models": None}
        return self.cache[key]


def describe_arches(conn, capabilities):
    """What guests the host runs, per arch and virt type: machine types (aliases and versioned names), CPU modes
    and usable named CPU models (None where libvirt's domain capabilities could not tell).

    CPU support is read for the default machine of each arch and virt type: QEMU's CPU models depend on the
    accelerator, not the machine type."""
    domcaps = _DomainCapabilities(conn)
    arches = {}
    for arch, entry in sorted(guest_arches(capabilities).items()):
        arches[arch] = {
            "os_types": sorted(entry["os_types"]),
            "virt_types": {
                virt_type: dict(machines=sorted(machines), **domcaps.cpu_support(arch, None, virt_type))
                for virt_type, machines in sorted(entry["virt_types"].items())
            },
        }
    return arches


def _networks(conn):
    """(active, inactive) libvirt network names, sorted; (None, None) when the host cannot list them."""
    try:
        return sorted(conn.listNetworks()), sorted(conn.listDefinedNetworks())
    except _libvirt.libvirt.libvirtError:
        return None, None


def host_bridges(conn, uri):
    """The Linux bridges of the hypervisor, sorted; None when they cannot be known.

    For a daemon on this host (a local URI) they are read over netlink in this process's network namespace, where
    the hypervisor's guests are plugged (not from /sys, which shows the namespace that mounted it, nor from
    libvirt's interface driver, which reads /sys through udev). For a remote daemon libvirt's interface driver
    tells them."""
    if _validate.is_local_uri(uri) and _netlink.PYROUTE2_IMPORT_ERROR is None:
        try:
            with _netlink.open_ipr() as ipr:
                return _netlink.bridge_names(ipr)
        except VirtError:
            return None
    try:
        interfaces = conn.listAllInterfaces(_libvirt.libvirt.VIR_CONNECT_LIST_INTERFACES_ACTIVE)
        return sorted(interface.name() for interface in interfaces
                      if ET.fromstring(interface.XMLDesc(0)).get("type") == "bridge")
    except (_libvirt.libvirt.libvirtError, ET.ParseError):
        return None


def describe_host(conn):
    """The hypervisor as plain data: identity, versions, capacity, the guests it can run (virt types, machines,
    CPUs) and what guests plug into (libvirt networks, host bridges)."""
    arch, memory_mib, cpus = _libvirt.call("reading host information", conn.getInfo)[:3]
    capabilities = ET.fromstring(_libvirt.call("reading host capabilities", conn.getCapabilities))
    uri = _libvirt.call("reading connection URI", conn.getURI)
    networks, inactive_networks = _networks(conn)
    return {
        "hostname": _libvirt.call("reading host name", conn.getHostname),
        "uri": uri,
        "hypervisor": _libvirt.call("reading hypervisor type", conn.getType),
        "hypervisor_version": _version(_libvirt.call("reading hypervisor version", conn.getVersion)),
        "libvirt_version": _version(_libvirt.call("reading libvirt version", conn.getLibVersion)),
        "arch": arch,
        "cpus": cpus,
        "memory_mib": memory_mib,
        "free_memory_mib": _libvirt.call("reading free memory", conn.getFreeMemory) // (1024 * 1024),
        "virt_types": sorted({domain.get("type") for domain in capabilities.findall("guest/arch/domain") if domain.get("type")}),
        "os_types": sorted({os_type.text for os_type in capabilities.findall("guest/os_type") if os_type.text}),
        "cpu_model": capabilities.findtext("host/cpu/model"),
        "cpu_vendor": capabilities.findtext("host/cpu/vendor"),
        "arches": describe_arches(conn, capabilities),
        "networks": networks,
        "inactive_networks": inactive_networks,
        "bridges": host_bridges(conn, uri),
    }


def gather(module):
    """The guest_info module's run: the host, and its guests (all, or the one named) in the states asked for."""
    params = module.params
    sources = params["address_sources"]
    with _libvirt.connection(params["uri"], params["connect_timeout"]) as conn:
        host = describe_host(conn)
        if params["name"] is None:
            guests = describe_guests(conn, sources, params["include_xml"], host_cpu_model=host["cpu_model"])
        else:
            domain = _libvirt.lookup_domain(conn, params["name"])
            if domain is None:
                raise InvalidOption("name", "no guest named '%s' on %s" % (params["name"], params["uri"]))
            guests = [describe_guest(domain, sources, params["include_xml"], host["cpu_model"])]
    if params["state"]:
        guests = [guest for guest in guests if guest["state"] in params["state"]]
    return {"guests": guests, "host": host}
