# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A migrating guest for the tests of _migration and the migrate module, on top of tests/unit/fake_libvirt.py.

``FakeJob`` scripts one migration: every jobStats() poll of the source domain advances it one step and moves a
``FakeClock`` one second, so time-based decisions (post-copy after N s, timeouts) are exact and fast. The worker
thread of the Migration waits in migrateToURI3 until the script ends the job (converged, switched to post-copy,
aborted, failed at a step), then returns or raises like libvirt. The calls refuse, with libvirt's error codes,
what libvirt 9.0's QEMU driver refuses: unknown flags and typed parameters, a local destination, an inactive guest,
a machine type the destination lacks.

libvirt's messages come in two locales (``MESSAGES``): what the module decides from a failure must not depend on them.
"""

from __future__ import annotations

import errno
import threading
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from urllib.parse import urlsplit

import libvirt
import libvirt_qemu

from ansible_collections.arctictern.virt.plugins.module_utils import _migration, _verify
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import KVM_CAPABILITIES, FakeDomain, libvirt_error, qemu_agent_command

MIB = 1024 * 1024
HV1_UUID = "6c1c6d4e-3f0a-4b8e-9a52-2f4c1a0d9b11"
HV2_UUID = "7d2d7e5f-4a1b-4c9f-8b63-3a5d2b1e0c22"
HV2_CAPABILITIES = KVM_CAPABILITIES.replace(HV1_UUID, HV2_UUID)
SRC_URI = "qemu:///system"
DEST_URI = "qemu+tcp://198.18.1.2/system"
PAUSED_POSTCOPY = 12
PAUSED_POSTCOPY_FAILED = 13
SUSPENDED_POSTCOPY = 7

# Every virDomainMigrateFlags bit: libvirt 9.0's QEMU driver takes all that this libvirt-python knows.
MIGRATION_FLAGS = sum(value for name, value in vars(libvirt).items()
                      if name.startswith("VIR_MIGRATE_") and not name.startswith("VIR_MIGRATE_PARAM_"))
# The typed parameters libvirt 9.0's QEMU driver takes, with the Python type the binding converts each from.
MIGRATION_PARAM_TYPES = {name: str for name in (
    libvirt.VIR_MIGRATE_PARAM_URI, libvirt.VIR_MIGRATE_PARAM_DEST_NAME, libvirt.VIR_MIGRATE_PARAM_DEST_XML,
    libvirt.VIR_MIGRATE_PARAM_PERSIST_XML, libvirt.VIR_MIGRATE_PARAM_GRAPHICS_URI, libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS,
    libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS, libvirt.VIR_MIGRATE_PARAM_DISKS_URI, libvirt.VIR_MIGRATE_PARAM_COMPRESSION,
    libvirt.VIR_MIGRATE_PARAM_TLS_DESTINATION)}
MIGRATION_PARAM_TYPES.update({name: int for name in (
    libvirt.VIR_MIGRATE_PARAM_BANDWIDTH, libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY, libvirt.VIR_MIGRATE_PARAM_DISKS_PORT,
    libvirt.VIR_MIGRATE_PARAM_COMPRESSION_MT_LEVEL, libvirt.VIR_MIGRATE_PARAM_COMPRESSION_MT_THREADS,
    libvirt.VIR_MIGRATE_PARAM_COMPRESSION_MT_DTHREADS, libvirt.VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE,
    libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL, libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT,
    libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS)})

# What libvirt and the C library say, in English and in German (LANG=de_DE.UTF-8 on the daemon's host).
MESSAGES = {
    "en": {
        "refused": "unable to connect to server at '198.18.1.2:16509': Connection refused",
        "no_route": "unable to connect to server at '198.18.1.2:16509': No route to host",
        "network_unreachable": "unable to connect to server at '198.18.1.2:16509': Network is unreachable",
        "socket_closed": "internal error: client socket is closed",
        "lost_connection": "operation failed: Lost connection to destination host",
        "aborted": "operation aborted: job 'migration out' canceled by client",
        "postcopy_failed": "operation failed: job 'migration out' failed in post-copy phase",
        "unsupported": "unsupported configuration: Unable to find bridge br9",
    },
    "de": {
        "refused": "Verbindung zum Server auf »198.18.1.2:16509« nicht möglich: Verbindungsaufbau abgelehnt",
        "no_route": "Verbindung zum Server auf »198.18.1.2:16509« nicht möglich: Keine Route zum Zielrechner",
        "network_unreachable": "Verbindung zum Server auf »198.18.1.2:16509« nicht möglich: Das Netzwerk ist nicht erreichbar",
        "socket_closed": "Interner Fehler: Client-Socket ist geschlossen",
        "lost_connection": "Vorgang fehlgeschlagen: Verbindung zum Zielrechner verloren",
        "aborted": "Vorgang abgebrochen: Job »migration out« durch Client abgebrochen",
        "postcopy_failed": "Vorgang fehlgeschlagen: Job »migration out« ist in der Post-Copy-Phase fehlgeschlagen",
        "unsupported": "Nicht unterstützte Konfiguration: Bridge br9 nicht gefunden",
    },
}
# The code, domain and errno libvirt raises each with.
_ERRORS = {
    "refused": ("VIR_ERR_SYSTEM_ERROR", "VIR_FROM_RPC", errno.ECONNREFUSED),
    "no_route": ("VIR_ERR_SYSTEM_ERROR", "VIR_FROM_RPC", errno.EHOSTUNREACH),
    "network_unreachable": ("VIR_ERR_SYSTEM_ERROR", "VIR_FROM_RPC", errno.ENETUNREACH),
    "socket_closed": ("VIR_ERR_INTERNAL_ERROR", "VIR_FROM_RPC", -1),
    "lost_connection": ("VIR_ERR_OPERATION_FAILED", "VIR_FROM_QEMU", -1),
    "aborted": ("VIR_ERR_OPERATION_ABORTED", "VIR_FROM_QEMU", -1),
    "postcopy_failed": ("VIR_ERR_OPERATION_FAILED", "VIR_FROM_QEMU", -1),
    "unsupported": ("VIR_ERR_CONFIG_UNSUPPORTED", "VIR_FROM_QEMU", -1),
}


def failure(what, language="en"):
    """The libvirtError libvirt raises for ``what`` (a key of MESSAGES), with its message in ``language``."""
    code, domain, system_errno = _ERRORS[what]
    return libvirt_error(code, MESSAGES[language][what], domain, system_errno)


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
    (before it, migrateStartPostCopy is refused like QEMU does, except at the step just before, where a request
    has no effect: in the lab such a request did not return until the job ended); postcopy_steps: polls the post-copy phase lasts;
    fail_at: step at which the job fails with ``error``, and ``on_fail`` runs then (e.g. to take the destination
    daemon away); postcopy_fail: the post-copy phase fails too; connect_error: migrateToURI3 fails at once, as when
    the source daemon cannot reach the destination; stall_from: step from which no more data moves, as over a cut
    migration link that nothing else notices; stats: the completed job's statistics; language: that of libvirt's
    messages (see MESSAGES)."""

    def __init__(self, steps=3, transfer_from=1, postcopy_steps=0, fail_at=None, error=None, on_fail=None,
                 postcopy_fail=False, connect_error=None, stall_from=None, stats=None, language="en"):
        self.steps = steps
        self.transfer_from = transfer_from
        self.postcopy_steps = postcopy_steps
        self.postcopy_at = None
        self.fail_at = fail_at
        self.error = error
        self.on_fail = on_fail
        self.postcopy_fail = postcopy_fail
        self.connect_error = connect_error
        self.stall_from = stall_from
        self.completed_stats = stats
        self.language = language
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
        """Peer to peer: the source daemon connects to ``dest_uri`` itself (qemu has no direct migration)."""
        self._enter("migrateToURI3", dest_uri, params, flags)
        _convert(params)
        _check_exclusive(flags)
        if not flags & libvirt.VIR_MIGRATE_PEER2PEER:
            raise libvirt_error("VIR_ERR_ARGUMENT_UNSUPPORTED", "argument unsupported: direct migration is not supported by the source host",
                                "VIR_FROM_DOMAIN")
        host = urlsplit(dest_uri).hostname
        if host is None or host.startswith("localhost"):
            raise libvirt_error("VIR_ERR_INVALID_ARG", "invalid argument: Attempt to migrate guest to the same host %s" % dest_uri,
                                "VIR_FROM_DOMAIN")
        return self._migrate(dest_uri, params, flags)

    def migrate3(self, dconn, params, flags):
        """The migration driven from here to the connection ``dconn``; the guest there."""
        self._enter("migrate3", dconn, params, flags)
        _convert(params)
        _check_exclusive(flags)
        self._migrate(dconn.uri, params, flags)
        return dconn.lookupByName(self.name())

    def _migrate(self, dest_uri, params, flags):
        _check_supported(params, flags)
        self._require(True, "domain is not running")
        job = self.job
        job.dest_uri, job.params, job.flags = dest_uri, dict(params), flags
        if job.connect_error is not None:
            raise job.connect_error
        _check_machine(self.xml, self.hosts[dest_uri])
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
        # The agent runs inside the guest, so it moves with it.
        arrived.agent = self.agent
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
        self._require(True, "domain is not running")
        if not job.active or job.finished.is_set():
            return {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        job.step += 1
        self.clock.advance(1.0)
        moving_step = job.step if job.stall_from is None else min(job.step, job.stall_from)
        iteration = 0 if moving_step < job.transfer_from else moving_step - job.transfer_from + 1
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
        self._require(True, "domain is not running")
        if not self.job.active or self.job.finished.is_set():
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: no job is active on the domain")
        if self.job.postcopy:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: cannot abort migration in post-copy mode")
        self.job.aborted = True
        self.job.finish(failure("aborted", self.job.language))
        return 0

    def migrateStartPostCopy(self, flags=0):  # noqa: N802
        self._enter("migrateStartPostCopy", flags)
        self._require(True, "domain is not running")
        job = self.job
        if not job.active:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: post-copy can only be started while "
                                "outgoing migration is in progress")
        if not job.flags & libvirt.VIR_MIGRATE_POSTCOPY:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: switching to post-copy requires "
                                "migration to be started with VIR_MIGRATE_POSTCOPY flag")
        if job.step < job.transfer_from - 1:
            raise libvirt_error("VIR_ERR_INTERNAL_ERROR", "internal error: unable to execute QEMU command 'migrate-start-postcopy': "
                                "Enable postcopy with migrate_set_capability before the start of migration", "VIR_FROM_QEMU")
        if job.step < job.transfer_from:
            return 0
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
        self._require(True, "domain is not running")
        if not self.job.active:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: domain is not being migrated")
        self.job.max_downtime.append(downtime)
        return 0

    def suspend(self):
        result = super().suspend()
        self.job.suspended = True
        return result


