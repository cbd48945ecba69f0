# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network module changes only what an option models: every catalogue definition, every option in turn.

The same catalogue runs against the lab's real daemon in tests/integration/test_network_keep.py. Besides the fake
libvirt, libvirt's own parser (the in-process test driver, no daemon) checks that each catalogue entry is written as
libvirt stores it and that it takes each edited definition as it is.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _network_task
from ansible_collections.arctictern.virt.plugins.module_utils._xml import pretty
from ansible_collections.arctictern.virt.plugins.modules import network
from ansible_collections.arctictern.virt.tests.unit.network_catalogue import (
    ENTRIES, TEST_DRIVER_DROPS, changes_for, definition, diff_problems,
)
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson
from ansible_collections.arctictern.virt.tests.unit.xml_compare import assert_same_except, differences

INACTIVE = libvirt.VIR_NETWORK_XML_INACTIVE
UUID = "4a7ec05c-5c36-4f53-8e7a-1f2b25f1a3c9"
# The real libvirt.open: the fake_libvirt fixture replaces it while a test runs.
OPEN = libvirt.open


def _names(index, entry):
    """Network name, its bridge and a host bridge to move it onto."""
    return "k-" + entry, "atvk%d" % index, "atvkh%d" % index


CASES = []
for _index, _entry in enumerate(ENTRIES):
    _name, _bridge, _host_bridge = _names(_index, _entry)
    for _change in changes_for(definition(_entry, _name, _bridge, UUID), _bridge, _host_bridge):
        CASES.append(pytest.param(_index, _entry, _change, id="%s-%s" % (_entry, _change.label.replace(" ", "_"))))


@pytest.fixture(name="libvirt_parser")
def fixture_libvirt_parser(tmp_path):
    """``parse(xml)`` -> the XML libvirt's own parser stores for a network definition (a private test driver)."""
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

    def parse(xml):
        conn = OPEN("test://%s" % node)
        try:
            return conn.networkDefineXML(xml).XMLDesc(0)
        finally:
            conn.close()

    return parse


@pytest.fixture(name="host")
def fixture_host(fake_conn, run_module, monkeypatch):
    """The fake libvirt host; not root, so that no iptables is looked at (no test here gives port forwards)."""
    monkeypatch.setattr(_network_task.os, "geteuid", lambda: 1000)
    return fake_conn


def test_the_catalogue_is_large_and_as_libvirt_stores_it(libvirt_parser):
    assert len(ENTRIES) >= 8
    for index, entry in enumerate(ENTRIES):
        name, bridge, host_bridge = _names(index, entry)
        xml = definition(entry, name, bridge, UUID)
        assert differences(libvirt_parser(xml), xml, TEST_DRIVER_DROPS) == [], entry
        assert len(changes_for(xml, bridge, host_bridge)) >= 4, entry


@pytest.mark.parametrize("index, entry, change", CASES)
def test_each_option_changes_its_part_and_nothing_else(index, entry, change, host, run_module, libvirt_parser):
    name, bridge, _host_bridge = _names(index, entry)
    net = host.networkDefineXML(definition(entry, name, bridge, UUID))
    before = net.XMLDesc(INACTIVE)
    args = dict(change.options, name=name, state="present")

    predicted = run_module(network.main, args, check_mode=True, diff=True)
    assert host.networks[name].XMLDesc(INACTIVE) == before, "check mode changed the definition"
    applied = run_module(network.main, args, diff=True)
    after = host.networks[name].XMLDesc(INACTIVE)
    again = run_module(network.main, args, diff=True)

    # Nothing but the changed part changed, and that says what the option asked.
    assert_same_except(before, after, change.without)
    assert change.check(ET.fromstring(before), ET.fromstring(after)) == []
    assert predicted["changes"] == applied["changes"] == change.reports
    assert predicted["changed"] is applied["changed"] is bool(change.reports)
    assert again["changed"] is False and again["changes"] == [], again["diff"]
    assert host.networks[name].XMLDesc(INACTIVE) == after
    # --diff: the definition as libvirt has it, and as the module defines it; only the changed lines differ.
    shown = applied["diff"][0]
    assert predicted["diff"][0] == shown
    assert shown["before"] == pretty(before)
    if "mode" in change.reports:
        assert differences(shown["after"], after, ["bridge", "mac"]) == []  # libvirt names a bridge it creates now
    else:
        assert shown["after"] == pretty(after)
    assert diff_problems(shown, change, ET.fromstring(before), ET.fromstring(after)) == []
    assert again["diff"][0]["before"] == again["diff"][0]["after"] == pretty(after)
    assert applied["diff"][1]["before"] == applied["diff"][1]["after"] == {"active": False, "autostart": False, "port_forwards": []}
    # libvirt's own parser takes the edited definition and stores it as it is.
    assert differences(libvirt_parser(after), after, TEST_DRIVER_DROPS) == []


