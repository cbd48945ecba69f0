# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest spec <-> domain XML: validation, carry-over, rendering (schema-valid), hostile strings, life cycle."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _domain as domains
from ansible_collections.arctictern.virt.plugins.module_utils import _domain_xml as domain_xml
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._validate import mac_address
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import (
    KVM_CAPABILITIES, QEMU_CAPABILITIES, XEN_CAPABILITIES, FakeConnection,
)
from ansible_collections.arctictern.virt.tests.unit.xml_compare import canonical

HOSTILE = "evil<name>&\"'"
DISK = {"path": "/var/lib/libvirt/images/g.qcow2"}


def options(**overrides):
    params = {"name": "g1", "disks": [dict(DISK)]}
    params.update(overrides)
    return params


def spec_of(virt_type="kvm", current=None, **overrides):
    return domains.spec_from_options(options(**overrides), virt_type, current)


def defined(spec, **extra_xml):
    """The spec as libvirt would hand it back (see defined_xml_of)."""
    return domain_xml.spec_from_xml(defined_xml_of(spec, **extra_xml))


def defined_xml_of(spec, **extra_xml):
    """The XML of ``spec`` as libvirt would hand it back: with a UUID, arch/machine and a PCI address on every
    device."""
    root = ET.fromstring(domain_xml.render_xml(spec))
    if root.find("uuid") is None:
        ET.SubElement(root, "uuid").text = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    root.find("os/type").set("arch", "x86_64")
    root.find("os/type").set("machine", extra_xml.get("machine", "pc-i440fx-7.2"))
    for slot, device in enumerate(root.findall("devices/disk") + root.findall("devices/interface"), start=3):
        ET.SubElement(device, "address", type="pci", domain="0x0000", bus="0x00", slot="0x%02x" % slot, function="0x0")
    return ET.tostring(root, encoding="unicode")


def validate(tmp_path, xml):
    if shutil.which("virt-xml-validate") is None:
        pytest.skip("virt-xml-validate is not installed")
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    run = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


# --- validation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, option", [
    ({"memory": 0}, "memory"),
    ({"memory": -5}, "memory"),
    ({"vcpus": 0}, "vcpus"),
    ({"nics": [{"network": "default", "mac": "52:54:00:zz:00:01"}]}, "nics[0].mac"),
    ({"nics": [{"network": "default"}, {"bridge": "br0", "mac": "01:00:5e:00:00:01"}]}, "nics[1].mac"),
    ({"nics": [{"network": "default", "mac": "00:00:00:00:00:00"}]}, "nics[0].mac"),
    ({"nics": [{"network": "default", "bridge": "br0"}]}, "nics[0]"),
    ({"nics": [{"model": "virtio"}]}, "nics[0]"),
    ({"nics": [{"network": "a", "mac": "52:54:00:00:00:01"}, {"network": "b", "mac": "52:54:00:00:00:01"}]}, "nics[1].mac"),
    ({"nics": [{"network": "default", "model": "e1000'/><x"}]}, "nics[0].model"),
    ({"nics": [{"bridge": "br0'/><x"}]}, "nics[0].bridge"),
    ({"nics": [{"bridge": "a-very-long-bridge-name"}]}, "nics[0].bridge"),
    ({"nics": [{"network": "default", "addresses": ["192.0.2.10"]}]}, "nics[0].addresses"),
    ({"nics": [{"network": "default", "addresses": ["192.0.2.10/24'/><x"]}]}, "nics[0].addresses"),
    ({"nics": [{"network": "default", "addresses": "192.0.2.10/24"}]}, "nics[0].addresses"),
    ({"nics": [{"network": "a", "addresses": ["192.0.2.10/24"]}, {"network": "b", "addresses": ["192.0.2.10/25"]}]},
     "nics[1].addresses"),
    ({"disks": None, "kernel": None}, "disks"),
    ({"disks": []}, "disks"),
    ({"disks": [{"path": "relative.qcow2"}]}, "disks[0].path"),
    ({"disks": [{"path": "/a.qcow2", "target": "vda"}, {"path": "/b.qcow2", "target": "vda"}]}, "disks[1].target"),
    ({"disks": [{"path": "/a.qcow2", "target": "eth0"}]}, "disks[0].target"),
    ({"disks": [{"path": "/a.qcow2", "bus": "xen"}]}, "disks[0].bus"),
    ({"disks": [{"path": "/a.img", "format": "raw", "base_image": "/base.qcow2"}]}, "disks[0].base_image"),
    ({"disks": [{"path": "/a.img", "format": "vmdk"}]}, "disks[0].format"),
    ({"initrd": "/boot/initrd"}, "initrd"),
    ({"cmdline": "console=ttyS0"}, "cmdline"),
    ({"xen_mode": "pv"}, "xen_mode"),
    ({"name": "a/b"}, "name"),
    ({"name": ""}, "name"),
    ({"name": "bell\x07"}, "name"),
    ({"cmdline": "x\x00y", "kernel": "/boot/k"}, "cmdline"),
    ({"serial_log": "log.txt"}, "serial_log"),
])
def test_bad_options_name_the_option(overrides, option):
    with pytest.raises(InvalidOption) as error:
        spec_of(**overrides)
    assert error.value.option == option
    assert error.value.msg.startswith(option + ": ")


