# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live migration of a running guest, peer to peer, from the host it runs on to another libvirt host.

``MigrationOptions`` holds the module's options with their defaults (the module's ``ARGUMENT_SPEC`` is made from
it). ``migrate(options, check_mode)`` does the whole task: both ends looked at, the migration run by a
``Migration`` (a worker thread in libvirt's migrateToURI3 while this thread watches the job: progress samples,
maximum downtime, the switch to post-copy, the timeout action) and, on failure, a message saying what happened to
the guest and why, from libvirt's error code, error domain and errno, the guest's state and a fresh look at the
destination. With ``verify``, the guest is then checked where it runs (``_verify``: guest agent, TCP, HTTP); one that fails
is reported as failed and left where it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import re
import socket
import threading
import time
import typing
import xml.etree.ElementTree as ET
from typing import Optional
from urllib.parse import urlsplit

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt, _verify
from ansible_collections.arctictern.virt.plugins.module_utils._errors import ConnectionFailed, InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._facts import _version, guest_arches
from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import libvirt
from ansible_collections.arctictern.virt.plugins.module_utils._module import LIBVIRT_ARGUMENT_SPEC
from ansible_collections.arctictern.virt.plugins.module_utils._validate import is_local_uri
from ansible_collections.arctictern.virt.plugins.module_utils._verify import VerifyOptions

MODES = ("precopy", "postcopy", "auto")
COMPRESSIONS = ("none", "xbzrle")
COPY_STORAGE = ("none", "all", "inc")
TIMEOUT_ACTIONS = ("abort", "postcopy", "suspend")
# Named settings (``profile``), each measured with benchmarks/migration_health.py (docs/performance.md): the options
# it sets where the task leaves them unset, and the oldest QEMU on which no guest broke with them (major, minor).
# low_blackout's settings (the health study's line max_downtime=10) broke 21 of 24 guests under client traffic on
# QEMU 7.2 (TCG) and none of 100 on QEMU 10.0, where they cut the client's median blackout from 444 to 312 ms.
PROFILES = {"default": {"settings": {}, "min_qemu": None},
            "low_blackout": {"settings": {"max_downtime": 10, "timeout": 60.0}, "min_qemu": (10, 0)}}

POLL_INTERVAL = 0.1
# The monitor's clock: the seconds the timeout and the post-copy switch count (the unit tests put a fake here).
CLOCK = time.monotonic
SAMPLE_INTERVAL = 0.5
MAX_SAMPLES = 240
# How long to wait, after migrateToURI3 returned, for the job-completed event that carries the final statistics.
COMPLETED_EVENT_WAIT = 2.0
# A job whose data has not moved for this long, with memory still to send, is stuck on a dead migration link: TCP
# alone would take about 15 minutes to fail it, and when the management connection takes another path (qemu+ssh on
# the management network) libvirt's keepalive on it never notices. Longer than that keepalive (5 s x 5), so that a
# link that carries both fails the way libvirt fails it.
STALL_SECONDS = 30.0
# libvirt's first migration port, where a destination listens when migrate_uri names no port.
MIGRATION_PORT = 49152
SSH_PORT = 22

# Options that must be greater than zero when given.
POSITIVE_OPTIONS = ("bandwidth", "postcopy_bandwidth", "max_downtime", "timeout", "postcopy_after",
                    "postcopy_after_iterations", "parallel_connections")
# Where a failed migration leaves things; returned as ``cause`` with the failure.
# guest_unhealthy: the guest runs on the destination but failed a check of ``verify``; incompatible_destination: the
# destination cannot run the guest (its machine type), told before anything moves.
CAUSES = ("destination_unreachable", "destination_died", "link_cut", "timeout", "postcopy_failed", "failed", "guest_unhealthy",
          "incompatible_destination")
# A versioned machine type: its family and version, e.g. pc-i440fx and 10.0.
VERSIONED_MACHINE = re.compile(r"^(?P<family>.+)-(?P<version>\d+(?:\.\d+)*)$")


def _const(name, default=None):
    return getattr(libvirt, name, default)


# ---------------------------------------------------------------------------------------------------------
# Options


def _option(default=None, choices=None, required=False):
    """A field of MigrationOptions: its default, and what the argument spec adds to the field's type."""
    # Called only in the class body below, where pylint cannot see it.
    return dataclasses.field(default=default, metadata={"choices": choices, "required": required})  # pylint: disable=invalid-field-call


