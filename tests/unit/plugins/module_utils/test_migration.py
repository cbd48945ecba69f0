# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_migration: option checks, flags and parameters, locating the guest, the job monitor's state machine (post-copy
switch, timeout actions, statistics) and the classification of failures, against scripted fake jobs."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _migration
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import libvirt_error
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._migration_fakes import (
    DEST_URI, HV1_UUID, HV2_UUID, MIB, SRC_URI, FakeEvents, FakeJob, add_migrating, migration_world, params)

BASE_FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
SOCKET_CLOSED = "internal error: client socket is closed"


@pytest.fixture(name="world")
def fixture_world(fake_libvirt, monkeypatch):
    return migration_world(fake_libvirt, monkeypatch)


def guest(world, job=None, **kwargs):
    return add_migrating(world.src, job or FakeJob(), world.clock, world.hosts, **kwargs)


def unreachable(monkeypatch, registry, uri=DEST_URI, reason="No route to host"):
    """Make connecting to ``uri`` fail the way libvirt reports an unreachable host."""
    def fake_open(name=None):
        if name == uri:
            raise libvirt_error("VIR_ERR_SYSTEM_ERROR", "unable to connect to server at '198.18.1.2:16509': %s" % reason)
        return registry.open(name)
    monkeypatch.setattr(libvirt, "open", fake_open)


# ---------------------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("overrides, option, words", [
    (dict(bandwidth=-5), "bandwidth", "greater than 0, got -5"),
    (dict(bandwidth=0), "bandwidth", "greater than 0"),
    (dict(max_downtime=0), "max_downtime", "greater than 0"),
    (dict(timeout=-1.0), "timeout", "greater than 0"),
    (dict(mode="auto", postcopy_after=0), "postcopy_after", "greater than 0"),
    (dict(parallel_connections=0), "parallel_connections", "greater than 0"),
    (dict(mode="fast"), "mode", "precopy, postcopy, auto, got 'fast'"),
    (dict(timeout_action="explode"), "timeout_action", "abort, postcopy, suspend"),
    (dict(name=" "), "name", "must not be empty"),
    (dict(dest_uri=""), "dest_uri", "must not be empty"),
    (dict(dest_uri=SRC_URI), "dest_uri", "same URI as uri"),
    (dict(auto_converge_initial=20), "auto_converge_initial", "auto_converge=true"),
    (dict(auto_converge=True, auto_converge_increment=150), "auto_converge_increment", "0 to 100"),
    (dict(mode="auto", parallel_connections=4), "parallel_connections", "post-copy"),
    (dict(timeout=10, timeout_action="postcopy", parallel_connections=2), "parallel_connections", "post-copy"),
    (dict(compression="xbzrle", parallel_connections=2), "parallel_connections", "compression=xbzrle"),
    (dict(postcopy_bandwidth=100), "postcopy_bandwidth", "post-copy"),
    (dict(migrate_uri="198.18.1.2"), "migrate_uri", "tcp://"),
])
def test_validate_names_the_bad_option(overrides, option, words):
    with pytest.raises(InvalidOption) as caught:
        _migration.validate(params(**overrides))
    assert caught.value.option == option
    assert caught.value.msg.startswith(option + ": ")
    assert words in caught.value.msg


def test_validate_accepts_a_full_set_of_options():
    _migration.validate(params(mode="auto", postcopy_after=5, postcopy_after_iterations=3, auto_converge=True,
                               auto_converge_initial=20, auto_converge_increment=10, bandwidth=100, postcopy_bandwidth=200,
                               max_downtime=300, compression="xbzrle", timeout=60, timeout_action="suspend",
                               migrate_uri="tcp://198.18.1.2", copy_storage="all"))


def test_flags_default_to_live_peer_to_peer_persistent_move():
    assert _migration.migration_flags(params()) == BASE_FLAGS
    assert _migration.flag_names(params()) == ["live", "peer2peer", "persist_dest", "undefine_source"]


