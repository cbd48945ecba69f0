# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A migrating guest for the tests of _migration and the migrate module, on top of tests/unit/fake_libvirt.py.

``FakeJob`` scripts one migration: every jobStats() poll of the source domain advances it one step and moves a
``FakeClock`` one second, so time-based decisions (post-copy after N s, timeouts) are exact and fast. The worker
thread of the Migration waits in migrateToURI3 until the script ends the job (converged, switched to post-copy,
aborted, failed at a step), then returns or raises like libvirt.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import libvirt

from ansible_collections.arctictern.virt.plugins.module_utils import _migration
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import KVM_CAPABILITIES, FakeDomain, libvirt_error

MIB = 1024 * 1024
HV1_UUID = "6c1c6d4e-3f0a-4b8e-9a52-2f4c1a0d9b11"
HV2_UUID = "7d2d7e5f-4a1b-4c9f-8b63-3a5d2b1e0c22"
HV2_CAPABILITIES = KVM_CAPABILITIES.replace(HV1_UUID, HV2_UUID)
SRC_URI = "qemu:///system"
DEST_URI = "qemu+tcp://198.18.1.2/system"
PAUSED_POSTCOPY = 12
PAUSED_POSTCOPY_FAILED = 13
SUSPENDED_POSTCOPY = 7


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class FakeJob:  # pylint: disable=too-many-instance-attributes
    """How a migration goes.

    steps: polls until pre-copy converges (None: never); transfer_from: first step at which QEMU sends pages
    (before it, migrateStartPostCopy is refused like QEMU does); postcopy_steps: polls the post-copy phase lasts;
    fail_at: step at which the job fails with ``error``, and ``on_fail`` runs then (e.g. to take the destination
    daemon away); postcopy_fail: the post-copy phase fails too; connect_error: migrateToURI3 fails at once, as when
    the source daemon cannot reach the destination; stats: the completed job's statistics."""

    def __init__(self, steps=3, transfer_from=1, postcopy_steps=0, fail_at=None, error=None, on_fail=None,
                 postcopy_fail=False, connect_error=None, stats=None):
        self.steps = steps
        self.transfer_from = transfer_from
        self.postcopy_steps = postcopy_steps
        self.postcopy_at = None
        self.fail_at = fail_at
        self.error = error
        self.on_fail = on_fail
        self.postcopy_fail = postcopy_fail
        self.connect_error = connect_error
        self.completed_stats = stats
        self.step = 0
        self.active = False
        self.postcopy = False
        self.suspended = False
        self.aborted = False
        self.flags = None
        self.params = None
        self.dest_uri = None
        self.max_downtime = []
        self.finished = threading.Event()
        self.outcome = None

    def finish(self, outcome):
        self.outcome = outcome
        self.finished.set()


class FakeEvents:
    """The event connection: keeps the callbacks, ``emit`` delivers an event like libvirt's event loop."""

    def __init__(self, source):
        self.source = source
        self.callbacks = {}
        self.closed = False

    def lookupByUUIDString(self, uuid):  # noqa: N802
        return self.source.lookupByUUIDString(uuid)

    def domainEventRegisterAny(self, domain, event_id, callback, opaque):  # noqa: N802
        self.callbacks[event_id] = (domain, callback, opaque)
        return event_id

    def domainEventDeregisterAny(self, callback_id):  # noqa: N802
        self.callbacks.pop(callback_id)

    def emit(self, event_id, *args):
        if event_id in self.callbacks:
            domain, callback, opaque = self.callbacks[event_id]
            callback(self, domain, *args, opaque)

    def close(self):
        self.closed = True


