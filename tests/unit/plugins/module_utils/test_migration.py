# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_migration: the options object, flags and parameters, locating the guest, the job monitor's state machine
(post-copy switch, timeout actions, statistics) and the classification of failures (in any locale), against scripted
fake jobs; and that the fake refuses what libvirt refuses."""

from __future__ import annotations

import dataclasses
import errno
import socket
import threading
import time
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _migration
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._module import LIBVIRT_ARGUMENT_SPEC
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import QEMU_CAPABILITIES, QEMU10_CAPABILITIES, FakeAgent, libvirt_error
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._migration_fakes import (
    DEST_URI, HV1_UUID, HV2_CAPABILITIES, HV2_UUID, MESSAGES, MIB, SRC_URI, FakeEvents, FakeJob, add_migrating, failure, migration_world,
    options)

BASE_FLAGS = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
LANGUAGES = sorted(MESSAGES)


@pytest.fixture(name="world")
def fixture_world(fake_libvirt, monkeypatch):
    return migration_world(fake_libvirt, monkeypatch)


def guest(world, job=None, **kwargs):
    return add_migrating(world.src, job or FakeJob(), world.clock, world.hosts, **kwargs)


def refuse_connections(monkeypatch, registry, how="no_route", language="en", uri=DEST_URI):
    """Make connecting to ``uri`` fail the way libvirt reports it: ``how`` is no_route, network_unreachable (the
    host cannot be reached) or refused (nothing listens there)."""
    def fake_open(name=None):
        if name == uri:
            raise failure(how, language)
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
def test_options_name_the_bad_option(overrides, option, words):
    with pytest.raises(InvalidOption) as caught:
        options(**overrides)
    assert caught.value.option == option
    assert caught.value.msg.startswith(option + ": ")
    assert words in caught.value.msg


@pytest.mark.parametrize("overrides, option", [
    (dict(bandwidth="100"), "bandwidth"),
    (dict(bandwidth=True), "bandwidth"),
    (dict(tls="yes"), "tls"),
    (dict(timeout="soon"), "timeout"),
    (dict(name=None), "name"),
])
def test_options_of_the_wrong_type_are_refused(overrides, option):
    with pytest.raises(InvalidOption, match="^%s: " % option):
        options(**overrides)


def test_options_accept_a_full_set():
    full = options(mode="auto", postcopy_after=5, postcopy_after_iterations=3, auto_converge=True, auto_converge_initial=20,
                   auto_converge_increment=10, bandwidth=100, postcopy_bandwidth=200, max_downtime=300, compression="xbzrle",
                   timeout=60, timeout_action="suspend", migrate_uri="tcp://198.18.1.2", copy_storage="all")
    assert full.postcopy_after == 5 and full.uses_postcopy


def test_the_argument_spec_is_made_from_the_options():
    spec = _migration.ARGUMENT_SPEC
    fields = {field.name: field for field in dataclasses.fields(_migration.MigrationOptions)}
    assert set(spec) == set(fields) - set(LIBVIRT_ARGUMENT_SPEC), "the module base adds uri and connect_timeout"
    assert spec["name"] == {"type": "str", "required": True}
    assert spec["mode"] == {"type": "str", "default": "precopy", "choices": ["precopy", "postcopy", "auto"]}
    assert spec["postcopy_after"] == {"type": "float", "default": 10.0}
    assert spec["bandwidth"] == {"type": "int"} and spec["tls"] == {"type": "bool", "default": False}
    for name, option in spec.items():
        assert option.get("default") == (None if fields[name].default is dataclasses.MISSING else fields[name].default), name
    defaults = _migration.MigrationOptions(name="web1", dest_uri=DEST_URI)
    assert (defaults.uri, defaults.connect_timeout) == tuple(LIBVIRT_ARGUMENT_SPEC[key]["default"] for key in ("uri", "connect_timeout"))


def test_options_from_module_params_and_back_to_task_arguments():
    module_params = dict({name: option.get("default") for name, option in _migration.ARGUMENT_SPEC.items()},
                         name="web1", dest_uri=DEST_URI, bandwidth=50, uri=SRC_URI, connect_timeout=10.0)
    made = _migration.MigrationOptions.from_params(module_params)
    assert made == options(bandwidth=50)
    assert made.module_args() == {"name": "web1", "dest_uri": DEST_URI, "bandwidth": 50}
    with pytest.raises(InvalidOption, match="^max_downtime: must be greater than 0"):
        _migration.MigrationOptions.from_params(dict(module_params, max_downtime=0))


def test_flags_default_to_live_peer_to_peer_persistent_move():
    assert _migration.migration_flags(options()) == BASE_FLAGS
    assert _migration.flag_names(options()) == ["live", "peer2peer", "persist_dest", "undefine_source"]


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
    (dict(unsafe=True), libvirt.VIR_MIGRATE_UNSAFE, 0),
    (dict(persist_dest=False), 0, libvirt.VIR_MIGRATE_PERSIST_DEST),
    (dict(undefine_source=False), 0, libvirt.VIR_MIGRATE_UNDEFINE_SOURCE),
])
def test_flags_follow_the_options(overrides, added, removed):
    assert _migration.migration_flags(options(**overrides)) == (BASE_FLAGS | added) & ~removed


def test_postcopy_is_not_enabled_for_a_timeout_action_without_timeout():
    assert not _migration.migration_flags(options(timeout_action="postcopy")) & libvirt.VIR_MIGRATE_POSTCOPY


def test_params_carry_every_given_option_by_libvirt_name():
    typed = _migration.migration_params(options(
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
    assert _migration.migration_params(options()) == {}
    assert _migration.migration_params(options(parallel_connections=3)) == {libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS: 3}


def test_a_parameter_this_libvirt_lacks_is_refused_naming_the_option(monkeypatch):
    monkeypatch.delattr(libvirt, "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL")
    with pytest.raises(InvalidOption, match="^auto_converge_initial: this libvirt-python has no VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL"):
        _migration.migration_params(options(auto_converge=True, auto_converge_initial=10))


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
    run = _migration.Migration(domain, options(**overrides))
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


def test_postcopy_mode_switches_once_qemu_sends_pages(world):
    # Before step 3 QEMU sends nothing; a request at step 2 would have no effect.
    job = FakeJob(steps=None, transfer_from=3)
    run, domain = migration(world, job, mode="postcopy")
    assert job.flags & libvirt.VIR_MIGRATE_POSTCOPY
    assert domain.called("migrateStartPostCopy") == 1
    assert run.postcopy_requested and run.postcopy_started and run.error is None
    assert run.statistics()["mode"] == "postcopy"
    assert [event["event"] for event in run.events] == ["postcopy_requested", "postcopy_started"]
    assert run.events[0]["time_ms"] == 3000


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


def test_a_job_whose_data_stops_moving_is_aborted_as_stalled(world):
    """Data stuck on a dead migration link while the management connection lives: nothing else would end the job."""
    job = FakeJob(steps=None, stall_from=3)
    run, domain = migration(world, job)
    assert run.stalled and not run.aborted and job.aborted
    assert domain.called("abortJob") == 1
    stalled = next(event for event in run.events if event["event"] == "stalled")
    assert stalled == {"time_ms": 33000, "event": "stalled", "seconds": 30.0, "data_processed": 30 * MIB}
    assert run.error.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED
    assert domain.current_state() == "running" and "web1" not in world.dest.domains


def test_a_stall_after_postcopy_started_is_left_alone(world):
    """Post-copy cannot roll back: the monitor does not abort it, whatever the data does."""
    job = FakeJob(steps=None, postcopy_steps=40, stall_from=5)
    run, domain = migration(world, job, mode="postcopy")
    assert not run.stalled and domain.called("abortJob") == 0
    assert run.error is None and "web1" in world.dest.domains


def test_a_failed_control_call_is_noted_once(world):
    job = FakeJob(steps=4)
    domain = guest(world, job)
    domain.fail_on["migrateSetMaxDowntime"] = "monitor busy"
    run = _migration.Migration(domain, options(max_downtime=100))
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
    run = _migration.Migration(domain, options(mode="postcopy"))
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


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("what, kind", [
    ("refused", "down"),
    ("no_route", "unreachable"),
    ("network_unreachable", "unreachable"),
    ("socket_closed", "error"),
])
def test_probe_kind_follows_the_errno_not_the_words(what, kind, language):
    assert _migration.probe_kind(failure(what, language)) == kind


def test_probe_kind_of_other_failures():
    assert _migration.probe_kind(None) == "unreachable", "no answer within the connect timeout"
    assert _migration.probe_kind(libvirt_error("VIR_ERR_SYSTEM_ERROR", "Failed to connect socket to '/run/libvirt/libvirt-sock': "
                                               "No such file or directory", "VIR_FROM_RPC", errno.ENOENT)) == "down"
    assert _migration.probe_kind(libvirt_error("VIR_ERR_AUTH_FAILED", "authentication failed: access denied", "VIR_FROM_RPC")) == "error"
    # The same errno outside the RPC layer is not a socket's.
    assert _migration.probe_kind(libvirt_error("VIR_ERR_SYSTEM_ERROR", "x", "VIR_FROM_QEMU", errno.ECONNREFUSED)) == "error"


@pytest.mark.parametrize("language", LANGUAGES)
def test_probe_reports_how_the_destination_answers(world, monkeypatch, language):
    assert _migration.probe(DEST_URI, 1.0) == ("ok", "")
    refuse_connections(monkeypatch, world.registry, language=language)
    kind, message = _migration.probe(DEST_URI, 1.0)
    assert kind == "unreachable" and message == "cannot connect to libvirt at '%s': %s" % (DEST_URI, MESSAGES[language]["no_route"])


def _seen(what, language, transferring=True, postcopy=False, aborted=False, stalled=False):
    """A finished Migration as classify reads it, failed with libvirt's error ``what``."""
    return SimpleNamespace(error=failure(what, language), transferring=transferring, postcopy_started=postcopy, aborted=aborted,
                           stalled=stalled, options=options(timeout=5.0))


RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED)
POSTCOPY_FAILED = (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)
# (error, how the monitor saw the job, the guest's state on the source, the probe's kind) -> cause, words
CASES = [
    ("socket_closed", dict(postcopy=True), POSTCOPY_FAILED, "down", "postcopy_failed", "cannot roll back to the source"),
    # The monitor missed the switch (the job failed between two polls): the guest's state tells.
    ("postcopy_failed", {}, POSTCOPY_FAILED, "unreachable", "postcopy_failed", "cannot roll back to the source"),
    ("aborted", dict(aborted=True), RUNNING, "ok", "timeout", "did not finish within 5 s and was aborted"),
    # Aborted by someone else: libvirt's reason, not a timeout of this module.
    ("aborted", {}, RUNNING, "ok", "failed", "migration failed: "),
    ("refused", dict(transferring=False), RUNNING, "down", "destination_unreachable", "could not reach %s (dest_uri)" % DEST_URI),
    ("no_route", dict(transferring=False), RUNNING, "ok", "destination_unreachable", "could not reach %s (dest_uri)" % DEST_URI),
    ("socket_closed", {}, RUNNING, "down", "destination_died", "died mid-migration"),
    ("lost_connection", {}, RUNNING, "down", "destination_died", "died mid-migration"),
    # Died after the daemons connected but before the monitor saw pages move: still not a connect failure.
    ("socket_closed", dict(transferring=False), RUNNING, "down", "destination_died", "died mid-migration"),
    ("socket_closed", {}, RUNNING, "unreachable", "link_cut", "link was cut mid-migration"),
    ("lost_connection", {}, RUNNING, "unreachable", "link_cut", "link was cut mid-migration"),
    ("unsupported", dict(transferring=False), RUNNING, "ok", "failed", "migration failed: "),
    ("unsupported", {}, None, "error", "failed", "migration failed: "),
]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("what, seen, state, kind, cause, words", CASES)
def test_classify_in_any_locale(what, seen, state, kind, cause, words, language):
    """The cause comes from libvirt's error code, error domain and errno, the job and the guest's state: the same
    whatever language libvirt's messages are in, which the message only quotes."""
    got_cause, message = _migration.classify(_seen(what, language, **seen), state, (kind, "probe says"))
    assert got_cause == cause and cause in _migration.CAUSES
    assert words in message
    # libvirt's own words are quoted, except for the timeout, whose message says what the module did.
    assert (MESSAGES[language][what] in message) != (cause == "timeout")


