# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._firewall import Forward
from ansible_collections.arctictern.virt.plugins.module_utils._network import (
    Lease, NetworkSpec, definition_changes, describe, render_xml, spec_from_options, spec_from_xml,
)

NAT = dict(
    name="lab",
    mode="nat",
    address="198.18.100.1/24",
    dhcp=dict(start="198.18.100.100", end="198.18.100.199"),
    static_leases=[dict(mac="52:54:00:00:64:0B", ip="198.18.100.11", name="web2"),
                   dict(mac="52:54:00:00:64:0a", ip="198.18.100.10", name="web1")],
    port_forwards=[dict(proto="tcp", host_port=2210, guest_ip="198.18.100.10", guest_port=22)],
    domain="lab.example",
    mtu=9000,
)

# A running NAT network as libvirt 9.0 prints it, with parts the collection does not model.
LIBVIRT_XML = """<network connections='2'>
  <name>lab</name>
  <uuid>0a7ec05c-5c36-4f53-8e7a-1f2b25f1a3c9</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='virbr1' stp='on' delay='0'/>
  <mac address='52:54:00:3C:1A:07'/>
  <domain name='lab.example' localOnly='yes'/>
  <ip family='ipv6' address='fd00:100::1' prefix='64'/>
  <ip address='198.18.100.1' prefix='24'>
    <dhcp>
      <range start='198.18.100.100' end='198.18.100.199'>
        <lease expiry='1' unit='hours'/>
      </range>
      <host mac='52:54:00:00:64:0a' name='web1' ip='198.18.100.10'/>
      <host name='printer' ip='198.18.100.9'/>
    </dhcp>
  </ip>
</network>
"""


def options(**changes):
    params = dict(NAT, **changes)
    return {key: value for key, value in params.items() if value is not None}


def test_nat_options_give_a_full_spec():
    spec = spec_from_options(NAT)

    assert spec == NetworkSpec(
        name="lab", mode="nat", address="198.18.100.1/24", dhcp_start="198.18.100.100", dhcp_end="198.18.100.199",
        static_leases=(Lease("52:54:00:00:64:0a", "198.18.100.10", "web1"), Lease("52:54:00:00:64:0b", "198.18.100.11", "web2")),
        domain="lab.example", mtu=9000,
    )
    assert spec.port_forwards == (Forward("tcp", 2210, "198.18.100.10", 22),)


def test_nat_xml_has_forward_bridge_and_dhcp():
    root = ET.fromstring(render_xml(spec_from_options(NAT)))

    assert root.find("forward").attrib == {"mode": "nat"}
    assert root.find("bridge").attrib == {"stp": "on", "delay": "0"}  # libvirt picks the name
    assert root.find("mtu").get("size") == "9000"
    assert root.find("domain").get("name") == "lab.example"
    ip_element = root.find("ip")
    assert ip_element.attrib == {"address": "198.18.100.1", "netmask": "255.255.255.0"}
    assert ip_element.find("dhcp/range").attrib == {"start": "198.18.100.100", "end": "198.18.100.199"}
    assert [host.attrib for host in ip_element.findall("dhcp/host")] == [
        {"mac": "52:54:00:00:64:0a", "name": "web1", "ip": "198.18.100.10"},
        {"mac": "52:54:00:00:64:0b", "name": "web2", "ip": "198.18.100.11"},
    ]
    assert root.find("uuid") is None and root.find("mac") is None


@pytest.mark.parametrize("params", [
    NAT,
    dict(name="store", mode="isolated", bridge="virbr-stor", address="198.18.200.1/24"),
    dict(name="bare", mode="isolated"),
    dict(name="lan", mode="bridge", bridge="br0"),
    dict(name="leases-only", mode="nat", address="10.1.0.1/16", static_leases=[dict(mac="52:54:00:00:00:01", ip="10.1.2.3")]),
])
def test_xml_round_trips_to_the_same_spec(params):
    spec = spec_from_options(params)
    spec.uuid, spec.mac = "0a7ec05c-5c36-4f53-8e7a-1f2b25f1a3c9", None if spec.mode == "bridge" else "52:54:00:3c:1a:07"

    assert spec_from_xml(render_xml(spec)) == spec