@dataclasses.dataclass(frozen=True)
class MigrationOptions:  # pylint: disable=too-many-instance-attributes
    """The options of arctictern.virt.migrate with their defaults and choices, in one place: the module's argument
    spec is made from these fields (``ARGUMENT_SPEC``), the playbooks' migrate_*/evacuate_* variables are checked
    against them, and tests and benchmarks build their options with it.

    An instance is valid: what needs no connection is checked when it is made, and InvalidOption names the first
    bad option. ``uri`` and ``connect_timeout`` are the module base's common options (documented once)."""

    name: str = _option(required=True)
    dest_uri: str = _option(required=True)
    migrate_uri: Optional[str] = _option()
    mode: str = _option("precopy", MODES)
    postcopy_after: float = _option(10.0)
    postcopy_after_iterations: Optional[int] = _option()
    auto_converge: bool = _option(False)
    auto_converge_initial: Optional[int] = _option()
    auto_converge_increment: Optional[int] = _option()
    bandwidth: Optional[int] = _option()
    postcopy_bandwidth: Optional[int] = _option()
    max_downtime: Optional[int] = _option()
    profile: str = _option("default", tuple(PROFILES))
    compression: str = _option("none", COMPRESSIONS)
    parallel_connections: Optional[int] = _option()
    tls: bool = _option(False)
    persist_dest: bool = _option(True)
    undefine_source: bool = _option(True)
    copy_storage: str = _option("none", COPY_STORAGE)
    unsafe: bool = _option(False)
    timeout: Optional[float] = _option()
    timeout_action: str = _option("abort", TIMEOUT_ACTIONS)
    verify: Optional[VerifyOptions] = _option()
    uri: str = _option(LIBVIRT_ARGUMENT_SPEC["uri"]["default"])
    connect_timeout: float = _option(LIBVIRT_ARGUMENT_SPEC["connect_timeout"]["default"])

    @classmethod
    def from_params(cls, params):
        """The options from a module's params (an option missing there takes its default)."""
        return cls(**{field.name: params[field.name] for field in dataclasses.fields(cls) if field.name in params})

    def module_args(self):
        """The options as a task writes them: the required ones and those that differ from their defaults."""
        return {field.name: _task_value(getattr(self, field.name)) for field in dataclasses.fields(self)
                if field.metadata["required"] or (getattr(self, field.name) != field.default
                                                  and field.name not in self._set_by_profile)}

    @property
    def uses_postcopy(self):
        """Whether the job may switch to post-copy: then QEMU must have post-copy enabled from the start."""
        return self.mode in ("postcopy", "auto") or (self.timeout is not None and self.timeout_action == "postcopy")

    def __post_init__(self):
        # A task, a playbook or a test gives verify as a dict.
        object.__setattr__(self, "verify", VerifyOptions.from_value(self.verify))
        for field in dataclasses.fields(self):
            _check_value(field, getattr(self, field.name))
        self._apply_profile()
        self._check_combinations()

    def _apply_profile(self):
        """The profile's settings, for the options the task left unset; its downtime limit is the profile itself.
        ``module_args`` leaves out what the profile set, so that the task it writes sets the same again."""
        filled = []
        for option, value in PROFILES[self.profile]["settings"].items():
            if getattr(self, option) is None:
                object.__setattr__(self, option, value)
                filled.append(option)
            elif option == "max_downtime":
                raise InvalidOption("max_downtime", "cannot be combined with profile=%s, which sets it (%d ms)" % (self.profile, value))
        object.__setattr__(self, "_set_by_profile", frozenset(filled))

    def _check_combinations(self):
        """The rules between options; InvalidOption names the option that breaks one."""
        for option in ("auto_converge_initial", "auto_converge_increment"):
            value = getattr(self, option)
            if value is None:
                continue
            if not self.auto_converge:
                raise InvalidOption(option, "only applies with auto_converge=true")
            if not 0 <= value <= 100:
                raise InvalidOption(option, "must be a percentage from 0 to 100, got %s" % value)
        if self.parallel_connections is not None:
            if self.uses_postcopy:
                raise InvalidOption("parallel_connections", "cannot be combined with post-copy (mode=%s, timeout_action=%s): QEMU does not run "
                                    "parallel (multifd) migration and post-copy together" % (self.mode, self.timeout_action))
            if self.compression != "none":
                raise InvalidOption("parallel_connections", "cannot be combined with compression=%s" % self.compression)
        if self.postcopy_bandwidth is not None and not self.uses_postcopy:
            raise InvalidOption("postcopy_bandwidth", "only applies when the job can switch to post-copy (mode=postcopy or auto, "
                                "or timeout_action=postcopy with a timeout)")
        if self.migrate_uri is not None and "://" not in self.migrate_uri:
            raise InvalidOption("migrate_uri", "must be a URI such as tcp://198.18.1.2, got '%s'" % self.migrate_uri)
        if self.dest_uri == self.uri:
            raise InvalidOption("dest_uri", "is the same URI as uri ('%s'): the guest would not move" % self.uri)


# The Ansible type of each Python type a MigrationOptions field has (alone or in Optional[...]).
_ANSIBLE_TYPES = {str: "str", int: "int", float: "float", bool: "bool", VerifyOptions: "dict"}
_FIELD_TYPES = {name: next(arg for arg in typing.get_args(hint) or (hint,) if arg is not type(None))
                for name, hint in typing.get_type_hints(MigrationOptions).items()}


def _task_value(value):
    """An option's value as a task writes it: a dict for one with suboptions."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _check_value(field, value):
    """A field's value against its type, choices and the rules of single options."""
    option = field.name
    if field.metadata["required"] and (value is None or not str(value).strip()):
        raise InvalidOption(option, "must not be empty")
    if value is None:
        return
    expected = _FIELD_TYPES[option]
    # An int is a fine float; a bool is an int to Python but not to Ansible.
    accepted = (int, float) if expected is float else expected
    if not isinstance(value, accepted) or isinstance(value, bool) != (expected is bool):
        raise InvalidOption(option, "must be of type %s, got %r" % (_ANSIBLE_TYPES[expected], value))
    choices = field.metadata["choices"]
    if choices and value not in choices:
        raise InvalidOption(option, "must be one of %s, got '%s'" % (", ".join(choices), value))
    if option in POSITIVE_OPTIONS and value <= 0:
        raise InvalidOption(option, "must be greater than 0, got %s" % value)


def _argument_spec():
    """The module's argument spec from MigrationOptions, without the common options the module base adds."""
    spec = {}
    for field in dataclasses.fields(MigrationOptions):
        if field.name in LIBVIRT_ARGUMENT_SPEC:
            continue
        option = {"type": _ANSIBLE_TYPES[_FIELD_TYPES[field.name]]}
        if _FIELD_TYPES[field.name] is VerifyOptions:
            option["options"] = VerifyOptions.argument_spec()
        if field.metadata["required"]:
            option["required"] = True
        elif field.default is not None:
            option["default"] = field.default
        if field.metadata["choices"]:
            option["choices"] = list(field.metadata["choices"])
        spec[field.name] = option
    return spec


ARGUMENT_SPEC = _argument_spec()