def test_xen_pv_needs_a_kernel_and_the_xen_bus():
    with pytest.raises(InvalidOption) as error:
        spec_of("xen", xen_mode="pv")
    assert error.value.option == "kernel"
    with pytest.raises(InvalidOption) as error:
        spec_of("xen", kernel="/boot/k", disks=[{"path": "/a.qcow2", "bus": "sata"}])
    assert error.value.option == "disks[0].bus"


def test_defaults_for_a_new_guest():
    spec = spec_of(nics=[{"network": "default"}, {"bridge": "br0", "mac": "52:54:00:AA:BB:CC"}],
                   disks=[{"path": "/a.qcow2"}, {"path": "/b.img", "format": "raw", "target": "vda"}])
    assert (spec.memory_mib, spec.vcpus, spec.cpu_model, spec.uuid) == (256, 1, "host-model", None)
    # vda is taken by the second disk, so the first unnamed one gets vdb.
    assert [(d.target, d.bus, d.format) for d in spec.disks] == [("vdb", "virtio", "qcow2"), ("vda", "virtio", "raw")]
    assert [n.model for n in spec.nics] == ["virtio", "virtio"]
    assert spec.nics[1].mac == "52:54:00:aa:bb:cc"
    assert spec_of("qemu").cpu_model == "qemu64"
    xen = spec_of("xen", nics=[{"bridge": "xenbr0"}])
    assert (xen.xen_mode, xen.cpu_model, xen.disks[0].target, xen.disks[0].bus, xen.nics[0].model) == ("hvm", None, "xvda", "xen", None)
    assert spec_of("xen", kernel="/boot/k").xen_mode == "pv"


def test_stable_mac_is_deterministic_unicast_and_distinct():
    mac = domains.stable_mac("web1", 0)
    assert mac == domains.stable_mac("web1", 0)
    assert mac.startswith("52:54:00:") and mac_address("x", mac) == mac
    assert len({domains.stable_mac("web1", i) for i in range(8)} | {domains.stable_mac("web2", 0)}) == 9
    spec = spec_of(nics=[{"network": "default"}, {"network": "default"}])
    assert [n.mac for n in spec.nics] == [domains.stable_mac("g1", 0), domains.stable_mac("g1", 1)]


def test_derived_mac_never_repeats_an_explicit_one():
    taken = domains.stable_mac("g1", 1)
    spec = spec_of(nics=[{"network": "a", "mac": taken}, {"network": "b"}])
    assert spec.nics[0].mac == taken
    assert spec.nics[1].mac not in (taken, None)


# --- carry-over ----------------------------------------------------------------------------------------------

def test_options_left_out_keep_the_defined_values():
    current = defined(spec_of(memory=2048, vcpus=4, kernel="/boot/k", cmdline="quiet", serial_log="/var/log/g1.log",
                              nics=[{"network": "default"}]))
    desired = domains.spec_from_options({"name": "g1"}, "kvm", current)
    assert desired == current
    assert desired.uuid == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert not domains.changed_options(current, desired)
    # An empty string removes a value; an explicit one replaces it.
    cleared = domains.spec_from_options({"name": "g1", "kernel": "", "cmdline": "", "memory": 512}, "kvm", current)
    assert (cleared.kernel, cleared.cmdline, cleared.memory_mib, cleared.vcpus) == (None, None, 512, 4)
    assert domains.changed_options(current, cleared) == ["memory", "kernel", "cmdline"]


def test_macs_are_kept_by_position_and_source():
    current = defined(spec_of(nics=[{"network": "default", "mac": "52:54:00:00:00:01"},
                                    {"bridge": "br0", "mac": "52:54:00:00:00:02"}]))
    same = spec_of(current=current, nics=[{"network": "default"}, {"bridge": "br0"}])
    assert [n.mac for n in same.nics] == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
    swapped = spec_of(current=current, nics=[{"bridge": "br0"}, {"network": "default"}])
    assert [n.mac for n in swapped.nics] == ["52:54:00:00:00:02", "52:54:00:00:00:01"]
    added = spec_of(current=current, nics=[{"network": "default"}, {"bridge": "br0"}, {"network": "default"}])
    assert added.nics[2].mac == domains.stable_mac("g1", 2)
    moved = spec_of(current=current, nics=[{"network": "other"}])
    assert moved.nics[0].mac == domains.stable_mac("g1", 0)


