"""Across the two QEMU/libvirt generations of the lab: hv3 runs Debian 13's libvirt 11 and QEMU 10 (from the lab's
hypervisor root) beside hv1 on Debian 12's libvirt 9 and QEMU 7.2. (Each generation on its own is what test_guest,
test_network and test_migrate check: they run on both.)

The rolling-upgrade path: a guest started on hv1 moves to hv3 and stays the same running guest, while a guest started
on hv3 (its machine type pc-i440fx-10.0, which QEMU 7.2 lacks) is refused towards hv1 before anything moves. A guest
keeps the machine type it was started with, so the one from hv1 is not refused on its way back. Two guests serve the
whole module (tests in file order): ``old`` boots on hv1, ``new`` on hv3.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.arctictern.virt.tests.integration.test_migrate_verify import migrate_args
from lab.ansible import assert_alive, guest_snapshot, where

pytestmark = [pytest.mark.lab, pytest.mark.slow]
libvirt.registerErrorHandler(lambda _ctx, _error: None, None)

OLD, NEW = "hv1", "hv3"


@pytest.fixture(scope="module", name="new_vm")
def fixture_new_vm(module_guests):
    """A guest started on hv3."""
    return guest_snapshot(module_guests.boot(NEW, "t-ng-new-%s" % os.urandom(3).hex()))


@pytest.fixture(scope="module", name="old_vm")
def fixture_old_vm(module_guests):
    """A guest started on hv1."""
    return guest_snapshot(module_guests.boot(OLD, "t-ng-old-%s" % os.urandom(3).hex()))


def pc_machine(lab, host):
    """What the host's QEMU makes of the 'pc' alias: the i440fx machine of its own release (pc-i440fx-10.0)."""
    return "pc-i440fx-" + ".".join(lab["hosts"][host]["versions"]["qemu"].split(".")[:2])


def machine_of(lab, host, name):
    """The machine type of the running guest, from its live XML on the host."""
    conn = libvirt.open(lab["hosts"][host]["uri"])
    try:
        return ET.fromstring(conn.lookupByName(name).XMLDesc(0)).find("os/type").get("machine")
    finally:
        conn.close()


def verified_move(ansible, lab, vm, source, dest):
    """Move the guest with the module on ``source``, checked on arrival over TCP and HTTP (its web service)."""
    result = ansible.module(source, "migrate", **migrate_args(lab, vm["name"], source, dest),
                            verify={"tcp": "%s:80" % vm["address"], "http": "http://%s/" % vm["address"], "timeout": 30})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["destination"]["hostname"] == dest
    assert set(result["verify"]) == {"tcp", "http"} and all(check["passed"] for check in result["verify"].values())
    assert where(lab, vm["name"]) == {dest: "running"}
    assert_alive(vm, "after moving %s -> %s" % (source, dest))


def major(version):
    return int(version.split(".")[0])


def test_hv3_is_the_next_generation(lab):
    old, new = lab["hosts"][OLD], lab["hosts"][NEW]
    print("\n%s: %s, %s: %s" % (OLD, old["versions"], NEW, new["versions"]))
    assert (old["generation"], new["generation"]) == ("debian12", "debian13")
    assert major(new["versions"]["libvirt"]) >= 11 and major(new["versions"]["qemu"]) >= 10
    assert major(old["versions"]["libvirt"]) < major(new["versions"]["libvirt"])
    assert major(old["versions"]["qemu"]) < major(new["versions"]["qemu"])


def test_a_guest_moves_from_the_old_generation_to_the_new(ansible, lab, old_vm):
    verified_move(ansible, lab, old_vm, OLD, NEW)
    # It keeps the machine type it was started with: QEMU 10 still offers QEMU 7.2's.
    assert machine_of(lab, NEW, old_vm["name"]) == pc_machine(lab, OLD)


def test_a_guest_started_on_the_new_generation_is_refused_towards_the_old(ansible, lab, new_vm):
    name = new_vm["name"]
    # QEMU 10 made 'pc' its own newest i440fx machine, which QEMU 7.2 does not have.
    assert machine_of(lab, NEW, name) == pc_machine(lab, NEW) != pc_machine(lab, OLD)
    expected = ("dest_uri: %s cannot run guest '%s': it runs machine type %s (x86_64, %s), and the newest pc-i440fx that "
                "%s offers is %s. Nothing was moved: the guest is still running on %s." % (
                    OLD, name, pc_machine(lab, NEW), lab["virt_type"], OLD, pc_machine(lab, OLD), NEW))
    for check in (True, False):
        result = ansible.module(NEW, "migrate", check=check, **migrate_args(lab, name, NEW, OLD))
        assert result.get("failed") and result["cause"] == "incompatible_destination", result
        assert result["msg"] == expected, result["msg"]
    # Still running on hv3, nothing defined on hv1 (nor anywhere else).
    assert where(lab, name) == {NEW: "running"}
    assert_alive(new_vm, "after the refusal")


def test_a_guest_from_the_old_generation_goes_back(ansible, lab, old_vm):
    """Its machine type is QEMU 7.2's, so the module lets it go back: QEMU's versioned machine types are what lets a
    newer QEMU send a guest to an older one."""
    verified_move(ansible, lab, old_vm, NEW, OLD)
    assert machine_of(lab, OLD, old_vm["name"]) == pc_machine(lab, OLD)
