"""arctictern.virt.network edits a definition and keeps what it does not model, against the lab's real daemon.

Each network of the catalogue (tests/unit/network_catalogue.py, which the unit tests run against the fake) is
defined on hv1 with libvirt directly and left inactive. One option at a time is then changed through the module,
the definition libvirt has afterwards is compared with the one before as canonical trees (only the changed part
may differ, and it must say what the option asked), and a second run must change nothing. Every network made here
is undefined again. Bridges atvk*, subnets 198.18.40-63.0/24 and 2001:db8:40-58::/64 belong to these tests.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils._network import pretty
from ansible_collections.arctictern.virt.tests.unit.network_catalogue import ENTRIES, changes_for, definition, diff_problems
from ansible_collections.arctictern.virt.tests.unit.xml_compare import assert_same_except, differences

pytestmark = pytest.mark.lab

HOST = "hv1"
INACTIVE = libvirt.VIR_NETWORK_XML_INACTIVE

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _names(index, entry):
    """Network name, its bridge (unique among the daemon's networks) and a host bridge to move it onto."""
    return "atv-keep-" + entry, "atvk%d" % index, "atvkh%d" % index


CASES = []
for _index, _entry in enumerate(ENTRIES):
    _name, _bridge, _host_bridge = _names(_index, _entry)
    for _change in changes_for(definition(_entry, _name, _bridge), _bridge, _host_bridge):
        CASES.append(pytest.param(_index, _entry, _change, id="%s-%s" % (_entry, _change.label.replace(" ", "_"))))


@contextlib.contextmanager
def daemon(lab):
    """A libvirt connection to hv1's daemon, from the root namespace (not through the module)."""
    conn = libvirt.open(lab["hosts"][HOST]["uri"])
    try:
        yield conn
    finally:
        conn.close()


def _undefine(conn, name):
    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return
        raise
    if net.isActive():
        net.destroy()
    if net.isPersistent():
        net.undefine()


def _defined(lab, name):
    """(inactive XML, active) of the network as the daemon has it."""
    with daemon(lab) as conn:
        net = conn.networkLookupByName(name)
        return net.XMLDesc(INACTIVE), bool(net.isActive())


@pytest.mark.parametrize("index, entry, change", CASES)
def test_each_option_changes_its_part_and_nothing_else(ansible, lab, index, entry, change):
    name, bridge, _host_bridge = _names(index, entry)
    options = dict(change.options, name=name, state="present")
    with daemon(lab) as conn:
        _undefine(conn, name)  # left over from an interrupted run
        before = conn.networkDefineXML(definition(entry, name, bridge)).XMLDesc(INACTIVE)
    try:
        applied = ansible.ok(HOST, "network", diff=True, **options)
        after, active = _defined(lab, name)
        again = ansible.ok(HOST, "network", **options)
        after_again, _active = _defined(lab, name)
    finally:
        with daemon(lab) as conn:
            _undefine(conn, name)

    assert not active, "state=present started the network"
    # Nothing but the changed part changed, and that says what the option asked.
    assert_same_except(before, after, change.without)
    assert change.check(ET.fromstring(before), ET.fromstring(after)) == []
    assert applied["changes"] == change.reports and applied["changed"] is bool(change.reports), applied
    assert again["changed"] is False and again["changes"] == [], again
    assert after_again == after
    # --diff: the definition as libvirt had it and as the module defined it; only the changed lines differ.
    shown = applied["diff"][0]
    assert shown["before"] == pretty(before)
    assert differences(shown["after"], after, ["bridge", "mac"] if "mode" in change.reports else []) == []
    assert diff_problems(shown, change, ET.fromstring(before), ET.fromstring(after)) == []


def test_a_host_bridge_network_refuses_an_address_and_keeps_its_definition(ansible, lab):
    index = list(ENTRIES).index("bridge-portgroups")
    name, bridge, _host_bridge = _names(index, "bridge-portgroups")
    with daemon(lab) as conn:
        _undefine(conn, name)
        before = conn.networkDefineXML(definition("bridge-portgroups", name, bridge)).XMLDesc(INACTIVE)
    try:
        result = ansible.module(HOST, "network", name=name, state="present", address="198.18.46.1/24")
        after, _active = _defined(lab, name)
    finally:
        with daemon(lab) as conn:
            _undefine(conn, name)

    assert result.get("failed") and result["msg"].startswith("address: not possible in mode bridge"), result
    assert "Traceback" not in result["msg"]
    assert after == before
