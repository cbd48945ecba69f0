# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of values that several modules take: interface names, MAC addresses, MTUs, DNS names, IP addresses
(with or without a prefix length), and whether a libvirt URI reaches this host.

Each check takes the option's name first and returns the value in the form the collection uses, or raises
InvalidOption naming the option and the bad value. ``what``, where a check takes it, names the value inside
the option (say "entry 2: ip" of a list), so that the message points at the item.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption

# IFNAMSIZ (16) less the terminating NUL; the kernel counts bytes, so 'ü' takes two.
IFNAME_MAX_BYTES = 15
# White space as the kernel's isspace() sees it, which dev_valid_name refuses in a name. It also takes byte 0xa0
# (a space in its Latin-1 table), so a character whose UTF-8 form holds that byte (like 'à', c3 a0) is refused too.
KERNEL_WHITE_SPACE = " \t\n\v\f\r"
KERNEL_SPACE_BYTE = 0xa0
# 68 is the least MTU of IPv4 (RFC 791); 65535 the most an Ethernet device (NIC, bridge, veth) takes (ETH_MAX_MTU).
MTU_RANGE = (68, 65535)
# RFC 8200; below it the kernel turns IPv6 off on the interface and drops its IPv6 addresses.
IPV6_MIN_MTU = 1280
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
DNS_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
DNS_NAME_MAX = 253
EXAMPLE_INTERFACES = {4: "192.0.2.10/24", 6: "2001:db8::10/64"}


def _subject(what, value):
    """``value`` as a message shows it, after ``what`` when given: "start '10.0.0.300'"."""
    return "%s %r" % (what, value) if what else repr(value)


def interface_name(option, value):
    """``value`` when Linux takes it as an interface name.

    The kernel's rules (dev_valid_name): 1 to 15 bytes of UTF-8, not '.' or '..', no '/', ':' or white space as
    its isspace() sees it. Also refused: '%', which makes the kernel take the name as a template (br%d) and pick
    another, and control characters, which libvirt's XML cannot hold and no tool shows.
    """
    if not isinstance(value, str) or not value:
        raise InvalidOption(option, "an interface name must not be empty")
    if value in (".", ".."):
        raise InvalidOption(option, "%r is not a valid interface name" % value)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidOption(option, "interface name %r is not valid UTF-8 text" % value) from None
    if size > IFNAME_MAX_BYTES:
        raise InvalidOption(option, "interface name %r is %d bytes long in UTF-8; Linux allows at most %d"
                            % (value, size, IFNAME_MAX_BYTES))
    for char in value:
        if char in "/:%":
            raise InvalidOption(option, "interface name %r must not contain %r" % (value, char))
        if char in KERNEL_WHITE_SPACE:
            raise InvalidOption(option, "interface name %r must not contain white space (%r)" % (value, char))
        if ord(char) < 0x20 or ord(char) == 0x7f:
            raise InvalidOption(option, "interface name %r must not contain control characters (%r)" % (value, char))
        if KERNEL_SPACE_BYTE in char.encode("utf-8"):
            raise InvalidOption(option, "interface name %r must not contain %r: its UTF-8 form holds byte 0xa0, which "
                                        "Linux takes for white space" % (value, char))
    return value


def mac_address(option, value, what=None):
    """``value`` in libvirt's form (lower case, colons; dashes are taken too) when it is a MAC a NIC can have:
    unicast and not all zeros."""
    mac = str(value).strip().lower().replace("-", ":")
    if not MAC_RE.fullmatch(mac):
        raise InvalidOption(option, "%s is not a MAC address like 52:54:00:12:34:56" % _subject(what, value))
    if int(mac[:2], 16) & 1:
        raise InvalidOption(option, "%s is a multicast MAC address; a NIC needs a unicast one" % _subject(what, value))
    if mac == "00:00:00:00:00:00":
        raise InvalidOption(option, "%s is the all-zero MAC address, which no NIC can have" % _subject(what, value))
    return mac


def mtu(option, value, ipv6=False, zero=None):
    """``value`` when it is an MTU from 68 (1280 with ``ipv6``, for an interface that carries IPv6 addresses)
    to 65535.

    ``zero``: what 0 means for the option (say "returns to libvirt's default"); 0 is then taken, as None.
    """
    low, high = (IPV6_MIN_MTU if ipv6 else MTU_RANGE[0]), MTU_RANGE[1]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and zero is not None and value == 0:
        return None
    if not is_int or not low <= value <= high:
        raise InvalidOption(option, "must be between %d and %d%s%s, not %r" % (
            low, high, " for IPv6" if ipv6 else "", " (0 %s)" % zero if zero is not None else "", value))
    return value