@pytest.mark.parametrize("overrides, added, removed", [
    (dict(mode="postcopy"), libvirt.VIR_MIGRATE_POSTCOPY, 0),
    (dict(mode="auto"), libvirt.VIR_MIGRATE_POSTCOPY, 0),
    (dict(timeout=30, timeout_action="postcopy"), libvirt.VIR_MIGRATE_POSTCOPY, 0),
    (dict(auto_converge=True), libvirt.VIR_MIGRATE_AUTO_CONVERGE, 0),
    (dict(compression="xbzrle"), libvirt.VIR_MIGRATE_COMPRESSED, 0),
    (dict(parallel_connections=4), libvirt.VIR_MIGRATE_PARALLEL, 0),
    (dict(tls=True), libvirt.VIR_MIGRATE_TLS, 0),
    (dict(copy_storage="all"), libvirt.VIR_MIGRATE_NON_SHARED_DISK, 0),
    (dict(copy_storage="inc"), libvirt.VIR_MIGRATE_NON_SHARED_INC, 0),
    (dict(persist_dest=False), 0, libvirt.VIR_MIGRATE_PERSIST_DEST),
    (dict(undefine_source=False), 0, libvirt.VIR_MIGRATE_UNDEFINE_SOURCE),
])
def test_flags_follow_the_options(overrides, added, removed):
    assert _migration.migration_flags(params(**overrides)) == (BASE_FLAGS | added) & ~removed


def test_postcopy_is_not_enabled_for_a_timeout_action_without_timeout():
    assert not _migration.migration_flags(params(timeout_action="postcopy")) & libvirt.VIR_MIGRATE_POSTCOPY


def test_params_carry_every_given_option_by_libvirt_name():
    typed = _migration.migration_params(params(
        migrate_uri="tcp://198.18.1.2", bandwidth=100, postcopy_bandwidth=400, compression="xbzrle", mode="auto",
        auto_converge=True, auto_converge_initial=20, auto_converge_increment=5))
    assert typed == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://198.18.1.2",
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 100,
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY: 400,
        libvirt.VIR_MIGRATE_PARAM_COMPRESSION: "xbzrle",
        libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL: 20,
        libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT: 5,
    }
    assert _migration.migration_params(params()) == {}
    assert _migration.migration_params(params(parallel_connections=3)) == {libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 3}


def test_a_parameter_this_libvirt_lacks_is_refused_naming_the_option(monkeypatch):
    monkeypatch.delattr(libvirt, "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL")
    with pytest.raises(InvalidOption, match="^auto_converge_initial: this libvirt-python has no VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL"):
        _migration.migration_params(params(auto_converge=True, auto_converge_initial=10))


# ---------------------------------------------------------------------------------------------------------
# The two ends


def test_host_identity_and_same_host(world):
    source = _migration.host_identity(world.src, SRC_URI)
    destination = _migration.host_identity(world.dest, DEST_URI)
    assert source == {"uri": SRC_URI, "hostname": "hv1", "uuid": HV1_UUID}
    assert destination["uuid"] == HV2_UUID
    assert not _migration.same_host(source, destination)
    assert _migration.same_host(source, dict(destination, uuid=HV1_UUID, hostname="other-name"))
    # Without UUIDs the host names decide.
    assert _migration.same_host(dict(source, uuid=None), dict(destination, uuid=None, hostname="hv1"))


def _ends(world):
    return _migration.host_identity(world.src, SRC_URI), _migration.host_identity(world.dest, DEST_URI)


def test_locate_finds_a_running_guest_on_the_source(world):
    domain = guest(world)
    assert _migration.locate("web1", world.src, world.dest, *_ends(world)) == ("migrate", domain)


def test_locate_reports_a_guest_already_on_the_destination(world):
    guest(world, state="shutoff")
    moved = world.dest.add_domain(world.src.domains["web1"].xml, state="running")
    assert _migration.locate("web1", world.src, world.dest, *_ends(world)) == ("done", moved)
    del world.src.domains["web1"]
    assert _migration.locate("web1", world.src, world.dest, *_ends(world)) == ("done", moved)


def test_locate_accepts_a_stopped_copy_of_the_same_guest_on_the_destination(world):
    domain = guest(world)
    world.dest.add_domain(domain.xml, state="shutoff")
    assert _migration.locate("web1", world.src, world.dest, *_ends(world))[0] == "migrate"