SSH_URI = "qemu+ssh://root@198.18.0.12/system?keyfile=/run/arctictern-lab/ssh/id_ed25519&no_tty=1"
# The ssh client ended before libvirt answered: libvirt reports the end of the pipe, whatever ssh met.
SSH_ENDED = libvirt_error("VIR_ERR_SYSTEM_ERROR", "End of file while reading data: virt-ssh-helper: cannot connect to "
                          "'qemu:///system': Input/output error", "VIR_FROM_RPC", errno.EIO)


def fails_with(error):
    """A stand-in for libvirt.open that fails with ``error``."""
    def fake_open(name=None):
        raise error
    return fake_open


@pytest.mark.parametrize("server_answers, kind", [(True, "down"), (False, "unreachable")])
def test_probe_over_ssh_asks_the_ssh_port_whether_the_host_is_up(world, monkeypatch, server_answers, kind):
    asked = []
    monkeypatch.setattr(libvirt, "open", fails_with(SSH_ENDED))
    monkeypatch.setattr(_migration, "tcp_answers", lambda host, port, timeout: asked.append((host, port)) or server_answers)
    assert _migration.probe(SSH_URI, 1.0)[0] == kind
    assert asked == [("198.18.0.12", 22)]


def test_probe_asks_no_port_for_other_transports_or_errors(world, monkeypatch):
    monkeypatch.setattr(_migration, "tcp_answers", lambda *args: pytest.fail("no TCP probe expected"))
    monkeypatch.setattr(libvirt, "open", fails_with(SSH_ENDED))
    assert _migration.probe(DEST_URI, 1.0)[0] == "error", "an end of file over qemu+tcp says nothing about ssh"
    monkeypatch.setattr(libvirt, "open", fails_with(failure("refused")))
    assert _migration.probe(SSH_URI, 1.0)[0] == "down", "the errno already tells"


def test_ssh_endpoint():
    assert _migration.ssh_endpoint(SSH_URI) == ("198.18.0.12", 22)
    assert _migration.ssh_endpoint("qemu+ssh://admin@hv2.example:2222/system") == ("hv2.example", 2222)
    assert _migration.ssh_endpoint(DEST_URI) is None
    assert _migration.ssh_endpoint("qemu:///system") is None


