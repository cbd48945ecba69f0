# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate module end to end over fake libvirt: results, check mode, diff, idempotence and clear failures."""

from __future__ import annotations

import socket

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.modules import migrate
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import QEMU10_CAPABILITIES, FakeAgent, libvirt_error
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._migration_fakes import (
    DEST_URI, FakeJob, add_migrating, migration_world)
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson


@pytest.fixture(name="hosts")
def fixture_hosts(fake_libvirt, monkeypatch):
    world = migration_world(fake_libvirt, monkeypatch)

    def add(job=None, **kwargs):
        return add_migrating(world.src, job or FakeJob(), world.clock, world.hosts, **kwargs)

    world.src.add_guest = add
    return world.src, world.dest, fake_libvirt


def fails(run_module, args, **kwargs):
    with pytest.raises(AnsibleFailJson) as caught:
        run_module(migrate.main, args, **kwargs)
    return caught.value.result


def test_migrates_with_diff_and_statistics(hosts, run_module):
    src, dest, _registry = hosts
    src.add_guest(FakeJob(steps=3))
    result = run_module(migrate.main, {"name": "web1", "dest_uri": DEST_URI, "migrate_uri": "tcp://198.18.1.2",
                                       "max_downtime": 250}, diff=True)
    assert result["changed"] and result["state"] == "running"
    assert result["diff"] == {"before": {"name": "web1", "host": "hv1"}, "after": {"name": "web1", "host": "hv2"}}
    assert result["migration"]["mode"] == "precopy" and len(result["migration"]["progress"]) == 3
    assert {"event": "max_downtime", "ms": 250}.items() <= result["migration"]["events"][0].items()
    assert "web1" not in src.domains and dest.domains["web1"].current_state() == "running"


def test_check_mode_reports_the_move_and_moves_nothing(hosts, run_module):
    src, dest, _registry = hosts
    domain = src.add_guest()
    result = run_module(migrate.main, {"name": "web1", "dest_uri": DEST_URI, "mode": "postcopy"}, check_mode=True, diff=True)
    assert result["changed"] and result["diff"]["after"]["host"] == "hv2"
    assert "postcopy" in result["plan"]["flags"] and "migration" not in result
    assert domain.called("migrateToURI3") == 0 and "web1" not in dest.domains


def test_second_run_changes_nothing(hosts, run_module):
    src, _dest, _registry = hosts
    src.add_guest()
    run_module(migrate.main, {"name": "web1", "dest_uri": DEST_URI})
    again = run_module(migrate.main, {"name": "web1", "dest_uri": DEST_URI}, diff=True)
    assert not again["changed"] and "diff" not in again
    assert again["msg"] == "guest 'web1' already runs on hv2"


@pytest.mark.parametrize("args, option, words", [
    ({"name": "nosuch"}, "name", "no guest named 'nosuch' on hv1"),
    ({"bandwidth": -10}, "bandwidth", "must be greater than 0, got -10"),
    ({"mode": "auto", "parallel_connections": 2}, "parallel_connections", "post-copy"),
])
def test_bad_input_fails_naming_the_option(hosts, run_module, args, option, words):
    src, _dest, _registry = hosts
    domain = src.add_guest()
    result = fails(run_module, dict({"name": "web1", "dest_uri": DEST_URI}, **args))
    assert result["msg"].startswith(option + ": ") and words in result["msg"]
    assert domain.called("migrateToURI3") == 0


def test_options_are_checked_before_any_connection(hosts, run_module):
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI, "postcopy_bandwidth": 100})
    assert result["msg"].startswith("postcopy_bandwidth: only applies when the job can switch to post-copy")
    assert hosts[2].opened == []


def test_unknown_mode_is_refused_by_the_argument_spec(hosts, run_module):
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI, "mode": "turbo"})
    assert "mode" in result["msg"] and "precopy, postcopy, auto" in result["msg"]
    assert hosts[2].opened == []


def test_destination_that_is_the_source_host_is_refused(hosts, run_module):
    src, _dest, registry = hosts
    src.add_guest()
    registry.connections["qemu+tcp://198.18.1.1/system"] = src
    result = fails(run_module, {"name": "web1", "dest_uri": "qemu+tcp://198.18.1.1/system"})
    assert result["msg"].startswith("dest_uri: 'qemu+tcp://198.18.1.1/system' reaches the same host as uri (hv1")


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_destination_without_the_guests_machine_type_is_refused_in_check_mode_too(hosts, run_module, check_mode):
    src, dest, _registry = hosts
    src.capabilities = QEMU10_CAPABILITIES
    domain = src.add_guest()
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI}, check_mode=check_mode)
    assert result["cause"] == "incompatible_destination"
    assert result["msg"].startswith("dest_uri: hv2 cannot run guest 'web1': it runs machine type pc-i440fx-10.0 (x86_64, kvm), "
                                    "and the newest pc-i440fx that hv2 offers is pc-i440fx-7.2.")
    assert domain.called("migrateToURI3") == 0 and domain.current_state() == "running" and "web1" not in dest.domains


