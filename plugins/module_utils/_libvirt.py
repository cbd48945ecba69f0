# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one libvirt connection layer: URI to virConnect, libvirt errors mapped to VirtError, lookups."""

from __future__ import annotations

import contextlib
import threading
import time

from ansible_collections.arctictern.virt.plugins.module_utils._errors import ConnectionFailed, VirtError

try:
    import libvirt
except ImportError as import_error:  # pragma: no cover - reported by the module base
    libvirt = None
    LIBVIRT_IMPORT_ERROR = import_error
else:
    LIBVIRT_IMPORT_ERROR = None
    # libvirt prints every error to stderr by default; errors reach the user through VirtError instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

REQUIRED_LIBS = (("libvirt-python", LIBVIRT_IMPORT_ERROR),)


def error_message(error):
    """The message of a libvirtError, without libvirt's repetition of the error class."""
    message = error.get_error_message() if hasattr(error, "get_error_message") else None
    return message or str(error)


def is_error(error, code_name):
    """Whether a libvirtError carries the named code, e.g. ``VIR_ERR_NO_DOMAIN``."""
    code = getattr(libvirt, code_name, None)
    return libvirt is not None and isinstance(error, libvirt.libvirtError) and error.get_error_code() == code


def connect(uri, timeout=10.0):
    """Open a read-write connection to ``uri`` or raise ConnectionFailed naming the URI.

    libvirt has no connect timeout of its own; a URI whose daemon never answers would hang the task, so the
    connection is opened in a helper thread and abandoned after ``timeout`` seconds.
    """
    outcome = {}

    def opener():
        try:
            outcome["conn"] = libvirt.open(uri)
        except libvirt.libvirtError as error:
            outcome["error"] = error

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ConnectionFailed("uri: no answer from libvirt at '%s' within %ss" % (uri, timeout), uri=uri)
    if "error" in outcome or outcome.get("conn") is None:
        reason = error_message(outcome["error"]) if "error" in outcome else "no connection"
        raise ConnectionFailed("uri: cannot connect to libvirt at '%s': %s" % (uri, reason), error=outcome.get("error"), uri=uri)
    return outcome["conn"]


@contextlib.contextmanager
def connection(uri, timeout=10.0):
    """``with connection(uri) as conn:`` opens and always closes a libvirt connection."""
    conn = connect(uri, timeout)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def call(what, func, *args):
    """Call a libvirt function, turning a libvirtError into a VirtError that says what was being done."""
    try:
        return func(*args)
    except libvirt.libvirtError as error:
        raise VirtError("%s: %s" % (what, error_message(error))) from None


def lookup_domain(conn, name):
    """The domain called ``name``, or None where the host has none of that name."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as error:
        if is_error(error, "VIR_ERR_NO_DOMAIN"):
            return None
        raise VirtError("looking up guest '%s': %s" % (name, error_message(error))) from None


def lookup_network(conn, name):
    """The network called ``name``, or None where the host has none of that name."""
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError as error:
        if is_error(error, "VIR_ERR_NO_NETWORK"):
            return None
        raise VirtError("looking up network '%s': %s" % (name, error_message(error))) from None


DOMAIN_STATES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}


def domain_state(domain):
    """The domain's state as a word (running, paused, shutoff, ...)."""
    state, _reason = call("reading state of guest '%s'" % domain.name(), domain.state)
    return DOMAIN_STATES.get(state, "unknown")


# What a job's progress is told by: fields of virDomainGetJobStats, named as libvirt names them.
PROGRESS_FIELDS = ("data_total", "data_processed", "data_remaining", "memory_iteration", "memory_dirty_rate")
# virDomainJobOperation, which jobStats() gives as "operation" (libvirt >= 3.3).
JOB_OPERATIONS = {
    0: "unknown", 1: "start", 2: "save", 3: "restore", 4: "migration_in", 5: "migration_out", 6: "snapshot",
    7: "snapshot_revert", 8: "dump", 9: "backup", 10: "snapshot_delete",
}


def job_figures(stats):
    """The progress fields of a jobStats() dict (None where the job does not report one)."""
    return {field: stats.get(field) for field in PROGRESS_FIELDS}


def _switching_over(domain):
    """Whether the guest is paused for the switch-over of its migration (the last copy, or post-copy): from then on
    it runs, or is about to run, on the destination, whose network device holds what arrives until it resumes."""
    state, reason = domain.state()
    switch_over = (libvirt.VIR_DOMAIN_PAUSED_MIGRATION, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY)
    return state == libvirt.VIR_DOMAIN_PAUSED and reason in switch_over


def wait_for_departure(uri, name, timeout, job_timeout=60.0, interval=0.02):
    """Wait until guest ``name`` leaves the host behind ``uri``: it no longer runs there (migrated away, or
    stopped), or it is paused for the switch-over of its migration.

    Returns None once it is gone; otherwise why it is still here: ``timeout`` seconds passed, or no migration job
    has run for ``job_timeout`` seconds (nothing is moving it, or its migration ended and it stayed), so that a
    task waiting next to a failed migration ends instead of waiting out ``timeout``."""
    started = time.monotonic()
    last_job = started
    with connection(uri) as conn:
        while True:
            now = time.monotonic()
            try:
                domain = conn.lookupByName(name)
                if not domain.isActive() or _switching_over(domain):
                    return None
                if domain.jobStats().get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE:
                    last_job = now
            except libvirt.libvirtError as error:
                if is_error(error, "VIR_ERR_NO_DOMAIN"):
                    return None
                raise VirtError("guest '%s': %s" % (name, error_message(error))) from None
            if now - started >= timeout:
                return "it still runs here after %g s" % timeout
            if now - last_job >= job_timeout:
                return "it still runs here and no migration job has run for %g s" % job_timeout
            time.sleep(interval)