def _convert(params):
    """What the binding refuses before it calls libvirt: a value of the wrong Python type for a parameter it knows."""
    for name, value in params.items():
        expected = MIGRATION_PARAM_TYPES.get(name)
        values = value if isinstance(value, (list, tuple)) else [value]
        if expected is not None and not all(isinstance(one, expected) for one in values):
            raise TypeError("an integer is required" if expected is int else "bad argument type for built-in operation")


def _check_exclusive(flags):
    if flags & libvirt.VIR_MIGRATE_NON_SHARED_DISK and flags & libvirt.VIR_MIGRATE_NON_SHARED_INC:
        raise libvirt_error("VIR_ERR_INVALID_ARG", "Flags 'VIR_MIGRATE_NON_SHARED_DISK' and 'VIR_MIGRATE_NON_SHARED_INC' are mutually exclusive",
                            "VIR_FROM_DOMAIN")


def _check_machine(xml, dest):
    """What the destination refuses while it prepares for the guest, before anything moves: a machine type its QEMU
    lacks (libvirt 9.0 with QEMU 7.2 so refused a guest started on QEMU 10.0, in a pair of scratch daemons)."""
    machine = ET.fromstring(xml).find("os/type").get("machine")
    offered = {name for element in ET.fromstring(dest.capabilities).iter("machine")
               for name in (element.text, element.get("canonical"))}
    if machine not in offered:
        raise libvirt_error("VIR_ERR_CONFIG_UNSUPPORTED", "unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not "
                            "support machine type '%s'" % machine, "VIR_FROM_QEMU")