def test_tcp_answers_takes_a_refusal_as_an_answer(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert _migration.tcp_answers("127.0.0.1", server.getsockname()[1], 1.0)
        closed_port = server.getsockname()[1]
    assert _migration.tcp_answers("127.0.0.1", closed_port, 1.0), "refused: the host is there"

    def no_answer(address, timeout):
        raise TimeoutError("timed out")
    monkeypatch.setattr(socket, "create_connection", no_answer)
    assert not _migration.tcp_answers("198.18.1.2", 49152, 1.0)


@pytest.mark.parametrize("overrides, asked", [
    (dict(migrate_uri="tcp://198.18.1.2"), ("198.18.1.2", 49152)),
    (dict(migrate_uri="tcp://198.18.1.2:49200"), ("198.18.1.2", 49200)),
    (dict(migrate_uri="tcp://[fd00::2]"), ("fd00::2", 49152)),
    (dict(), None),
    (dict(migrate_uri="rdma://198.18.1.2"), None),
    # A module on another machine than the source does not send from where the data leaves.
    (dict(migrate_uri="tcp://198.18.1.2", uri="qemu+ssh://root@198.18.0.11/system"), None),
])
def test_data_link_answers_only_where_this_process_can_tell(monkeypatch, overrides, asked):
    calls = []
    monkeypatch.setattr(_migration, "tcp_answers", lambda host, port, timeout: calls.append((host, port)) or True)
    assert _migration.data_link_answers(options(**overrides), 1.0) is (None if asked is None else True)
    assert calls == ([asked] if asked else [])


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("what, seen, kind, data_link, cause, words", [
    # The management connection (dest_uri) is gone while the migration link still answers.
    ("socket_closed", {}, "unreachable", True, "destination_unreachable", "management connection was lost mid-migration"),
    ("socket_closed", {}, "unreachable", False, "link_cut", "link was cut mid-migration"),
    # The monitor aborted a job whose data stopped moving: the data link is dead, whatever dest_uri does.
    ("aborted", dict(stalled=True), "ok", None, "link_cut", "no data moved for 30 s, so the job was aborted; %s still answers" % DEST_URI),
    ("aborted", dict(stalled=True), "unreachable", None, "link_cut", "no data moved for 30 s, so the job was aborted; libvirt"),
    # QEMU's write on the socket the cancel shut down failed first: the job ends failed, not cancelled.
    ("lost_connection", dict(stalled=True), "ok", None, "link_cut", "no data moved for 30 s, so the job was aborted; %s still" % DEST_URI),
])
def test_classify_tells_the_data_link_from_the_management_path(what, seen, kind, data_link, cause, words, language):
    got_cause, message = _migration.classify(_seen(what, language, **seen), RUNNING, (kind, "probe says"), data_link)
    assert (got_cause, cause in _migration.CAUSES) == (cause, True)
    assert words in message and MESSAGES[language][what] in message


def test_source_state(world):
    domain = guest(world)
    assert _migration.source_state(world.src, domain.UUIDString()) == (libvirt.VIR_DOMAIN_RUNNING, 0)
    assert _migration.source_state(world.src, "11111111-2222-3333-4444-555555555555") is None


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
    result = _migration.migrate(options(migrate_uri="tcp://198.18.1.2"))
    assert result["changed"] and result["state"] == "running"
    assert (result["source"]["hostname"], result["destination"]["hostname"]) == ("hv1", "hv2")
    assert result["plan"] == {"flags": ["live", "peer2peer", "persist_dest", "undefine_source"],
                              "parameters": {"migrate_uri": "tcp://198.18.1.2"}}
    assert result["migration"]["mode"] == "precopy" and result["migration"]["iterations"] == 3
    assert result["msg"].startswith("guest 'web1' moved from hv1 to hv2 in ")


def test_migrate_check_mode_moves_nothing(world):
    domain = guest(world)
    result = _migration.migrate(options(), check_mode=True)
    assert result["changed"] and result["msg"] == "guest 'web1' would move from hv1 to hv2"
    assert domain.called("migrateToURI3") == 0 and "web1" not in world.dest.domains


def test_migrate_refuses_a_destination_that_is_the_source_host(world):
    guest(world)
    world.registry.connections["qemu+tcp://198.18.1.1/system"] = world.src
    with pytest.raises(InvalidOption) as caught:
        _migration.migrate(options(dest_uri="qemu+tcp://198.18.1.1/system"))
    assert caught.value.option == "dest_uri" and "reaches the same host as uri (hv1, host UUID %s)" % HV1_UUID in caught.value.msg


@pytest.mark.parametrize("check_mode", [False, True])
def test_migrate_refuses_the_way_back_from_a_newer_qemu_before_anything_moves(world, check_mode):
    """hv1 runs QEMU 10, so its guest got pc-i440fx-10.0 for 'pc'; hv2's QEMU 7.2 offers up to pc-i440fx-7.2."""
    world.src.capabilities = QEMU10_CAPABILITIES
    domain = guest(world)
    with pytest.raises(InvalidOption) as caught:
        _migration.migrate(options(), check_mode=check_mode)
    assert (caught.value.option, caught.value.details["cause"]) == ("dest_uri", "incompatible_destination")
    assert caught.value.msg == ("dest_uri: hv2 cannot run guest 'web1': it runs machine type pc-i440fx-10.0 (x86_64, kvm), "
                                "and the newest pc-i440fx that hv2 offers is pc-i440fx-7.2. Nothing was moved: the guest "
                                "is still running on hv1.")
    assert domain.called("migrateToURI3") == 0 and domain.current_state() == "running" and domain.persistent
    assert "web1" not in world.dest.domains


def test_low_blackout_sets_its_downtime_limit_on_qemu_10(world):
    world.src.hypervisor_version = world.dest.hypervisor_version = 10000013
    job = FakeJob(steps=3)
    guest(world, job)
    result = _migration.migrate(options(profile="low_blackout"))
    assert job.max_downtime == [10] and result["plan"]["max_downtime"] == 10
    assert result["changed"] and "web1" in world.dest.domains


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("older", ["src", "dest"])
def test_low_blackout_is_refused_before_anything_moves_on_an_older_qemu(world, older, check_mode):
    world.src.hypervisor_version = world.dest.hypervisor_version = 10000013
    getattr(world, older).hypervisor_version = 7002022
    domain = guest(world)
    with pytest.raises(InvalidOption) as caught:
        _migration.migrate(options(profile="low_blackout"), check_mode=check_mode)
    host = {"src": "hv1", "dest": "hv2"}[older]
    assert caught.value.msg == ("profile: low_blackout needs QEMU 10.0 or newer on both hosts, and %s runs QEMU 7.2.22: on "
                                "older QEMU its settings broke guests (docs/performance.md). Nothing was moved." % host)
    assert domain.called("migrateToURI3") == 0 and domain.current_state() == "running"
    assert "web1" not in world.dest.domains


def test_low_blackout_and_max_downtime_are_one_or_the_other():
    with pytest.raises(InvalidOption, match=r"^max_downtime: cannot be combined with profile=low_blackout, which sets it \(10 ms\)$"):
        options(profile="low_blackout", max_downtime=50)


def test_low_blackout_sets_a_timeout_unless_the_task_gives_one():
    assert (options(profile="low_blackout").max_downtime, options(profile="low_blackout").timeout) == (10, 60.0)
    assert options(profile="low_blackout", timeout=300).timeout == 300
    # The task the options write (benchmarks and playbooks pass it on) gives the same options again.
    task = options(profile="low_blackout").module_args()
    assert task == {"name": "web1", "dest_uri": DEST_URI, "profile": "low_blackout"}
    assert options(**task) == options(profile="low_blackout")
    assert options(profile="low_blackout", timeout=300).module_args()["timeout"] == 300


def test_the_default_profile_leaves_the_downtime_limit_alone(world):
    job = FakeJob(steps=3)
    guest(world, job)
    result = _migration.migrate(options())
    assert job.max_downtime == [] and "max_downtime" not in result["plan"]


@pytest.mark.parametrize("machine, dest_capabilities, offer", [
    # The newest by version, not by text (pc-i440fx-9.2 sorts after pc-i440fx-10.0).
    ("pc-i440fx-10.1", QEMU10_CAPABILITIES.replace(HV1_UUID, HV2_UUID), "the newest pc-i440fx that hv2 offers is pc-i440fx-10.0"),
    ("microvm", HV2_CAPABILITIES, "hv2 offers no microvm machine type"),
    # A host without KVM offers its machine types to TCG guests only.
    ("pc", QEMU_CAPABILITIES.replace(HV1_UUID, HV2_UUID), "hv2 runs no x86_64 kvm guests"),
])
def test_migrate_says_what_the_destination_offers_instead(world, machine, dest_capabilities, offer):
    world.dest.capabilities = dest_capabilities
    domain = guest(world, machine=machine)
    with pytest.raises(InvalidOption) as caught:
        _migration.migrate(options())
    assert caught.value.details["cause"] == "incompatible_destination"
    assert ", and %s. Nothing was moved" % offer in caught.value.msg
    assert domain.called("migrateToURI3") == 0


@pytest.mark.parametrize("listed", ["as its own entry", "only as the canonical machine of an alias"])
def test_migrate_moves_a_guest_whose_machine_type_the_destination_offers(world, listed):
    """Both ends on QEMU 10; the destination may list pc-i440fx-10.0 only as what its 'pc' stands for."""
    world.src.capabilities = QEMU10_CAPABILITIES
    world.dest.capabilities = QEMU10_CAPABILITIES.replace(HV1_UUID, HV2_UUID)
    if listed != "as its own entry":
        world.dest.capabilities = world.dest.capabilities.replace("<machine maxCpus='255'>pc-i440fx-10.0</machine>", "")
    guest(world, FakeJob(steps=3))
    result = _migration.migrate(options())
    assert result["changed"] and result["state"] == "running"
    assert ET.fromstring(world.dest.domains["web1"].XMLDesc()).find("os/type").get("machine") == "pc-i440fx-10.0"


def test_a_guest_from_an_older_qemu_keeps_its_machine_type_and_may_go_back(world):
    """Started on QEMU 7.2 (hv1), the guest keeps pc-i440fx-7.2 on QEMU 10 (hv2), which hv1 offers: no refusal."""
    world.dest.capabilities = QEMU10_CAPABILITIES.replace(HV1_UUID, HV2_UUID)
    guest(world, FakeJob(steps=3))
    _migration.migrate(options())
    back = _migration.migrate(options(uri=DEST_URI, dest_uri=SRC_URI), check_mode=True)
    assert back["changed"] and back["msg"] == "guest 'web1' would move from hv2 to hv1"


@pytest.mark.parametrize("language", LANGUAGES)
def test_migrate_with_an_unreachable_destination_leaves_the_guest(world, monkeypatch, language):
    domain = guest(world)
    refuse_connections(monkeypatch, world.registry, language=language)
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options())
    assert caught.value.details["cause"] == "destination_unreachable"
    assert caught.value.msg.startswith("dest_uri: destination unreachable: cannot connect to libvirt at '%s'" % DEST_URI)
    assert caught.value.msg.endswith("%s; guest 'web1' was not moved; it is running on the source." % MESSAGES[language]["no_route"])
    assert domain.called("migrateToURI3") == 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_migrate_when_the_source_daemon_cannot_reach_the_destination(world, language):
    domain = guest(world, FakeJob(connect_error=failure("refused", language)))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options())
    assert caught.value.details["cause"] == "destination_unreachable"
    assert "the source daemon could not reach %s (dest_uri): %s" % (DEST_URI, MESSAGES[language]["refused"]) in caught.value.msg
    assert caught.value.msg.endswith("The guest is still running on hv1, its definition intact.")
    assert domain.current_state() == "running"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("fault, refusal, cause, words", [
    ("daemon", "refused", "destination_died", "the destination daemon died mid-migration"),
    ("link", "network_unreachable", "link_cut", "the migration link was cut mid-migration"),
])
def test_migrate_failing_mid_migration_names_the_cause(world, monkeypatch, fault, refusal, cause, words, language):
    """The destination daemon killed (a fresh connection is refused) or the link cut (no route any more), with
    libvirt speaking English or German."""
    domain = guest(world, FakeJob(steps=None, fail_at=3, error=failure("socket_closed", language), language=language,
                                  on_fail=lambda: refuse_connections(monkeypatch, world.registry, refusal, language)))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options())
    details = caught.value.details
    assert (details["cause"], details["source_state"]) == (cause, "running"), fault
    assert details["libvirt_error"] == MESSAGES[language]["socket_closed"]
    assert words in caught.value.msg and MESSAGES[language][refusal] in caught.value.msg
    assert caught.value.msg.endswith("The guest is still running on hv1, its definition intact.")
    assert domain.current_state() == "running" and domain.persistent
    assert details["migration"]["progress"], "what was seen until the failure comes back"


