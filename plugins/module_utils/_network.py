# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt virtual networks: module options -> NetworkSpec, and the edit that makes a network's XML say it.

A definition is edited, never regenerated. ``spec_from_xml`` reads the parts the module models (forward mode,
bridge name, the first IPv4 ``<ip>`` with its first DHCP range and its static leases, domain, MTU) from libvirt's
XML; ``spec_from_options`` lays the task's options over them (an option left out keeps what is defined);
``edit`` changes exactly the modelled parts that differ in the ElementTree of the defined XML and leaves
everything else as libvirt stored it (IPv6, DNS records, routes, bandwidth, port groups, NAT ranges, metadata...).
A new network is the same edit applied to ``skeleton``. Values only ever become attribute values or text of
ElementTree elements, so no option can add markup.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Optional

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption
from ansible_collections.arctictern.virt.plugins.module_utils._firewall import forwards_from_options
from ansible_collections.arctictern.virt.plugins.module_utils._xml import parse, place, pretty, remove_all

# The modes the ``mode`` option can ask for. A network in another mode (route, open, private, ...) keeps it.
MODES = ("nat", "bridge", "isolated")
# Modes of a bridge that libvirt creates and addresses itself (isolated is a network without <forward>); in the
# others the guests sit on a device of the host, and libvirt refuses <ip>, <mac>, <dns> records, <domain>, <mtu>
# and the bridge's stp/delay/zone.
ROUTED_MODES = ("isolated", "nat", "route", "open")
# Options that edit the definition; ``changes`` names them.
DEFINITION_OPTIONS = ("mode", "bridge", "address", "dhcp", "static_leases", "domain", "mtu")
# NetworkSpec fields compared to find ``changes``, with the option each belongs to.
COMPARED_FIELDS = (
    ("mode", "mode"), ("bridge", "bridge"), ("address", "address"), ("dhcp_start", "dhcp"), ("dhcp_end", "dhcp"),
    ("static_leases", "static_leases"), ("domain", "domain"), ("mtu", "mtu"),
)
# libvirt's VIR_NETWORK_XML_INACTIVE: the persistent definition rather than the running configuration.
XML_INACTIVE = 1

# Children in the order libvirt writes them (virNetworkDefFormatBuf); a new element goes to its place among them.
NETWORK_ORDER = ("name", "uuid", "title", "description", "metadata", "forward", "bridge", "mtu", "mac", "domain",
                 "dns", "vlan", "bandwidth", "ip", "route", "virtualport", "portgroup")
IP_ORDER = ("tftp", "dhcp")
DHCP_ORDER = ("range", "host", "bootp")
# What goes from a definition whose network moves onto a host bridge (libvirt refuses them in that mode).
NOT_ON_A_HOST_BRIDGE = ("mtu", "mac", "domain", "dns", "ip", "route")
BRIDGE_ONLY_ROUTED = ("stp", "delay", "zone")


@dataclass(frozen=True)
class Lease:
    """A static DHCP lease: the guest with ``mac`` always gets ``ip`` (and the DNS ``name``)."""

    mac: Optional[str]
    ip: str
    name: Optional[str] = None

    def to_dict(self):
        return asdict(self)


@dataclass
class NetworkSpec:
    """The parts of a libvirt network definition the collection manages.

    ``port_forwards`` are not part of the libvirt definition (see _firewall.py) and take no part in comparing
    definitions; None there means the forwards are left as they are.
    """

    name: str
    mode: str
    uuid: Optional[str] = None
    bridge: Optional[str] = None
    mac: Optional[str] = None
    address: Optional[str] = None
    dhcp_start: Optional[str] = None
    dhcp_end: Optional[str] = None
    static_leases: tuple = ()
    domain: Optional[str] = None
    mtu: Optional[int] = None
    port_forwards: Optional[tuple] = field(default=None, compare=False)


# ---------------------------------------------------------------------------------------------------------------
# Options -> NetworkSpec
# ---------------------------------------------------------------------------------------------------------------

