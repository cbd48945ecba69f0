"""arctictern.virt.migrate and playbooks/migrate.yml against the lab: real live migrations between the two hypervisors
of each generation, hv1 and hv2 (Debian 12's libvirt 9, QEMU 7.2), then hv3 and hv4 (Debian 13's libvirt 11, QEMU 10).

One guest per generation (booted once on its first host) moves back and forth: in every mode, in check mode, twice for
idempotence, through the playbook, and through every fault the module must survive: destination unreachable,
destination daemon killed mid-migration, migration link cut, timeout. After each step the guest must answer the
client at once (one request, no waiting for ARP to expire), with its request counter continuing and the same boot
id: the same running guest, not a rebooted one. Where the guest runs is checked with libvirt-python on the
daemons' root sockets. Tests run in file order; each starts by putting the guest where it needs it. Options the
module refuses before it connects anywhere are checked once, on hv1; the playbook runs on the next generation with
migrate_group=next_generation.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import time

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as netlink
from lab import lab as lab_control
from lab.ansible import assert_alive, client_http, guest_snapshot, where
from lab.topology import DEBIAN12

pytestmark = [pytest.mark.lab, pytest.mark.slow]
# Lookups of a guest that is not on a host are expected here; libvirt would print each one to stderr.
libvirt.registerErrorHandler(lambda _ctx, _error: None, None)

TIMINGS = []


def note(what, seconds, **figures):
    """Keep a timing for the summary printed at the end of the module (pytest -s shows it)."""
    TIMINGS.append((what, seconds, figures))


@pytest.fixture(scope="module", autouse=True)
def timing_summary():
    yield
    print("\nmigration timings:")
    for what, seconds, figures in TIMINGS:
        print("  %-38s %6.1f s  %s" % (what, seconds, " ".join("%s=%s" % item for item in figures.items())))


@pytest.fixture(scope="module", name="vm")
def fixture_vm(pair_guests, pair):
    """A guest booted on the generation's first host, with what its agent said last (counter and boot id)."""
    started = time.monotonic()
    booted = pair_guests.boot(pair[0], "t-mig-%s" % os.urandom(3).hex())
    note("boot on %s" % pair[0], time.monotonic() - started)
    return guest_snapshot(booted)


def migrate(ansible, lab, vm, source, target, **options):
    """Run the module on ``source`` to move the guest to ``target``; returns (result, seconds)."""
    args = dict(name=vm["name"], dest_uri=lab["hosts"][target]["migration_uri"],
                migrate_uri="tcp://%s" % lab["hosts"][target]["link_address"])
    args.update(options)
    started = time.monotonic()
    result = ansible.module(source, "migrate", **args)
    return result, time.monotonic() - started


def place(ansible, lab, vm, host, other):
    """Put the guest on ``host`` (a plain migration if it is on ``other``)."""
    if other in where(lab, vm["name"]):
        result, _seconds = migrate(ansible, lab, vm, other, host)
        assert not result.get("failed"), result.get("msg")
    assert where(lab, vm["name"]) == {host: "running"}


def dirty(vm, mib):
    """Start (mib > 0) or stop the guest's memory dirtier."""
    answer = client_http(vm["address"], path="/dirty?mib=%d" % mib)
    assert answer["ok"] and answer["answer"]["dirty"] == ("1" if mib else "0"), answer


@contextlib.contextmanager
def dirtying(vm, mib):
    """The guest rewrites ``mib`` MiB of its memory in a loop while the block runs."""
    dirty(vm, mib)
    try:
        assert assert_alive(vm, "dirtying")["dirty"] == "1"
        yield
    finally:
        dirty(vm, 0)


