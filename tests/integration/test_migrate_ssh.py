"""arctictern.virt.migrate in the production layout, against the lab: the module runs on the source hypervisor and
reaches the destination's daemon over qemu+ssh on the LAN (the management network, with the lab's key), and the
source daemon does the same for peer-to-peer migration, while the migration data goes over the dedicated link
(migrate_uri tcp://<link address>, mig0).

One guest moves: both ways, through migrate.yml with the inventory's ssh layout, and through three faults that each
have their own cause and leave the guest running on hv1: only the data link cut (mig0 down on the destination),
only the management path cut (TCP 22 dropped on hv2's LAN address), the destination daemon killed (its sshd stays).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import time

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as netlink
from lab.ansible import assert_alive, client_http, guest_snapshot, run_in, where
from lab.daemon import HypervisorDaemon
from lab.topology import host as lab_host

pytestmark = [pytest.mark.lab, pytest.mark.slow]
# Lookups of a guest that is not on a host are expected here; libvirt would print each one to stderr.
libvirt.registerErrorHandler(lambda _ctx, _error: None, None)

OTHER = {"hv1": "hv2", "hv2": "hv1"}


@pytest.fixture(scope="module", name="vm")
def fixture_vm(module_guests):
    """A guest booted on hv1, with what its agent said last (counter and boot id)."""
    booted = module_guests.boot("hv1", "t-ssh-%s" % os.urandom(3).hex())
    return guest_snapshot(booted)


def migrate(ansible, lab, vm, source, **options):
    """The module on ``source`` moves the guest to the other hypervisor: management over SSH, data over mig0."""
    target = lab["hosts"][OTHER[source]]
    args = dict(name=vm["name"], dest_uri=target["ssh_uri"], migrate_uri="tcp://%s" % target["link_address"])
    args.update(options)
    started = time.monotonic()
    result = ansible.module(source, "migrate", **args)
    seconds = time.monotonic() - started
    print("\n%s -> %s over ssh: %.1f s, cause %s: %s" % (source, OTHER[source], seconds, result.get("cause"), result.get("msg")))
    return result


def place(ansible, lab, vm, host):
    if OTHER[host] in where(lab, vm["name"]):
        result = migrate(ansible, lab, vm, OTHER[host])
        assert not result.get("failed"), result.get("msg")
    assert where(lab, vm["name"]) == {host: "running"}


def wait_until_only_on(lab, name, host, timeout=90):
    """The destination drops the half-received guest once it learns the migration failed (at once, or when its
    own keepalive gives the source up)."""
    deadline = time.monotonic() + timeout
    while where(lab, name) != {host: "running"} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert where(lab, name) == {host: "running"}


def wait_for_transfer(lab, name, host="hv1", timeout=60):
    """Block until the outgoing migration of ``name`` on ``host`` is sending memory."""
    conn = libvirt.open(lab["hosts"][host]["uri"])
    try:
        dom = conn.lookupByName(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = dom.jobStats()
            if stats.get("memory_iteration", 0) >= 1 and stats.get("data_processed", 0) > 0:
                return
            time.sleep(0.1)
    finally:
        conn.close()
    raise AssertionError("the migration of %s never started sending memory" % name)


def received_bytes(netns, ifname):
    with netlink.open_ipr(netns) as ipr:
        (link,) = ipr.get_links(netlink.link_index(ipr, ifname))
    return link.get_attr("IFLA_STATS64")["rx_bytes"]


@contextlib.contextmanager
def busy(vm):
    """The guest rewrites 32 MiB in a loop: at 2 MiB/s the migration cannot finish before the fault strikes."""
    assert client_http(vm["address"], path="/dirty?mib=32")["answer"]["dirty"] == "1"
    try:
        yield
    finally:
        client_http(vm["address"], path="/dirty?mib=0")


@contextlib.contextmanager
def migrating_in_background(ansible, lab, vm, **options):
    """A slow migration hv1 -> hv2 running while the block runs; yields the future of its result."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(migrate, ansible, lab, vm, "hv1", bandwidth=2, **options)
        wait_for_transfer(lab, vm["name"])
        yield future


# ---------------------------------------------------------------------------------------------------------