def _lease_key(lease):
    return ipaddress.ip_address(lease.ip)


def _check_name(name):
    if not isinstance(name, str) or not name.strip():
        raise InvalidOption("name", "must be a non-empty string")
    if "/" in name:
        raise InvalidOption("name", "libvirt network names cannot contain '/': %r" % name)
    return name


def _interface(value):
    interface = _validate.ip_interface("address", value, version=4)
    network = interface.network
    if network.prefixlen > 30:
        raise InvalidOption("address", "%s leaves no room for guests: use a prefix length of 30 or less" % value)
    if interface.ip in (network.network_address, network.broadcast_address):
        raise InvalidOption("address", "%s is not a host address of %s" % (interface.ip, network))
    return interface


def _guest_ip(value, interface, option, what):
    address = _validate.ip_address(option, value, version=4, what=what)
    network = interface.network
    if address not in network or address in (network.network_address, network.broadcast_address):
        raise InvalidOption(option, "%s %s is not a guest address of the network's subnet %s (from address)" % (what, address, network))
    if address == interface.ip:
        raise InvalidOption(option, "%s %s is the host's own address on the network" % (what, address))
    return address


def _dhcp(value, interface):
    start = _guest_ip(value["start"], interface, "dhcp", "start")
    end = _guest_ip(value["end"], interface, "dhcp", "end")
    if start > end:
        raise InvalidOption("dhcp", "the range is reversed: start %s is after end %s" % (start, end))
    return str(start), str(end)


def _leases(value, interface):
    leases = []
    for index, item in enumerate(value):
        where = "entry %d" % (index + 1)
        if not isinstance(item, dict) or not item.get("mac") or not item.get("ip"):
            raise InvalidOption("static_leases", "%s needs mac and ip" % where)
        mac = _validate.mac_address("static_leases", item["mac"], what="%s: mac" % where)
        ip = str(_guest_ip(item["ip"], interface, "static_leases", "%s: ip" % where))
        name = item.get("name")
        if name is not None:
            _validate.dns_name("static_leases", name, what="%s: name" % where)
        for other in leases:
            for attribute, mine in (("mac", mac), ("ip", ip), ("name", name)):
                if mine is not None and getattr(other, attribute) == mine:
                    raise InvalidOption("static_leases", "%s: %s %s is already given to another lease" % (where, attribute, mine))
        leases.append(Lease(mac, ip, name))
    return tuple(sorted(leases, key=_lease_key))


def _removes(value):
    """Whether an option's value is the one that removes it: "" (domain, address), 0 (mtu), [] (static_leases,
    port_forwards) or a dhcp without start and end."""
    if isinstance(value, dict):
        return not any(item not in (None, "") for item in value.values())
    return value in ("", 0, []) and value is not False


def _reject(params, options, why):
    for option in options:
        value = params.get(option)
        if value is not None and not _removes(value):
            raise InvalidOption(option, why)


def _check_kept(spec, interface, range_kept, leases_kept):
    """A new ``address`` must still hold the DHCP range and the leases that are kept from the definition."""
    if spec.dhcp_start and range_kept:
        try:
            _dhcp(dict(start=spec.dhcp_start, end=spec.dhcp_end), interface)
        except InvalidOption:
            raise InvalidOption("dhcp", "the defined range %s-%s does not fit address %s: give dhcp as well, or dhcp: {} to "
                                        "remove the range" % (spec.dhcp_start, spec.dhcp_end, interface)) from None
    for lease in spec.static_leases if leases_kept else ():
        try:
            _guest_ip(lease.ip, interface, "static_leases", "ip")
        except InvalidOption:
            raise InvalidOption("static_leases", "the defined lease of %s does not fit address %s: give static_leases as well, "
                                                 "or static_leases: [] to remove the leases" % (lease.ip, interface)) from None


