"""The guest module against a real libvirt daemon changes only what an option models.

Every catalogue definition (tests/unit/guest_catalogue.py) is defined on hv1 with libvirt directly, once per option
change; one playbook then runs the module over all of them three times (check mode with diff, for real, and again),
and each definition is compared with what it was, as canonical trees."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.arctictern.virt.tests.unit.guest_catalogue import ENTRIES, changes_for, definition
from ansible_collections.arctictern.virt.tests.unit.xml_compare import differences

pytestmark = [pytest.mark.lab, pytest.mark.slow]

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE
NETWORK = "atvcat"
PASSES = [("predicted", {"check_mode": True, "diff": True}), ("applied", {}), ("again", {})]


@pytest.fixture
def hv1(lab, lan):  # pylint: disable=unused-argument
    conn = libvirt.open(lab["hosts"]["hv1"]["uri"])
    made = []
    network = ET.Element("network")
    ET.SubElement(network, "name").text = NETWORK
    ET.SubElement(network, "bridge", name="atvcat0")
    try:
        conn.networkLookupByName(NETWORK).undefine()
    except libvirt.libvirtError:
        pass
    made_network = conn.networkDefineXML(ET.tostring(network, encoding="unicode"))
    yield conn, made
    for name in made:
        try:
            conn.lookupByName(name).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError:
            pass
    made_network.undefine()
    conn.close()


def test_every_catalogue_guest_keeps_what_no_option_changed(hv1, lab, ansible):  # pylint: disable=redefined-outer-name
    conn, made = hv1
    cases, expected = [], {}
    for entry in ENTRIES:
        probe = "kc-%s" % entry
        made.append(probe)
        # Defined as written once, then always as libvirt stored it (with the MACs it gave the NICs).
        stored = conn.defineXML(definition(entry, probe, lab["virt_type"], network=NETWORK)).XMLDesc(INACTIVE)
        conn.lookupByName(probe).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        made.remove(probe)
        # On q35, a new PCI device makes libvirt add a PCIe root port as well: those cases run on i440fx only.
        hotplug = "q35" not in stored
        for index in range(len(changes_for(stored, pci_hotplug=hotplug))):
            name = "kc-%s-%d" % (entry, index)
            root = ET.fromstring(stored.replace("<name>%s</name>" % probe, "<name>%s</name>" % name))
            root.remove(root.find("uuid"))
            made.append(name)
            before = conn.defineXML(ET.tostring(root, encoding="unicode")).XMLDesc(INACTIVE)
            change = changes_for(before, pci_hotplug=hotplug)[index]
            cases.append(dict(change.options, name=name))
            expected[name] = (entry, change, before)
    assert len(cases) >= 100, len(cases)
    # The cases are separate guests: two playbooks side by side keep both cores busy.
    results = ansible.module_passes("hv1", "guest", cases, PASSES, shards=2)
    problems = []
    for predicted, applied, again in zip(results["predicted"], results["applied"], results["again"]):
        name = applied["item"]["name"]
        entry, change, before = expected[name]
        where = "%s, %s" % (entry, change.label)
        failed = [result.get("msg") for result in (predicted, applied, again) if result.get("failed")]
        if failed:
            problems.append("%s: failed: %s" % (where, failed))
            continue
        after = conn.lookupByName(name).XMLDesc(INACTIVE)
        found = differences(before, after, change.without) + change.check(ET.fromstring(before), ET.fromstring(after))
        if predicted["changes"] != change.reports or applied["changes"] != change.reports:
            found.append("reported %s / %s, expected %s" % (predicted["changes"], applied["changes"], change.reports))
        if applied["changed"] != bool(change.reports) or again["changed"]:
            found.append("changed: %s, then %s" % (applied["changed"], again["changed"]))
        problems += ["%s: %s" % (where, problem) for problem in found]
    assert not problems, "\n".join(problems)