@pytest.mark.parametrize("setup, words", [
    ("unknown", "no guest named 'web1' on hv1 (uri qemu:///system)"),
    ("shutoff", "guest 'web1' is shutoff on hv1; only a running guest can be migrated live"),
    ("both", "runs on both hv1 and hv2"),
    ("incoming", "is already being migrated to hv2 (an incoming migration is in progress there)"),
    ("clash", "hv2 already has a different guest named 'web1'"),
    ("stopped_on_dest", "and hv2 has it shut off"),
])
def test_locate_refuses_what_cannot_be_migrated(world, setup, words):
    if setup in ("shutoff",):
        guest(world, state="shutoff")
    if setup in ("both", "clash"):
        domain = guest(world)
        other = domain.xml if setup == "both" else domain.xml.replace(domain.UUIDString(), "11111111-2222-3333-4444-555555555555")
        world.dest.add_domain(other, state="running" if setup == "both" else "shutoff")
    if setup == "incoming":
        world.dest.add_domain(guest(world).xml, state="paused", persistent=False).reason = libvirt.VIR_DOMAIN_PAUSED_MIGRATION
    if setup == "stopped_on_dest":
        world.dest.add_domain(guest(world).xml, state="shutoff")
        del world.src.domains["web1"]
    with pytest.raises(InvalidOption) as caught:
        _migration.locate("web1", world.src, world.dest, *_ends(world))
    assert caught.value.option == "name"
    assert words in caught.value.msg


# ---------------------------------------------------------------------------------------------------------
# The job monitor


def migration(world, job=None, events=False, **overrides):
    domain = guest(world, job)
    run = _migration.Migration(domain, DEST_URI, params(**overrides))
    run.run(events=events)
    return run, domain


def test_precopy_converges_with_progress_and_the_given_flags(world):
    job = FakeJob(steps=4)
    run, _domain = migration(world, job, bandwidth=50, max_downtime=300)
    assert run.error is None and job.outcome == "done"
    assert job.flags == BASE_FLAGS and job.params == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 50}
    assert job.max_downtime == [300], "max_downtime is set once, while the job runs"
    assert [sample["data_processed"] for sample in run.progress] == [10 * MIB, 20 * MIB, 30 * MIB, 40 * MIB]
    assert [sample["time_ms"] for sample in run.progress] == [1000, 2000, 3000, 4000]
    stats = run.statistics()
    assert stats["mode"] == "precopy" and stats["statistics_from"] == "last_sample"
    assert stats["iterations"] == 4 and stats["data_total_bytes"] == 128 * MIB and stats["downtime_ms"] is None
    assert world.dest.domains["web1"].current_state() == "running" and "web1" not in world.src.domains


def test_progress_is_thinned_on_a_long_job(world, monkeypatch):
    monkeypatch.setattr(_migration, "MAX_SAMPLES", 8)
    run, _domain = migration(world, FakeJob(steps=20))
    assert len(run.progress) <= 8
    assert run.progress[0]["time_ms"] == 1000 and run.progress[-1]["time_ms"] >= 17000, "the whole course is kept"


def test_postcopy_mode_switches_as_soon_as_qemu_takes_it(world):
    job = FakeJob(steps=None, transfer_from=3)
    run, domain = migration(world, job, mode="postcopy")
    assert job.flags & libvirt.VIR_MIGRATE_POSTCOPY
    assert domain.called("migrateStartPostCopy") >= 2, "refused before QEMU sends pages, retried every poll"
    assert run.postcopy_requested and run.postcopy_started and run.error is None
    assert run.statistics()["mode"] == "postcopy"
    assert not [event for event in run.events if event["event"] == "postcopy_switch_failed"], "early refusals are expected"
    requested = next(event for event in run.events if event["event"] == "postcopy_requested")
    assert requested["time_ms"] == 3000


def test_auto_switches_after_postcopy_after_seconds_only(world):
    job = FakeJob(steps=None)
    run, domain = migration(world, job, mode="auto", postcopy_after=5)
    requested = next(event for event in run.events if event["event"] == "postcopy_requested")
    assert requested["time_ms"] == 5000
    assert domain.called("migrateStartPostCopy") == 1
    assert run.statistics()["mode"] == "postcopy"