def _chosen_flags(options):
    """(name, flag) of every VIR_MIGRATE_* flag the options ask for: always live and peer to peer."""
    table = (
        ("live", True, libvirt.VIR_MIGRATE_LIVE),
        ("peer2peer", True, libvirt.VIR_MIGRATE_PEER2PEER),
        ("persist_dest", options.persist_dest, libvirt.VIR_MIGRATE_PERSIST_DEST),
        ("undefine_source", options.undefine_source, libvirt.VIR_MIGRATE_UNDEFINE_SOURCE),
        ("postcopy", options.uses_postcopy, libvirt.VIR_MIGRATE_POSTCOPY),
        ("auto_converge", options.auto_converge, libvirt.VIR_MIGRATE_AUTO_CONVERGE),
        ("compressed", options.compression != "none", libvirt.VIR_MIGRATE_COMPRESSED),
        ("parallel", options.parallel_connections is not None, libvirt.VIR_MIGRATE_PARALLEL),
        ("tls", options.tls, libvirt.VIR_MIGRATE_TLS),
        ("non_shared_disk", options.copy_storage == "all", libvirt.VIR_MIGRATE_NON_SHARED_DISK),
        ("non_shared_inc", options.copy_storage == "inc", libvirt.VIR_MIGRATE_NON_SHARED_INC),
        ("unsafe", options.unsafe, libvirt.VIR_MIGRATE_UNSAFE),
    )
    return [(name, flag) for name, wanted, flag in table if wanted]


def migration_flags(options):
    """The virDomainMigrateFlags for the options."""
    flags = 0
    for _name, flag in _chosen_flags(options):
        flags |= flag
    return flags


def flag_names(options):
    """The names of the flags ``migration_flags`` sets, lower case without VIR_MIGRATE_ (shown in the plan)."""
    return [name for name, _flag in _chosen_flags(options)]


def _param(constant, option):
    """A VIR_MIGRATE_PARAM_* name, or InvalidOption when this libvirt-python does not know the parameter."""
    name = _const(constant)
    if name is None:
        raise InvalidOption(option, "this libvirt-python has no %s; leave %s out" % (constant, option))
    return name


def migration_params(options):
    """The typed parameters for migrateToURI3."""
    typed = {}
    wanted = (
        ("migrate_uri", "VIR_MIGRATE_PARAM_URI", options.migrate_uri),
        ("bandwidth", "VIR_MIGRATE_PARAM_BANDWIDTH", options.bandwidth),
        ("postcopy_bandwidth", "VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY", options.postcopy_bandwidth),
        ("compression", "VIR_MIGRATE_PARAM_COMPRESSION", None if options.compression == "none" else options.compression),
        ("parallel_connections", "VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS", options.parallel_connections),
        ("auto_converge_initial", "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL", options.auto_converge_initial),
        ("auto_converge_increment", "VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT", options.auto_converge_increment),
    )
    for option, constant, value in wanted:
        if value is not None:
            typed[_param(constant, option)] = value
    return typed


# ---------------------------------------------------------------------------------------------------------
# The two ends


def host_identity(conn, uri):
    """Host name and host UUID of the daemon behind ``conn``: what tells two hosts apart."""
    caps = ET.fromstring(_libvirt.call("reading capabilities of '%s'" % uri, conn.getCapabilities))
    return {
        "uri": uri,
        "hostname": _libvirt.call("reading host name of '%s'" % uri, conn.getHostname),
        "uuid": caps.findtext("host/uuid"),
    }


def same_host(source, destination):
    """Whether two identities are one host: same host UUID, or same host name where a UUID is missing."""
    if source["uuid"] and destination["uuid"]:
        return source["uuid"] == destination["uuid"]
    return source["hostname"] == destination["hostname"]


def _machine_version(name):
    """(family, version) of a machine type: ('pc-i440fx', (10, 0)) for pc-i440fx-10.0, (name, ()) for an unversioned
    one such as pc or microvm."""
    match = VERSIONED_MACHINE.match(name)
    if match is None:
        return name, ()
    return match.group("family"), tuple(int(part) for part in match.group("version").split("."))


def require_machine(domain, dest_conn, source, destination):
    """Refuse, before anything moves, a destination whose QEMU does not offer the guest's machine type for the guest's
    arch and virt type. A guest keeps the versioned machine type it was started with (QEMU 10 makes 'pc' into
    pc-i440fx-10.0), which an older QEMU lacks: libvirt would refuse it only while preparing the destination, as a
    failure like any other, and check mode would not tell."""
    name = domain.name()
    live = ET.fromstring(_libvirt.call("reading guest '%s'" % name, domain.XMLDesc))
    os_type = live.find("os/type[@machine]")
    if os_type is None:
        return  # no machine type to match (a Xen PV guest has none)
    arch, machine, virt_type = os_type.get("arch"), os_type.get("machine"), live.get("type")
    caps = ET.fromstring(_libvirt.call("reading capabilities of '%s'" % destination["uri"], dest_conn.getCapabilities))
    offered = guest_arches(caps).get(arch, {}).get("virt_types", {}).get(virt_type, set())
    if machine in offered:
        return
    hostname = destination["hostname"]
    instead = _newest_of_family(offered, machine, hostname) if offered else "%s runs no %s %s guests" % (hostname, arch, virt_type)
    raise InvalidOption("dest_uri", "%s cannot run guest '%s': it runs machine type %s (%s, %s), and %s. Nothing was moved: "
                        "the guest is still %s on %s." % (hostname, name, machine, arch, virt_type, instead,
                                                          _libvirt.domain_state(domain), source["hostname"]),
                        cause="incompatible_destination")


def _newest_of_family(offered, machine, hostname):
    """What a host that lacks ``machine`` offers of its family (pc-i440fx, pc-q35): the newest by version, in words."""
    family = _machine_version(machine)[0]
    versions = {other: version for other, (other_family, version) in ((other, _machine_version(other)) for other in offered)
                if other_family == family and version}
    if not versions:
        return "%s offers no %s machine type" % (hostname, family)
    return "the newest %s that %s offers is %s" % (family, hostname, max(versions, key=versions.get))


