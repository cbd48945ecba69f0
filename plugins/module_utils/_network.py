# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt virtual networks: module options <-> NetworkSpec <-> libvirt network XML (ElementTree only)."""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._firewall import forwards_from_options

MODES = ("nat", "bridge", "isolated")
# Options that describe the definition; changing it needs `mode`, since the definition is then rendered anew.
DEFINITION_OPTIONS = ("bridge", "address", "dhcp", "static_leases", "domain", "mtu")
# libvirt's VIR_NETWORK_XML_INACTIVE: the persistent definition rather than the running configuration.
XML_INACTIVE = 1

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# A DNS name: dot-separated labels of letters, digits and inner hyphens.
DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# A Linux interface name: at most 15 bytes, no slash, colon or white space.
BRIDGE_RE = re.compile(r"^[^\s/:]{1,15}$")


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


def _lease_key(lease):
    return ipaddress.ip_address(lease.ip)


def _check_name(name):
    if not isinstance(name, str) or not name.strip():
        raise InvalidOption("name", "must be a non-empty string")
    if "/" in name:
        raise InvalidOption("name", "libvirt network names cannot contain '/': %r" % name)
    return name


def _mac(value, option):
    mac = str(value).strip().lower()
    if not MAC_RE.match(mac):
        raise InvalidOption(option, "%r is not a MAC address like 52:54:00:12:34:56" % (value,))
    if int(mac[:2], 16) & 1:
        raise InvalidOption(option, "%s is a multicast MAC address" % mac)
    return mac


def _interface(value):
    problem = "%r is not an IPv4 host address with a prefix length, like 198.18.100.1/24" % (value,)
    try:
        interface = ipaddress.ip_interface(value)
    except ValueError:
        raise InvalidOption("address", problem) from None
    if interface.version != 4 or "/" not in str(value):
        raise InvalidOption("address", problem)
    network = interface.network
    if network.prefixlen > 30:
        raise InvalidOption("address", "%s leaves no room for guests: use a prefix length of 30 or less" % value)
    if interface.ip in (network.network_address, network.broadcast_address):
        raise InvalidOption("address", "%s is not a host address of %s" % (interface.ip, network))
    return interface


def _guest_ip(value, interface, option, what):
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidOption(option, "%s %r is not an IPv4 address" % (what, value)) from None
    network = interface.network
    if address.version != 4 or address not in network or address in (network.network_address, network.broadcast_address):
        raise InvalidOption(option, "%s %s is not a guest address of the network's subnet %s (from address)" % (what, address, network))
    if address == interface.ip:
        raise InvalidOption(option, "%s %s is the host's own address on the network" % (what, address))
    return address


def _dhcp(value, interface):
    if not isinstance(value, dict) or not value.get("start") or not value.get("end"):
        raise InvalidOption("dhcp", "needs both start and end")
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
        mac = _mac(item["mac"], "static_leases")
        ip = str(_guest_ip(item["ip"], interface, "static_leases", "%s: ip" % where))
        name = item.get("name")
        if name is not None and not DNS_NAME_RE.match(name):
            raise InvalidOption("static_leases", "%s: name %r is not a host name" % (where, name))
        for other in leases:
            for attribute, mine in (("mac", mac), ("ip", ip), ("name", name)):
                if mine is not None and getattr(other, attribute) == mine:
                    raise InvalidOption("static_leases", "%s: %s %s is already given to another lease" % (where, attribute, mine))
        leases.append(Lease(mac, ip, name))
    return tuple(sorted(leases, key=_lease_key))


def _reject(params, options, why):
    for option in options:
        if params.get(option) not in (None, [], {}):
            raise InvalidOption(option, why)


def spec_from_options(params, current=None):
    """The wanted NetworkSpec from module options, validated; ``current`` is the defined network's spec, if any.

    From ``current`` it keeps what libvirt assigned (UUID, bridge MAC, a virbrN bridge name), so that the same
    options give the same definition again. Without ``mode`` the definition stays as it is: the result is
    ``current`` (None when there is no network), with the validated ``port_forwards`` when those are given.
    """
    name = _check_name(params.get("name"))
    mode = params.get("mode")
    forwards = params.get("port_forwards")
    if mode is None:
        _reject(params, DEFINITION_OPTIONS, "needs mode: options that change the definition describe all of it")
        if current is None:
            return None
        if forwards is None:
            return replace(current, port_forwards=None)
        if current.mode != "nat":
            _reject(params, ("port_forwards",), "forwards need a network in mode nat, and '%s' is in mode %s" % (name, current.mode))
            return replace(current, port_forwards=())
        return replace(current, port_forwards=forwards_from_options(forwards, ipaddress.ip_interface(current.address)))
    if mode not in MODES:
        raise InvalidOption("mode", "must be one of %s, not %r" % (", ".join(MODES), mode))

    spec = NetworkSpec(name=name, mode=mode, domain=params.get("domain"), mtu=params.get("mtu"), bridge=params.get("bridge"),
                       port_forwards=())
    if spec.bridge is not None and (not BRIDGE_RE.match(spec.bridge) or spec.bridge in (".", "..")):
        raise InvalidOption("bridge", "%r is not an interface name (at most 15 characters, no '/', ':' or spaces)" % (spec.bridge,))
    if mode == "bridge":
        if not spec.bridge:
            raise InvalidOption("bridge", "mode bridge needs the name of an existing host bridge")
        _reject(params, ("address", "dhcp", "static_leases", "domain", "mtu", "port_forwards"),
                "not possible in mode bridge: the network is the host bridge, which libvirt neither addresses nor serves")
    else:
        if mode == "isolated":
            _reject(params, ("port_forwards",), "forwards need mode nat: an isolated network has no way out")
        if spec.domain is not None and not DNS_NAME_RE.match(spec.domain):
            raise InvalidOption("domain", "%r is not a DNS domain name" % (spec.domain,))
        if spec.mtu is not None and not 68 <= spec.mtu <= 65535:
            raise InvalidOption("mtu", "%s is out of the range 68..65535" % spec.mtu)
        if params.get("address") is None:
            if mode == "nat":
                raise InvalidOption("address", "mode nat needs the host's address on the network, like 198.18.100.1/24")
            _reject(params, ("dhcp", "static_leases"), "needs address, the host's address on the network")
        else:
            interface = _interface(params["address"])
            spec.address = str(interface)
            if params.get("dhcp") is not None:
                spec.dhcp_start, spec.dhcp_end = _dhcp(params["dhcp"], interface)
            spec.static_leases = _leases(params.get("static_leases") or (), interface)
            spec.port_forwards = forwards_from_options(forwards, interface)

    if current is not None:
        spec.uuid = current.uuid
        if mode != "bridge" and current.mode != "bridge":
            spec.mac = current.mac
            spec.bridge = spec.bridge or current.bridge
    return spec