def test_auto_switches_after_iterations(world):
    job = FakeJob(steps=None)
    run, _domain = migration(world, job, mode="auto", postcopy_after=100, postcopy_after_iterations=2)
    requested = next(event for event in run.events if event["event"] == "postcopy_requested")
    assert requested["iteration"] == 3 and requested["time_ms"] == 3000


def test_auto_that_converges_first_finishes_in_precopy(world):
    run, domain = migration(world, FakeJob(steps=2), mode="auto", postcopy_after=5)
    assert domain.called("migrateStartPostCopy") == 0
    assert run.statistics()["mode"] == "precopy"


def test_timeout_abort_cancels_the_job(world):
    job = FakeJob(steps=None)
    run, domain = migration(world, job, timeout=3, bandwidth=1)
    assert run.aborted and run.timed_out and job.aborted
    assert domain.called("abortJob") == 1
    assert run.error.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED
    assert {"time_ms": 3000, "event": "timeout", "action": "abort"} in run.events
    assert domain.current_state() == "running" and "web1" not in world.dest.domains


def test_timeout_postcopy_switches_at_the_timeout(world):
    job = FakeJob(steps=None)
    run, _domain = migration(world, job, timeout=4, timeout_action="postcopy")
    assert job.flags & libvirt.VIR_MIGRATE_POSTCOPY
    assert [event["event"] for event in run.events] == ["timeout", "postcopy_requested", "postcopy_started"]
    assert run.events[1]["time_ms"] == 4000 and run.error is None


def test_timeout_suspend_pauses_the_guest_so_precopy_finishes(world):
    job = FakeJob(steps=None)
    run, domain = migration(world, job, timeout=2, timeout_action="suspend")
    assert run.suspended and domain.called("suspend") == 1 and run.error is None
    assert "web1" in world.dest.domains


def test_timeout_abort_is_refused_once_postcopy_runs(world):
    run, domain = migration(world, FakeJob(steps=None, postcopy_steps=5), mode="postcopy", timeout=3)
    assert domain.called("abortJob") == 0
    assert {"time_ms": 3000, "event": "abort_refused", "reason": "post-copy already started"} in run.events
    assert run.error is None and "web1" in world.dest.domains


def test_a_failed_control_call_is_noted_once(world):
    job = FakeJob(steps=4)
    domain = guest(world, job)
    domain.fail_on["migrateSetMaxDowntime"] = "monitor busy"
    run = _migration.Migration(domain, DEST_URI, params(max_downtime=100))
    run.run()
    failures = [event for event in run.events if event["event"] == "max_downtime_failed"]
    assert len(failures) == 1 and "monitor busy" in failures[0]["error"]
    assert domain.called("migrateSetMaxDowntime") == 4, "retried each poll"


def test_events_mark_postcopy_and_bring_the_final_statistics(world):
    events = FakeEvents(world.src)
    completed = {"time_elapsed": 727, "downtime": 99, "setup_time": 2, "data_total": 128 * MIB, "data_processed": 64 * MIB,
                 "data_remaining": 0, "memory_processed": 64 * MIB, "memory_bps": 329729955, "memory_iteration": 2,
                 "memory_postcopy_requests": 13, "memory_dirty_rate": 0}
    job = FakeJob(steps=None, stats=completed)
    domain = add_migrating(world.src, job, world.clock, world.hosts, events=events)
    run = _migration.Migration(domain, DEST_URI, params(mode="postcopy"))
    ids = _migration.register_events(events, domain.UUIDString(), run)
    assert sorted(ids) == sorted([libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED])
    run.run(events=True)
    _migration.deregister_events(events, ids)
    assert events.callbacks == {}
    assert domain.called("state") == 0, "with events the state is not polled"
    assert {"event": "postcopy_started", "seen_by": "event"}.items() <= next(e for e in run.events if e["event"] == "postcopy_started").items()
    stats = run.statistics()
    assert stats["statistics_from"] == "job_completed_event"
    assert (stats["downtime_ms"], stats["total_time_ms"], stats["postcopy_requests"], stats["mode"]) == (99, 727, 13, "postcopy")