def require_profile_qemu(profile, ends):
    """Refuse, before anything moves, a profile on hosts whose QEMU is older than the one it was proven on: ``ends``
    is ((connection, identity), ...) of the source and the destination."""
    oldest = PROFILES[profile]["min_qemu"]
    if oldest is None:
        return
    for conn, identity in ends:
        hypervisor = _libvirt.call("reading the hypervisor type of '%s'" % identity["uri"], conn.getType)
        version = _libvirt.call("reading the hypervisor version of '%s'" % identity["uri"], conn.getVersion)
        if hypervisor != "QEMU" or (version // 1000000, version // 1000 % 1000) < oldest:
            runs = "QEMU %s" % _version(version) if hypervisor == "QEMU" else hypervisor
            raise InvalidOption("profile", "%s needs QEMU %d.%d or newer on both hosts, and %s runs %s: on older QEMU its "
                                "settings broke guests (docs/performance.md). Nothing was moved."
                                % (profile, oldest[0], oldest[1], identity["hostname"], runs))


def _active(domain):
    return domain is not None and bool(_libvirt.call("reading state of guest '%s'" % domain.name(), domain.isActive))


def _incoming(domain):
    """Whether the domain is the receiving end of a migration: paused for it, not yet defined there."""
    state, reason = _libvirt.call("reading state of guest '%s'" % domain.name(), domain.state)
    return state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION


def locate(name, src_conn, dest_conn, source, destination):
    """Where the guest is: ``("migrate", source domain)`` or ``("done", destination domain)`` when it already
    runs on the destination; InvalidOption when it can be neither (unknown, not running, a name clash)."""
    src = _libvirt.lookup_domain(src_conn, name)
    dst = _libvirt.lookup_domain(dest_conn, name)
    src_active, dst_active = _active(src), _active(dst)
    if src_active and dst_active:
        if _incoming(dst):
            raise InvalidOption("name", "guest '%s' is already being migrated to %s (an incoming migration is in progress there)"
                                % (name, destination["hostname"]))
        raise InvalidOption("name", "guest '%s' runs on both %s and %s; refusing to migrate it" % (name, source["hostname"], destination["hostname"]))
    if src_active:
        if dst is not None and dst.UUIDString() != src.UUIDString():
            raise InvalidOption("name", "%s already has a different guest named '%s' (UUID %s, the guest to migrate has %s)"
                                % (destination["hostname"], name, dst.UUIDString(), src.UUIDString()))
        return "migrate", src
    if dst_active and (src is None or src.UUIDString() == dst.UUIDString()):
        return "done", dst
    if src is None:
        raise InvalidOption("name", "no guest named '%s' on %s (uri %s)%s" % (
            name, source["hostname"], source["uri"], "" if dst is None else " and %s has it shut off" % destination["hostname"]))
    raise InvalidOption("name", "guest '%s' is %s on %s; only a running guest can be migrated live"
                        % (name, _libvirt.domain_state(src), source["hostname"]))


# ---------------------------------------------------------------------------------------------------------
# The job


class _EventLoop:
    """libvirt's default event loop, run in a daemon thread, for the domain events (post-copy started, job
    completed with its statistics).

    Only connections opened after it is registered deliver events, and calls made on such a connection while
    another thread of it sits in migrateToURI3 stalled for seconds in the lab. So the migration and its polling
    keep the connection opened before, and the events come on a connection of their own (``event_connection``).
    """

    started = False

    @classmethod
    def start(cls):
        if cls.started:
            return True
        try:
            libvirt.virEventRegisterDefaultImpl()
        except (AttributeError, libvirt.libvirtError):
            return False
        threading.Thread(target=cls._run, name="libvirt-events", daemon=True).start()
        cls.started = True
        return True

    @staticmethod
    def _run():
        while libvirt.virEventRunDefaultImpl() == 0:
            pass


def event_connection(uri, timeout):
    """A connection that delivers domain events (starting libvirt's event loop first), or None without events."""
    if not _EventLoop.start():
        return None
    try:
        return _libvirt.connect(uri, timeout)
    except ConnectionFailed:
        return None


class Migration:  # pylint: disable=too-many-instance-attributes
    """One migration job: ``run()`` migrates in a worker thread while this thread polls the job.

    What it saw is kept: ``progress`` samples, ``events`` (what the monitor did and when), the final statistics
    (``completed`` from the job-completed event, else the last sample) and whether post-copy started, which
    decides whether a failed job can roll back. ``on_lifecycle``/``on_job_completed`` take libvirt's events.
    """

    def __init__(self, domain, options, clock=None, poll_interval=None):
        self.domain = domain
        self.options = options
        self.flags = migration_flags(options)
        self.typed_params = migration_params(options)
        self.clock = clock or CLOCK
        self.poll_interval = poll_interval or POLL_INTERVAL
        self.progress = []
        self.events = []
        self.last_stats = {}
        self.completed = None
        self.error = None
        self.wall_time_ms = None
        self.job_active = False
        self.transferring = False
        self.postcopy_requested = False
        self.postcopy_started = False
        self.timed_out = False
        self.aborted = False
        self.stalled = False
        self.suspended = False
        self._start = None
        # The data counter last seen and when it last moved (the stall watch).
        self._processed = None
        self._moved_at = None
        self._events = False
        self._downtime_set = False
        self._failed_calls = set()
        self._done = threading.Event()
        self._completed_event = threading.Event()

    # events from libvirt's event loop thread ----------------------------------------------------------------
    def on_lifecycle(self, event, detail):
        if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED and detail in (
                _const("VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY", 7), _const("VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED", 8)):
            self._mark_postcopy("event")

    def on_job_completed(self, stats):
        self.completed = dict(stats)
        self._completed_event.set()

    # the run ------------------------------------------------------------------------------------------------
    def run(self, events=False):
        """Migrate; afterwards ``error`` holds the libvirtError of a failed job (None on success).

        With ``events``, wait a moment for the job-completed event that carries the final statistics."""
        self._start = self.clock()
        self._events = events
        worker = threading.Thread(target=self._migrate, name="migrate", daemon=True)
        worker.start()
        while not self._done.wait(self.poll_interval):
            self._poll()
        worker.join()
        if events and self.error is None:
            self._completed_event.wait(COMPLETED_EVENT_WAIT)

    def _migrate(self):
        started = time.monotonic()
        try:
            self.domain.migrateToURI3(self.options.dest_uri, self.typed_params, self.flags)
        except libvirt.libvirtError as error:
            self.error = error
        finally:
            self.wall_time_ms = int((time.monotonic() - started) * 1000)
            self._done.set()

    def elapsed(self):
        return self.clock() - self._start

    def _event(self, what, **details):
        self.events.append(dict(time_ms=int(self.elapsed() * 1000), event=what, **details))

    def _try(self, what, func, *args):
        """Call a job control function; a failure is noted once (the poll retries) and returns False."""
        try:
            func(*args)
        except libvirt.libvirtError as error:
            if what not in self._failed_calls:
                self._failed_calls.add(what)
                self._event(what + "_failed", error=_libvirt.error_message(error))
            return False
        return True

    def _poll(self):
        stats = self._job_stats()
        # A cancelled or failed job reports its type with zeroed figures: only a running job is worth a sample.
        if stats.get("type") in (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED):
            self.last_stats = stats
            self.job_active = True
            # QEMU counts passes over memory from 1 once it sends pages; before that the job is still in setup.
            self.transferring = self.transferring or stats.get("memory_iteration", 0) >= 1 or stats.get("data_processed", 0) > 0
            if self.transferring:
                self._sample(stats)
                self._check_stall(stats)
            self._tune()
        if not self._events:
            # With events the lifecycle event tells when post-copy starts. Polling the state then is not only
            # redundant: in the lab, virDomainGetState stalled for seconds while an event connection was open.
            self._watch_state()
        self._check_timeout()
        if self._want_postcopy(stats):
            self._request_postcopy()

    def _job_stats(self):
        try:
            return self.domain.jobStats()
        except libvirt.libvirtError:
            # The job ends under our feet (the domain leaves the host): nothing to sample.
            return {}

    def _sample(self, stats):
        now_ms = int(self.elapsed() * 1000)
        if self.progress and now_ms - self.progress[-1]["time_ms"] < SAMPLE_INTERVAL * 1000:
            return
        self.progress.append(dict(time_ms=now_ms, **_libvirt.job_figures(stats)))
        if len(self.progress) > MAX_SAMPLES:
            # A long job keeps its whole course at a coarser grain.
            self.progress = self.progress[::2]

    def _check_stall(self, stats):
        """Abort a pre-copy job whose data stopped moving for STALL_SECONDS while memory remains to be sent."""
        processed = stats.get("data_processed", 0)
        if processed != self._processed:
            self._processed, self._moved_at = processed, self.elapsed()
            return
        stalled_for = self.elapsed() - self._moved_at
        if self.stalled or self.postcopy_started or not stats.get("data_remaining") or stalled_for < STALL_SECONDS:
            return
        if self._try("abort", self.domain.abortJob):
            self.stalled = True
            self._event("stalled", seconds=round(stalled_for, 1), data_processed=processed)

    def _tune(self):
        max_downtime = self.options.max_downtime
        if max_downtime and not self._downtime_set and self._try("max_downtime", self.domain.migrateSetMaxDowntime, max_downtime, 0):
            self._downtime_set = True
            self._event("max_downtime", ms=max_downtime)

    def _watch_state(self):
        try:
            state, reason = self.domain.state()
        except libvirt.libvirtError:
            return
        if state == libvirt.VIR_DOMAIN_PAUSED and reason in (
                _const("VIR_DOMAIN_PAUSED_POSTCOPY", 12), _const("VIR_DOMAIN_PAUSED_POSTCOPY_FAILED", 13)):
            self._mark_postcopy("state")

    def _mark_postcopy(self, seen_by):
        if not self.postcopy_started:
            self.postcopy_started = True
            self._event("postcopy_started", seen_by=seen_by)

    def _want_postcopy(self, stats):
        # Not before QEMU sends pages: in the lab (QEMU 7.2, libvirt 9.0) a request made just before QEMU's
        # migrate command did not return until the job ended, so nothing asked again and the job stayed in
        # pre-copy (an idle guest finished so, a busy one ran on for good).
        if self.postcopy_requested or not self.job_active or not self.transferring:
            return False
        mode = self.options.mode
        if mode == "postcopy" or (self.timed_out and self.options.timeout_action == "postcopy"):
            return True
        if mode != "auto":
            return False
        iterations = self.options.postcopy_after_iterations
        return self.elapsed() >= self.options.postcopy_after or (
            iterations is not None and stats.get("memory_iteration", 0) > iterations)

    def _request_postcopy(self):
        if self._try("postcopy_switch", self.domain.migrateStartPostCopy, 0):
            self.postcopy_requested = True
            self._event("postcopy_requested", iteration=self.last_stats.get("memory_iteration"))

    def _check_timeout(self):
        timeout = self.options.timeout
        if timeout is None or self.timed_out or self.elapsed() < timeout:
            return
        self.timed_out = True
        action = self.options.timeout_action
        self._event("timeout", action=action)
        if action == "abort":
            if self.postcopy_started:
                # QEMU cannot abort post-copy: the guest already runs on the destination.
                self._event("abort_refused", reason="post-copy already started")
            elif self._try("abort", self.domain.abortJob):
                self.aborted = True
        elif action == "suspend":
            self.suspended = self._try("suspend", self.domain.suspend)
        # timeout_action=postcopy: _want_postcopy, called right after this, asks for the switch.

    # results ------------------------------------------------------------------------------------------------
    def mode(self, stats):
        """The mode that finished the job."""
        return "postcopy" if self.postcopy_started or (stats.get("memory_postcopy_requests") or 0) > 0 else "precopy"

    def statistics(self, destination_stats=None):
        """The job's figures: from the job-completed event, else the destination's completed job, else the last
        sample seen (then without downtime)."""
        for origin, stats in (("job_completed_event", self.completed), ("destination", destination_stats), ("last_sample", self.last_stats)):
            if stats and stats.get("type", libvirt.VIR_DOMAIN_JOB_COMPLETED) != libvirt.VIR_DOMAIN_JOB_NONE:
                break
        else:
            origin, stats = "none", {}
        return {
            "mode": self.mode(stats),
            "total_time_ms": stats.get("time_elapsed"),
            "downtime_ms": stats.get("downtime"),
            "setup_time_ms": stats.get("setup_time"),
            "data_total_bytes": stats.get("data_total"),
            "data_processed_bytes": stats.get("data_processed"),
            "data_remaining_bytes": stats.get("data_remaining"),
            "memory_transferred_bytes": stats.get("memory_processed"),
            "memory_bps": stats.get("memory_bps"),
            "memory_dirty_rate": stats.get("memory_dirty_rate"),
            "iterations": stats.get("memory_iteration"),
            "postcopy_requests": stats.get("memory_postcopy_requests"),
            "wall_time_ms": self.wall_time_ms,
            "statistics_from": origin,
            "progress": self.progress,
            "events": self.events,
        }


def register_events(conn, uuid, migration):
    """Route the lifecycle and job-completed events of the guest ``uuid`` on ``conn`` to ``migration``; the callback
    ids, empty where the connection delivers no events (then the monitor relies on polling alone)."""
    callbacks = (
        (_const("VIR_DOMAIN_EVENT_ID_LIFECYCLE"), lambda _c, _d, event, detail, _o: migration.on_lifecycle(event, detail)),
        (_const("VIR_DOMAIN_EVENT_ID_JOB_COMPLETED"), lambda _c, _d, stats, _o: migration.on_job_completed(stats)),
    )
    ids = []
    try:
        domain = conn.lookupByUUIDString(uuid)
        for event_id, callback in callbacks:
            ids.append(conn.domainEventRegisterAny(domain, event_id, callback, None))
    except (AttributeError, TypeError, libvirt.libvirtError):
        deregister_events(conn, ids)
        return []
    return ids


def deregister_events(conn, ids):
    for callback_id in ids:
        with contextlib.suppress(libvirt.libvirtError):
            conn.domainEventDeregisterAny(callback_id)


# ---------------------------------------------------------------------------------------------------------
# Failures


# Failures are told apart by libvirt's error code, error domain and errno, by what the monitor saw of the job, by
# the guest's state and by how the destination answers a fresh connection; never by the words of a message,
# which libvirt and the C library translate into the locale of the daemon that raised it.

# The errno of a connect() that failed, which libvirt's RPC layer keeps in a VIR_ERR_SYSTEM_ERROR (int1): the host
# answered but no daemon listens (TCP port or unix socket), or the host does not answer at all.
_REFUSED_ERRNOS = (errno.ECONNREFUSED, errno.ENOENT)
_UNREACHABLE_ERRNOS = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EHOSTDOWN)


