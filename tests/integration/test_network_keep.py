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

from ansible_collections.arctictern.virt.plugins.module_utils._xml import pretty
from ansible_collections.arctictern.virt.tests.unit.network_catalogue import ENTRIES, changes_for, definition, diff_problems
from ansible_collections.arctictern.virt.tests.unit.xml_compare import differences

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOST = "hv1"
INACTIVE = libvirt.VIR_NETWORK_XML_INACTIVE

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


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


def test_every_catalogue_network_keeps_what_no_option_changed(ansible, lab):
    """Each network once per option change, defined side by side (each on its own bridge); one playbook runs the
    module over all of them, then again."""
    cases, expected, made = [], {}, []
    with daemon(lab) as conn:
        try:
            for entry in ENTRIES:
                _undefine(conn, "atvk-probe")
                probe = conn.networkDefineXML(definition(entry, "atvk-probe", "atvkp")).XMLDesc(INACTIVE)
                _undefine(conn, "atvk-probe")
                for index in range(len(changes_for(probe, "atvkp", "atvkhp"))):
                    name, bridge, host_bridge = "atvk-%s-%d" % (entry, index), "atvk%d" % len(made), "atvkh%d" % len(made)
                    _undefine(conn, name)  # left over from an interrupted run
                    made.append(name)
                    before = conn.networkDefineXML(definition(entry, name, bridge)).XMLDesc(INACTIVE)
                    change = changes_for(before, bridge, host_bridge)[index]
                    cases.append(dict(change.options, name=name, state="present"))
                    expected[name] = (entry, change, before)
            assert len(cases) >= 80, len(cases)
            results = ansible.module_passes(HOST, "network", cases, [("applied", {"diff": True}), ("again", {})])
            problems = []
            for applied, again in zip(results["applied"], results["again"]):
                entry, change, before = expected[applied["item"]["name"]]
                where = "%s, %s" % (entry, change.label)
                failed = [result.get("msg") for result in (applied, again) if result.get("failed")]
                if failed:
                    problems.append("%s: failed: %s" % (where, failed))
                    continue
                net = conn.networkLookupByName(applied["item"]["name"])
                after = net.XMLDesc(INACTIVE)
                before_root, after_root = ET.fromstring(before), ET.fromstring(after)
                found = differences(before, after, change.without) + change.check(before_root, after_root)
                if net.isActive():
                    found.append("state=present started the network")
                if applied["changes"] != change.reports or applied["changed"] is not bool(change.reports):
                    found.append("reported %s (changed %s), expected %s" % (applied["changes"], applied["changed"], change.reports))
                if again["changed"] or again["changes"]:
                    found.append("a second run changed %s" % again["changes"])
                # --diff: the definition as libvirt had it and as the module defined it; only the changed lines differ.
                shown = applied["diff"][0]
                if shown["before"] != pretty(before):
                    found.append("the diff's before is not the defined XML")
                found += differences(shown["after"], after, ["bridge", "mac"] if "mode" in change.reports else [])
                found += diff_problems(shown, change, before_root, after_root)
                problems += ["%s: %s" % (where, problem) for problem in found]
            assert not problems, "\n".join(problems)
        finally:
            for name in made:
                _undefine(conn, name)


def test_a_host_bridge_network_refuses_an_address_and_keeps_its_definition(ansible, lab):
    name, bridge = "atvk-refuses", "atvkr"
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