def test_statistics_prefer_the_destination_record_to_the_last_sample(world):
    run, _domain = migration(world, FakeJob(steps=2))
    stats = run.statistics({"type": libvirt.VIR_DOMAIN_JOB_COMPLETED, "downtime": 42, "time_elapsed": 800})
    assert (stats["statistics_from"], stats["downtime_ms"], stats["total_time_ms"]) == ("destination", 42, 800)
    assert run.statistics({"type": libvirt.VIR_DOMAIN_JOB_NONE})["statistics_from"] == "last_sample"


def test_register_events_without_event_support_gives_nothing(world):
    domain = guest(world)
    assert _migration.register_events(world.src, domain.UUIDString(), None) == []


# ---------------------------------------------------------------------------------------------------------
# Failures


@pytest.mark.parametrize("message, kind", [
    ("unable to connect to server at '198.18.1.2:16509': Connection refused", "down"),
    ("Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory", "down"),
    ("unable to connect to server at '198.18.1.2:16509': No route to host", "unreachable"),
    ("unable to connect to server at '198.18.1.2:16509': Network is unreachable", "unreachable"),
    ("uri: no answer from libvirt at 'qemu+tcp://198.18.1.2/system' within 10.0s", "unreachable"),
    ("authentication failed: access denied", "error"),
])
def test_probe_kind(message, kind):
    assert _migration.probe_kind(message) == kind


def test_probe_reports_how_the_destination_answers(world, monkeypatch):
    assert _migration.probe(DEST_URI, 1.0) == ("ok", "")
    unreachable(monkeypatch, world.registry)
    kind, message = _migration.probe(DEST_URI, 1.0)
    assert kind == "unreachable" and message.startswith("cannot connect to libvirt at '%s'" % DEST_URI)


def _seen(transferring=True, postcopy=False, aborted=False):
    return SimpleNamespace(dest_uri=DEST_URI, transferring=transferring, postcopy_started=postcopy, aborted=aborted,
                           settings=params(timeout=5.0))


@pytest.mark.parametrize("seen, reason, probed, cause, words", [
    (_seen(postcopy=True), SOCKET_CLOSED, ("down", "refused"), "postcopy_failed", "cannot roll back to the source"),
    (_seen(aborted=True), "operation aborted", ("ok", ""), "timeout", "did not finish within 5 s and was aborted"),
    (_seen(transferring=False), "unable to connect to server at 'x': Connection refused", ("down", "refused"),
     "destination_unreachable", "could not reach %s (dest_uri)" % DEST_URI),
    (_seen(transferring=False), "unable to connect to server at 'x': No route to host", ("ok", ""),
     "destination_unreachable", "No route to host"),
    (_seen(), SOCKET_CLOSED, ("down", "Connection refused"), "destination_died", "died mid-migration"),
    # Died after the daemons connected but before the monitor saw pages move: still not a connect failure.
    (_seen(transferring=False), SOCKET_CLOSED, ("down", "Connection refused"), "destination_died", "died mid-migration"),
    (_seen(), SOCKET_CLOSED, ("unreachable", "Network is unreachable"), "link_cut", "link was cut mid-migration"),
    (_seen(), "unsupported configuration: no bridge br9", ("ok", ""), "failed", "migration failed: unsupported configuration"),
])
def test_classify(seen, reason, probed, cause, words):
    got_cause, message = _migration.classify(seen, reason, probed)
    assert got_cause == cause and cause in _migration.CAUSES
    assert words in message


def test_source_outcome_resumes_a_guest_the_timeout_suspended(world):
    domain = guest(world)
    domain.suspend()
    seen = SimpleNamespace(suspended=True, postcopy_started=False)
    state, sentence = _migration.source_outcome(world.src, domain.UUIDString(), "hv1", True, seen)
    assert state == "running" and domain.called("resume") == 1
    assert sentence == "The guest is still running on hv1, its definition intact."