def _socket_errno(error):
    """The errno of a libvirtError raised by a socket call of libvirt's RPC layer, else None."""
    if error.get_error_code() == libvirt.VIR_ERR_SYSTEM_ERROR and error.get_error_domain() == libvirt.VIR_FROM_RPC:
        return error.get_int1()
    return None


def _connect_failed(error):
    """Whether ``error`` says that no connection to the daemon could be opened at all: a refused or unroutable
    connect(), or no libvirt driver for the URI."""
    return error.get_error_code() == libvirt.VIR_ERR_NO_CONNECT or _socket_errno(error) in _REFUSED_ERRNOS + _UNREACHABLE_ERRNOS


def probe(uri, timeout):
    """How the daemon at ``uri`` answers now: ('ok' | 'down' | 'unreachable' | 'error', libvirt's message).

    'down': the host answers but nothing listens (the daemon is gone); 'unreachable': no route or no answer."""
    try:
        conn = _libvirt.connect(uri, timeout)
    except ConnectionFailed as error:
        kind = probe_kind(error.error)
        ssh = ssh_endpoint(uri)
        if kind == "error" and ssh and _socket_errno(error.error) == errno.EIO:
            # The ssh client ended before libvirt answered, whether its server was out of reach or the daemon behind
            # it was gone: a server that still answers on the ssh port tells the host is up and the daemon is not.
            kind = "down" if tcp_answers(ssh[0], ssh[1], timeout) else "unreachable"
        return kind, _connect_reason(error)
    with contextlib.suppress(Exception):
        conn.close()
    return "ok", ""