def test_isolated_has_no_forward_and_bridge_mode_uses_the_host_bridge():
    isolated = ET.fromstring(render_xml(spec_from_options(dict(name="store", mode="isolated", address="198.18.200.1/24"))))
    bridged = ET.fromstring(render_xml(spec_from_options(dict(name="lan", mode="bridge", bridge="br0"))))

    assert isolated.find("forward") is None
    assert isolated.find("ip").get("address") == "198.18.200.1"
    assert isolated.find("ip/dhcp") is None
    assert bridged.find("forward").attrib == {"mode": "bridge"}
    assert bridged.find("bridge").attrib == {"name": "br0"}  # libvirt refuses stp/delay here
    assert bridged.find("ip") is None


def test_spec_from_libvirt_xml_reads_what_is_modelled_and_skips_the_rest():
    spec = spec_from_xml(LIBVIRT_XML)

    assert spec == NetworkSpec(
        name="lab", mode="nat", uuid="0a7ec05c-5c36-4f53-8e7a-1f2b25f1a3c9", bridge="virbr1", mac="52:54:00:3c:1a:07",
        address="198.18.100.1/24", dhcp_start="198.18.100.100", dhcp_end="198.18.100.199",
        static_leases=(Lease(None, "198.18.100.9", "printer"), Lease("52:54:00:00:64:0a", "198.18.100.10", "web1")),
        domain="lab.example",
    )
    assert spec.port_forwards is None
    assert spec_from_xml("<network><name>x</name><forward/><ip address='10.0.0.1' netmask='255.255.0.0'/></network>").address == "10.0.0.1/16"
    assert spec_from_xml("<network><name>r</name><forward mode='route'/></network>").mode == "route"
    with pytest.raises(VirtError, match="^cannot read the network definition: "):
        spec_from_xml("<network>")


def test_libvirt_assigned_uuid_mac_and_bridge_are_carried_over():
    current = spec_from_xml(LIBVIRT_XML)

    spec = spec_from_options(NAT, current)

    assert (spec.uuid, spec.mac, spec.bridge) == (current.uuid, current.mac, "virbr1")
    assert spec_from_options(options(bridge="virbr9"), current).bridge == "virbr9"
    # From a host bridge to a bridge of libvirt's own: the host bridge's name must not come along.
    on_host_bridge = spec_from_options(dict(name="lab", mode="bridge", bridge="br0"))
    on_host_bridge.uuid = current.uuid
    moved = spec_from_options(NAT, on_host_bridge)
    assert (moved.uuid, moved.bridge, moved.mac) == (current.uuid, None, None)


def test_same_options_against_their_own_definition_compare_equal():
    current = spec_from_xml(render_xml(spec_from_options(NAT)).replace("<bridge ", "<uuid>u</uuid><bridge name='virbr3' "))

    assert spec_from_options(NAT, current) == current
    assert spec_from_options(options(mtu=1500), current) != current
    # Leases are compared whatever order they are listed in.
    assert spec_from_options(options(static_leases=list(reversed(NAT["static_leases"]))), current) == current


def test_without_mode_the_definition_stays_and_forwards_are_validated_against_it():
    current = spec_from_xml(LIBVIRT_XML)

    with pytest.raises(InvalidOption, match="^mode: needed to define network 'lab', which does not exist$"):
        spec_from_options(dict(name="lab"))
    kept = spec_from_options(dict(name="lab"), current)
    assert kept == current and kept.port_forwards is None
    forwarded = spec_from_options(dict(name="lab", port_forwards=[dict(host_port=80, guest_ip="198.18.100.10")]), current)
    assert forwarded == current and forwarded.port_forwards == (Forward("tcp", 80, "198.18.100.10", 80),)
    with pytest.raises(InvalidOption, match="port_forwards: entry 1: guest_ip 198.18.101.10 is not a guest address"):
        spec_from_options(dict(name="lab", port_forwards=[dict(host_port=80, guest_ip="198.18.101.10")]), current)
    isolated = spec_from_xml("<network><name>lab</name><ip address='10.0.0.1' prefix='24'/></network>")
    with pytest.raises(InvalidOption, match="port_forwards: forwards need a network in mode nat, and 'lab' is in mode isolated"):
        spec_from_options(dict(name="lab", port_forwards=[dict(host_port=80, guest_ip="10.0.0.2")]), isolated)
    assert spec_from_options(dict(name="lab", port_forwards=[]), isolated).port_forwards == ()