def test_migrate_when_only_the_management_path_is_lost(world, monkeypatch):
    """dest_uri unreachable after the failure, the migration address still answering: not the data link."""
    domain = guest(world, FakeJob(steps=None, fail_at=3, error=failure("socket_closed"),
                                  on_fail=lambda: refuse_connections(monkeypatch, world.registry, "no_route")))
    monkeypatch.setattr(_migration, "tcp_answers", lambda host, port, timeout: (host, port) == ("198.18.1.2", 49152))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options(migrate_uri="tcp://198.18.1.2"))
    assert caught.value.details["cause"] == "destination_unreachable"
    assert "the management connection was lost mid-migration" in caught.value.msg
    assert caught.value.msg.endswith("The guest is still running on hv1, its definition intact.")
    assert domain.current_state() == "running"


def test_migrate_when_the_data_stops_moving(world):
    domain = guest(world, FakeJob(steps=None, stall_from=4))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options(migrate_uri="tcp://198.18.1.2"))
    assert caught.value.details["cause"] == "link_cut"
    assert caught.value.msg.startswith("the migration link was cut mid-migration: no data moved for 30 s, so the job was aborted; "
                                       "%s still answers, so only the migration link failed; libvirt: " % DEST_URI)
    assert caught.value.msg.endswith("The guest is still running on hv1, its definition intact.")
    assert domain.current_state() == "running"