def spec_from_options(params, current=None):
    """The wanted NetworkSpec: ``current`` (the defined network's spec, None when there is none) with the options
    of the task laid over it, validated.

    An option left out (None) keeps what is defined, also when ``mode`` is given. ``domain: ""``, ``mtu: 0``,
    ``dhcp: {}``, ``static_leases: []`` and ``address: ""`` remove what they model. Moving a network onto a host
    bridge (mode bridge) or off one drops what libvirt refuses in the new mode. ``port_forwards`` stays None
    (forwards left as they are) unless given.
    """
    name = _check_name(params.get("name"))
    given_mode = params.get("mode")
    if given_mode is not None and given_mode not in MODES:
        raise InvalidOption("mode", "must be one of %s, not %r" % (", ".join(MODES), given_mode))
    if current is None and given_mode is None:
        raise InvalidOption("mode", "needed to define network '%s', which does not exist" % name)
    mode = given_mode or current.mode
    routed = mode in ROUTED_MODES
    spec = NetworkSpec(name=name, mode=mode)
    if current is not None:
        spec.uuid = current.uuid
        if (current.mode in ROUTED_MODES) == routed:
            # The same kind of bridge: everything defined is kept. Across kinds, the host bridge's name must not
            # become the name of a bridge libvirt creates (or the other way round), and a bridge libvirt creates
            # gets a new MAC address from libvirt.
            for key in ("bridge", "mac", "address", "dhcp_start", "dhcp_end", "static_leases", "domain", "mtu"):
                setattr(spec, key, getattr(current, key))

    bridge = params.get("bridge")
    if bridge is not None:
        spec.bridge = _validate.interface_name("bridge", bridge)
    layer3 = ("address", "dhcp", "static_leases", "domain", "mtu", "port_forwards")
    if not routed:
        if mode != "bridge":
            _reject(params, ("bridge",) + layer3, "not possible in mode %s, which network '%s' is in" % (mode, name))
            return spec
        if not spec.bridge:
            raise InvalidOption("bridge", "mode bridge needs the name of an existing host bridge")
        _reject(params, layer3, "not possible in mode bridge: the network is the host bridge, which libvirt neither addresses nor serves")
        spec.port_forwards = None if params.get("port_forwards") is None else ()
        return spec

    domain = params.get("domain")
    if domain is not None:
        spec.domain = _validate.dns_name("domain", domain) if domain != "" else None
    mtu = params.get("mtu")
    if mtu is not None:
        spec.mtu = _validate.mtu("mtu", mtu, zero="returns to libvirt's default")

    address = params.get("address")
    if address == "":
        # The <ip> element goes, and with it its DHCP range and leases.
        spec.address, spec.dhcp_start, spec.dhcp_end, spec.static_leases = None, None, None, ()
    elif address is not None:
        spec.address = str(_interface(address))
    interface = ipaddress.ip_interface(spec.address) if spec.address else None
    if mode == "nat" and interface is None and (given_mode == "nat" or address is not None):
        raise InvalidOption("address", "mode nat needs the host's address on the network, like 198.18.100.1/24")
    moved = address not in (None, "") and current is not None and current.address != spec.address

    dhcp = params.get("dhcp")
    if dhcp is not None:
        if not isinstance(dhcp, dict):
            raise InvalidOption("dhcp", "must be a dict with start and end")
        start, end = dhcp.get("start"), dhcp.get("end")
        if _removes(dhcp):
            spec.dhcp_start = spec.dhcp_end = None
        elif not start or not end:
            raise InvalidOption("dhcp", "needs both start and end, or neither (dhcp: {} removes the range)")
        elif interface is None:
            raise InvalidOption("dhcp", "needs address, the host's address on the network")
        else:
            spec.dhcp_start, spec.dhcp_end = _dhcp(dhcp, interface)
    leases = params.get("static_leases")
    if leases is not None:
        if leases and interface is None:
            raise InvalidOption("static_leases", "needs address, the host's address on the network")
        spec.static_leases = _leases(leases, interface) if leases else ()
    if moved:
        _check_kept(spec, interface, dhcp is None, leases is None)

    forwards = params.get("port_forwards")
    if forwards is not None:
        if mode != "nat":
            _reject(params, ("port_forwards",), "forwards need a network in mode nat, and '%s' is in mode %s" % (name, mode))
            spec.port_forwards = ()
        else:
            spec.port_forwards = forwards_from_options(forwards, interface)
    return spec