def test_source_outcome_leaves_a_postcopy_failed_guest_paused(world):
    domain = guest(world)
    domain._state, domain.reason = "paused", 13  # pylint: disable=protected-access
    seen = SimpleNamespace(suspended=True, postcopy_started=True)
    state, sentence = _migration.source_outcome(world.src, domain.UUIDString(), "hv1", True, seen)
    assert state == "paused" and domain.called("resume") == 0
    assert sentence == "The guest is paused on hv1, its definition intact."


def test_source_outcome_when_the_guest_is_gone(world):
    state, sentence = _migration.source_outcome(world.src, "0b8e3b9c-2f7a-4d0e-9a51-6b7c1d2e3f40", "hv1", True,
                                                SimpleNamespace(suspended=False, postcopy_started=False))
    assert state == "unknown" and sentence.startswith("Could not check the guest on hv1 afterwards")


def test_close_soon_does_not_wait_for_a_dead_peer():
    release = threading.Event()
    conn = SimpleNamespace(close=release.wait)
    started = time.monotonic()
    _migration.close_soon(conn, wait=0.05)
    assert time.monotonic() - started < 1.0
    release.set()


def test_event_loop_starts_once(monkeypatch):
    calls = []
    monkeypatch.setattr(_migration._EventLoop, "started", False)  # pylint: disable=protected-access
    monkeypatch.setattr(libvirt, "virEventRegisterDefaultImpl", lambda: calls.append("register"))
    monkeypatch.setattr(libvirt, "virEventRunDefaultImpl", lambda: -1)
    monkeypatch.setattr(libvirt, "open", lambda uri: SimpleNamespace(uri=uri))
    first = _migration.event_connection(SRC_URI, 1.0)
    second = _migration.event_connection(SRC_URI, 1.0)
    assert first.uri == SRC_URI and second.uri == SRC_URI
    assert calls == ["register"]


def test_event_connection_is_none_when_events_cannot_start(monkeypatch):
    def refuse():
        raise libvirt_error("VIR_ERR_INTERNAL_ERROR", "no event loop")
    monkeypatch.setattr(_migration._EventLoop, "started", False)  # pylint: disable=protected-access
    monkeypatch.setattr(libvirt, "virEventRegisterDefaultImpl", refuse)
    assert _migration.event_connection(SRC_URI, 1.0) is None


# ---------------------------------------------------------------------------------------------------------
# The whole task


def test_migrate_moves_the_guest_and_reports_statistics(world):
    guest(world, FakeJob(steps=3))
    result = _migration.migrate(params(migrate_uri="tcp://198.18.1.2"))
    assert result["changed"] and result["state"] == "running"
    assert (result["source"]["hostname"], result["destination"]["hostname"]) == ("hv1", "hv2")
    assert result["plan"] == {"flags": ["live", "peer2peer", "persist_dest", "undefine_source"],
                              "parameters": {"migrate_uri": "tcp://198.18.1.2"}}
    assert result["migration"]["mode"] == "precopy" and result["migration"]["iterations"] == 3
    assert result["msg"].startswith("guest 'web1' moved from hv1 to hv2 in ")


def test_migrate_check_mode_moves_nothing(world):
    domain = guest(world)
    result = _migration.migrate(params(), check_mode=True)
    assert result["changed"] and result["msg"] == "guest 'web1' would move from hv1 to hv2"
    assert domain.called("migrateToURI3") == 0 and "web1" not in world.dest.domains


def test_migrate_validates_before_connecting(world):
    with pytest.raises(InvalidOption, match="^bandwidth: "):
        _migration.migrate(params(bandwidth=-1))
    assert world.registry.opened == []


def test_migrate_refuses_a_destination_that_is_the_source_host(world):
    guest(world)
    world.registry.connections["qemu+tcp://198.18.1.1/system"] = world.src
    with pytest.raises(InvalidOption) as caught:
        _migration.migrate(params(dest_uri="qemu+tcp://198.18.1.1/system"))
    assert caught.value.option == "dest_uri" and "reaches the same host as uri (hv1, host UUID %s)" % HV1_UUID in caught.value.msg


