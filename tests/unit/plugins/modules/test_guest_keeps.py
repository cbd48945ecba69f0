# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest module changes only what an option models: every catalogue definition, every option in turn.

The same catalogue runs against the lab's real daemons in tests/integration/test_guest_keeps.py.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.modules import guest
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import KVM_CAPABILITIES, XEN_CAPABILITIES
from ansible_collections.arctictern.virt.tests.unit.guest_catalogue import ENTRIES, XEN_ENTRIES, changes_for, definition
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson
from ansible_collections.arctictern.virt.tests.unit.xml_compare import assert_same_except, differences

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


def _host(fake_libvirt, entry):
    xen = entry in XEN_ENTRIES
    conn = fake_libvirt.add("xen:///system" if xen else "qemu:///system", XEN_CAPABILITIES if xen else KVM_CAPABILITIES)
    conn.add_network("default")
    return conn, "xen" if xen else "kvm"


def _schema_problems(tmp_path, xml):
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    run = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False)
    return [] if run.returncode == 0 else ["not valid against libvirt's schema: %s" % (run.stdout + run.stderr).strip()]


def test_the_catalogue_is_large_and_valid(tmp_path):
    assert len(ENTRIES) + len(XEN_ENTRIES) >= 15
    if shutil.which("virt-xml-validate") is None:
        pytest.skip("virt-xml-validate is not installed")
    for entry in list(ENTRIES) + list(XEN_ENTRIES):
        xml = definition(entry, "v-" + entry, "xen" if entry in XEN_ENTRIES else "kvm")
        assert not _schema_problems(tmp_path, xml), entry


@pytest.mark.parametrize("entry", list(ENTRIES) + list(XEN_ENTRIES))
def test_each_option_changes_its_part_and_nothing_else(entry, fake_libvirt, run_module, tmp_path):
    conn, virt_type = _host(fake_libvirt, entry)
    name = "k-" + entry
    # Defined once as written, then each time as libvirt stored it: with the MACs it gave the NICs.
    xml = conn.defineXML(definition(entry, name, virt_type)).XMLDesc(INACTIVE)
    changes = changes_for(xml)
    assert len(changes) >= 8, [change.label for change in changes]
    validate = shutil.which("virt-xml-validate") is not None
    problems = []
    for change in changes:
        conn.domains.pop(name, None)
        domain = conn.defineXML(xml)
        before = domain.XMLDesc(INACTIVE)
        args = dict(change.options, name=name, uri=conn.uri)
        predicted = run_module(guest.main, args, check_mode=True, diff=True)
        applied = run_module(guest.main, args, diff=True)
        after = domain.XMLDesc(INACTIVE)
        again = run_module(guest.main, args)
        found = differences(before, after, change.without) + change.check(ET.fromstring(before), ET.fromstring(after))
        if predicted["changes"] != change.reports or applied["changes"] != change.reports:
            found.append("reported %s / %s, expected %s" % (predicted["changes"], applied["changes"], change.reports))
        if applied["changed"] != bool(change.reports) or again["changed"]:
            found.append("changed: %s, then %s" % (applied["changed"], again["changed"]))
        if change.reports:
            # --diff: the definition as libvirt has it and as it is wanted, only the changed lines differ.
            changed = [line for line in difflib.ndiff(predicted["diff"]["before"].splitlines(), predicted["diff"]["after"].splitlines())
                       if line[:2] in ("+ ", "- ")]
            if not 0 < len(changed) <= 12:
                found.append("diff shows %d changed lines: %s" % (len(changed), changed))
        if validate:
            found += _schema_problems(tmp_path, after)
        problems += ["%s: %s" % (change.label, problem) for problem in found]
    assert not problems, "\n".join(problems)


def test_the_reported_redefinition_keeps_every_device(fake_libvirt, run_module):
    """The issue as reported: memory changed on a guest defined with plain libvirt, and nothing else lost."""
    conn, virt_type = _host(fake_libvirt, "issue")
    domain = conn.defineXML(definition("issue", "web1", virt_type))
    before = domain.XMLDesc(INACTIVE)
    result = run_module(guest.main, dict(name="web1", memory=512))
    assert result["changes"] == ["memory"]
    after = ET.fromstring(domain.XMLDesc(INACTIVE))
    for path in ("devices/disk[@type='network']", "devices/channel", "devices/rng", "devices/graphics[@type='vnc']",
                 "devices/watchdog", "devices/video"):
        assert after.find(path) is not None, path
    assert_same_except(before, after, without=["memory"])


def test_a_disk_or_nic_cannot_take_the_name_of_a_device_the_module_does_not_manage(fake_libvirt, run_module):
    conn, virt_type = _host(fake_libvirt, "disks")
    domain = conn.defineXML(definition("disks", "web1", virt_type))
    conn.defineXML(definition("nics", "web2", virt_type))
    before = domain.XMLDesc(INACTIVE)
    with pytest.raises(AnsibleFailJson) as raised:
        run_module(guest.main, dict(name="web1", disks=[{"path": "/img/a.qcow2", "target": "vdd"}]))
    assert raised.value.result["msg"] == ("disks[0].target: 'vdd' is the name of a volume disk, which the module does "
                                          "not manage")
    with pytest.raises(AnsibleFailJson) as raised:
        run_module(guest.main, dict(name="web2", nics=[{"bridge": "br0", "mac": "52:54:00:C0:00:04"}]))
    assert raised.value.result["msg"] == ("nics[0].mac: '52:54:00:c0:00:04' is the MAC of a NIC of type direct, which "
                                          "the module does not manage")
    assert domain.XMLDesc(INACTIVE) == before
    # Disks without a name skip the names of the devices the module leaves alone (vdd: the storage volume).
    run_module(guest.main, dict(name="web1", disks=[{"path": "/img/%s.qcow2" % n} for n in "abcd"]))
    targets = [disk.find("target").get("dev") for disk in ET.fromstring(domain.XMLDesc(INACTIVE)).findall("devices/disk")]
    assert sorted(targets) == ["fda", "vda", "vdb", "vdc", "vdd", "vde"]