def definition_changes(current, wanted):
    """The options whose defined value differs between ``current`` (None: no network yet) and ``wanted``."""
    changes = []
    for key, option in COMPARED_FIELDS:
        value = getattr(wanted, key)
        differs = (option == "mode" or value not in (None, ())) if current is None else getattr(current, key) != value
        if differs and option not in changes:
            changes.append(option)
    return changes


# ---------------------------------------------------------------------------------------------------------------
# XML -> NetworkSpec
# ---------------------------------------------------------------------------------------------------------------

def _prefix(ip_element):
    address = ip_element.get("address")
    if ip_element.get("prefix"):
        return "%s/%s" % (address, ip_element.get("prefix"))
    if ip_element.get("netmask"):
        return str(ipaddress.ip_interface("%s/%s" % (address, ip_element.get("netmask"))))
    return "%s/%d" % (address, _classful_prefix(address))


def _classful_prefix(address):
    """The prefix libvirt assumes for an IPv4 <ip> without prefix or netmask (by the address class)."""
    first = int(str(address).split(".", 1)[0])
    return 8 if first < 128 else 16 if first < 192 else 24


def _first_ipv4(root):
    """The <ip> the module models: the first IPv4 one with an address."""
    for ip_element in root.findall("ip"):
        if ip_element.get("family", "ipv4") == "ipv4" and ip_element.get("address"):
            return ip_element
    return None


def _forward_mode(root):
    forward = root.find("forward")
    return "isolated" if forward is None else forward.get("mode", "nat")


def _leases_of(dhcp):
    hosts = dhcp.findall("host") if dhcp is not None else []
    leases = [Lease((host.get("mac") or "").lower() or None, host.get("ip"), host.get("name")) for host in hosts if host.get("ip")]
    return tuple(sorted(leases, key=_lease_key))


def spec_from_root(root):
    """The NetworkSpec of a parsed network document."""
    spec = NetworkSpec(name=root.findtext("name"), mode=_forward_mode(root), uuid=root.findtext("uuid"))
    for tag, attribute, key in (("bridge", "name", "bridge"), ("mac", "address", "mac"), ("domain", "name", "domain")):
        element = root.find(tag)
        if element is not None and element.get(attribute):
            setattr(spec, key, element.get(attribute))
    if spec.mac:
        spec.mac = spec.mac.lower()
    if root.find("mtu") is not None and root.find("mtu").get("size"):
        spec.mtu = int(root.find("mtu").get("size"))
    ip_element = _first_ipv4(root)
    if ip_element is not None:  # IPv6 and further IPv4 addresses are left to libvirt
        spec.address = _prefix(ip_element)
        dhcp = ip_element.find("dhcp")
        dhcp_range = dhcp.find("range") if dhcp is not None else None
        if dhcp_range is not None:
            spec.dhcp_start, spec.dhcp_end = dhcp_range.get("start"), dhcp_range.get("end")
        spec.static_leases = _leases_of(dhcp)
    return spec


def spec_from_xml(xml):
    """The NetworkSpec of a libvirt network XML document (``virNetwork.XMLDesc``); modes other than nat, bridge
    and isolated come through as libvirt names them (route, open, ...)."""
    return spec_from_root(parse(xml, "network definition"))


# ---------------------------------------------------------------------------------------------------------------
# The edit: NetworkSpec -> the network's XML, changing only what differs
# ---------------------------------------------------------------------------------------------------------------

