"""arctictern.virt.migrate's ``verify`` against the lab: the checks that confirm a guest is alive on the destination.

A small guest (its web service on TCP 80) passes the TCP and HTTP checks; the same guest with the agent's channel but
no agent behind it fails the agent check and is reported as ``guest_unhealthy`` with its serial console's tail, left
running where it went; a Debian guest running Debian's qemu-guest-agent answers the agent's ping after moving.
"""

from __future__ import annotations

import os
import shutil
import time

import libvirt
import libvirt_qemu
import pytest

from lab.ansible import assert_alive, guest_snapshot, where
from lab.topology import host as lab_host

pytestmark = [pytest.mark.lab, pytest.mark.slow]
libvirt.registerErrorHandler(lambda _ctx, _error: None, None)
# Linux key codes (input-event-codes.h) for the magic SysRq key.
KEY_LEFTALT, KEY_SYSRQ, KEY_S = 56, 99, 31


def migrate_args(lab, name, source, dest):
    """Options that move ``name`` from ``source`` to ``dest`` over the migration link."""
    return dict(name=name, dest_uri=lab["hosts"][dest]["migration_uri"],
                migrate_uri="tcp://%s" % lab["hosts"][dest]["link_address"])


@pytest.fixture(scope="module", name="vm")
def fixture_vm(module_guests):
    """One small guest for the next three tests, which run in file order: each starts where the one before left it."""
    return guest_snapshot(module_guests.boot("hv1", "t-vfy-%s" % os.urandom(3).hex()))


def test_tcp_and_http_checks_pass_on_a_serving_guest(ansible, lab, vm):
    assert where(lab, vm["name"]) == {"hv1": "running"}
    result = ansible.module("hv1", "migrate", **migrate_args(lab, vm["name"], "hv1", "hv2"),
                            verify={"tcp": "%s:80" % vm["address"], "http": "http://%s/" % vm["address"], "timeout": 30})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"]
    assert set(result["verify"]) == {"tcp", "http"}
    for check in result["verify"].values():
        assert check["passed"] and check["attempts"] >= 1 and check["seconds"] < 30, result["verify"]
    assert where(lab, vm["name"]) == {"hv2": "running"}
    assert_alive(vm, "after a verified migration")


def test_a_closed_port_makes_the_guest_unhealthy_where_it_runs(ansible, lab, vm):
    assert where(lab, vm["name"]) == {"hv2": "running"}
    result = ansible.module("hv2", "migrate", **migrate_args(lab, vm["name"], "hv2", "hv1"),
                            verify={"tcp": "%s:81" % vm["address"], "timeout": 3})
    assert result.get("failed") and result["cause"] == "guest_unhealthy", result
    check = result["verify"]["tcp"]
    assert not check["passed"] and check["attempts"] >= 2 and "refused" in check["last_error"].lower(), check
    # Not moved back: the guest keeps running, unharmed, on the destination.
    assert where(lab, vm["name"]) == {"hv1": "running"}
    assert_alive(vm, "after a failed check")
    # A second run finds the guest on the destination and checks again: still no success.
    again = ansible.module("hv2", "migrate", **migrate_args(lab, vm["name"], "hv2", "hv1"),
                           verify={"tcp": "%s:81" % vm["address"], "timeout": 2})
    assert again.get("failed") and again["cause"] == "guest_unhealthy", again


def test_agent_check_needs_the_channel_before_anything_moves(ansible, lab, vm):
    assert where(lab, vm["name"]) == {"hv1": "running"}
    result = ansible.module("hv1", "migrate", **migrate_args(lab, vm["name"], "hv1", "hv2"), verify={"agent": True})
    assert result.get("failed"), result
    assert "verify.agent" in result["msg"] and "org.qemu.guest_agent.0" in result["msg"], result["msg"]
    assert where(lab, vm["name"]) == {"hv1": "running"}
    assert_alive(vm, "after a refused agent check")