def test_each_hypervisor_reaches_the_others_daemon_over_ssh(lab):
    """From inside hv1, its peer's ssh URI reaches hv2's own daemon (its host name), and the other way round; the
    sshd listens on the LAN address only, not on the migration link."""
    for source, target in OTHER.items():
        uri = lab["hosts"][target]["ssh_uri"]
        proc = run_in(source, "-c", "import libvirt, sys; print(libvirt.open(sys.argv[1]).getHostname())", uri, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == target, proc.stderr
    on_link = run_in("hv1", "-c", "import socket; socket.create_connection(('%s', 22), 5)" % lab["hosts"]["hv2"]["link_address"])
    assert "ConnectionRefusedError" in on_link.stderr, on_link.stderr


def test_migration_in_the_production_layout(ansible, lab, vm):
    place(ansible, lab, vm, "hv1")
    link_before = received_bytes("atv-hv2", "mig0")
    result = migrate(ansible, lab, vm, "hv1", max_downtime=300)
    assert_alive(vm, "right after the migration over ssh")
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["state"] == "running" and result["destination"]["hostname"] == "hv2"
    assert where(lab, vm["name"]) == {"hv2": "running"}
    # The memory came over the migration link, not over the SSH connection.
    assert received_bytes("atv-hv2", "mig0") - link_before >= result["migration"]["memory_transferred_bytes"] > 0

    back = migrate(ansible, lab, vm, "hv2")
    assert not back.get("failed"), back.get("msg")
    assert_alive(vm, "back on hv1 over ssh")
    assert where(lab, vm["name"]) == {"hv1": "running"}


def test_migrate_playbook_in_the_inventorys_ssh_layout(ansible, lab, vm):
    place(ansible, lab, vm, "hv1")
    proc = ansible.playbook("playbooks/migrate.yml", {"guests": [vm["name"]], "target": "hv2", "lab_migration_transport": "ssh",
                                                      "migrate_max_downtime": 300})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "%s: hv1 -> hv2 (precopy" % vm["name"] in proc.stdout
    assert_alive(vm, "after migrate.yml over ssh")
    assert where(lab, vm["name"]) == {"hv2": "running"}


def test_only_the_data_link_cut(ansible, lab, vm):
    """mig0 down on hv2: the data stops, the SSH connection lives on, so only the module's stall watch ends it."""
    place(ansible, lab, vm, "hv1")
    with busy(vm), migrating_in_background(ansible, lab, vm) as future:
        with netlink.open_ipr("atv-hv2") as ipr:
            index = netlink.link_index(ipr, "mig0")
            ipr.link("set", index=index, state="down")
            try:
                result = future.result(timeout=300)
            finally:
                ipr.link("set", index=index, state="up")
    assert result.get("failed")
    assert result["cause"] == "link_cut", result["msg"]
    assert "the migration link was cut mid-migration: no data moved for 30 s" in result["msg"]
    assert "%s still answers, so only the migration link failed" % lab["hosts"]["hv2"]["ssh_uri"] in result["msg"]
    assert result["msg"].endswith("The guest is still running on hv1, its definition intact.")
    assert result["source_state"] == "running"
    assert_alive(vm, "after the data link cut")
    wait_until_only_on(lab, vm["name"], "hv1")


@contextlib.contextmanager
def ssh_dropped(lab, host="hv2"):
    """hv2 drops every packet to its sshd: the management path is cut, the migration link untouched."""
    rule = ["INPUT", "-p", "tcp", "-d", lab["hosts"][host]["lan_address"], "--dport", "22", "-j", "DROP"]
    iptables = ["nsenter", "--net=/run/netns/%s" % lab["hosts"][host]["netns"], "iptables", "-w"]
    subprocess.run(iptables + ["-I"] + rule, check=True)
    try:
        yield
    finally:
        subprocess.run(iptables + ["-D"] + rule, check=True)


def test_only_the_management_path_cut(ansible, lab, vm):
    """libvirt's keepalive over the SSH connection gives the destination up; the module finds dest_uri out of
    reach and the migration address still answering."""
    place(ansible, lab, vm, "hv1")
    with busy(vm), migrating_in_background(ansible, lab, vm) as future, ssh_dropped(lab):
        result = future.result(timeout=300)
    assert result.get("failed")
    assert result["cause"] == "destination_unreachable", result["msg"]
    assert "the management connection was lost mid-migration" in result["msg"]
    assert result["msg"].endswith("The guest is still running on hv1, its definition intact.")
    assert result["source_state"] == "running"
    assert_alive(vm, "after the management path was cut")
    wait_until_only_on(lab, vm["name"], "hv1")


def test_destination_daemon_killed(ansible, lab, vm):
    """hv2's libvirtd killed, its sshd still up: the SSH port answers, so the daemon behind it died."""
    place(ansible, lab, vm, "hv1")
    daemon = HypervisorDaemon(lab_host("hv2"))
    try:
        with migrating_in_background(ansible, lab, vm) as future:
            os.kill(daemon.pid(), signal.SIGKILL)
            result = future.result(timeout=300)
    finally:
        daemon.start()
    assert result.get("failed")
    assert result["cause"] == "destination_died", result["msg"]
    assert "the destination daemon died mid-migration" in result["msg"]
    assert result["msg"].endswith("The guest is still running on hv1, its definition intact.")
    assert result["source_state"] == "running"
    assert_alive(vm, "after the destination daemon died")
    wait_until_only_on(lab, vm["name"], "hv1")