def ssh_endpoint(uri):
    """(host, port) of the ssh server a qemu+ssh:// URI goes through, else None."""
    parts = urlsplit(uri)
    if not parts.scheme.endswith("+ssh") or not parts.hostname:
        return None
    return parts.hostname, parts.port or SSH_PORT


def tcp_answers(host, port, timeout):
    """Whether ``host`` answers a TCP connection to ``port`` from here; a refusal is an answer too."""
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def data_link_answers(options, timeout):
    """Whether the destination's address in ``migrate_uri`` answers from here (see ``tcp_answers``); None when this
    process cannot tell: only a tcp:// migrate_uri names where the data goes, and only a module on the source host
    (a local ``uri``) sends from where the data leaves."""
    if not options.migrate_uri or not is_local_uri(options.uri):
        return None
    parts = urlsplit(options.migrate_uri)
    if parts.scheme != "tcp" or not parts.hostname:
        return None
    return tcp_answers(parts.hostname, parts.port or MIGRATION_PORT, timeout)


def probe_kind(error):
    """'down', 'unreachable' or 'error' for the libvirtError of a failed connection; None: no answer in time."""
    if error is None:
        return "unreachable"
    number = _socket_errno(error)
    # A reset of a connection just opened: the daemon, or the ssh helper in front of it, closed it at once.
    if number in _REFUSED_ERRNOS + (errno.ECONNRESET,):
        return "down"
    if number in _UNREACHABLE_ERRNOS:
        return "unreachable"
    return "error"