class MigratingDomain(FakeDomain):
    """A running guest that can be migrated to the hosts in ``self.hosts`` (dest URI -> FakeConnection)."""

    def __init__(self, conn, xml, job, clock, hosts, events=None):
        super().__init__(conn, xml)
        self.job = job
        self.clock = clock
        self.hosts = hosts
        self.events = events
        # What libvirt keeps of the last incoming job (jobStats with VIR_DOMAIN_JOB_STATS_COMPLETED).
        self.completed_stats = None

    # the job ----------------------------------------------------------------------------------------------
    def migrateToURI3(self, dest_uri, params, flags):  # noqa: N802
        self._enter("migrateToURI3", dest_uri, params, flags)
        job = self.job
        job.dest_uri, job.params, job.flags = dest_uri, dict(params), flags
        if job.connect_error is not None:
            raise job.connect_error
        job.active = True
        if not job.finished.wait(10):
            job.active = False
            raise libvirt_error("VIR_ERR_INTERNAL_ERROR", "fake job never ended")
        job.active = False
        if job.outcome != "done":
            raise job.outcome
        self._arrive(dest_uri, flags)
        return 0

    def _arrive(self, dest_uri, flags):
        """The guest now runs on the destination; the source keeps or loses its definition."""
        dest = self.hosts[dest_uri]
        arrived = MigratingDomain(dest, self.xml, FakeJob(), self.clock, self.hosts)
        arrived.persistent = bool(flags & libvirt.VIR_MIGRATE_PERSIST_DEST)
        arrived.completed_stats = self.job.completed_stats
        dest.domains[arrived.name()] = arrived
        arrived._set_state("running")  # pylint: disable=protected-access
        if self.events is not None and self.job.completed_stats is not None:
            self.events.emit(libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, dict(self.job.completed_stats))
        self.reason = 0
        if flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE or not self.persistent:
            self.conn.domains.pop(self.name(), None)
        self._state = "shutoff"

    def jobStats(self, flags=0):  # noqa: N802
        self._enter("jobStats", flags)
        job = self.job
        if flags & libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return dict(self.completed_stats or {"type": libvirt.VIR_DOMAIN_JOB_NONE})
        if not job.active or job.finished.is_set():
            return {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        job.step += 1
        self.clock.advance(1.0)
        iteration = 0 if job.step < job.transfer_from else job.step - job.transfer_from + 1
        stats = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "time_elapsed": job.step * 1000, "data_total": 128 * MIB,
                 "data_processed": iteration * 10 * MIB, "data_remaining": 128 * MIB - iteration * 10 * MIB,
                 "memory_iteration": iteration, "memory_dirty_rate": 500}
        if job.fail_at is not None and job.step >= job.fail_at:
            if job.on_fail is not None:
                job.on_fail()
            if job.postcopy:
                self._state, self.reason = "paused", PAUSED_POSTCOPY_FAILED
            job.finish(job.error)
        elif (job.postcopy and job.step >= job.postcopy_at + job.postcopy_steps) or job.suspended or (
                job.steps is not None and job.step >= job.steps):
            job.finish("done")
        return stats

    def abortJob(self):  # noqa: N802
        self._enter("abortJob")
        if self.job.postcopy:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: cannot abort migration in post-copy mode")
        self.job.aborted = True
        self.job.finish(libvirt_error("VIR_ERR_OPERATION_ABORTED", "operation aborted: job 'migration out' canceled by client"))
        return 0

    def migrateStartPostCopy(self, flags=0):  # noqa: N802
        self._enter("migrateStartPostCopy", flags)
        job = self.job
        if not job.flags & libvirt.VIR_MIGRATE_POSTCOPY or job.step < job.transfer_from:
            raise libvirt_error("VIR_ERR_INTERNAL_ERROR", "unable to execute QEMU command 'migrate-start-postcopy': Enable postcopy "
                                "with migrate_set_capability before the start of migration")
        job.postcopy = True
        job.postcopy_at = job.step
        self._state, self.reason = "paused", PAUSED_POSTCOPY
        if self.events is not None:
            self.events.emit(libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, libvirt.VIR_DOMAIN_EVENT_SUSPENDED, SUSPENDED_POSTCOPY)
        if job.postcopy_fail:
            job.fail_at = job.step + 1
        return 0

    def migrateSetMaxDowntime(self, downtime, flags=0):  # noqa: N802
        self._enter("migrateSetMaxDowntime", downtime, flags)
        if not self.job.active:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: domain is not being migrated")
        self.job.max_downtime.append(downtime)
        return 0

    def suspend(self):
        result = super().suspend()
        self.job.suspended = True
        return result


def domain_xml(name="web1", uuid="0b8e3b9c-2f7a-4d0e-9a51-6b7c1d2e3f40", memory_mib=128):
    root = ET.Element("domain", type="kvm")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "uuid").text = uuid
    ET.SubElement(root, "memory", unit="KiB").text = str(memory_mib * 1024)
    ET.SubElement(root, "vcpu").text = "1"
    os_element = ET.SubElement(root, "os")
    ET.SubElement(os_element, "type", arch="x86_64", machine="pc").text = "hvm"
    return ET.tostring(root, encoding="unicode")


def add_migrating(conn, job, clock, hosts, name="web1", state="running", events=None, **xml):
    """A MigratingDomain on ``conn``, as if defined and started earlier."""
    domain = MigratingDomain(conn, conn._normalize(domain_xml(name, **xml)), job, clock, hosts, events)  # pylint: disable=protected-access
    conn.domains[domain.name()] = domain
    domain._set_state(state)  # pylint: disable=protected-access
    return domain


def params(**overrides):
    """The migrate module's options with their defaults, as module.params has them."""
    base = dict(name="web1", dest_uri=DEST_URI, migrate_uri=None, mode="precopy", postcopy_after=10.0,
                postcopy_after_iterations=None, auto_converge=False, auto_converge_initial=None,
                auto_converge_increment=None, bandwidth=None, postcopy_bandwidth=None, max_downtime=None,
                compression="none", parallel_connections=None, tls=False, persist_dest=True, undefine_source=True,
                copy_storage="none", timeout=None, timeout_action="abort", uri=SRC_URI, connect_timeout=10.0)
    base.update(overrides)
    return base


def migration_world(fake_libvirt, monkeypatch):
    """hv1 (source, SRC_URI) and hv2 (destination) with distinct host UUIDs, a fake clock and no events."""
    clock = FakeClock()
    monkeypatch.setattr(_migration, "CLOCK", clock)
    monkeypatch.setattr(_migration, "POLL_INTERVAL", 0.001)
    monkeypatch.setattr(_migration, "event_connection", lambda uri, timeout: None)
    src = fake_libvirt.add(SRC_URI, hostname="hv1")
    dest = fake_libvirt.add(DEST_URI, capabilities=HV2_CAPABILITIES, hostname="hv2")
    return SimpleNamespace(registry=fake_libvirt, src=src, dest=dest, clock=clock, hosts={DEST_URI: dest})