def test_a_host_bridge_network_refuses_addresses_naming_the_option(host, run_module):
    name, bridge, _host_bridge = _names(3, "bridge-portgroups")
    net = host.networkDefineXML(definition("bridge-portgroups", name, bridge, UUID))
    before = net.XMLDesc(INACTIVE)

    for option, value in (("address", "198.18.46.1/24"), ("mtu", 9000), ("domain", "lan.example"),
                          ("dhcp", dict(start="198.18.46.10", end="198.18.46.20"))):
        with pytest.raises(AnsibleFailJson) as failed:
            run_module(network.main, {"name": name, "state": "present", option: value})
        assert failed.value.result["msg"].startswith("%s: not possible in mode bridge" % option)
    assert host.networks[name].XMLDesc(INACTIVE) == before


def test_a_new_network_is_the_skeleton_edited(host, run_module, libvirt_parser):
    options = dict(name="fresh", mode="nat", bridge="atvkf", address="198.18.62.1/24", dhcp=dict(start="198.18.62.100", end="198.18.62.199"),
                   static_leases=[dict(mac="52:54:00:4a:0f:0a", ip="198.18.62.10", name="f1")], domain="fresh.example", mtu=1500,
                   state="present")

    result = run_module(network.main, options, diff=True)

    assert result["changes"] == ["mode", "bridge", "address", "dhcp", "static_leases", "domain", "mtu"]
    sent = ET.fromstring(result["diff"][0]["after"])
    assert result["diff"][0]["before"] == ""
    assert [child.tag for child in sent] == ["name", "forward", "bridge", "mtu", "domain", "ip"]
    assert sent.find("bridge").attrib == {"name": "atvkf", "stp": "on", "delay": "0"}
    assert sent.find("ip").attrib == {"address": "198.18.62.1", "netmask": "255.255.255.0"}
    assert [element.attrib for element in sent.find("ip/dhcp")] == [
        {"start": "198.18.62.100", "end": "198.18.62.199"}, {"mac": "52:54:00:4a:0f:0a", "name": "f1", "ip": "198.18.62.10"}]
    assert differences(libvirt_parser(result["diff"][0]["after"]), result["diff"][0]["after"], ["uuid"]) == []
    assert run_module(network.main, options)["changed"] is False


def test_a_kept_lease_matched_by_ip_keeps_its_lease_time(host, run_module):
    name, bridge, _host_bridge = _names(0, "nat-ipv6-dns")
    host.networkDefineXML(definition("nat-ipv6-dns", name, bridge, UUID))

    result = run_module(network.main, dict(name=name, state="present", static_leases=[dict(mac="52:54:00:4a:00:aa", ip="198.18.40.10")]))

    hosts = ET.fromstring(host.networks[name].XMLDesc(INACTIVE)).findall("ip[1]/dhcp/host")
    assert result["changes"] == ["static_leases"]
    assert [host_element.attrib for host_element in hosts] == [{"mac": "52:54:00:4a:00:aa", "ip": "198.18.40.10"}]
    assert hosts[0].find("lease").attrib == {"expiry": "2", "unit": "hours"}