def skeleton(name):
    """The document a new network is edited from: an isolated network on a bridge libvirt creates and names,
    without STP (nothing loops behind it) and without forwarding delay."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "bridge", stp="on", delay="0")
    return root


def _set_first(element, key, value):
    """Set an attribute, putting a new one first (libvirt writes a bridge's name before its other attributes)."""
    if key in element.attrib:
        element.set(key, value)
        return
    rest = dict(element.attrib)
    element.attrib.clear()
    element.set(key, value)
    element.attrib.update(rest)


def _edit_attribute_element(root, tag, attribute, value):
    """Make ``<tag attribute=value>`` say ``value``; None removes the element (only where it holds the value)."""
    element = root.find(tag)
    if (element.get(attribute) if element is not None else None) == value:
        return
    if value is None:
        root.remove(element)
    elif element is None:
        place(root, ET.Element(tag, {attribute: value}), NETWORK_ORDER)
    else:
        element.set(attribute, value)


def _edit_mode(root, mode):
    old = _forward_mode(root)
    if old == mode:
        return
    forward = root.find("forward")
    if mode == "isolated":
        root.remove(forward)
    else:
        if forward is None:
            forward = place(root, ET.Element("forward"), NETWORK_ORDER)
        elif not {old, mode} <= {"nat", "route"}:
            # Its attributes and children (dev, <interface>, <pf>, <nat>, <address>) belong to the old mode; only
            # nat and route share them.
            forward.attrib.clear()
            for child in list(forward):
                forward.remove(child)
        forward.set("mode", mode)
        if mode != "nat":
            remove_all(forward, "nat")
    bridge = root.find("bridge")
    if mode not in ROUTED_MODES:
        # Guests on a host bridge: libvirt neither addresses nor serves it, and refuses what would.
        for tag in NOT_ON_A_HOST_BRIDGE:
            remove_all(root, tag)
        for attribute in BRIDGE_ONLY_ROUTED:
            if bridge is not None:
                bridge.attrib.pop(attribute, None)
    elif old not in ROUTED_MODES:
        if bridge is None:
            bridge = place(root, ET.Element("bridge"), NETWORK_ORDER)
        bridge.set("stp", "on")
        bridge.set("delay", "0")


def _edit_bridge(root, name):
    bridge = root.find("bridge")
    if (bridge.get("name") if bridge is not None else None) == name:
        return
    if name is None:
        bridge.attrib.pop("name")
        return
    if bridge is None:
        bridge = place(root, ET.Element("bridge"), NETWORK_ORDER)
    _set_first(bridge, "name", name)


def _edit_mac(root, mac):
    element = root.find("mac")
    defined = element.get("address", "").lower() or None if element is not None else None
    if defined != mac:
        _edit_attribute_element(root, "mac", "address", mac)


def _edit_address(ip_element, interface):
    if ipaddress.ip_interface(_prefix(ip_element)) == interface:
        return
    ip_element.set("address", str(interface.ip))
    if "prefix" in ip_element.attrib:
        ip_element.set("prefix", str(interface.network.prefixlen))
    else:
        ip_element.set("netmask", str(interface.netmask))


def _edit_range(ip_element, start, end):
    dhcp = ip_element.find("dhcp")
    ranges = dhcp.findall("range") if dhcp is not None else []
    if ((ranges[0].get("start"), ranges[0].get("end")) if ranges else (None, None)) == (start, end):
        return
    if start is None:
        remove_all(dhcp, "range")  # all of them, so that the next run finds none either
    elif ranges:
        ranges[0].set("start", start)
        ranges[0].set("end", end)
    else:
        if dhcp is None:
            dhcp = place(ip_element, ET.Element("dhcp"), IP_ORDER)
        place(dhcp, ET.Element("range", start=start, end=end), DHCP_ORDER)


def _match_hosts(hosts, leases):
    """Pairs (lease, host or None): a lease keeps the <host> of its MAC address, else of its IP address."""
    unused, matched = list(hosts), {}
    for key in ("mac", "ip"):
        for lease in leases:
            wanted = getattr(lease, key)
            if lease in matched or wanted is None:
                continue
            host = next((host for host in unused if (host.get(key) or "").lower() == wanted.lower()), None)
            if host is not None:
                unused.remove(host)
                matched[lease] = host
    return [(lease, matched.get(lease)) for lease in leases], unused


def _edit_leases(ip_element, leases):
    dhcp = ip_element.find("dhcp")
    if _leases_of(dhcp) == tuple(leases):
        return
    if dhcp is None:
        dhcp = place(ip_element, ET.Element("dhcp"), IP_ORDER)
    pairs, unused = _match_hosts([host for host in dhcp.findall("host") if host.get("ip")], leases)
    for host in unused:
        dhcp.remove(host)
    for lease, host in pairs:
        if host is None:
            attributes = dict(mac=lease.mac, name=lease.name, ip=lease.ip)
            place(dhcp, ET.Element("host", {key: value for key, value in attributes.items() if value}), DHCP_ORDER)
            continue
        # A kept <host> keeps what the module does not model (a <lease> child, other attributes).
        if (host.get("mac") or "").lower() != (lease.mac or ""):
            host.set("mac", lease.mac)
        if host.get("ip") != lease.ip:
            host.set("ip", lease.ip)
        if lease.name is None:
            host.attrib.pop("name", None)
        elif host.get("name") != lease.name:
            host.set("name", lease.name)


def _edit_ip(root, spec):
    ip_element = _first_ipv4(root)
    if spec.address is None:
        if ip_element is not None:
            root.remove(ip_element)
        return
    interface = ipaddress.ip_interface(spec.address)
    if ip_element is None:
        ip_element = place(root, ET.Element("ip", address=str(interface.ip), netmask=str(interface.netmask)), NETWORK_ORDER)
    _edit_address(ip_element, interface)
    _edit_range(ip_element, spec.dhcp_start, spec.dhcp_end)
    _edit_leases(ip_element, spec.static_leases)
    dhcp = ip_element.find("dhcp")
    if dhcp is not None and len(dhcp) == 0 and not dhcp.attrib:
        ip_element.remove(dhcp)


def edit(root, spec):
    """Change the parsed network document ``root`` in place so that its modelled parts say what ``spec`` says.
    Only what differs is touched; everything else stays as it is."""
    if spec.uuid and root.findtext("uuid") != spec.uuid:
        _edit_uuid(root, spec.uuid)
    _edit_mode(root, spec.mode)
    _edit_bridge(root, spec.bridge)
    _edit_attribute_element(root, "mtu", "size", str(spec.mtu) if spec.mtu else None)
    _edit_mac(root, spec.mac)
    _edit_attribute_element(root, "domain", "name", spec.domain)
    _edit_ip(root, spec)
    return root


def _edit_uuid(root, uuid):
    element = root.find("uuid")
    if element is None:
        element = place(root, ET.Element("uuid"), NETWORK_ORDER)
    element.text = uuid


def render_xml(spec, defined=None):
    """The network XML for ``spec``: the ``defined`` XML edited (a new network's skeleton when None)."""
    root = parse(defined, "network definition") if defined else skeleton(spec.name)
    return pretty(edit(root, spec), "network definition")


def describe(spec, active=False, autostart=False, forwards=()):
    """The ``network`` return value of the module: the spec, run state and forwards."""
    return dict(
        name=spec.name,
        uuid=spec.uuid,
        mode=spec.mode,
        bridge=spec.bridge,
        mac=spec.mac,
        address=spec.address,
        dhcp=dict(start=spec.dhcp_start, end=spec.dhcp_end) if spec.dhcp_start else None,
        static_leases=[lease.to_dict() for lease in spec.static_leases],
        domain=spec.domain,
        mtu=spec.mtu,
        active=bool(active),
        autostart=bool(autostart),
        port_forwards=[forward.to_dict() for forward in forwards],
    )