def test_migrate_when_the_destination_daemon_is_gone(world):
    """No daemon at all behind the destination socket any more: also a death."""
    domain = guest(world, FakeJob(steps=None, fail_at=2, error=failure("lost_connection"),
                                  on_fail=lambda: world.registry.connections.pop(DEST_URI)))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options())
    assert caught.value.details["cause"] == "destination_died" and domain.current_state() == "running"


@pytest.mark.parametrize("language", LANGUAGES)
def test_migrate_timeout_abort_fails_with_the_guest_on_the_source(world, language):
    domain = guest(world, FakeJob(steps=None, language=language))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options(timeout=3))
    assert caught.value.details["cause"] == "timeout"
    assert caught.value.details["libvirt_error"] == MESSAGES[language]["aborted"]
    assert caught.value.msg == ("timeout: the migration did not finish within 3 s and was aborted (timeout_action=abort). "
                                "The guest is still running on hv1, its definition intact.")
    assert domain.current_state() == "running"


@pytest.mark.parametrize("language", LANGUAGES)
def test_migrate_postcopy_failure_says_the_guest_cannot_roll_back(world, language):
    guest(world, FakeJob(steps=None, postcopy_fail=True, error=failure("postcopy_failed", language), language=language))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options(mode="postcopy"))
    assert caught.value.details["cause"] == "postcopy_failed" and caught.value.details["source_state"] == "paused"
    assert "post-copy had already started, so the guest cannot roll back to the source" in caught.value.msg
    assert caught.value.msg.endswith("The guest is paused on hv1, its definition intact.")


def test_migrate_uses_events_when_the_source_delivers_them(world, monkeypatch):
    events = FakeEvents(world.src)
    monkeypatch.setattr(_migration, "event_connection", lambda uri, timeout: events)
    completed = {"time_elapsed": 700, "downtime": 80, "memory_iteration": 2}
    add_migrating(world.src, FakeJob(steps=2, stats=completed), world.clock, world.hosts, events=events)
    result = _migration.migrate(options())
    assert result["migration"]["statistics_from"] == "job_completed_event" and result["migration"]["downtime_ms"] == 80
    assert events.closed and events.callbacks == {}


def test_migrate_reads_the_destination_record_without_events(world):
    guest(world, FakeJob(steps=2, stats={"type": libvirt.VIR_DOMAIN_JOB_COMPLETED, "downtime": 55, "time_elapsed": 650}))
    result = _migration.migrate(options())
    assert result["migration"]["statistics_from"] == "destination" and result["migration"]["downtime_ms"] == 55


# ---------------------------------------------------------------------------------------------------------
# Verifying the guest after the switch