def dns_name(option, value, what=None):
    """``value`` when it is a DNS name: dot-separated labels of letters, digits and inner hyphens, each of at most
    63 characters, 253 in all (no trailing dot)."""
    if (not isinstance(value, str) or len(value) > DNS_NAME_MAX
            or not all(DNS_LABEL_RE.fullmatch(label) for label in value.split("."))):
        raise InvalidOption(option, "%s is not a DNS name (dot-separated labels of letters, digits and inner hyphens)"
                            % _subject(what, value))
    return value


def _version_name(version):
    return "an IPv%d address" % version if version else "an IP address"


def ip_address(option, value, version=None, what=None):
    """``value`` as an ipaddress address, of IP ``version`` (4 or 6) when given."""
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        address = None
    if address is None or version not in (None, address.version):
        raise InvalidOption(option, "%s is not %s" % (_subject(what, value), _version_name(version)))
    return address


def ip_interface(option, value, version=None, what=None):
    """``value`` ('address/prefix') as an ipaddress interface, of IP ``version`` (4 or 6) when given.

    The prefix length must be written: a bare address would silently become a /32 or /128.
    """
    text = str(value)
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        interface = None
    if interface is None or version not in (None, interface.version):
        raise InvalidOption(option, "%s is not %s with a prefix length, like %s" % (
            _subject(what, value), _version_name(version), EXAMPLE_INTERFACES[version or 4]))
    if "/" not in text:
        raise InvalidOption(option, "%s needs a prefix length, like %s/%d" % (
            _subject(what, value), text, 24 if interface.version == 4 else 64))
    return interface


def is_local_uri(uri, option="uri"):
    """Whether libvirt ``uri`` reaches a daemon on this host: no host part (qemu:///system), localhost or a
    loopback address, whatever the user or port."""
    try:
        host = urlsplit(uri).hostname
    except ValueError:
        raise InvalidOption(option, "%r is not a URI" % (uri,)) from None
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# The TCP and UDP ports a connection can go to; 0 is none (binding to it asks the kernel to pick one).
PORT_RANGE = (1, 65535)


def port(option, value):
    """``value`` when it is a TCP or UDP port from 1 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not PORT_RANGE[0] <= value <= PORT_RANGE[1]:
        raise InvalidOption(option, "must be a port between %d and %d, not %r" % (PORT_RANGE + (value,)))
    return value


def host(option, value, names=True):
    """``value`` when it names a host to connect to: an IP address (returned in its short form) or, with ``names``,
    a DNS name (returned as given; a trailing dot is taken). A zone (fe80::1%eth0) is refused: programs such as
    iperf3 read what follows '%' as a device to bind to, and a DNS name cannot hold it."""
    text = str(value) if value is not None else ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is not None:
        if getattr(address, "scope_id", None):
            raise InvalidOption(option, "%r has a zone; give the address without '%%%s'" % (text, address.scope_id))
        return str(address)
    if not names:
        raise InvalidOption(option, "%r is not an IP address" % (text,))
    if not text:
        raise InvalidOption(option, "must be an IP address or a DNS name, not empty")
    dns_name(option, text[:-1] if text.endswith(".") else text)
    return text


def host_port(option, value):
    """(host, port) from ``value`` written 'host:port', with an IPv6 address in brackets ('[2001:db8::1]:443');
    the host as ``host`` returns it."""
    text = value if isinstance(value, str) else ""
    try:
        parts = urlsplit("//" + text)
        name, number = parts.hostname, parts.port
    except ValueError:
        name, number = None, None
    if not name or number is None or parts.username is not None or parts.password is not None or parts.path:
        raise InvalidOption(option, "%r is not host:port, like 192.0.2.10:22, [2001:db8::10]:443 or web1.example.com:80" % (value,))
    return host(option, name), port(option, number)


HTTP_SCHEMES = ("http", "https")


def http_url(option, value):
    """``value`` when it is an http:// or https:// URL with a host (and a port from 1 to 65535 where it names one)."""
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        number = parts.port if parts else None
    except ValueError:
        parts, number = None, None
    if parts is None or parts.scheme not in HTTP_SCHEMES or not parts.hostname:
        raise InvalidOption(option, "%r is not an http:// or https:// URL with a host, like http://192.0.2.10/health" % (value,))
    host(option, parts.hostname)
    if number is not None:
        port(option, number)
    return value
