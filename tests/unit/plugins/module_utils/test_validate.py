# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared checks of _validate.py: each accepts what it should, returns the canonical form, and refuses the rest
with an InvalidOption that names the option and the bad value."""

from __future__ import annotations

import ipaddress
import os

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as nl
from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError


def refused(check, *args, **kwargs):
    """The message of the InvalidOption ``check`` raises for option 'opt', after checking it names the option."""
    with pytest.raises(InvalidOption) as caught:
        check("opt", *args, **kwargs)
    assert caught.value.option == "opt"
    assert caught.value.msg.startswith("opt: ")
    return caught.value.msg


# --- interface names -----------------------------------------------------------------------------------------

# Names the kernel takes; 'é' * 7 is 14 bytes, and U+2003 (e2 80 83) holds no byte the kernel calls white space.
KERNEL_NAMES = ["br0", "a" * 15, "vnet-1_x", "ünï", "é" * 7, "a@b", "-x", "a\u2003b"]


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_interface_name_accepts_kernel_names(name):
    assert _validate.interface_name("opt", name) == name


@pytest.mark.parametrize("name, problem", [
    ("", "an interface name must not be empty"),
    (None, "an interface name must not be empty"),
    (".", "'.' is not a valid interface name"),
    ("..", "'..' is not a valid interface name"),
    ("a" * 16, "interface name '%s' is 16 bytes long in UTF-8; Linux allows at most 15" % ("a" * 16)),
    # 8 characters, 16 bytes: the kernel counts bytes.
    ("ü" * 8, "interface name '%s' is 16 bytes long in UTF-8; Linux allows at most 15" % ("ü" * 8)),
    ("br" + "ü" * 7, "is 16 bytes long"),
    ("a/b", "interface name 'a/b' must not contain '/'"),
    ("a:1", "interface name 'a:1' must not contain ':'"),
    ("br%d", "interface name 'br%d' must not contain '%'"),
    ("a b", "interface name 'a b' must not contain white space (' ')"),
    ("a\tb", "must not contain white space ('\\t')"),
    # A trailing newline slipped through the regular expressions this check replaces ('$' matches before it).
    ("br0\n", "must not contain white space ('\\n')"),
    ("a\x1cb", "must not contain control characters ('\\x1c')"),
    ("a\x7f", "must not contain control characters"),
    ("à", "interface name 'à' must not contain 'à': its UTF-8 form holds byte 0xa0, which Linux takes for white space"),
    ("a\u00a0", "holds byte 0xa0"),
    ("a\udc80", "is not valid UTF-8 text"),
])
def test_interface_name_refuses(name, problem):
    assert problem in refused(_validate.interface_name, name)


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
@pytest.mark.parametrize("name", KERNEL_NAMES + ["ü" * 8, "a b", "a:1", "..", "à", "a\u00a0", "a\x0bb"])
def test_interface_name_agrees_with_the_kernel(scratch_netns, name):
    try:
        _validate.interface_name("opt", name)
        ours = True
    except InvalidOption:
        ours = False
    with nl.open_ipr(scratch_netns()) as ipr:
        try:
            kernels = nl.create_bridge(ipr, name)
        except VirtError:
            kernels = False
    assert ours == kernels


# --- MAC addresses -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, mac", [
    ("52:54:00:ab:cd:01", "52:54:00:ab:cd:01"),
    ("52:54:00:AB:CD:01", "52:54:00:ab:cd:01"),
    ("52-54-00-ab-cd-01", "52:54:00:ab:cd:01"),
    (" 52:54:00:ab:cd:01\n", "52:54:00:ab:cd:01"),
    ("02:00:00:00:00:00", "02:00:00:00:00:00"),
])
def test_mac_address_is_returned_in_libvirts_form(value, mac):
    assert _validate.mac_address("opt", value) == mac


@pytest.mark.parametrize("value, problem", [
    ("52:54:00:ab:cd", "'52:54:00:ab:cd' is not a MAC address like 52:54:00:12:34:56"),
    ("52:54:00:ab:cd:01:02", "is not a MAC address"),
    ("52:54:00:ab:cd:0g", "is not a MAC address"),
    ("5254.00ab.cd01", "is not a MAC address"),
    ("525400abcd01", "is not a MAC address"),
    ("", "is not a MAC address"),
    (None, "None is not a MAC address"),
    ("01:00:5e:00:00:01", "'01:00:5e:00:00:01' is a multicast MAC address; a NIC needs a unicast one"),
    ("ff:ff:ff:ff:ff:ff", "is a multicast MAC address"),
    ("00:00:00:00:00:00", "'00:00:00:00:00:00' is the all-zero MAC address, which no NIC can have"),
    ("00-00-00-00-00-00", "is the all-zero MAC address"),
])
def test_mac_address_refuses(value, problem):
    assert problem in refused(_validate.mac_address, value)


def test_mac_address_names_the_item():
    assert refused(_validate.mac_address, "x", what="entry 2: mac") == "opt: entry 2: mac 'x' is not a MAC address like 52:54:00:12:34:56"


# --- MTUs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, kwargs", [(68, {}), (1500, {}), (65535, {}), (1280, {"ipv6": True}), (9000, {"ipv6": True})])
def test_mtu_accepts_the_range(value, kwargs):
    assert _validate.mtu("opt", value, **kwargs) == value


@pytest.mark.parametrize("value, kwargs, problem", [
    (67, {}, "opt: must be between 68 and 65535, not 67"),
    (65536, {}, "opt: must be between 68 and 65535, not 65536"),
    (0, {}, "opt: must be between 68 and 65535, not 0"),
    (-1, {}, "not -1"),
    (1279, {"ipv6": True}, "opt: must be between 1280 and 65535 for IPv6, not 1279"),
    (-1, {"zero": "returns to the default"}, "opt: must be between 68 and 65535 (0 returns to the default), not -1"),
    (True, {}, "not True"),
    ("1500", {}, "not '1500'"),
    (None, {}, "not None"),
])
def test_mtu_refuses(value, kwargs, problem):
    assert problem in refused(_validate.mtu, value, **kwargs)


def test_mtu_zero_is_none_where_it_means_unset():
    assert _validate.mtu("opt", 0, zero="returns to libvirt's default") is None
    assert "not False" in refused(_validate.mtu, False, zero="returns to libvirt's default")


# --- DNS names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["lab", "lab.example", "a-b.c1", "1.2.3", "x" * 63, ".".join(["x" * 63] * 3) + "." + "x" * 61])
def test_dns_name_accepts(value):
    assert _validate.dns_name("opt", value) == value


@pytest.mark.parametrize("value", [
    "", "-lab", "lab-", "lab..example", "lab.example.", ".lab", "a_b", "lab example", "x" * 64,
    ".".join(["x" * 63] * 3) + "." + "x" * 62,  # 254 characters
    "lab\n", "ünï", None,
])
def test_dns_name_refuses(value):
    assert refused(_validate.dns_name, value).startswith("opt: %r is not a DNS name (" % (value,))


def test_dns_name_names_the_item():
    assert refused(_validate.dns_name, "web 1", what="entry 1: name").startswith("opt: entry 1: name 'web 1' is not a DNS name")


# --- IP addresses --------------------------------------------------------------------------------------------


def test_ip_address_of_either_or_one_version():
    assert _validate.ip_address("opt", "192.0.2.1") == ipaddress.ip_address("192.0.2.1")
    assert _validate.ip_address("opt", "2001:db8::1", version=6) == ipaddress.ip_address("2001:db8::1")
    assert refused(_validate.ip_address, "2001:db8::1", version=4) == "opt: '2001:db8::1' is not an IPv4 address"
    assert refused(_validate.ip_address, "192.0.2.1", version=6) == "opt: '192.0.2.1' is not an IPv6 address"


@pytest.mark.parametrize("value", ["192.0.2.300", "192.0.2.1/24", "", "host.example", None, 5])
def test_ip_address_refuses(value):
    assert refused(_validate.ip_address, value) == "opt: %r is not an IP address" % (value,)


def test_ip_address_names_the_item():
    assert refused(_validate.ip_address, "x", version=4, what="start") == "opt: start 'x' is not an IPv4 address"


@pytest.mark.parametrize("value, kwargs, expected", [
    ("192.0.2.10/24", {}, "192.0.2.10/24"),
    ("192.0.2.10/255.255.255.0", {"version": 4}, "192.0.2.10/24"),
    ("2001:db8::10/64", {"version": 6}, "2001:db8::10/64"),
    ("2001:DB8:0::10/64", {}, "2001:db8::10/64"),
])
def test_ip_interface_accepts(value, kwargs, expected):
    assert _validate.ip_interface("opt", value, **kwargs).with_prefixlen == expected


@pytest.mark.parametrize("value, kwargs, problem", [
    ("192.0.2.10", {}, "opt: '192.0.2.10' needs a prefix length, like 192.0.2.10/24"),
    ("2001:db8::10", {}, "opt: '2001:db8::10' needs a prefix length, like 2001:db8::10/64"),
    ("192.0.2.10/33", {}, "opt: '192.0.2.10/33' is not an IP address with a prefix length, like 192.0.2.10/24"),
    ("192.0.2.300/24", {"version": 4}, "opt: '192.0.2.300/24' is not an IPv4 address with a prefix length, like 192.0.2.10/24"),
    ("fd00::1/64", {"version": 4}, "opt: 'fd00::1/64' is not an IPv4 address with a prefix length, like 192.0.2.10/24"),
    ("192.0.2.10/24", {"version": 6}, "opt: '192.0.2.10/24' is not an IPv6 address with a prefix length, like 2001:db8::10/64"),
    ("192.0.2.10/24'/><x", {}, "is not an IP address with a prefix length"),
    (None, {}, "opt: None is not an IP address with a prefix length"),
])
def test_ip_interface_refuses(value, kwargs, problem):
    assert problem in refused(_validate.ip_interface, value, **kwargs)


# --- local URIs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", [
    "qemu:///system", "qemu:///session", "test:///default", "qemu+unix:///system?socket=/run/atv/hv1/libvirt-sock",
    "qemu+ssh://root@localhost/system", "qemu://LOCALHOST/system", "qemu+tcp://127.0.0.2:16509/system",
    "qemu+ssh://[::1]/system",
])
def test_local_uris(uri):
    assert _validate.is_local_uri(uri) is True


@pytest.mark.parametrize("uri", [
    "qemu+ssh://root@hv2.example.com/system", "qemu+tcp://198.18.0.2/system", "qemu+ssh://localhost.example.com/system",
    "qemu+tls://[2001:db8::2]/system",
])
def test_remote_uris(uri):
    assert _validate.is_local_uri(uri) is False


def test_unparsable_uri_names_the_option():
    with pytest.raises(InvalidOption) as caught:
        _validate.is_local_uri("qemu+ssh://[::1/system", option="dest_uri")
    assert caught.value.msg == "dest_uri: 'qemu+ssh://[::1/system' is not a URI"
