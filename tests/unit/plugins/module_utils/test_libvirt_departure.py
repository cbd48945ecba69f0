# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_libvirt.wait_for_departure: when a guest counts as gone from its host (what tunnel's wait_for_departure waits for)."""

from __future__ import annotations

import threading
import time

import libvirt

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._guest_data import domain_xml, place_guest

URI = "qemu:///system"
MIGRATING = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "operation": 3}


def test_a_guest_that_is_not_here_has_left(fake_conn):
    assert _libvirt.wait_for_departure(URI, "elsewhere", timeout=1) is None


def test_paused_for_the_switch_over_counts_as_left(fake_conn):
    domain = place_guest(fake_conn, domain_xml("web1"), state="paused", job=MIGRATING)
    domain.reason = libvirt.VIR_DOMAIN_PAUSED_MIGRATION
    assert _libvirt.wait_for_departure(URI, "web1", timeout=1) is None


def test_paused_by_the_user_does_not(fake_conn):
    domain = place_guest(fake_conn, domain_xml("web1"), state="paused", job=MIGRATING)
    domain.reason = libvirt.VIR_DOMAIN_PAUSED_USER
    assert "after 0.2 s" in _libvirt.wait_for_departure(URI, "web1", timeout=0.2)


def test_returns_the_moment_the_guest_stops_running_here(fake_conn):
    domain = place_guest(fake_conn, domain_xml("web1"), job=MIGRATING)
    threading.Timer(0.3, domain._set_state, ("shutoff",)).start()  # pylint: disable=protected-access
    started = time.monotonic()
    assert _libvirt.wait_for_departure(URI, "web1", timeout=5) is None
    assert 0.25 <= time.monotonic() - started < 1.0


def test_gives_up_when_no_migration_job_runs(fake_conn):
    place_guest(fake_conn, domain_xml("web1"), job=None)
    started = time.monotonic()
    reason = _libvirt.wait_for_departure(URI, "web1", timeout=30, job_timeout=0.3)
    assert reason == "it still runs here and no migration job has run for 0.3 s"
    assert time.monotonic() - started < 2