def test_migrate_verifies_the_guest_on_the_destination(world):
    domain = guest(world, FakeJob(steps=2), agent_channel=True)
    domain.agent = FakeAgent(answers_after=2)
    result = _migration.migrate(options(verify={"agent": True, "timeout": 30}))
    assert result["changed"] and result["verify"]["agent"] == {
        "passed": True, "attempts": 3, "seconds": 2.0, "last_error": "Guest agent is not responding: QEMU guest agent is not connected"}
    assert result["plan"]["verify"] == {"agent": True, "tcp": None, "http": None, "timeout": 30}
    assert world.dest.domains["web1"].called("qemuAgentCommand") == 3, "the guest is pinged where it arrived"


def test_migrate_fails_a_guest_that_does_not_answer_and_leaves_it(world, tmp_path):
    log = tmp_path / "web1-serial0.log"
    log.write_text("".join("boot %d\n" % number for number in range(60)) + "Kernel panic - not syncing: VFS\n")
    domain = guest(world, FakeJob(steps=2), agent_channel=True, serial_log=str(log))
    domain.agent = FakeAgent(answers_after=None, silent=True, clock=world.clock)
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options(verify={"agent": True, "timeout": 8}))
    details = caught.value.details
    assert details["cause"] == "guest_unhealthy" and details["changed"] is True and details["state"] == "running"
    assert details["verify"]["agent"]["passed"] is False and details["verify"]["agent"]["attempts"] == 2
    assert details["serial_tail"]["path"] == str(log) and details["serial_tail"]["lines"][-1] == "Kernel panic - not syncing: VFS"
    assert len(details["serial_tail"]["lines"]) == 40 and details["migration"]["mode"] == "precopy"
    assert caught.value.msg.startswith("guest 'web1' moved from hv1 to hv2 in ")
    assert ", but it failed verification: guest agent (guest-ping) failed 2 attempts within 8 s, last: Guest agent is not responding" in caught.value.msg
    assert caught.value.msg.endswith("It is left where it is: running on hv2.")
    assert world.dest.domains["web1"].current_state() == "running" and "web1" not in world.src.domains, "not moved back"


def test_migrate_refuses_the_agent_check_for_a_guest_without_its_channel(world):
    domain = guest(world, FakeJob(steps=2))
    with pytest.raises(InvalidOption) as caught:
        _migration.migrate(options(verify={"agent": True}))
    assert caught.value.option == "verify.agent" and "guest 'web1' on hv1 has no QEMU guest agent channel" in caught.value.msg
    assert domain.called("migrateToURI3") == 0


def test_a_second_run_verifies_the_guest_again(world):
    """A guest that failed its checks must not become a success by running the task again."""
    guest(world, FakeJob(steps=2), agent_channel=True)
    with pytest.raises(VirtError):
        _migration.migrate(options(verify={"agent": True, "timeout": 2}))
    with pytest.raises(VirtError) as caught:
        _migration.migrate(options(verify={"agent": True, "timeout": 2}))
    assert caught.value.details["cause"] == "guest_unhealthy" and caught.value.details["changed"] is False
    assert caught.value.msg.startswith("guest 'web1' already runs on hv2, but it failed verification: ")
    assert caught.value.details["serial_tail"]["error"].startswith("the guest logs no serial console to a file")
    world.dest.domains["web1"].agent = FakeAgent()
    again = _migration.migrate(options(verify={"agent": True}))
    assert not again["changed"] and again["verify"]["agent"]["passed"]


def test_migrate_check_mode_plans_the_checks_and_runs_none(world):
    domain = guest(world, agent_channel=True)
    domain.agent = FakeAgent()
    result = _migration.migrate(options(verify={"agent": True, "tcp": "192.0.2.10:22"}), check_mode=True)
    assert result["plan"]["verify"]["tcp"] == "192.0.2.10:22" and "verify" not in result
    assert domain.called("qemuAgentCommand") == 0 and domain.called("migrateToURI3") == 0


def test_verify_is_a_dict_option_with_suboptions():
    assert _migration.ARGUMENT_SPEC["verify"] == {"type": "dict", "options": {
        "agent": {"type": "bool", "default": False}, "tcp": {"type": "str"}, "http": {"type": "str"},
        "timeout": {"type": "float", "default": 60.0}}}
    made = options(verify={"tcp": "192.0.2.10:22"})
    assert made.module_args()["verify"] == {"agent": False, "tcp": "192.0.2.10:22", "http": None, "timeout": 60.0}
    assert "guest_unhealthy" in _migration.CAUSES
    with pytest.raises(InvalidOption, match="^verify.http: "):
        options(verify={"http": "web1/health"})


# ---------------------------------------------------------------------------------------------------------
# The fake refuses what libvirt 9.0 refuses


def _libvirt_refuses(call, code, words):
    with pytest.raises(libvirt.libvirtError) as caught:
        call()
    assert caught.value.get_error_code() == getattr(libvirt, code) and words in caught.value.get_error_message()