@pytest.mark.parametrize("params, option, problem", [
    (dict(name="lab", address="10.0.0.1/24"), "mode", "needed to define network 'lab', which does not exist"),
    (dict(name="lab", static_leases=[dict(mac="52:54:00:00:00:01", ip="10.0.0.2")]), "mode", "needed to define network 'lab'"),
    (options(mode="routed"), "mode", "must be one of nat, bridge, isolated"),
    (options(name=""), "name", "must be a non-empty string"),
    (options(name="a/b"), "name", "cannot contain '/'"),
    (options(address=None, dhcp=None, static_leases=None, port_forwards=None), "address", "mode nat needs the host's address"),
    (options(address="198.18.100.1"), "address", "'198.18.100.1' needs a prefix length, like 198.18.100.1/24"),
    (options(address="198.18.100.300/24"), "address", "'198.18.100.300/24' is not an IPv4 address with a prefix length"),
    (options(address="fd00::1/64"), "address", "'fd00::1/64' is not an IPv4 address with a prefix length"),
    (options(address="198.18.100.0/24"), "address", "198.18.100.0 is not a host address of 198.18.100.0/24"),
    (options(address="198.18.100.255/24"), "address", "is not a host address"),
    (options(address="198.18.100.1/31"), "address", "leaves no room for guests"),
    (options(dhcp=dict(start="198.18.100.200", end="198.18.100.100")), "dhcp", "reversed: start 198.18.100.200 is after end 198.18.100.100"),
    (options(dhcp=dict(start="198.18.100.100", end="198.18.101.10")), "dhcp", "end 198.18.101.10 is not a guest address of the network's subnet"),
    (options(dhcp=dict(start="198.18.100.0", end="198.18.100.10")), "dhcp", "start 198.18.100.0 is not a guest address"),
    (options(dhcp=dict(start="198.18.100.1", end="198.18.100.10")), "dhcp", "start 198.18.100.1 is the host's own address"),
    (options(dhcp=dict(start="198.18.100.100")), "dhcp", "needs both start and end, or neither (dhcp: {} removes the range)"),
    (options(dhcp=dict(start=None, end="198.18.100.100")), "dhcp", "needs both start and end, or neither"),
    (options(mtu=-1), "mtu", "must be between 68 and 65535 (0 returns to libvirt's default), not -1"),
    (options(address=""), "address", "mode nat needs the host's address"),
    (options(bridge=""), "bridge", "an interface name must not be empty"),
    (dict(name="store", mode="isolated", static_leases=[dict(mac="52:54:00:00:00:01", ip="10.0.0.2")]), "static_leases", "needs address"),
    (options(static_leases=[dict(mac="52:54:00:00:00:01", ip="198.18.200.5")]), "static_leases", "198.18.200.5 is not a guest address"),
    (options(static_leases=[dict(mac="52:54:00:00:00:0g", ip="198.18.100.5")]), "static_leases", "is not a MAC address"),
    (options(static_leases=[dict(mac="52:54:00:00:01", ip="198.18.100.5")]), "static_leases", "is not a MAC address"),
    (options(static_leases=[dict(mac="01:00:5e:00:00:01", ip="198.18.100.5")]), "static_leases", "is a multicast MAC address"),
    (options(static_leases=[dict(ip="198.18.100.5")]), "static_leases", "entry 1 needs mac and ip"),
    (options(static_leases=[dict(mac="52:54:00:00:00:01", ip="198.18.100.5", name="web 1")]), "static_leases", "entry 1: name 'web 1' is not a DNS name"),
    (options(static_leases=[dict(mac="52:54:00:00:00:01", ip="198.18.100.5"), dict(mac="52:54:00:00:00:01", ip="198.18.100.6")]),
     "static_leases", "entry 2: mac 52:54:00:00:00:01 is already given to another lease"),
    (options(static_leases=[dict(mac="52:54:00:00:00:01", ip="198.18.100.5"), dict(mac="52:54:00:00:00:02", ip="198.18.100.5")]),
     "static_leases", "entry 2: ip 198.18.100.5 is already given"),
    (options(static_leases=[dict(mac="52:54:00:00:00:01", ip="198.18.100.5", name="a"), dict(mac="52:54:00:00:00:02", ip="198.18.100.6", name="a")]),
     "static_leases", "entry 2: name a is already given"),
    (options(port_forwards=[dict(host_port=80, guest_ip="198.18.99.5")]), "port_forwards", "is not a guest address of the network's subnet"),
    (options(port_forwards=[dict(host_port=0, guest_ip="198.18.100.5")]), "port_forwards", "out of the range 1..65535"),
    (options(domain="lab example"), "domain", "'lab example' is not a DNS name"),
    (options(domain="-lab.example"), "domain", "'-lab.example' is not a DNS name"),
    (options(mtu=67), "mtu", "must be between 68 and 65535 (0 returns to libvirt's default), not 67"),
    (options(bridge="a-very-long-bridge-name"), "bridge", "is 23 bytes long in UTF-8; Linux allows at most 15"),
    (options(bridge="br/0"), "bridge", "interface name 'br/0' must not contain '/'"),
    (options(bridge=".."), "bridge", "'..' is not a valid interface name"),
    (dict(name="store", mode="isolated", dhcp=dict(start="10.0.0.2", end="10.0.0.9")), "dhcp", "needs address"),
    (dict(name="store", mode="isolated", address="10.0.0.1/24", port_forwards=[dict(host_port=80, guest_ip="10.0.0.2")]),
     "port_forwards", "forwards need a network in mode nat, and 'store' is in mode isolated"),
    (dict(name="lan", mode="bridge"), "bridge", "mode bridge needs the name of an existing host bridge"),
    (dict(name="lan", mode="bridge", bridge="br0", address="10.0.0.1/24"), "address", "not possible in mode bridge"),
    (dict(name="lan", mode="bridge", bridge="br0", dhcp=dict(start="10.0.0.2", end="10.0.0.9")), "dhcp", "not possible in mode bridge"),
    (dict(name="lan", mode="bridge", bridge="br0", mtu=9000), "mtu", "not possible in mode bridge"),
    (dict(name="lan", mode="bridge", bridge="br0", domain="lan.example"), "domain", "not possible in mode bridge"),
    (dict(name="lan", mode="bridge", bridge="br0", port_forwards=[dict(host_port=80, guest_ip="10.0.0.2")]), "port_forwards",
     "not possible in mode bridge"),
])
def test_bad_options_are_rejected_naming_the_option(params, option, problem):
    with pytest.raises(InvalidOption) as caught:
        spec_from_options(params)

    assert caught.value.option == option
    assert caught.value.msg.startswith(option + ": ")
    assert problem in caught.value.msg


