# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test data for the tests of _facts, guest_info and the libvirt inventory: domain XML as libvirt writes it,
interfaceAddresses answers, and hosts of tests/unit/fake_libvirt.py set up with them."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

from ansible_collections.arctictern.virt.plugins.module_utils import _domain
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import FakeConnection, libvirt_error

# A remote host by default, so that no test reads this machine's neighbour table or bridges.
REMOTE_URI = "qemu+ssh://hv1.example.com/system"

# An old daemon's capabilities: virt types per arch, no machines, no host CPU model.
CAPABILITIES_WITHOUT_MACHINES = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest>
  <guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/><domain type='kvm'/></arch></guest>
</capabilities>"""


def domain_xml(name, nics=(), metadata=(), running=True, vcpu=("2", None), domain_type="kvm", uuid_string=None):
    """Domain XML as libvirt writes it; ``nics`` are dicts with type, mac, source, model; ``metadata`` (mac, address).
    The UUID is derived from the name unless given."""
    root = ET.Element("domain", type=domain_type)
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "uuid").text = uuid_string or str(uuid.uuid5(uuid.NAMESPACE_URL, "guest:" + name))
    if metadata:
        guest = ET.SubElement(ET.SubElement(root, "metadata"), "{%s}guest" % _domain.METADATA_NS)
        for mac, address in metadata:
            ET.SubElement(guest, "{%s}address" % _domain.METADATA_NS, nic=mac).text = address
    ET.SubElement(root, "memory", unit="KiB").text = "2097152"
    ET.SubElement(root, "currentMemory", unit="KiB").text = "1048576"
    vcpu_element = ET.SubElement(root, "vcpu", placement="static")
    vcpu_element.text = vcpu[0]
    if vcpu[1]:
        vcpu_element.set("current", vcpu[1])
    devices = ET.SubElement(root, "devices")
    for index, nic in enumerate(nics):
        interface = ET.SubElement(devices, "interface", type=nic["type"])
        ET.SubElement(interface, "mac", address=nic["mac"])
        source_attr = {"network": "network", "bridge": "bridge", "direct": "dev"}.get(nic["type"])
        if source_attr:
            ET.SubElement(interface, "source", {source_attr: nic["source"]})
        if running:
            ET.SubElement(interface, "target", dev="vnet%d" % index)
        ET.SubElement(interface, "model", type=nic.get("model", "virtio"))
    return ET.tostring(root, encoding="unicode")


def lease(ifname, mac, *addresses):
    """One interface as interfaceAddresses reports it; ``addresses`` are "ip/prefix"."""
    addrs = []
    for address in addresses:
        ip, prefix = address.split("/")
        addrs.append({"addr": ip, "prefix": int(prefix), "type": 1 if ":" in ip else 0})
    return {ifname: {"addrs": addrs, "hwaddr": mac}}


def old_daemon(uri=REMOTE_URI, hostname="hv1"):
    """A fake host like an old daemon: CAPABILITIES_WITHOUT_MACHINES, no domain capabilities, no interface driver,
    the network default running."""
    conn = FakeConnection(uri=uri, capabilities=CAPABILITIES_WITHOUT_MACHINES, hostname=hostname)
    unsupported = libvirt_error("VIR_ERR_NO_SUPPORT", "this function is not supported by the connection driver")
    conn.fail_on.update(getDomainCapabilities=unsupported, listAllInterfaces=unsupported)
    conn.add_network("default")
    return conn


def place_guest(conn, xml, state="running", addresses=None, autostart=True, persistent=True, job=None):
    """Put a guest on ``conn``: ``addresses`` by source and ``job`` as FakeDomain keeps them."""
    domain = conn.add_domain(xml, state=state, autostart=autostart, persistent=persistent)
    domain.addresses = addresses or {}
    domain.job = job
    return domain


def lone_guest(xml, state="running", addresses=None, autostart=True, persistent=True, job=None, uri=REMOTE_URI):
    """A guest alone on an old daemon's host at ``uri``."""
    return place_guest(old_daemon(uri), xml, state, addresses, autostart, persistent, job)