def test_migrate_with_an_unreachable_destination_leaves_the_guest(world, monkeypatch):
    domain = guest(world)
    unreachable(monkeypatch, world.registry)
    with pytest.raises(VirtError) as caught:
        _migration.migrate(params())
    assert caught.value.details["cause"] == "destination_unreachable"
    assert caught.value.msg.startswith("dest_uri: destination unreachable: cannot connect to libvirt at '%s'" % DEST_URI)
    assert caught.value.msg.endswith("No route to host; guest 'web1' was not moved; it is running on the source.")
    assert domain.called("migrateToURI3") == 0


def test_migrate_when_the_source_daemon_cannot_reach_the_destination(world):
    refused = libvirt_error("VIR_ERR_SYSTEM_ERROR", "unable to connect to server at '198.18.1.2:16509': Connection refused")
    domain = guest(world, FakeJob(connect_error=refused))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(params())
    assert caught.value.details["cause"] == "destination_unreachable"
    assert "the source daemon could not reach %s (dest_uri): unable to connect to server" % DEST_URI in caught.value.msg
    assert caught.value.msg.endswith("The guest is still running on hv1, its definition intact.")
    assert domain.current_state() == "running"


@pytest.mark.parametrize("fault, cause, words", [
    ("daemon", "destination_died", "the destination daemon died mid-migration"),
    ("link", "link_cut", "the migration link was cut mid-migration"),
])
def test_migrate_failing_mid_migration_names_the_cause(world, monkeypatch, fault, cause, words):
    def break_destination():
        if fault == "daemon":
            world.registry.connections.pop(DEST_URI)
        else:
            unreachable(monkeypatch, world.registry, reason="Network is unreachable")
    domain = guest(world, FakeJob(steps=None, fail_at=3, error=libvirt_error("VIR_ERR_INTERNAL_ERROR", SOCKET_CLOSED),
                                  on_fail=break_destination))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(params())
    details = caught.value.details
    assert details["cause"] == cause and details["source_state"] == "running" and details["libvirt_error"] == SOCKET_CLOSED
    assert words in caught.value.msg
    assert caught.value.msg.endswith("The guest is still running on hv1, its definition intact.")
    assert domain.current_state() == "running" and domain.persistent
    assert details["migration"]["progress"], "what was seen until the failure comes back"


def test_migrate_timeout_abort_fails_with_the_guest_on_the_source(world):
    domain = guest(world, FakeJob(steps=None))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(params(timeout=3))
    assert caught.value.details["cause"] == "timeout"
    assert caught.value.msg == ("timeout: the migration did not finish within 3 s and was aborted (timeout_action=abort). "
                                "The guest is still running on hv1, its definition intact.")
    assert domain.current_state() == "running"


def test_migrate_postcopy_failure_says_the_guest_cannot_roll_back(world):
    guest(world, FakeJob(steps=None, postcopy_fail=True, error=libvirt_error("VIR_ERR_INTERNAL_ERROR", SOCKET_CLOSED)))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(params(mode="postcopy"))
    assert caught.value.details["cause"] == "postcopy_failed" and caught.value.details["source_state"] == "paused"
    assert "post-copy had already started, so the guest cannot roll back to the source" in caught.value.msg
    assert caught.value.msg.endswith("The guest is paused on hv1, its definition intact.")


def test_migrate_uses_events_when_the_source_delivers_them(world, monkeypatch):
    events = FakeEvents(world.src)
    monkeypatch.setattr(_migration, "event_connection", lambda uri, timeout: events)
    completed = {"time_elapsed": 700, "downtime": 80, "memory_iteration": 2}
    add_migrating(world.src, FakeJob(steps=2, stats=completed), world.clock, world.hosts, events=events)
    result = _migration.migrate(params())
    assert result["migration"]["statistics_from"] == "job_completed_event" and result["migration"]["downtime_ms"] == 80
    assert events.closed and events.callbacks == {}


def test_migrate_reads_the_destination_record_without_events(world):
    guest(world, FakeJob(steps=2, stats={"type": libvirt.VIR_DOMAIN_JOB_COMPLETED, "downtime": 55, "time_elapsed": 650}))
    result = _migration.migrate(params())
    assert result["migration"]["statistics_from"] == "destination" and result["migration"]["downtime_ms"] == 55