def test_options_left_out_keep_the_definition_even_with_mode():
    current = spec_from_xml(LIBVIRT_XML)

    assert spec_from_options(dict(name="lab", mode="nat"), current) == current
    assert spec_from_options(dict(name="lab", dhcp=None, static_leases=None, domain=None, mtu=None), current) == current
    changed = spec_from_options(dict(name="lab", mode="nat", mtu=1400), current)
    assert changed.mtu == 1400 and changed.static_leases == current.static_leases and changed.domain == "lab.example"


def test_removal_values_remove_what_the_option_models():
    current = spec_from_xml(LIBVIRT_XML.replace("<domain ", "<mtu size='9000'/><domain "))
    assert current.mtu == 9000

    removed = spec_from_options(dict(name="lab", static_leases=[], dhcp=dict(start=None, end=None), domain="", mtu=0), current)

    assert removed.static_leases == () and removed.dhcp_start is None and removed.dhcp_end is None
    assert removed.domain is None and removed.mtu is None
    assert (removed.address, removed.bridge, removed.uuid, removed.mac) == (current.address, current.bridge, current.uuid, current.mac)
    assert definition_changes(current, removed) == ["dhcp", "static_leases", "domain", "mtu"]
    isolated = spec_from_options(dict(name="lab", mode="isolated", address=""), current)
    assert isolated.address is None and isolated.dhcp_start is None and isolated.static_leases == ()
    assert definition_changes(current, isolated) == ["mode", "address", "dhcp", "static_leases"]