def _check_supported(params, flags):
    """What the QEMU driver refuses: flags it does not know (virCheckFlags), parameters it does not take
    (virTypedParamsValidate)."""
    if flags & ~MIGRATION_FLAGS:
        raise libvirt_error("VIR_ERR_INVALID_ARG", "invalid argument: unsupported flags (0x%x) in function qemuDomainMigratePerform3Params"
                            % (flags & ~MIGRATION_FLAGS), "VIR_FROM_QEMU")
    unknown = sorted(set(params) - set(MIGRATION_PARAM_TYPES))
    if unknown:
        raise libvirt_error("VIR_ERR_ARGUMENT_UNSUPPORTED", "argument unsupported: parameter '%s' not supported" % unknown[0])


def domain_xml(name="web1", uuid="0b8e3b9c-2f7a-4d0e-9a51-6b7c1d2e3f40", memory_mib=128, agent_channel=False, serial_log=None,
               machine="pc"):
    """A guest's XML; ``agent_channel``: with the QEMU guest agent's channel; ``serial_log``: the file its serial
    console is logged to; ``machine``: its machine type (an alias becomes the host's versioned one)."""
    root = ET.Element("domain", type="kvm")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "uuid").text = uuid
    ET.SubElement(root, "memory", unit="KiB").text = str(memory_mib * 1024)
    ET.SubElement(root, "vcpu").text = "1"
    os_element = ET.SubElement(root, "os")
    ET.SubElement(os_element, "type", arch="x86_64", machine=machine).text = "hvm"
    devices = ET.SubElement(root, "devices")
    serial = ET.SubElement(devices, "serial", type="pty")
    if serial_log:
        ET.SubElement(serial, "log", file=serial_log, append="on")
    if agent_channel:
        channel = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    return ET.tostring(root, encoding="unicode")


