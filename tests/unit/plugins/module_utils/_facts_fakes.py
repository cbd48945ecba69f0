# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fake libvirt domains and connections for the tests of _facts, guest_info and the libvirt inventory."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ansible_collections.arctictern.virt.plugins.module_utils import _domain, _libvirt

libvirt = _libvirt.libvirt

SOURCE_NAMES = {
    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE: "lease",
    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP: "arp",
    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT: "agent",
}
STATES = {word: number for number, word in _libvirt.DOMAIN_STATES.items()}


def libvirt_error(code_name, message):
    """A libvirtError carrying the named code, as libvirt raises it."""
    error = libvirt.libvirtError(message)
    error.err = (getattr(libvirt, code_name), 0, message, 2, None, None, None, -1, -1)
    return error


def failing(error):
    """A stand-in for a libvirt method that raises ``error``."""
    def method(*_args):
        raise error
    return method


def domain_xml(name, nics=(), metadata=(), running=True, vcpu=("2", None), domain_type="kvm"):
    """Domain XML as libvirt writes it; ``nics`` are dicts with type, mac, source, model; ``metadata`` (mac, address)."""
    root = ET.Element("domain", type=domain_type)
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "uuid").text = "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
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


class FakeDomain:
    """A libvirt domain: ``addresses`` maps a source name (lease, arp, agent) to what interfaceAddresses returns."""

    def __init__(self, xml, state="running", addresses=None, autostart=True, persistent=True, gone=False,
                 uri="qemu+ssh://hv1.example.com/system", job=None):
        self.xml = xml
        self.job = job  # what jobStats() returns: None is no job
        self.uri = uri
        self.state_word = state
        self.addresses = addresses or {}
        self.autostart_flag = autostart
        self.persistent = persistent
        self.gone = gone
        self.asked = []

    def name(self):
        return ET.fromstring(self.xml).findtext("name")

    def connect(self):
        """A remote connection by default, so that unit tests never read this machine's neighbour table."""
        return FakeConnection(uri=self.uri)

    def XMLDesc(self, flags):  # pylint: disable=invalid-name
        assert flags == 0, "never ask for secrets"
        if self.gone:
            raise libvirt_error("VIR_ERR_NO_DOMAIN", "Domain not found: no domain with matching uuid")
        return self.xml

    def state(self):
        return [STATES[self.state_word], 1]

    def autostart(self):
        return 1 if self.autostart_flag else 0

    def isPersistent(self):  # pylint: disable=invalid-name
        return 1 if self.persistent else 0

    def jobStats(self, flags=0):  # pylint: disable=invalid-name
        assert flags == 0, "the current job, not the last completed one"
        if self.state_word == "shutoff":
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "domain is not running")
        return self.job or {"type": _libvirt.libvirt.VIR_DOMAIN_JOB_NONE}

    def interfaceAddresses(self, source):  # pylint: disable=invalid-name
        name = SOURCE_NAMES[source]
        self.asked.append(name)
        if self.state_word == "shutoff":
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "domain is not running")
        found = self.addresses.get(name)
        if found is None:
            raise libvirt_error("VIR_ERR_AGENT_UNRESPONSIVE" if name == "agent" else "VIR_ERR_OPERATION_UNSUPPORTED", "%s unavailable" % name)
        return found


CAPABILITIES = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest>
  <guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/><domain type='kvm'/></arch></guest>
</capabilities>"""


class FakeConnection:
    """A libvirt connection holding ``domains``."""

    def __init__(self, domains=(), uri="qemu:///system", hostname="hv1"):
        self.domains = list(domains)
        self.uri = uri
        self.hostname = hostname
        self.closed = False
        self.list_flags = []

    def listAllDomains(self, flags=0):  # pylint: disable=invalid-name
        self.list_flags.append(flags)
        if flags & libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE:
            return [domain for domain in self.domains if domain.state_word != "shutoff"]
        return list(self.domains)

    def lookupByName(self, name):  # pylint: disable=invalid-name
        for domain in self.domains:
            if domain.name() == name:
                return domain
        raise libvirt_error("VIR_ERR_NO_DOMAIN", "Domain not found: no domain with matching name '%s'" % name)

    def getInfo(self):  # pylint: disable=invalid-name
        return ["x86_64", 64000, 16, 2400, 1, 1, 8, 2]

    def getCapabilities(self):  # pylint: disable=invalid-name
        return CAPABILITIES

    def getHostname(self):  # pylint: disable=invalid-name
        return self.hostname

    def getURI(self):  # pylint: disable=invalid-name
        return self.uri

    def getType(self):  # pylint: disable=invalid-name
        return "QEMU"

    def getVersion(self):  # pylint: disable=invalid-name
        return 7002000

    def getLibVersion(self):  # pylint: disable=invalid-name
        return 9000000

    def getFreeMemory(self):  # pylint: disable=invalid-name
        return 31000 * 1024 * 1024

    def listNetworks(self):  # pylint: disable=invalid-name
        return ["default"]

    def listDefinedNetworks(self):  # pylint: disable=invalid-name
        return []

    def getDomainCapabilities(self, *_args):  # pylint: disable=invalid-name
        """An old daemon: what the host offers per machine and CPU stays unknown (fake_libvirt has the real one)."""
        raise libvirt_error("VIR_ERR_NO_SUPPORT", "this function is not supported by the connection driver")

    def listAllInterfaces(self, *_args):  # pylint: disable=invalid-name
        raise libvirt_error("VIR_ERR_NO_SUPPORT", "this function is not supported by the connection driver")

    def close(self):
        self.closed = True
        return 0


def lease(ifname, mac, *addresses):
    """One interface as interfaceAddresses reports it; ``addresses`` are "ip/prefix"."""
    addrs = []
    for address in addresses:
        ip, prefix = address.split("/")
        addrs.append({"addr": ip, "prefix": int(prefix), "type": 1 if ":" in ip else 0})
    return {ifname: {"addrs": addrs, "hwaddr": mac}}