@pytest.mark.parametrize("dest_uri, typed, flags, code, words", [
    (DEST_URI, {}, BASE_FLAGS | 1 << 30, "VIR_ERR_INVALID_ARG", "unsupported flags (0x40000000)"),
    (DEST_URI, {"bandwidth.precopy": 5}, BASE_FLAGS, "VIR_ERR_ARGUMENT_UNSUPPORTED", "parameter 'bandwidth.precopy' not supported"),
    (DEST_URI, {}, BASE_FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_DISK | libvirt.VIR_MIGRATE_NON_SHARED_INC, "VIR_ERR_INVALID_ARG",
     "mutually exclusive"),
    (DEST_URI, {}, BASE_FLAGS & ~libvirt.VIR_MIGRATE_PEER2PEER, "VIR_ERR_ARGUMENT_UNSUPPORTED", "direct migration is not supported"),
    ("qemu:///system", {}, BASE_FLAGS, "VIR_ERR_INVALID_ARG", "Attempt to migrate guest to the same host"),
    ("qemu+tcp://localhost/system", {}, BASE_FLAGS, "VIR_ERR_INVALID_ARG", "Attempt to migrate guest to the same host"),
])
def test_the_fake_refuses_bad_migration_calls(world, dest_uri, typed, flags, code, words):
    domain = guest(world)
    _libvirt_refuses(lambda: domain.migrateToURI3(dest_uri, typed, flags), code, words)
    assert domain.current_state() == "running" and "web1" not in world.dest.domains


def test_the_fake_refuses_a_machine_type_the_destination_lacks(world):
    world.src.capabilities = QEMU10_CAPABILITIES
    domain = guest(world)
    _libvirt_refuses(lambda: domain.migrateToURI3(DEST_URI, {}, BASE_FLAGS), "VIR_ERR_CONFIG_UNSUPPORTED",
                     "does not support machine type 'pc-i440fx-10.0'")
    assert domain.current_state() == "running" and "web1" not in world.dest.domains


def test_the_fake_refuses_bad_migrate3_calls(world):
    domain = guest(world)
    _libvirt_refuses(lambda: domain.migrate3(world.dest, {}, BASE_FLAGS | 1 << 30), "VIR_ERR_INVALID_ARG", "unsupported flags")
    _libvirt_refuses(lambda: domain.migrate3(world.dest, {"bogus": 1}, BASE_FLAGS), "VIR_ERR_ARGUMENT_UNSUPPORTED", "'bogus'")
    assert domain.current_state() == "running"


@pytest.mark.parametrize("typed, problem", [
    ({libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: "100"}, "an integer is required"),
    ({libvirt.VIR_MIGRATE_PARAM_URI: 5}, "bad argument type"),
])
def test_the_fake_converts_parameters_like_the_binding(world, typed, problem):
    with pytest.raises(TypeError, match=problem):
        guest(world).migrateToURI3(DEST_URI, typed, BASE_FLAGS)


@pytest.mark.parametrize("call", [
    lambda domain: domain.migrateToURI3(DEST_URI, {}, BASE_FLAGS),
    lambda domain: domain.jobStats(),
    lambda domain: domain.abortJob(),
    lambda domain: domain.migrateStartPostCopy(0),
    lambda domain: domain.migrateSetMaxDowntime(300, 0),
])
def test_the_fake_refuses_job_calls_on_a_guest_that_does_not_run(world, call):
    _libvirt_refuses(lambda: call(guest(world, state="shutoff")), "VIR_ERR_OPERATION_INVALID", "domain is not running")


def _in_flight(domain, call):
    """Start ``call``, a migration of ``domain``, in a thread; the thread, once the job runs."""
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    while not domain.job.active:
        time.sleep(0.001)
    return worker


def test_the_fake_refuses_job_control_without_a_job(world):
    domain = guest(world)
    _libvirt_refuses(domain.abortJob, "VIR_ERR_OPERATION_INVALID", "no job is active on the domain")
    _libvirt_refuses(lambda: domain.migrateStartPostCopy(0), "VIR_ERR_OPERATION_INVALID", "while outgoing migration is in progress")
    assert domain.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED) == {"type": libvirt.VIR_DOMAIN_JOB_NONE}


def test_the_fake_refuses_postcopy_without_the_flag(world):
    domain = guest(world, FakeJob(steps=None))
    worker = _in_flight(domain, lambda: domain.migrateToURI3(DEST_URI, {}, BASE_FLAGS))
    domain.jobStats()
    _libvirt_refuses(lambda: domain.migrateStartPostCopy(0), "VIR_ERR_OPERATION_INVALID",
                     "requires migration to be started with VIR_MIGRATE_POSTCOPY flag")
    domain.job.finish("done")
    worker.join(5)


def test_every_option_makes_a_call_libvirt_takes(world):
    """The flags and typed parameters of the options pass the fake's checks, which are libvirt's."""
    for chosen in (dict(mode="auto", postcopy_bandwidth=100, auto_converge=True, auto_converge_initial=20, auto_converge_increment=5,
                        bandwidth=50, compression="xbzrle", migrate_uri="tcp://198.18.1.2", tls=True, copy_storage="inc"),
                   dict(parallel_connections=4, copy_storage="all", persist_dest=False, undefine_source=False)):
        run, _domain = migration(world, FakeJob(steps=2), **chosen)
        assert run.error is None, chosen
        world.dest.domains.clear()


def test_migrate3_moves_the_guest_to_the_connection(world):
    domain = guest(world, FakeJob(steps=1))
    moved = []
    worker = _in_flight(domain, lambda: moved.append(domain.migrate3(world.dest, {}, BASE_FLAGS)))
    domain.jobStats()
    worker.join(5)
    assert moved == [world.dest.domains["web1"]] and domain.current_state() == "shutoff"