def wait_for_transfer(lab, name, host, timeout=60):
    """Block until the outgoing migration of ``name`` on ``host`` is sending memory."""
    conn = libvirt.open(lab["hosts"][host]["uri"])
    try:
        dom = conn.lookupByName(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = dom.jobStats()
            if stats.get("memory_iteration", 0) >= 1 and stats.get("data_processed", 0) > 0:
                return stats
            time.sleep(0.1)
    finally:
        conn.close()
    raise AssertionError("the migration of %s never started sending memory" % name)


# ---------------------------------------------------------------------------------------------------------
# Input, check mode, the three modes, idempotence


def test_bad_options_fail_clearly(ansible, lab):
    """Options refused before the module connects anywhere (no guest needed): once, on hv1."""
    task = dict(name="t-mig-no-such-guest", dest_uri=lab["hosts"]["hv2"]["migration_uri"])
    cases = [
        (dict(bandwidth=-100), "bandwidth: must be greater than 0, got -100"),
        (dict(mode="warp"), "value of mode must be one of: precopy, postcopy, auto, got: warp"),
    ]
    for options, words in cases:
        result = ansible.module("hv1", "migrate", **dict(task, **options))
        assert result.get("failed"), options
        assert words in result["msg"], result["msg"]


def test_a_missing_guest_or_the_source_as_destination_fails_clearly(ansible, lab, pair, vm):
    source, dest = pair
    own_uri = lab["hosts"][source]["migration_uri"]
    cases = [
        (dict(name="no-such-guest-%s" % vm["name"]), "name: no guest named"),
        # The source's own daemon, reached over TCP: another URI, the same host.
        (dict(dest_uri=own_uri), "dest_uri: '%s' reaches the same host as uri (%s" % (own_uri, source)),
    ]
    for options, words in cases:
        result, _seconds = migrate(ansible, lab, vm, source, dest, **options)
        assert result.get("failed"), options
        assert words in result["msg"], result["msg"]
    assert where(lab, vm["name"]) == {source: "running"}
    assert_alive(vm, "after bad input")


def test_check_mode_moves_nothing(ansible, lab, pair, vm):
    source, dest = pair
    result = ansible.module(source, "migrate", check=True, diff=True, name=vm["name"],
                            dest_uri=lab["hosts"][dest]["migration_uri"])
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["msg"] == "guest '%s' would move from %s to %s" % (vm["name"], source, dest)
    assert result["diff"] == {"before": {"name": vm["name"], "host": source}, "after": {"name": vm["name"], "host": dest}}
    assert where(lab, vm["name"]) == {source: "running"}


def test_precopy_moves_the_running_guest_and_is_idempotent(ansible, lab, pair, vm):
    source, dest = pair
    place(ansible, lab, vm, source, dest)
    result, seconds = migrate(ansible, lab, vm, source, dest, max_downtime=300)
    # At once, before anything else: QEMU's self-announce has taught the LAN where the guest is now.
    answer = assert_alive(vm, "right after pre-copy")
    assert not result.get("failed"), result.get("msg")
    stats = result["migration"]
    note("precopy %s->%s (task)" % (source, dest), seconds, wall_ms=stats["wall_time_ms"], job_ms=stats["total_time_ms"],
         downtime_ms=stats["downtime_ms"], iterations=stats["iterations"])
    assert result["changed"] and stats["mode"] == "precopy" and result["state"] == "running"
    assert stats["statistics_from"] == "job_completed_event" and stats["downtime_ms"] is not None
    assert stats["data_remaining_bytes"] == 0 and stats["memory_transferred_bytes"] > 0
    assert answer["name"] == vm["name"]
    assert where(lab, vm["name"]) == {dest: "running"}, "persist_dest and undefine_source: only %s has it" % dest

    again, seconds = migrate(ansible, lab, vm, source, dest, max_downtime=300)
    note("precopy again (no change)", seconds)
    assert not again.get("failed"), again.get("msg")
    assert not again["changed"] and again["msg"] == "guest '%s' already runs on %s" % (vm["name"], dest)
    assert where(lab, vm["name"]) == {dest: "running"}


def test_low_blackout_profile_moves_on_qemu_10_and_is_refused_on_older(ansible, lab, pair, vm):
    source, dest = pair
    place(ansible, lab, vm, source, dest)
    result, seconds = migrate(ansible, lab, vm, source, dest, profile="low_blackout")
    qemu = lab["hosts"][source]["versions"]["qemu"]
    if int(qemu.split(".")[0]) < 10:
        assert result.get("failed")
        assert result["msg"] == ("profile: low_blackout needs QEMU 10.0 or newer on both hosts, and %s runs QEMU %s: on "
                                 "older QEMU its settings broke guests (docs/performance.md). Nothing was moved." % (source, qemu))
        assert where(lab, vm["name"]) == {source: "running"}
    else:
        note("low_blackout %s->%s (task)" % (source, dest), seconds, downtime_ms=result["migration"]["downtime_ms"])
        assert not result.get("failed"), result.get("msg")
        assert result["plan"]["max_downtime"] == 10
        assert [event["ms"] for event in result["migration"]["events"] if event["event"] == "max_downtime"] == [10]
        assert where(lab, vm["name"]) == {dest: "running"}
    assert_alive(vm, "after profile low_blackout")


def test_postcopy_moves_the_guest_back(ansible, lab, pair, vm):
    first, second = pair
    place(ansible, lab, vm, second, first)
    # A guest dirtying faster than the bandwidth cap cannot finish in pre-copy: only the switch ends the job (a
    # switch asked for too early once left an idle guest in pre-copy, and this one ran on for minutes; the
    # timeout aborts such a job).
    with dirtying(vm, 32):
        result, seconds = migrate(ansible, lab, vm, second, first, mode="postcopy", bandwidth=20, timeout=60)
        assert_alive(vm, "right after post-copy")
    assert not result.get("failed"), result.get("msg")
    stats = result["migration"]
    note("postcopy %s->%s, dirtying (task)" % (second, first), seconds, wall_ms=stats["wall_time_ms"],
         job_ms=stats["total_time_ms"], downtime_ms=stats["downtime_ms"], postcopy_requests=stats["postcopy_requests"])
    assert stats["mode"] == "postcopy", stats["events"]
    assert [event["event"] for event in stats["events"]][:2] == ["postcopy_requested", "postcopy_started"], stats["events"]
    assert "postcopy" in result["plan"]["flags"]
    assert where(lab, vm["name"]) == {first: "running"}


def test_auto_switches_a_busy_guest_to_postcopy(ansible, lab, pair, vm):
    source, dest = pair
    place(ansible, lab, vm, source, dest)
    with dirtying(vm, 32):
        result, seconds = migrate(ansible, lab, vm, source, dest, mode="auto", postcopy_after=2, bandwidth=10)
        assert_alive(vm, "right after auto")
    assert not result.get("failed"), result.get("msg")
    stats = result["migration"]
    note("auto %s->%s, dirtying (task)" % (source, dest), seconds, wall_ms=stats["wall_time_ms"],
         job_ms=stats["total_time_ms"], downtime_ms=stats["downtime_ms"])
    requested = next(event for event in stats["events"] if event["event"] == "postcopy_requested")
    assert requested["time_ms"] >= 2000, "not before postcopy_after"
    assert stats["mode"] == "postcopy" and len(stats["progress"]) >= 2
    assert where(lab, vm["name"]) == {dest: "running"}


# ---------------------------------------------------------------------------------------------------------
# Faults: each must leave the guest running on the source, answering, with a message that names the cause


def test_unreachable_destination(ansible, lab, pair, vm):
    source, dest = pair
    place(ansible, lab, vm, source, dest)
    result, seconds = migrate(ansible, lab, vm, source, dest, dest_uri="qemu+tcp://198.18.1.99/system",
                              migrate_uri="tcp://198.18.1.99")
    note("fault: destination unreachable", seconds)
    assert result.get("failed")
    assert result["cause"] == "destination_unreachable"
    assert result["msg"].startswith("dest_uri: destination unreachable: cannot connect to libvirt at 'qemu+tcp://198.18.1.99/system'")
    assert result["msg"].endswith("guest '%s' was not moved; it is running on the source." % vm["name"])
    assert where(lab, vm["name"]) == {source: "running"}
    assert_alive(vm, "after an unreachable destination")


def _migrate_in_background(ansible, lab, vm, source, dest, **options):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    return pool, pool.submit(migrate, ansible, lab, vm, source, dest, **options)


def test_destination_daemon_killed_mid_migration(ansible, lab, pair, vm):
    source, dest = pair
    place(ansible, lab, vm, source, dest)
    # Started again as the lab runs it: the next generation's from its hypervisor root.
    daemon = lab_control.hypervisor_daemon(dest)
    pool, future = _migrate_in_background(ansible, lab, vm, source, dest, bandwidth=2)
    try:
        wait_for_transfer(lab, vm["name"], source)
        os.kill(daemon.pid(), signal.SIGKILL)
        result, seconds = future.result(timeout=300)
    finally:
        pool.shutdown(wait=True)
        daemon.start()
    note("fault: destination daemon killed", seconds)
    assert result.get("failed")
    assert result["cause"] == "destination_died", result["msg"]
    assert "the destination daemon died mid-migration" in result["msg"]
    assert result["msg"].endswith("The guest is still running on %s, its definition intact." % source)
    assert result["source_state"] == "running"
    assert_alive(vm, "after the destination daemon died")
    # The restarted daemon finds the half-received guest and kills it: only the source has the guest.
    deadline = time.monotonic() + 30
    while where(lab, vm["name"]) != {source: "running"} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert where(lab, vm["name"]) == {source: "running"}


@contextlib.contextmanager
def link_down(netns, ifname="mig0"):
    """Take the migration link down in a hypervisor's namespace; always bring it back."""
    with netlink.open_ipr(netns) as ipr:
        index = netlink.link_index(ipr, ifname)
        ipr.link("set", index=index, state="down")
        try:
            yield
        finally:
            ipr.link("set", index=index, state="up")


def test_migration_link_cut_mid_migration(ansible, lab, pair, vm):
    source, dest = pair
    place(ansible, lab, vm, source, dest)
    pool, future = _migrate_in_background(ansible, lab, vm, source, dest, bandwidth=2)
    try:
        wait_for_transfer(lab, vm["name"], source)
        # While it runs, guest_info on the source shows how far it has got.
        (moving,) = ansible.ok(source, "guest_info", name=vm["name"], address_sources=["metadata"])["guests"]
        job = moving["job"]
        assert job["operation"] == "migration_out" and job["data_total"] > 0 and job["data_processed"] > 0, job
        assert 0 <= job["percent"] <= 100 and job["elapsed_ms"] > 0 and job["memory_iteration"] >= 1, job
        with link_down(lab["hosts"][source]["netns"]):
            # libvirt notices through the keepalive between the daemons (5 s x 5 by default).
            result, seconds = future.result(timeout=300)
    finally:
        pool.shutdown(wait=True)
    note("fault: link cut", seconds)
    assert result.get("failed")
    assert result["cause"] == "link_cut", result["msg"]
    assert "the migration link was cut mid-migration" in result["msg"]
    assert result["msg"].endswith("The guest is still running on %s, its definition intact." % source)
    assert_alive(vm, "after the link cut")
    assert where(lab, vm["name"]) == {source: "running"}
    (after,) = ansible.ok(source, "guest_info", name=vm["name"], address_sources=["metadata"])["guests"]
    assert after["job"] is None, after["job"]


def test_timeout_aborts_a_migration_that_does_not_converge(ansible, lab, pair, vm):
    source, dest = pair
    place(ansible, lab, vm, source, dest)
    with dirtying(vm, 32):
        result, seconds = migrate(ansible, lab, vm, source, dest, bandwidth=2, timeout=5)
    note("fault: timeout 5 s, abort", seconds)
    assert result.get("failed")
    assert result["cause"] == "timeout"
    assert result["msg"] == ("timeout: the migration did not finish within 5 s and was aborted (timeout_action=abort). "
                             "The guest is still running on %s, its definition intact." % source)
    timeout_event = next(event for event in result["migration"]["events"] if event["event"] == "timeout")
    assert 5000 <= timeout_event["time_ms"] < 7000
    assert_alive(vm, "after the timeout")
    assert where(lab, vm["name"]) == {source: "running"}


# ---------------------------------------------------------------------------------------------------------
# The playbook


def test_migrate_playbook(ansible, lab, pair, vm):
    first, second = pair
    # The playbook's default group is hypervisors (hv1, hv2); the next generation's hosts are a group of their own.
    group = {} if lab["hosts"][first]["generation"] == DEBIAN12 else {"migrate_group": "next_generation"}
    place(ansible, lab, vm, first, second)
    started = time.monotonic()
    proc = ansible.playbook("playbooks/migrate.yml", {"guests": [vm["name"]], "target": second, **group})
    note("migrate.yml %s->%s" % (first, second), time.monotonic() - started)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert_alive(vm, "after migrate.yml")
    assert "%s: %s -> %s (precopy" % (vm["name"], first, second) in proc.stdout
    assert where(lab, vm["name"]) == {second: "running"}

    again = ansible.playbook("playbooks/migrate.yml", {"guests": [vm["name"]], "target": second, **group})
    assert again.returncode == 0, again.stdout[-3000:]
    assert "%s: already on %s" % (vm["name"], second) in again.stdout
    assert "changed=1" not in again.stdout

    # Back as an async task, the way a long migration is run: Ansible polls the job until it ends.
    back = ansible.playbook("playbooks/migrate.yml", {"guests": [vm["name"]], "target": first, "migrate_async_seconds": 120,
                                                      **group})
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-2000:]
    assert "%s: %s -> %s (precopy" % (vm["name"], second, first) in back.stdout
    assert_alive(vm, "after an async migrate.yml")
    assert where(lab, vm["name"]) == {first: "running"}

    missing = ansible.playbook("playbooks/migrate.yml", {"guests": ["no-such-guest-%s" % vm["name"]], "target": second, **group})
    assert missing.returncode != 0
    assert "Not running on any hypervisor: no-such-guest-%s" % vm["name"] in missing.stdout