def test_a_new_address_must_hold_the_kept_range_and_leases():
    current = spec_from_xml(LIBVIRT_XML)

    with pytest.raises(InvalidOption, match=r"^dhcp: the defined range 198.18.100.100-198.18.100.199 does not fit address 198.18.101.1/24"):
        spec_from_options(dict(name="lab", address="198.18.101.1/24"), current)
    with pytest.raises(InvalidOption, match=r"^static_leases: the defined lease of 198.18.100.9 does not fit address 198.18.101.1/24"):
        spec_from_options(dict(name="lab", address="198.18.101.1/24", dhcp={}), current)
    moved = spec_from_options(dict(name="lab", address="198.18.101.1/24", dhcp=dict(start="198.18.101.100", end="198.18.101.110"),
                                   static_leases=[]), current)
    assert moved.address == "198.18.101.1/24" and moved.dhcp_start == "198.18.101.100" and moved.static_leases == ()
    # A wider prefix still holds them: nothing else needs to be given.
    assert spec_from_options(dict(name="lab", address="198.18.100.1/23"), current).static_leases == current.static_leases


def test_moving_onto_and_off_a_host_bridge():
    current = spec_from_xml(LIBVIRT_XML)

    bridged = spec_from_options(dict(name="lab", mode="bridge", bridge="br0"), current)
    assert bridged == NetworkSpec(name="lab", mode="bridge", uuid=current.uuid, bridge="br0")
    with pytest.raises(InvalidOption, match="^bridge: mode bridge needs the name of an existing host bridge$"):
        spec_from_options(dict(name="lab", mode="bridge"), current)
    back = spec_from_options(dict(name="lab", mode="isolated"), bridged)
    assert back == NetworkSpec(name="lab", mode="isolated", uuid=current.uuid)  # libvirt names the bridge it creates
    # On the host bridge the removal values are accepted (there is nothing to remove), other values are not.
    assert spec_from_options(dict(name="lab", domain="", mtu=0, static_leases=[], dhcp={}), bridged) == bridged
    with pytest.raises(InvalidOption, match="^domain: not possible in mode bridge"):
        spec_from_options(dict(name="lab", domain="lab.example"), bridged)


def test_modes_the_module_does_not_model_are_kept():
    routed = spec_from_xml("<network><name>r</name><forward mode='route'/><bridge name='virbr5'/>"
                           "<ip address='198.18.5.1' prefix='24'/></network>")
    macvtap = spec_from_xml("<network><name>m</name><forward mode='private'><interface dev='eth1'/></forward></network>")

    edited = spec_from_options(dict(name="r", dhcp=dict(start="198.18.5.10", end="198.18.5.20"), domain="r.example"), routed)
    assert edited.mode == "route" and edited.dhcp_start == "198.18.5.10" and edited.domain == "r.example"
    assert definition_changes(routed, edited) == ["dhcp", "domain"]
    assert spec_from_options(dict(name="m"), macvtap) == macvtap
    with pytest.raises(InvalidOption, match="^address: not possible in mode private"):
        spec_from_options(dict(name="m", address="198.18.5.1/24"), macvtap)
    with pytest.raises(InvalidOption, match="^bridge: not possible in mode private"):
        spec_from_options(dict(name="m", bridge="br0"), macvtap)
    with pytest.raises(InvalidOption, match="^port_forwards: forwards need a network in mode nat, and 'r' is in mode route"):
        spec_from_options(dict(name="r", port_forwards=[dict(host_port=80, guest_ip="198.18.5.9")]), routed)