def test_device_addresses_stay_with_their_disk_and_nic():
    defined_xml = defined_xml_of(spec_of(disks=[{"path": "/a.qcow2"}, {"path": "/b.qcow2"}], nics=[{"network": "default"}]))
    current = domain_xml.spec_from_xml(defined_xml)
    desired = spec_of(current=current, disks=[{"path": "/b2.qcow2", "target": "vdb"}, {"path": "/c.qcow2", "target": "vdc"}],
                      nics=[{"network": "default"}])
    root = ET.fromstring(domains.plan_definition(defined_xml, desired).after)
    slots = {disk.find("target").get("dev"): disk.find("address") for disk in root.findall("devices/disk")}
    # vdb keeps its slot although its image changed; vdc is new and libvirt gives it one.
    assert slots["vdb"].get("slot") == "0x04" and slots["vdc"] is None
    assert root.find("devices/interface/address").get("slot") == "0x05"
    # A disk that changes bus must not take a PCI address to a SATA controller.
    sata = spec_of(current=current, disks=[{"path": "/a.qcow2", "target": "sda", "bus": "sata"}])
    disk = ET.fromstring(domains.plan_definition(defined_xml, sata).after).find("devices/disk")
    assert disk.find("target").attrib == {"dev": "sda", "bus": "sata"} and disk.find("address") is None


def test_switching_hypervisor_resets_type_specific_values():
    current = defined(spec_of("kvm", cpu_model="host-passthrough"))
    assert spec_of("qemu", current=current).cpu_model == "qemu64"
    assert spec_of("qemu", current=current).machine is None
    with pytest.raises(InvalidOption) as error:
        domains.spec_from_options({"name": "g1"}, "xen", current)
    assert error.value.option == "disks"