def test_a_silent_agent_fails_with_the_serial_tail(ansible, lab, guests):
    """The small guest has the agent's channel but no agent. The module runs on the destination (the source is
    given as ``uri``), where the guest's serial console is logged, so the failure carries its last lines. That log
    starts anew with the destination's QEMU: the guest writes a line there (a magic SysRq key) before the checks."""
    vm = guest_snapshot(guests.boot("hv1", "t-vfy-%s" % os.urandom(3).hex(), guest_agent=True))
    args = dict(uri=lab["hosts"]["hv1"]["migration_uri"], **migrate_args(lab, vm["name"], "hv1", "hv2"))
    moved = ansible.module("hv2", "migrate", **args)
    assert not moved.get("failed") and where(lab, vm["name"]) == {"hv2": "running"}, moved.get("msg")
    console_line(lab, "hv2", vm["name"])
    # The guest is on the destination already: the module checks it again rather than report success.
    result = ansible.module("hv2", "migrate", **args, verify={"agent": True, "timeout": 4})
    assert result.get("failed") and result["cause"] == "guest_unhealthy" and not result["changed"], result
    agent = result["verify"]["agent"]
    assert not agent["passed"] and "agent" in agent["last_error"].lower(), agent
    tail = result["serial_tail"]
    assert tail["error"] is None and tail["path"].endswith("%s-serial.log" % vm["name"]), tail
    assert any("sysrq" in line.lower() for line in tail["lines"]), tail
    assert where(lab, vm["name"]) == {"hv2": "running"}
    assert_alive(vm, "after a silent agent")


def console_line(lab, host, name, seconds=10):
    """Makes the guest's kernel write to its console (Alt+SysRq+S, emergency sync: the kernel prints it at any log
    level) and waits until its serial log on ``host`` has it."""
    log = lab_host(host).state_dir / "log" / "qemu" / ("%s-serial.log" % name)
    conn = libvirt.open(lab["hosts"][host]["uri"])
    try:
        conn.lookupByName(name).sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, [KEY_LEFTALT, KEY_SYSRQ, KEY_S], 3, 0)
    finally:
        conn.close()
    deadline = time.monotonic() + seconds
    while "sysrq" not in log.read_text(errors="replace").lower():
        assert time.monotonic() < deadline, "no SysRq line in %s" % log
        time.sleep(0.2)


@pytest.fixture(name="shared_dir")
def fixture_shared_dir():
    """A directory both hypervisors see at the same path on one kernel's file system: shared storage, which libvirt
    cannot recognise as such (hence ``unsafe``), coherent all the same."""
    path = "/run/arctictern-lab/shared-%s" % os.urandom(3).hex()
    os.makedirs(path)
    yield path
    shutil.rmtree(path)


def wait_for_agent(lab, host, name, seconds):
    """Seconds until the guest's agent answered guest-ping through ``host``'s daemon; fails after ``seconds``."""
    conn = libvirt.open(lab["hosts"][host]["uri"])
    started = time.monotonic()
    try:
        domain = conn.lookupByName(name)
        while True:
            try:
                libvirt_qemu.qemuAgentCommand(domain, '{"execute":"guest-ping"}', 5, 0)
                return time.monotonic() - started
            except libvirt.libvirtError as error:
                assert time.monotonic() - started < seconds, "the agent of %s never answered: %s" % (name, error)
                time.sleep(2)
    finally:
        conn.close()


def test_debian_guest_agent_answers_on_the_destination(ansible, lab, guests, shared_dir):
    name = "t-vfy-deb-%s" % os.urandom(3).hex()
    address = guests.next_address()
    debian = lab["debian"]
    guests.created.append(("hv1", name))
    ansible.ok("hv1", "guest", name=name, state="running", hypervisor=lab["virt_type"], memory=384, vcpus=2,
               kernel=debian["kernel"], initrd=debian["initrd"],
               cmdline="console=ttyS0 quiet net.ifnames=0 panic=-1 atv.name=%s atv.ip=%s/24" % (name, address),
               disks=[{"path": "%s/%s.qcow2" % (shared_dir, name), "base_image": debian["disk"], "base_format": "raw"}],
               nics=[{"bridge": "br0", "addresses": ["%s/24" % address]}], guest_agent=True,
               serial_log="/var/log/libvirt/qemu/%s-serial.log" % name)
    wait_for_agent(lab, "hv1", name, 240)
    # libvirt cannot tell that this disk is shared, and refuses before anything moves.
    refused = ansible.module("hv1", "migrate", **migrate_args(lab, name, "hv1", "hv2"), verify={"agent": True})
    assert refused.get("failed") and "shared storage is unsafe" in refused["msg"], refused
    assert where(lab, name) == {"hv1": "running"}
    result = ansible.module("hv1", "migrate", **migrate_args(lab, name, "hv1", "hv2"), unsafe=True,
                            verify={"agent": True, "tcp": "%s:22" % address, "timeout": 60})
    assert not result.get("failed"), result.get("msg")
    assert result["verify"]["agent"]["passed"] and result["verify"]["tcp"]["passed"], result["verify"]
    assert "unsafe" in result["plan"]["flags"], result["plan"]
    assert where(lab, name) == {"hv2": "running"}
    # Through the destination's daemon, as a user would ask it after the move.
    assert wait_for_agent(lab, "hv2", name, 10) < 10