def _prefix(ip_element):
    address = ip_element.get("address")
    if ip_element.get("prefix"):
        return "%s/%s" % (address, ip_element.get("prefix"))
    if ip_element.get("netmask"):
        return str(ipaddress.ip_interface("%s/%s" % (address, ip_element.get("netmask"))))
    return "%s/%d" % (address, ipaddress.ip_address(address).max_prefixlen)


def spec_from_xml(xml):
    """The NetworkSpec of a libvirt network XML document (``virNetwork.XMLDesc``); modes other than nat, bridge
    and isolated come through as libvirt names them (route, open, ...)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise VirtError("cannot parse the network XML from libvirt: %s" % error) from None
    forward = root.find("forward")
    spec = NetworkSpec(name=root.findtext("name"), mode="isolated" if forward is None else forward.get("mode", "nat"),
                       uuid=root.findtext("uuid"))
    for tag, attribute, key in (("bridge", "name", "bridge"), ("mac", "address", "mac"), ("domain", "name", "domain")):
        element = root.find(tag)
        if element is not None and element.get(attribute):
            setattr(spec, key, element.get(attribute))
    if spec.mac:
        spec.mac = spec.mac.lower()
    if root.find("mtu") is not None and root.find("mtu").get("size"):
        spec.mtu = int(root.find("mtu").get("size"))
    for ip_element in root.findall("ip"):
        if ip_element.get("family", "ipv4") != "ipv4" or not ip_element.get("address"):
            continue  # IPv6 is left to libvirt: the first IPv4 address is the network's address here
        spec.address = _prefix(ip_element)
        dhcp = ip_element.find("dhcp")
        if dhcp is not None:
            dhcp_range = dhcp.find("range")
            if dhcp_range is not None:
                spec.dhcp_start, spec.dhcp_end = dhcp_range.get("start"), dhcp_range.get("end")
            leases = [Lease(host.get("mac", "").lower() or None, host.get("ip"), host.get("name"))
                      for host in dhcp.findall("host") if host.get("ip")]
            spec.static_leases = tuple(sorted(leases, key=_lease_key))
        break
    return spec


def render_xml(spec):
    """libvirt network XML for ``spec`` (nat, bridge or isolated), built with ElementTree so that no value can
    add markup."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = spec.name
    if spec.uuid:
        ET.SubElement(root, "uuid").text = spec.uuid
    if spec.mode in ("nat", "bridge"):
        ET.SubElement(root, "forward", mode=spec.mode)
    bridge = ET.SubElement(root, "bridge")
    if spec.bridge:
        bridge.set("name", spec.bridge)
    if spec.mode != "bridge":
        # A bridge that libvirt creates: no STP (nothing loops behind it) and no forwarding delay.
        bridge.set("stp", "on")
        bridge.set("delay", "0")
        if spec.mac:
            ET.SubElement(root, "mac", address=spec.mac)
    if spec.mtu:
        ET.SubElement(root, "mtu", size=str(spec.mtu))
    if spec.domain:
        ET.SubElement(root, "domain", name=spec.domain)
    if spec.address:
        interface = ipaddress.ip_interface(spec.address)
        ip_element = ET.SubElement(root, "ip", address=str(interface.ip), netmask=str(interface.netmask))
        if spec.dhcp_start or spec.static_leases:
            dhcp = ET.SubElement(ip_element, "dhcp")
            if spec.dhcp_start:
                ET.SubElement(dhcp, "range", start=spec.dhcp_start, end=spec.dhcp_end)
            for lease in spec.static_leases:
                attributes = dict(mac=lease.mac, name=lease.name, ip=lease.ip)
                ET.SubElement(dhcp, "host", {key: value for key, value in attributes.items() if value})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def describe(spec, active=False, autostart=False, forwards=()):
    """The ``network`` return value (and diff side) of a module: the spec, run state and forwards."""
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