# --- XML ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("virt_type, overrides", [
    ("kvm", {}),
    ("kvm", {"cpu_model": "Skylake-Server", "machine": "pc-q35-7.2", "disks": [{"path": "/dev/vg0/g1", "format": "raw", "readonly": True}]}),
    ("qemu", {"kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "console=ttyS0 root=/dev/vda"}),
    ("xen", {"kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "console=hvc0", "xen_mode": "pv"}),
    ("xen", {"xen_mode": "hvm"}),
])
def test_rendered_xml_validates_and_round_trips(tmp_path, virt_type, overrides):
    params = dict(memory=1024, vcpus=2, serial_log="/var/log/arctictern/g1.log",
                  nics=[{"network": "default"}, {"bridge": "br0", "mac": "52:54:00:12:34:56"}])
    params.update(overrides)
    spec = spec_of(virt_type, **params)
    if spec.xen_mode == "hvm":
        domains.complete_from_host(spec, ET.fromstring(XEN_CAPABILITIES))
    xml = domain_xml.render_xml(spec)
    validate(tmp_path, xml)
    assert domain_xml.spec_from_xml(xml) == spec
    root = ET.fromstring(xml)
    assert root.get("type") == virt_type
    assert root.findtext("on_crash") == "destroy"
    assert [i.get("type") for i in root.findall("devices/interface")] == ["network", "bridge"]


def test_kvm_and_qemu_xml_details():
    kvm = ET.fromstring(domain_xml.render_xml(spec_of("kvm", kernel="/boot/k", nics=[{"network": "default"}],
                                                      serial_log="/var/log/g1.log")))
    assert kvm.find("cpu").attrib == {"mode": "host-model"}
    assert kvm.findtext("os/type") == "hvm" and kvm.findtext("os/kernel") == "/boot/k"
    assert kvm.find("devices/interface/model").get("type") == "virtio"
    assert kvm.find("devices/disk/target").attrib == {"dev": "vda", "bus": "virtio"}
    assert kvm.find("devices/disk/driver").get("type") == "qcow2"
    assert kvm.find("devices/serial").get("type") == "pty"
    assert kvm.find("devices/serial/log").attrib == {"file": "/var/log/g1.log", "append": "off"}
    assert kvm.find("devices/console").get("type") == "pty"
    assert kvm.find("features/acpi") is not None
    qemu = ET.fromstring(domain_xml.render_xml(spec_of("qemu")))
    assert qemu.find("cpu").attrib == {"mode": "custom", "match": "exact"}
    assert qemu.find("cpu/model").attrib == {"fallback": "allow"} and qemu.findtext("cpu/model") == "qemu64"


def test_xen_xml_details():
    pv = ET.fromstring(domain_xml.render_xml(spec_of("xen", kernel="/boot/k", nics=[{"bridge": "xenbr0"}])))
    assert pv.findtext("os/type") == "linux" and pv.findtext("os/kernel") == "/boot/k"
    assert pv.find("devices/disk/target").attrib == {"dev": "xvda", "bus": "xen"}
    assert pv.find("devices/console/target").attrib == {"type": "xen", "port": "0"}
    assert pv.find("devices/serial") is None and pv.find("devices/interface/model") is None
    hvm = domains.complete_from_host(spec_of("xen"), ET.fromstring(XEN_CAPABILITIES))
    root = ET.fromstring(domain_xml.render_xml(hvm))
    assert root.findtext("os/type") == "hvm"
    assert root.find("os/loader").attrib == {"type": "rom"}
    assert root.findtext("os/loader") == "/usr/lib/xen-4.17/boot/hvmloader"
    assert root.find("os/boot").get("dev") == "hd"


AGENT_TARGET = {"type": "virtio", "name": "org.qemu.guest_agent.0"}


def test_agent_channel_is_rendered_valid_and_read_back(tmp_path):
    for virt_type in ("kvm", "qemu"):
        spec = spec_of(virt_type, guest_agent=True)
        xml = domain_xml.render_xml(spec)
        validate(tmp_path, xml)
        assert spec.agent_channels == 1 and domain_xml.spec_from_xml(xml) == spec
        [channel] = ET.fromstring(xml).findall("devices/channel")
        assert channel.get("type") == "unix" and channel.find("source").attrib == {"mode": "bind"}
        assert channel.find("target").attrib == AGENT_TARGET
    plain = spec_of()
    assert plain.agent_channels == 0 and ET.fromstring(domain_xml.render_xml(plain)).find("devices/channel") is None
    assert "guest_agent" not in domains.plan_definition(None, plain).changes
    assert "guest_agent" in domains.plan_definition(None, spec_of(guest_agent=True)).changes


def _with_devices(defined_xml, *devices):
    root = ET.fromstring(defined_xml)
    for device in devices:
        root.find("devices").append(ET.fromstring(device))
    return ET.tostring(root, encoding="unicode")


def test_agent_channel_edit_touches_no_other_channel(tmp_path):
    spice = "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>"
    own = "<channel type='unix'><source mode='bind' path='/run/g1.own'/><target type='virtio' name='org.example.own.0'/></channel>"
    agent = ("<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/g1.agent'/>"
             "<target type='virtio' name='org.qemu.guest_agent.0'/><address type='virtio-serial' controller='0' bus='0' port='2'/></channel>")
    graphics = "<graphics type='spice' autoport='yes'/>"
    without_agent = _with_devices(defined_xml_of(spec_of()), "<controller type='virtio-serial' index='0'/>", spice, own, graphics)
    with_agent = _with_devices(defined_xml_of(spec_of()), "<controller type='virtio-serial' index='0'/>", spice, agent, own, graphics)
    current = domain_xml.spec_from_xml(with_agent)
    assert current.agent_channels == 1
    assert not domains.plan_definition(with_agent, spec_of(current=current, guest_agent=True)).changed
    removed = domains.plan_definition(with_agent, spec_of(current=current, guest_agent=False))
    assert removed.changes == ["guest_agent"]
    validate(tmp_path, removed.after)
    assert canonical(removed.after) == canonical(without_agent)
    # Added after the channels there are, and only the agent's channel is new.
    current = domain_xml.spec_from_xml(without_agent)
    added = domains.plan_definition(without_agent, spec_of(current=current, guest_agent=True))
    assert added.changes == ["guest_agent"]
    validate(tmp_path, added.after)
    devices = [child.find("target").get("name") if child.tag == "channel" else child.tag
               for child in ET.fromstring(added.after).find("devices")]
    assert devices[-4:] == ["com.redhat.spice.0", "org.example.own.0", "org.qemu.guest_agent.0", "graphics"]
    # A second agent channel (two ports for one agent) goes; the first stays as it was.
    twice = _with_devices(with_agent, agent.replace("port='2'", "port='3'"))
    current = domain_xml.spec_from_xml(twice)
    assert current.agent_channels == 2
    one = domains.plan_definition(twice, spec_of(current=current, guest_agent=True))
    assert one.changes == ["guest_agent"] and canonical(one.after) == canonical(with_agent)


def test_agent_channel_is_refused_for_xen_only_when_asked():
    with pytest.raises(InvalidOption) as error:
        spec_of("xen", kernel="/boot/k", guest_agent=True)
    assert error.value.option == "guest_agent" and error.value.msg.startswith("guest_agent: ")
    assert spec_of("xen", kernel="/boot/k", guest_agent=False).agent_channels == 0
    assert spec_of("xen", kernel="/boot/k").agent_channels == 0


def test_hostile_strings_round_trip_without_extra_elements(tmp_path):
    def build(text):
        return spec_of(name=text, kernel="/boot/" + text, cmdline="a=<b> & c='d' \"e\" " + text,
                       serial_log="/var/log/" + text, disks=[{"path": "/images/" + text}],
                       nics=[{"network": text}, {"bridge": "br0"}])

    spec = build(HOSTILE)
    xml = domain_xml.render_xml(spec)
    validate(tmp_path, xml)
    back = domain_xml.spec_from_xml(xml)
    assert back == spec
    assert (back.name, back.nics[0].source, back.disks[0].path) == (HOSTILE, HOSTILE, "/images/" + HOSTILE)
    # Same elements and attributes as for a harmless name: nothing was injected.
    shape = [(e.tag, sorted(e.attrib)) for e in ET.fromstring(xml).iter()]
    assert shape == [(e.tag, sorted(e.attrib)) for e in ET.fromstring(domain_xml.render_xml(build("plain"))).iter()]
    assert "<name>evil&lt;name&gt;&amp;\"'</name>" in xml
    # The MAC derived from a hostile name is still a plain MAC.
    assert mac_address("x", spec.nics[0].mac) == spec.nics[0].mac


# --- recorded addresses (metadata) ----------------------------------------------------------------------------

ADDRESSED = [{"bridge": "br0", "addresses": ["198.18.0.21/24", "2001:db8::21/64"]}, {"network": "default"}]


def test_addresses_are_recorded_in_metadata_and_read_back(tmp_path):
    spec = spec_of(nics=ADDRESSED)
    xml = domain_xml.render_xml(spec)
    validate(tmp_path, xml)
    root = ET.fromstring(xml)
    recorded = root.findall("metadata/{%s}guest/{%s}address" % (domains.METADATA_NS, domains.METADATA_NS))
    assert [(a.get("nic"), a.text) for a in recorded] == [(spec.nics[0].mac, "198.18.0.21/24"), (spec.nics[0].mac, "2001:db8::21/64")]
    assert 'xmlns:atv="%s"' % domains.METADATA_NS in xml
    back = domain_xml.spec_from_xml(xml)
    assert back == spec and [n.addresses for n in back.nics] == [["198.18.0.21/24", "2001:db8::21/64"], []]
    # The reader of guest_info and the inventory sees the same pairs.
    assert domain_xml.metadata_addresses(root) == [(spec.nics[0].mac, "198.18.0.21/24"), (spec.nics[0].mac, "2001:db8::21/64")]
    assert ET.fromstring(domain_xml.render_xml(spec_of(nics=[{"network": "default"}]))).find("metadata") is None


def test_addresses_are_kept_when_left_out_and_change_without_a_restart():
    current = defined(spec_of(nics=ADDRESSED))
    kept = spec_of(current=current, nics=[{"bridge": "br0"}, {"network": "default"}])
    assert kept.nics[0].addresses == ["198.18.0.21/24", "2001:db8::21/64"]
    assert domains.changed_options(current, kept) == []
    moved = spec_of(current=current, nics=[{"bridge": "br0", "addresses": ["198.18.0.22/24"]}, {"network": "default"}])
    assert domains.changed_options(current, moved) == ["nics[].addresses"]
    cleared = spec_of(current=current, nics=[{"bridge": "br0", "addresses": []}, {"network": "default"}])
    assert cleared.recorded_addresses == [] and domains.changed_options(current, cleared) == ["nics[].addresses"]
    # A NIC that changes as well is a change of nics, which does need a restart.
    remodelled = spec_of(current=current, nics=[{"bridge": "br0", "model": "e1000"}, {"network": "default"}])
    assert domains.changed_options(current, remodelled) == ["nics"]


def test_other_tools_metadata_is_kept():
    xml = domain_xml.render_xml(spec_of(nics=ADDRESSED)).replace(
        "<metadata>", "<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>"
                      "<libosinfo:os id='http://debian.org/debian/12'/></libosinfo:libosinfo>")
    spec = domain_xml.spec_from_xml(xml)
    _before, after = domain_xml.edited_xml(xml, spec_of(current=spec, memory=512, nics=[{"bridge": "br0", "addresses": []}]))
    assert 'libosinfo:os id="http://debian.org/debian/12"' in after  # the tool's own prefix, not ns0
    again = ET.fromstring(after)
    assert again.find("metadata/{http://libosinfo.org/xmlns/libvirt/domain/1.0}libosinfo/"
                      "{http://libosinfo.org/xmlns/libvirt/domain/1.0}os").get("id") == "http://debian.org/debian/12"
    assert again.find("metadata/{%s}guest" % domains.METADATA_NS) is None


def test_live_addresses_go_through_set_metadata_unqualified():
    calls = []

    class Domain:
        def setMetadata(self, *args):  # noqa: N802 - libvirt's name
            calls.append(args)
            return 0

    spec = spec_of(nics=ADDRESSED)
    domains.record_live_addresses(Domain(), spec)
    domains.record_live_addresses(Domain(), spec_of(nics=[{"network": "default"}]))
    fragment = ET.fromstring(calls[0][1])
    assert fragment.tag == "guest" and [a.tag for a in fragment] == ["address", "address"]
    assert calls[0][0] == libvirt.VIR_DOMAIN_METADATA_ELEMENT and calls[0][2:] == (
        "atv", domains.METADATA_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert calls[1][1] is None  # nothing left to record removes the element


def test_spec_from_libvirt_xml():
    xml = """<domain type='kvm' id='3'>
      <name>web1</name>
      <uuid>9D1C2A3E-7F5B-4C1E-8A6D-0F2B3C4D5E6F</uuid>
      <memory unit='GiB'>2</memory>
      <currentMemory unit='KiB'>1048576</currentMemory>
      <vcpu placement='static'>2</vcpu>
      <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
      <cpu mode='custom' match='exact' check='partial'><model fallback='allow'>Skylake-Client</model></cpu>
      <devices>
        <emulator>/usr/bin/qemu-system-x86_64</emulator>
        <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/web1.qcow2'/>
          <target dev='vda' bus='virtio'/><address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/></disk>
        <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
        <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg0/data'/><target dev='vdb' bus='virtio'/>
          <readonly/></disk>
        <interface type='network'><mac address='52:54:00:AB:CD:EF'/><source network='default'/><model type='e1000'/></interface>
        <interface type='direct'><mac address='52:54:00:00:00:09'/><source dev='eth0' mode='bridge'/></interface>
        <interface type='bridge'><mac address='52:54:00:00:00:0a'/><source bridge='br0'/></interface>
        <serial type='pty'><log file='/var/log/web1.log' append='off'/><target type='isa-serial' port='0'/></serial>
        <console type='pty'><target type='serial' port='0'/></console>
      </devices>
    </domain>"""
    spec = domain_xml.spec_from_xml(xml)
    assert (spec.name, spec.uuid, spec.memory_mib, spec.vcpus) == ("web1", "9d1c2a3e-7f5b-4c1e-8a6d-0f2b3c4d5e6f", 2048, 2)
    assert (spec.machine, spec.cpu_model, spec.serial_log, spec.kernel) == ("pc-q35-7.2", "Skylake-Client", "/var/log/web1.log", None)
    assert [(d.path, d.target, d.format, d.readonly) for d in spec.disks] == [
        ("/img/web1.qcow2", "vda", "qcow2", False), ("/dev/vg0/data", "vdb", "raw", True)]
    assert [(n.source_type, n.source, n.mac, n.model) for n in spec.nics] == [
        ("network", "default", "52:54:00:ab:cd:ef", "e1000"), ("bridge", "br0", "52:54:00:00:00:0a", None)]
    with pytest.raises(VirtError):
        domain_xml.spec_from_xml("<domain")


def test_plan_definition_reports_options_and_only_the_changed_lines():
    defined_xml = defined_xml_of(spec_of(nics=[{"network": "default"}]))
    current = domain_xml.spec_from_xml(defined_xml)
    desired = spec_of(current=current, memory=1024, nics=[{"network": "default", "model": "e1000"}])
    diff = domains.plan_definition(defined_xml, desired)
    assert diff.changed and diff.changes == ["memory", "nics"]
    removed = set(diff.before.splitlines()) - set(diff.after.splitlines())
    added = set(diff.after.splitlines()) - set(diff.before.splitlines())
    assert {line.strip() for line in removed} == {'<memory unit="KiB">262144</memory>', '<model type="virtio" />'}
    assert {line.strip() for line in added} == {'<memory unit="KiB">1048576</memory>', '<model type="e1000" />'}
    new = domains.plan_definition(None, desired)
    assert new.before == "" and "memory" in new.changes and "<name>g1</name>" in new.after


def test_definition_requested():
    assert not domains.definition_requested({"name": "g", "hypervisor": "auto", "xen_mode": "auto", "memory": None})
    assert domains.definition_requested({"name": "g", "memory": 512})
    assert domains.definition_requested({"name": "g", "disks": []})
    assert domains.definition_requested({"name": "g", "hypervisor": "qemu"})
    assert domains.definition_requested({"name": "g", "guest_agent": False})


def test_describe():
    spec = defined(spec_of(nics=[{"network": "default"}, {"bridge": "br0"}]))
    guest = domains.describe(spec, "running", True)
    assert guest["nics"] == [{"mac": spec.nics[0].mac, "network": "default", "model": "virtio", "addresses": []},
                             {"mac": spec.nics[1].mac, "bridge": "br0", "model": "virtio", "addresses": []}]
    assert (guest["state"], guest["memory"], guest["virt_type"], guest["autostart"]) == ("running", 256, "kvm", True)
    assert guest["guest_agent"] is False
    assert domains.describe(defined(spec_of(guest_agent=True)), "shutoff")["guest_agent"] is True


# --- host facts -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("uri, caps, expected", [
    ("qemu:///system", KVM_CAPABILITIES, "kvm"),
    ("qemu:///system", QEMU_CAPABILITIES, "qemu"),
    ("xen:///system", XEN_CAPABILITIES, "xen"),
    ("xen+ssh://root@hv2/system", XEN_CAPABILITIES, "xen"),
])
def test_resolve_virt_type_auto(uri, caps, expected):
    conn = FakeConnection(uri, caps)
    assert domains.resolve_virt_type(conn, domains.host_capabilities(conn), "auto") == expected


def test_resolve_virt_type_explicit_and_defined():
    conn = FakeConnection("qemu:///system", QEMU_CAPABILITIES)
    caps = domains.host_capabilities(conn)
    assert domains.resolve_virt_type(conn, caps, "qemu") == "qemu"
    with pytest.raises(InvalidOption) as error:
        domains.resolve_virt_type(conn, caps, "kvm")
    assert error.value.option == "hypervisor"
    assert domains.resolve_virt_type(conn, caps, "auto", current=domains.GuestSpec(name="x", virt_type="kvm")) == "kvm"


def test_complete_from_host_resolves_machine_aliases():
    caps = ET.fromstring(KVM_CAPABILITIES)
    assert domains.complete_from_host(spec_of(machine="q35"), caps).machine == "pc-q35-7.2"
    assert domains.complete_from_host(spec_of(machine="pc-q35-7.2"), caps).machine == "pc-q35-7.2"
    assert domains.complete_from_host(spec_of(), caps).loader is None


# --- disks ----------------------------------------------------------------------------------------------------

class FakeModule:
    """Just what the overlay code uses of AnsibleModule; run_command records argv and can run it for real."""

    def __init__(self, real=False, fail_create=False):
        self.real = real
        self.fail_create = fail_create
        self.commands = []

    def get_bin_path(self, name, required=False):
        return shutil.which(name) if self.real else "/usr/bin/" + name

    def run_command(self, argv):
        assert isinstance(argv, list)
        self.commands.append(argv)
        if self.real:
            run = subprocess.run(argv, capture_output=True, text=True, check=False)
            return run.returncode, run.stdout, run.stderr
        if argv[1] == "info":
            return 0, json.dumps({"format": "raw"}), ""
        if self.fail_create:
            open(argv[-1], "w").close()
            return 1, "", "Could not create: disk full\n"
        open(argv[-1], "w").close()
        return 0, "", ""


def test_overlays_are_planned_only_for_missing_paths(tmp_path):
    base = tmp_path / "base.qcow2"
    base.write_text("x")
    existing = tmp_path / "old.qcow2"
    existing.write_text("x")
    spec = spec_of(disks=[{"path": str(tmp_path / "new.qcow2"), "base_image": str(base)},
                          {"path": str(existing), "base_image": str(base)},
                          {"path": str(tmp_path / "plain.qcow2")}])
    assert [disk.path for _index, disk in domains.missing_overlays(spec)] == [str(tmp_path / "new.qcow2")]
    gone = spec_of(disks=[{"path": str(tmp_path / "x.qcow2")}, {"path": str(tmp_path / "y.qcow2"), "base_image": str(tmp_path / "no")}])
    with pytest.raises(InvalidOption) as error:
        domains.missing_overlays(gone)
    assert error.value.option == "disks[1].base_image"


def test_create_overlay_argv_detects_base_format(tmp_path):
    base = tmp_path / "base.img"
    base.write_text("x")
    spec = spec_of(disks=[{"path": str(tmp_path / "a.qcow2"), "base_image": str(base)},
                          {"path": str(tmp_path / "b.qcow2"), "base_image": str(base), "base_format": "qcow2"}])
    module = FakeModule()
    created = domains.create_overlays(module, domains.missing_overlays(spec))
    assert created == [str(tmp_path / "a.qcow2"), str(tmp_path / "b.qcow2")]
    assert module.commands == [
        ["/usr/bin/qemu-img", "info", "--force-share", "--output=json", str(base)],
        ["/usr/bin/qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", str(base), str(tmp_path / "a.qcow2")],
        ["/usr/bin/qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(tmp_path / "b.qcow2")],
    ]


def test_failed_overlay_removes_what_was_made(tmp_path):
    base = tmp_path / "base.img"
    base.write_text("x")
    spec = spec_of(disks=[{"path": str(tmp_path / "a.qcow2"), "base_image": str(base), "base_format": "raw"}])
    with pytest.raises(VirtError) as error:
        domains.create_overlays(FakeModule(fail_create=True), domains.missing_overlays(spec))
    assert "disks[0]" in error.value.msg and "disk full" in error.value.msg
    assert not (tmp_path / "a.qcow2").exists()


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
def test_create_overlay_with_real_qemu_img(tmp_path):
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 1024 * 1024)
    spec = spec_of(disks=[{"path": str(tmp_path / "overlay.qcow2"), "base_image": str(base)}])
    domains.create_overlays(FakeModule(real=True), domains.missing_overlays(spec))
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(tmp_path / "overlay.qcow2")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(base) and info["backing-filename-format"] == "raw"


# --- life cycle -----------------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept += seconds
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(domains, "time", fake)
    return fake


def running_guest(conn, name="g1", state="running"):
    return conn.add_domain(domain_xml.render_xml(spec_of(name=name)), state=state)


def test_shutdown_waits_for_the_guest(clock):
    conn = FakeConnection()
    domain = running_guest(conn)
    domain.shutdown_after = 3
    assert domains.shutdown(domain, 60, force=False) == "shutdown"
    assert domain.current_state() == "shutoff"
    assert domain.called("shutdown") == 1 and domain.called("destroy") == 0
    assert 0 < clock.slept < 60


def test_shutdown_timeout_fails_or_forces(clock):
    conn = FakeConnection()
    domain = running_guest(conn)
    domain.shutdown_after = None
    with pytest.raises(VirtError) as error:
        domains.shutdown(domain, 12, force=False)
    assert error.value.msg.startswith("shutdown_timeout:") and "still running" in error.value.msg
    assert domain.current_state() == "running"
    # The request was repeated while waiting.
    assert domain.called("shutdown") == 3
    assert domains.shutdown(domain, 12, force=True) == "destroyed"
    assert domain.current_state() == "shutoff"


def test_shutdown_of_a_paused_guest_resumes_it_first(clock):
    conn = FakeConnection()
    domain = running_guest(conn, state="paused")
    assert domains.shutdown(domain, 0, force=False) == "shutdown"
    assert domain.called("resume") == 1 and domain.current_state() == "shutoff"
    assert clock.slept == 0


def test_start_boots_resumes_or_wakes():
    conn = FakeConnection()
    for state, method in (("shutoff", "create"), ("paused", "resume"), ("pmsuspended", "pmWakeup")):
        domain = running_guest(conn, name="g-" + state, state=state)
        domains.start(domain)
        assert domain.current_state() == "running" and domain.called(method) == 1
        domains.start(domain)
        assert domain.called(method) == 1


def test_undefine_uses_all_flags_where_the_driver_takes_them():
    conn = FakeConnection()
    domain = running_guest(conn, state="shutoff")
    domains.undefine(domain)
    assert domain.undefined_with & libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    assert domain.undefined_with & libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    assert domain.undefined_with & libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    assert "g1" not in conn.domains


def test_undefine_falls_back_to_the_flags_libxl_takes():
    conn = FakeConnection("xen:///system", XEN_CAPABILITIES)
    domain = conn.add_domain(domain_xml.render_xml(spec_of("xen", kernel="/boot/k")))
    domains.undefine(domain)
    assert domain.undefined_with == libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    assert domain.called("undefine") == 3 and not conn.domains


def test_undefine_reports_other_errors():
    conn = FakeConnection()
    domain = running_guest(conn, state="shutoff")
    domain.fail_on["undefine"] = "permission denied"
    with pytest.raises(VirtError) as error:
        domains.undefine(domain)
    assert "removing guest 'g1'" in error.value.msg and "permission denied" in error.value.msg
    assert domain.called("undefine") == 1


def test_require_guest():
    with pytest.raises(VirtError) as error:
        domains.require_guest(None, "ghost", "running")
    assert "ghost" in error.value.msg and error.value.msg.startswith("name:")
    domains.require_guest(object(), "ghost", "running")