def _connect_reason(error):
    """A ConnectionFailed message without the option name that _libvirt.connect puts first."""
    return error.msg.split(": ", 1)[1] if error.msg.startswith("uri: ") else error.msg


def source_state(conn, uuid):
    """(state, reason) of the guest on the source, None when it cannot be read."""
    try:
        return tuple(conn.lookupByUUIDString(uuid).state())
    except libvirt.libvirtError:
        return None


def classify(migration, state, probed, data_link=None):
    """(cause, message) for the failed ``migration`` (its ``error``, what the monitor saw), from the guest's
    ``state`` on the source afterwards (see ``source_state``), ``probed``, the destination's answer to a fresh
    connection after the failure (see ``probe``) and ``data_link``, whether the destination's migration address
    still answers (see ``data_link_answers``; None: not known)."""
    kind, probe_message = probed
    error = migration.error
    reason = _libvirt.error_message(error)
    dest = migration.options.dest_uri
    # The monitor may have missed the switch; libvirt leaves a guest whose post-copy failed paused for it.
    paused_in_postcopy = state is not None and state[0] == libvirt.VIR_DOMAIN_PAUSED and state[1] in (
        _const("VIR_DOMAIN_PAUSED_POSTCOPY", 12), _const("VIR_DOMAIN_PAUSED_POSTCOPY_FAILED", 13))
    if migration.postcopy_started or paused_in_postcopy:
        return "postcopy_failed", (
            "post-copy had already started, so the guest cannot roll back to the source: its memory is split between "
            "source and destination. It stays paused until the migration is resumed (libvirt's post-copy recovery, "
            "VIR_MIGRATE_POSTCOPY_RESUME) once %s is reachable again, or it is lost if that host is gone. libvirt: %s." % (dest, reason))
    # QEMU may end a job aborted for a stall as cancelled or as failed (its write on the socket the cancel shut down
    # can fail first): the stall decides, not the error.
    if migration.stalled:
        still = "; %s still answers, so only the migration link failed" % dest if kind == "ok" else ""
        return "link_cut", ("the migration link was cut mid-migration: no data moved for %g s, so the job was aborted%s; libvirt: %s."
                            % (STALL_SECONDS, still, reason))
    if migration.aborted and error.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED:
        return "timeout", "timeout: the migration did not finish within %g s and was aborted (timeout_action=abort)." % migration.options.timeout
    # Before any page moved, the source daemon's own connection to the destination may have failed to open.
    if not migration.transferring and _connect_failed(error):
        return "destination_unreachable", "destination unreachable: the source daemon could not reach %s (dest_uri): %s." % (dest, reason)
    # Otherwise the daemons had been talking, so the destination went away since: gone, or out of reach.
    if kind == "down":
        return "destination_died", ("the destination daemon died mid-migration: %s no longer accepts connections (%s); libvirt: %s."
                                    % (dest, probe_message, reason))
    if kind == "unreachable" and data_link:
        # dest_uri takes another path than the data (qemu+ssh on the management network, say): that path is lost.
        return "destination_unreachable", ("the management connection was lost mid-migration: %s cannot be reached any more (%s), "
                                           "while the migration link still answers; libvirt: %s." % (dest, probe_message, reason))
    if kind == "unreachable":
        return "link_cut", ("the migration link was cut mid-migration: %s cannot be reached any more (%s); libvirt: %s."
                            % (dest, probe_message, reason))
    return "failed", "migration failed: %s." % reason


def source_outcome(conn, uuid, hostname, was_persistent, migration):
    """After a failure: where the guest is on the source, resumed if this module suspended it; a sentence for
    the message and the state word."""
    try:
        domain = conn.lookupByUUIDString(uuid)
        state, reason = domain.state()
        if (state == libvirt.VIR_DOMAIN_PAUSED and migration.suspended and not migration.postcopy_started
                and reason != _const("VIR_DOMAIN_PAUSED_POSTCOPY_FAILED", 13)):
            # The timeout action paused it; with the migration failed it must run again where it is.
            domain.resume()
            state, reason = domain.state()
        word = _libvirt.DOMAIN_STATES.get(state, "unknown")
        persistent = bool(domain.isPersistent())
    except libvirt.libvirtError as error:
        return "unknown", "Could not check the guest on %s afterwards: %s." % (hostname, _libvirt.error_message(error))
    definition = "its definition intact" if persistent or not was_persistent else "its persistent definition gone"
    if word == "running":
        return word, "The guest is still running on %s, %s." % (hostname, definition)
    return word, "The guest is %s on %s, %s." % (word, hostname, definition)


# ---------------------------------------------------------------------------------------------------------
# The task


def _connect_destination(uri, timeout, src_conn, name):
    """The destination connection; failing that, an error that also says the guest was left where it is."""
    try:
        return _libvirt.connect(uri, timeout)
    except ConnectionFailed as error:
        reason = _connect_reason(error)
    try:
        where = "guest '%s' was not moved; it is %s on the source" % (name, _libvirt.domain_state(src_conn.lookupByName(name)))
    except (VirtError, libvirt.libvirtError):
        where = "nothing was moved"
    raise VirtError("dest_uri: destination unreachable: %s; %s." % (reason, where), cause="destination_unreachable")