def add_migrating(conn, job, clock, hosts, name="web1", state="running", events=None, **xml):
    """A MigratingDomain on ``conn``, as if defined and started earlier."""
    domain = MigratingDomain(conn, conn._normalize(domain_xml(name, **xml)), job, clock, hosts, events)  # pylint: disable=protected-access
    conn.domains[domain.name()] = domain
    domain._set_state(state)  # pylint: disable=protected-access
    return domain


def options(**overrides):
    """MigrationOptions moving web1 from SRC_URI to DEST_URI, the other options at their defaults unless given."""
    return _migration.MigrationOptions(**dict(dict(name="web1", dest_uri=DEST_URI, uri=SRC_URI), **overrides))


def migration_world(fake_libvirt, monkeypatch):
    """hv1 (source, SRC_URI) and hv2 (destination) with distinct host UUIDs, a fake clock and no events."""
    clock = FakeClock()
    monkeypatch.setattr(_migration, "CLOCK", clock)
    monkeypatch.setattr(_migration, "POLL_INTERVAL", 0.001)
    monkeypatch.setattr(_migration, "event_connection", lambda uri, timeout: None)
    monkeypatch.setattr(_verify, "CLOCK", clock)
    monkeypatch.setattr(_verify, "SLEEP", clock.advance)
    monkeypatch.setattr(libvirt_qemu, "qemuAgentCommand", qemu_agent_command)
    src = fake_libvirt.add(SRC_URI, hostname="hv1")
    dest = fake_libvirt.add(DEST_URI, capabilities=HV2_CAPABILITIES, hostname="hv2")
    return SimpleNamespace(registry=fake_libvirt, src=src, dest=dest, clock=clock, hosts={DEST_URI: dest})