def test_unreachable_destination_fails_with_the_cause(hosts, run_module):
    src, _dest, _registry = hosts
    domain = src.add_guest()
    result = fails(run_module, {"name": "web1", "dest_uri": "qemu+tcp://198.18.1.99/system"})
    assert result["cause"] == "destination_unreachable"
    assert result["msg"].startswith("dest_uri: destination unreachable: cannot connect to libvirt at 'qemu+tcp://198.18.1.99/system'")
    assert domain.current_state() == "running"


def test_failed_migration_returns_cause_state_and_progress(hosts, run_module):
    src, _dest, registry = hosts

    def kill_destination():
        registry.connections.pop(DEST_URI)

    domain = src.add_guest(FakeJob(steps=None, fail_at=2, on_fail=kill_destination,
                                   error=libvirt_error("VIR_ERR_INTERNAL_ERROR", "internal error: client socket is closed")))
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI})
    assert result["cause"] == "destination_died" and result["source_state"] == "running"
    assert result["libvirt_error"] == "internal error: client socket is closed"
    assert result["msg"].endswith("The guest is still running on hv1, its definition intact.")
    assert result["migration"]["progress"][0]["data_processed"] > 0
    assert domain.current_state() == "running"


def test_timeout_with_abort(hosts, run_module):
    src, _dest, _registry = hosts
    domain = src.add_guest(FakeJob(steps=None))
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI, "timeout": 5, "bandwidth": 1})
    assert result["cause"] == "timeout"
    assert result["msg"].startswith("timeout: the migration did not finish within 5 s and was aborted")
    assert domain.called("abortJob") == 1 and domain.current_state() == "running"
    assert domain.job.params == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 1}


def test_verify_passes_with_the_agent_and_a_tcp_port(hosts, run_module):
    src, _dest, _registry = hosts
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        src.add_guest(FakeJob(steps=2), agent_channel=True).agent = FakeAgent()
        tcp = "127.0.0.1:%d" % server.getsockname()[1]
        result = run_module(migrate.main, {"name": "web1", "dest_uri": DEST_URI, "verify": {"agent": True, "tcp": tcp}})
    finally:
        server.close()
    assert result["changed"] and set(result["verify"]) == {"agent", "tcp"}
    assert all(check["passed"] and check["attempts"] == 1 for check in result["verify"].values())


def test_verify_failure_fails_the_task_with_the_guest_left_on_the_destination(hosts, run_module, tmp_path):
    src, dest, _registry = hosts
    log = tmp_path / "web1.log"
    log.write_text("web1 login: \n")
    src.add_guest(FakeJob(steps=2), serial_log=str(log))
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    url = "http://127.0.0.1:%d/" % free.getsockname()[1]
    free.close()
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI, "verify": {"http": url, "timeout": 2}})
    assert result["failed"] and result["changed"] and result["cause"] == "guest_unhealthy"
    assert result["verify"]["http"]["last_error"] == "GET %s: Connection refused" % url
    assert result["serial_tail"] == {"path": str(log), "lines": ["web1 login: "], "error": None}
    assert result["msg"].endswith("It is left where it is: running on hv2.") and "web1" in dest.domains


@pytest.mark.parametrize("verify, option, words", [
    ({"tcp": "198.51.100.10"}, "verify.tcp", "is not host:port"),
    ({"http": "gopher://198.51.100.10/"}, "verify.http", "http:// or https://"),
    ({"agent": True, "timeout": -1}, "verify.timeout", "greater than 0"),
    ({"timeout": 5}, "verify", "names no check"),
    ({"agent": True}, "verify.agent", "has no QEMU guest agent channel"),
])
def test_bad_verify_fails_naming_the_suboption(hosts, run_module, verify, option, words):
    src, _dest, _registry = hosts
    domain = src.add_guest()
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI, "verify": verify})
    assert result["msg"].startswith(option + ": ") and words in result["msg"]
    assert domain.called("migrateToURI3") == 0


def test_verify_suboptions_are_checked_by_the_argument_spec(hosts, run_module):
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI, "verify": {"agent": "maybe"}})
    assert "agent" in result["msg"] and hosts[2].opened == []
    result = fails(run_module, {"name": "web1", "dest_uri": DEST_URI, "verify": {"ping": True}})
    assert "ping" in result["msg"] and hosts[2].opened == []


def test_check_mode_plans_the_checks(hosts, run_module):
    src, _dest, _registry = hosts
    domain = src.add_guest(agent_channel=True)
    result = run_module(migrate.main, {"name": "web1", "dest_uri": DEST_URI, "verify": {"agent": True}}, check_mode=True)
    assert result["changed"] and result["plan"]["verify"]["agent"] is True and "verify" not in result
    assert domain.called("migrateToURI3") == 0