def _completed_stats(conn, uuid):
    """The destination's record of the finished incoming job (libvirt keeps one after a pre-copy migration)."""
    try:
        return conn.lookupByUUIDString(uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError:
        return {}


def migrate(options, check_mode=False):
    """Migrate the guest ``options.name`` from ``uri`` to ``dest_uri`` (a MigrationOptions); the module's result
    (without diff).

    Raises InvalidOption for what only the hosts tell (before anything moves) and VirtError with ``cause`` when
    the migration fails; the message then says where the guest is."""
    name = options.name
    typed = migration_params(options)
    with _libvirt.connection(options.uri, options.connect_timeout) as src_conn:
        dest_conn = _connect_destination(options.dest_uri, options.connect_timeout, src_conn, name)
        try:
            source = host_identity(src_conn, options.uri)
            destination = host_identity(dest_conn, options.dest_uri)
            if same_host(source, destination):
                raise InvalidOption("dest_uri", "'%s' reaches the same host as uri (%s, host UUID %s); name another host"
                                    % (options.dest_uri, source["hostname"], source["uuid"]))
            action, domain = locate(name, src_conn, dest_conn, source, destination)
            result = {"name": name, "uuid": domain.UUIDString(), "source": source, "destination": destination,
                      "plan": {"flags": flag_names(options), "parameters": typed}}
            if options.max_downtime is not None:
                result["plan"]["max_downtime"] = options.max_downtime
            if options.verify is not None:
                result["plan"]["verify"] = _task_value(options.verify)
                _verify.require_agent_channel(options.verify, domain, (destination if action == "done" else source)["hostname"])
            if action == "done":
                result.update(changed=False, state=_libvirt.domain_state(domain),
                              msg="guest '%s' already runs on %s" % (name, destination["hostname"]))
                # A second run must not turn green a guest that failed its checks on the first.
                return result if check_mode else verify_guest(options, dest_conn, result)
            require_machine(domain, dest_conn, source, destination)
            require_profile_qemu(options.profile, ((src_conn, source), (dest_conn, destination)))
            result["changed"] = True
            if check_mode:
                result.update(state=_libvirt.domain_state(domain), msg="guest '%s' would move from %s to %s" % (
                    name, source["hostname"], destination["hostname"]))
                return result
            was_persistent = bool(_libvirt.call("reading guest '%s'" % name, domain.isPersistent))
            migration = Migration(domain, options)
            _run_with_events(migration, options)
            if migration.error is not None:
                probed = probe(options.dest_uri, options.connect_timeout)
                data_link = data_link_answers(options, options.connect_timeout) if probed[0] == "unreachable" else None
                cause, message = classify(migration, source_state(src_conn, result["uuid"]), probed, data_link)
                state, where = source_outcome(src_conn, result["uuid"], source["hostname"], was_persistent, migration)
                raise VirtError("%s %s" % (message, where), cause=cause, source_state=state,
                                libvirt_error=_libvirt.error_message(migration.error), migration=migration.statistics())
            result["migration"] = migration.statistics(None if migration.completed else _completed_stats(dest_conn, result["uuid"]))
            result["state"] = _destination_state(dest_conn, result["uuid"])
            result["msg"] = "guest '%s' moved from %s to %s in %s ms (%s)" % (
                name, source["hostname"], destination["hostname"], migration.wall_time_ms, result["migration"]["mode"])
            return verify_guest(options, dest_conn, result)
        finally:
            close_soon(dest_conn)


def verify_guest(options, dest_conn, result):
    """Run the checks of ``options.verify`` on the guest where it runs now, the destination; the result gains what
    each did. A guest that fails one stays where it is: VirtError with cause guest_unhealthy, the whole result, the
    tail of the guest's serial console log and, in the message, where the guest runs."""
    if options.verify is None:
        return result
    domain = _libvirt.call("looking up guest '%s' on %s" % (result["name"], options.dest_uri), dest_conn.lookupByUUIDString, result["uuid"])
    result["verify"] = _verify.run(options.verify, domain)
    failed = _verify.failures(options.verify, result["verify"])
    if not failed:
        return result
    details = dict(result, cause="guest_unhealthy", state=_destination_state(dest_conn, result["uuid"]),
                   serial_tail=_verify.serial_tail(domain))
    done = details.pop("msg")
    raise VirtError("%s, but it failed verification: %s. It is left where it is: %s on %s." % (
        done, "; ".join(failed), details["state"], result["destination"]["hostname"]), **details)


def _run_with_events(migration, options):
    """Run the migration with the guest's events routed to it where the source delivers events."""
    events_conn = event_connection(options.uri, options.connect_timeout)
    if events_conn is None:
        migration.run()
        return
    try:
        callback_ids = register_events(events_conn, migration.domain.UUIDString(), migration)
        try:
            migration.run(events=bool(callback_ids))
        finally:
            deregister_events(events_conn, callback_ids)
    finally:
        with contextlib.suppress(Exception):
            events_conn.close()


def close_soon(conn, wait=2.0):
    """Close a connection without hanging on a dead peer: closing sends a message and waits for the answer, which
    over a cut link comes only when TCP gives up. The close is left to a daemon thread after ``wait`` seconds."""
    def closer():
        with contextlib.suppress(Exception):
            conn.close()
    thread = threading.Thread(target=closer, name="close", daemon=True)
    thread.start()
    thread.join(wait)


def _destination_state(conn, uuid):
    try:
        return _libvirt.domain_state(conn.lookupByUUIDString(uuid))
    except (VirtError, libvirt.libvirtError):
        return "unknown"