@pytest.mark.parametrize("name", ["x<uuid>00000000-0000-0000-0000-000000000000<uuid>", 'a&b"c\'d<e>', "&amp;", "]]>", "<!-- x -->"])
def test_hostile_names_cannot_inject_xml(name):
    xml = render_xml(spec_from_options(options(name=name)))
    root = ET.fromstring(xml)

    assert root.findtext("name") == name
    assert len(root.findall("name")) == 1
    assert root.find("uuid") is None
    assert spec_from_xml(xml).name == name


def test_rendering_escapes_every_value_even_unvalidated_ones():
    evil = "</name><uuid>00000000-0000-0000-0000-000000000000</uuid><name>x"
    spec = NetworkSpec(name=evil, mode="nat", bridge="b'r\"0", address="10.0.0.1/24", domain='d"><ip address="1.2.3.4"/><x a="',
                       static_leases=(Lease("52:54:00:00:00:01", "10.0.0.5", "<host mac='x'/>"),))

    root = ET.fromstring(render_xml(spec))

    assert root.findtext("name") == evil and root.find("uuid") is None
    assert root.find("bridge").get("name") == "b'r\"0"
    assert root.find("domain").get("name") == spec.domain
    assert len(root.findall("ip")) == 1 and len(root.findall("ip/dhcp/host")) == 1
    assert spec_from_xml(render_xml(spec)) == spec


def test_describe_is_the_return_value_shape():
    spec = spec_from_xml(LIBVIRT_XML)

    described = describe(spec, active=1, autostart=0, forwards=(Forward("tcp", 2210, "198.18.100.10", 22),))

    assert described == {
        "name": "lab", "uuid": "0a7ec05c-5c36-4f53-8e7a-1f2b25f1a3c9", "mode": "nat", "bridge": "virbr1", "mac": "52:54:00:3c:1a:07",
        "address": "198.18.100.1/24", "dhcp": {"start": "198.18.100.100", "end": "198.18.100.199"},
        "static_leases": [{"mac": None, "ip": "198.18.100.9", "name": "printer"},
                          {"mac": "52:54:00:00:64:0a", "ip": "198.18.100.10", "name": "web1"}],
        "domain": "lab.example", "mtu": None, "active": True, "autostart": False,
        "port_forwards": [{"proto": "tcp", "host_port": 2210, "guest_ip": "198.18.100.10", "guest_port": 22, "host_address": None}],
    }
    assert describe(spec_from_options(dict(name="lan", mode="bridge", bridge="br0")))["dhcp"] is None


RENDERED = [
    NAT,
    dict(name="store", mode="isolated", address="198.18.200.1/24", mtu=9000),
    dict(name="lan", mode="bridge", bridge="br0"),
    options(name='odd <&"\'> name'),
]


@pytest.mark.parametrize("params", RENDERED)
def test_libvirt_parses_the_rendered_xml(params):
    """libvirt's own parser (the in-process test driver, no daemon) takes the XML and keeps what was asked."""
    conn = _libvirt.libvirt.open("test:///default")
    try:
        network = conn.networkDefineXML(render_xml(spec_from_options(params)))
        defined = spec_from_xml(network.XMLDesc(0))
    finally:
        conn.close()

    assert defined == spec_from_options(params, defined)


@pytest.mark.parametrize("params", RENDERED)
def test_the_rendered_xml_is_valid_by_libvirts_schema(params, tmp_path):
    if not shutil.which("virt-xml-validate"):
        pytest.skip("virt-xml-validate is not installed")
    path = tmp_path / "network.xml"
    path.write_text(render_xml(spec_from_options(params)))

    done = subprocess.run(["virt-xml-validate", str(path), "network"], capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
