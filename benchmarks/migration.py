"""Live-migration blackout and time: what a client on the LAN sees while a guest moves between the lab's hypervisors.

    PYTHONPATH=.collections:. .venv/bin/python benchmarks/migration.py [--rounds 20] [--variants albc] [--skip-dirty]
    PYTHONPATH=.collections:. .venv/bin/python benchmarks/migration.py --from docs/results/migration-<date>.json [--check]

A client probes the guest's UDP echo every millisecond (lab/client.py udp-probe) across each migration. The guest
moves back and forth with (a) `virsh migrate --live --p2p --persistent --undefinesource` (the baseline), (l) the
module's libvirt call made bare from this script (migrateToURI3 with the module's flags and parameters), (b)
arctictern.virt.migrate with its defaults as an ad-hoc `ansible` command, (c) the module tuned (the lowest
max_downtime that converged in a short calibration). (a) and (b) are timed the same way as whole commands, (l) and
the module's own figure for its call the same way as bare libvirt calls. Then a guest that dirties memory faster
than the (capped) migration link carries it shows what plain pre-copy, auto-converge, post-copy and `auto` do.

Every attempt counts. Each variant makes one warm-up migration (recorded, marked as such, left out of the figures),
then --rounds probed ones; none is run again. A failed migration, a probe error and a migration that outlasted its
probe stay in the results with their cause. Each probe's length is set before its migration from those before.

Writes the raw result (per-attempt summaries) to docs/results/migration-<date>.json and the full one (with the
probe's samples around each switch-over) to results/, plots one migration of (a) and of (c) to
docs/migration-blackout.png and writes the tables into docs/performance.md from the raw result, as --from does.
Variants (b), (c) and the dirty guest need the module; docs are written only by a run of every variant with the
dirty guest. --from rewrites the tables from a committed raw result without the lab; --check then writes nothing
and fails when the doc differs from what the raw result gives (a table edited by hand)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import functools
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import libvirt
import libvirt_qemu

from ansible_collections.arctictern.virt.plugins.module_utils._migration import (
    MigrationOptions, flag_names, migration_flags, migration_params)
from benchmarks.docblock import block_diff, replace_block
from lab import lab as lab_control
from lab import topology as lab_topology
from lab.ansible import ROOT, VENV_BIN, Ansible, ansible_env, client_http

RESULTS = ROOT / "results"                  # full results (probe samples): not committed
RAW_DIR = ROOT / "docs" / "results"         # raw results the docs' tables are made from: committed
DOC = ROOT / "docs" / "performance.md"
PLOT = ROOT / "docs" / "migration-blackout.png"
MODULE_FILE = ROOT / "plugins" / "modules" / "migrate.py"
BEGIN, END = "<!-- migration-table:begin -->", "<!-- migration-table:end -->"
DIRTY_BEGIN, DIRTY_END = "<!-- migration-dirty:begin -->", "<!-- migration-dirty:end -->"
GUEST, DIRTY_GUEST = "bench-mig", "bench-dirty"
HYPERVISORS = ("hv1", "hv2")
VARIANTS = {
    "a": "`virsh migrate --live --p2p --persistent --undefinesource` (baseline)",
    "l": "libvirt's migrateToURI3 called bare, the module's flags and parameters",
    "b": "arctictern.virt.migrate, defaults",
    "c": "arctictern.virt.migrate, tuned",
}
MODULE_VARIANTS = ("b", "c")
# virsh's options and the VIR_MIGRATE_* flags they set, named as the module's plan names them.
VIRSH_FLAGS = {"--live": "live", "--p2p": "peer2peer", "--persistent": "persist_dest", "--undefinesource": "undefine_source"}
PROBE_INTERVAL_MS = 1.0
# An echo counts as an answer if it comes back within the probe's own timeout (lab.client.udp_probe's 1000 ms).
ANSWER_TIMEOUT_MS = 1000.0
LEAD_S = 0.5            # probing before the migration starts
# The probe runs LEAD_S + PROBE_FACTOR x the longest successful migration of its kind so far + PROBE_MARGIN_S;
# FIRST_GUESS_S stands in for that migration until one has succeeded.
PROBE_FACTOR, PROBE_MARGIN_S, FIRST_GUESS_S = 1.5, 1.5, 10.0
COMMAND_TIMEOUT_S = 600
CALIBRATION_DOWNTIMES = (10, 20, 50)
CALIBRATION_ROUNDS = 2
DAEMON_PATIENCE = 180   # seconds to wait for a daemon that another engineer's fault test has stopped
TUNED_TIMEOUT = 60      # (c) gives up (abort, guest stays) rather than iterate forever at a tiny max_downtime
DIRTY_MIB, DIRTY_BANDWIDTH = 32, 5
# Sample sizes from which a percentile is given; below them the table gives the maximum and the sample size.
MIN_SAMPLES = {50: 1, 95: 20, 99: 100}
# What only the full results keep: the probe's samples, the module's whole result, monotonic time stamps.
FULL_ONLY = ("trace", "module_result", "gap_start", "gap_end")

# Runs in the client's namespaces: lab.client's probe, with the monotonic start time (the same clock as ours:
# namespaces share it) so that its samples line up with the migration's start and end.
PROBE_CODE = """
import json, sys, time
from lab.client import udp_probe
print("ready", flush=True)
start = time.monotonic()
result = udp_probe(sys.argv[1], interval_ms=float(sys.argv[3]), seconds=float(sys.argv[2]))
result["start_monotonic"] = start
json.dump(result, sys.stdout)
"""


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def _tail(text, chars=500):
    return (text or "").strip()[-chars:]


# --- the probe and what it saw -------------------------------------------------------------------------------


class Probe:
    """lab.client udp-probe running in the client namespace in the background. It never raises: a probe that did
    not start or failed (say, host unreachable during a long blackout) gives no samples and says why in ``error``."""

    def __init__(self, state, address, seconds):
        argv = [state["hosts"]["client"]["python"], "-c", PROBE_CODE, address, "%.3f" % seconds,
                str(PROBE_INTERVAL_MS)]
        self.seconds, self.error = seconds, None
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                     stderr=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            self.error = "the probe did not start: %s" % _tail(self.proc.communicate()[1])

    def result(self):
        """lab.client.udp_probe's samples with the monotonic start time, or None (see ``error``)."""
        if self.error:
            return None
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.kill()
            self.error = "the probe did not end within 60 s of its %.1f s" % self.seconds
            return None
        if self.proc.returncode:
            self.error = "the probe failed: %s" % _tail(err)
            return None
        try:
            return json.loads(out)
        except ValueError:
            self.error = "the probe's output is not JSON: %s" % _tail(out)
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


class ProbeLength:
    """How long the client probes across the next migration of one kind, decided before it starts from the
    migrations before it (never by running one again): LEAD_S + PROBE_FACTOR x the longest that succeeded so far +
    PROBE_MARGIN_S. A migration that outlasts its probe is recorded as such."""

    def __init__(self):
        self.longest_s = None

    def seconds(self):
        return round(LEAD_S + PROBE_FACTOR * (self.longest_s or FIRST_GUESS_S) + PROBE_MARGIN_S, 1)

    def saw(self, attempt):
        if attempt["ok"]:
            self.longest_s = max(self.longest_s or 0, attempt["duration_ms"] / 1000)


def answered(trace):
    return [index for index, rtt in enumerate(trace["rtt_ms"]) if rtt is not None and rtt <= ANSWER_TIMEOUT_MS]


def blackout(trace, begin, end, switch=None):
    """The client's blackout around the switch-over, in ms.

    Blackout = arrival time of the first answer after the gap - arrival time of the last answer before it: how long
    the client got no answer at all. The gap is the longest one that overlaps ``switch`` (QEMU's pause on the source
    to the resume on the destination, monotonic seconds), else the longest that begins between ``begin`` and
    ``end``. A request that waited in the guest across the switch-over and was answered late does not shorten it.
    Without any loss it is the spacing of the answers: about 1 ms, more when the probe itself was not scheduled."""
    start, sent, rtt = trace["start_monotonic"], trace["sent_s"], trace["rtt_ms"]
    arrivals = sorted(start + sent[i] + rtt[i] / 1000 for i in answered(trace))
    gaps = [(later - earlier, earlier, later) for earlier, later in zip(arrivals, arrivals[1:]) if begin <= earlier <= end]
    probe_end = start + sent[-1] + ANSWER_TIMEOUT_MS / 1000
    if arrivals and begin <= arrivals[-1] <= end and arrivals[-1] < start + sent[-1] - 0.1:
        # Nothing answered after the last answer: the guest never came back while the probe ran.
        gaps.append((math.inf, arrivals[-1], probe_end))
    if not gaps:
        return {"blackout_ms": math.inf, "lost": len(sent) - len(arrivals), "gap_start": None, "gap_end": None}
    longest = max(gaps)
    overlapping = [gap for gap in gaps if switch and gap[1] < switch[1] and gap[2] > switch[0]]
    gap, earlier, later = max(overlapping) if overlapping else longest
    lost = sum(1 for i, answer in enumerate(rtt) if answer is None and earlier <= start + sent[i] <= later)
    return {"blackout_ms": gap if gap == math.inf else round(gap * 1000, 2), "lost": lost,
            "longest_gap_ms": longest[0] if longest[0] == math.inf else round(longest[0] * 1000, 2),
            "gap_start": earlier, "gap_end": None if gap == math.inf else later}


def trace_excerpt(trace, centre, seconds=1.0):
    """The probe samples within ``seconds`` of ``centre`` (monotonic), for the full results and the plot."""
    start = trace["start_monotonic"]
    keep = [i for i, sent in enumerate(trace["sent_s"]) if abs(start + sent - centre) <= seconds]
    return {"t_s": [round(start + trace["sent_s"][i] - centre, 5) for i in keep],
            "rtt_ms": [None if trace["rtt_ms"][i] is None else round(trace["rtt_ms"][i], 3) for i in keep]}


# --- the lab: guests, where they run, what libvirt recorded, the ways of migrating ------------------------------


def timed_run(argv):
    """(returncode, stdout, stderr, ms): the one clock around every whole command timed here, the same for virsh
    and ansible. A command still running after COMMAND_TIMEOUT_S is killed (returncode None)."""
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)
        outcome = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        outcome = None, "", "killed after %d s" % COMMAND_TIMEOUT_S
    return (*outcome, round((time.monotonic() - started) * 1000, 1))


def _version(number):
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


def module_cause(result):
    """The cause of a failed ad-hoc run of the module: its own ``cause``, else what Ansible tells."""
    if result.get("cause"):
        return result["cause"]
    return "ansible: host unreachable" if result.get("unreachable") else "module error"


class Bench:
    """The lab as the benchmarks use it: guests moved back and forth between two hypervisors, ``hosts``."""

    def __init__(self, state, ansible, initrd=None, hosts=HYPERVISORS):
        self.state = state
        self.ansible = ansible
        self.initrd = initrd
        self.hosts = hosts

    def connect(self, host, patience=DAEMON_PATIENCE):
        """A connection to a hypervisor's daemon, waiting while it is down (others' fault tests restart them)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return libvirt.open(self.state["hosts"][host]["uri"])
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def versions(self):
        """{hypervisor: {"libvirt": ..., "qemu": ...}} as each daemon reports them."""
        found = {}
        for host in self.hosts:
            conn = self.connect(host)
            try:
                found[host] = {"libvirt": _version(conn.getLibVersion()), "qemu": _version(conn.getVersion())}
            finally:
                conn.close()
        return found

    def location(self, name):
        """The hypervisor on which the guest runs, or None."""
        running = []
        for host in self.hosts:
            conn = self.connect(host)
            try:
                if name in [domain.name() for domain in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]:
                    running.append(host)
            finally:
                conn.close()
        if len(running) > 1:
            raise RuntimeError("guest %s runs on both %s" % (name, " and ".join(running)))
        return running[0] if running else None

    def route(self, name):
        """(where the guest runs, the other hypervisor)."""
        source = self.location(name)
        if source is None:
            raise RuntimeError("guest %s runs nowhere" % name)
        return source, next(host for host in self.hosts if host != source)

    def dirty_rate(self, host, name, seconds=1):
        """MiB/s the guest dirties, as QEMU samples it (calc-dirty-rate, page sampling)."""
        conn = self.connect(host)
        try:
            domain = conn.lookupByName(name)
            domain.startDirtyRateCalc(seconds, 0)
            time.sleep(seconds + 0.5)
            for _attempt in range(20):
                stats = conn.domainListGetStats([domain], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)[0][1]
                if stats.get("dirtyrate.calc_status") == libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED:
                    return stats.get("dirtyrate.megabytes_per_second")
                time.sleep(0.5)
            return None
        finally:
            conn.close()

    def completed_job(self, host, name):
        """libvirt's statistics of the migration that just ended on ``host`` (the destination)."""
        conn = self.connect(host)
        try:
            stats = conn.lookupByName(name).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            keys = ("time_elapsed", "downtime", "downtime_net", "memory_iteration", "memory_processed",
                    "memory_postcopy_requests")
            return {key: stats[key] for key in keys if key in stats}
        except libvirt.libvirtError as error:
            return {"error": str(error)}
        finally:
            conn.close()

    def boot(self, host, name, address):
        cmdline = "console=ttyS0 quiet panic=-1 atv.name=%s atv.ip=%s/24" % (name, address)
        self.ansible.ok(host, "guest", name=name, state="running", memory=128, vcpus=1,
                        hypervisor=self.state["virt_type"], kernel=self.state["image"]["kernel"],
                        initrd=self.initrd or self.state["image"]["initrd"], cmdline=cmdline, nics=[{"bridge": "br0"}],
                        serial_log="/var/log/libvirt/qemu/%s-serial.log" % name)
        answer = client_http(address, wait=120)
        if not answer["ok"]:
            raise RuntimeError("guest %s at %s never answered: %s" % (name, address, answer))
        return answer["answer"]

    def guest_answer(self, name, address, previous=None):
        """(the agent's answer, None) when the guest still serves the same boot, else (answer, what is wrong)."""
        answer = client_http(address, wait=15)
        if not answer["ok"]:
            return None, "the guest's agent does not answer (%s)" % answer.get("error")
        answer = answer["answer"]
        if previous and answer["boot"] != previous["boot"]:
            return answer, "the guest rebooted"
        if previous and int(answer["counter"]) <= int(previous["counter"]):
            return answer, "the guest's request counter went back"
        if answer.get("name") != name:
            return answer, "another guest (%s) answers at %s" % (answer.get("name"), address)
        return answer, None

    @staticmethod
    def serial_tail(host, name, chars=2000):
        """The end of the guest's serial console log, as its hypervisor wrote it (read from the root namespace)."""
        path = lab_topology.host(host).state_dir / "log" / "qemu" / ("%s-serial.log" % name) if host else None
        try:
            return path.read_text(errors="replace")[-chars:]
        except (OSError, AttributeError):
            return ""

    def check_serving(self, name, address, previous):
        """(answer, problem, serial console tail) after a migration. A guest that stopped serving the same boot
        is power-cycled, so that the rounds can go on; ``problem`` and the console tail say what was wrong."""
        answer, problem = self.guest_answer(name, address, previous)
        if not problem:
            return answer, None, None
        serial = self.serial_tail(self.location(name), name)
        return self.restart(name, address), problem, serial

    def restart(self, name, address):
        """Power-cycle a guest that stopped serving, where it runs, so the rounds can go on."""
        host = self.location(name) or self.hosts[0]
        self.ansible.ok(host, "guest", name=name, state="destroyed")
        self.ansible.ok(host, "guest", name=name, state="running")
        answer = client_http(address, wait=120)
        if not answer["ok"]:
            raise RuntimeError("guest %s did not come back after a restart: %s" % (name, answer))
        return answer["answer"]

    def remove(self, name):
        for host in self.hosts:
            for attempt in range(3):
                self.connect(host).close()
                result = self.ansible.module(host, "guest", name=name, state="absent")
                if not result.get("failed"):
                    break
                log("could not remove %s from %s (attempt %d): %s" % (name, host, attempt + 1, result.get("msg")))

    def options(self, name, dest, **options):
        """The module's options for moving ``name`` to ``dest`` over the migration link; ``options`` are
        MigrationOptions fields beyond the defaults, checked here."""
        return MigrationOptions(name=name, dest_uri=self.state["hosts"][dest]["migration_uri"],
                                migrate_uri="tcp://%s" % self.state["hosts"][dest]["link_address"], **options)

    def virsh_migrate(self, name, source, dest):
        """(a) the baseline: virsh's live migration, peer to peer over the migration link, timed as a command."""
        options = self.options(name, dest)
        argv = ["virsh", "-c", self.state["hosts"][source]["uri"], "migrate", *VIRSH_FLAGS, name, options.dest_uri,
                options.migrate_uri]
        returncode, _out, err, took_ms = timed_run(argv)
        failed = returncode != 0
        return {"ok": not failed, "cause": "virsh error" if failed else None, "error": _tail(err) if failed else None,
                "command_ms": took_ms, "duration_ms": took_ms, "flags": list(VIRSH_FLAGS.values()),
                "command": shlex.join(argv)}

    def call_migrate(self, name, source, dest):
        """(l) the module's libvirt call without the module: migrateToURI3 with the flags and typed parameters of the
        module's defaults, timed around that call alone, as the module times its own (``migration.wall_time_ms``)."""
        options = self.options(name, dest)
        conn = self.connect(source)
        try:
            domain = conn.lookupByName(name)
            error = None
            started = time.monotonic()
            try:
                domain.migrateToURI3(options.dest_uri, migration_params(options), migration_flags(options))
            except libvirt.libvirtError as failure:
                error = str(failure)
            took_ms = round((time.monotonic() - started) * 1000, 1)
        finally:
            conn.close()
        return {"ok": error is None, "cause": "libvirt error" if error else None, "error": error, "call_ms": took_ms,
                "duration_ms": took_ms, "flags": flag_names(options)}

    def module_migrate(self, name, source, dest, **options):
        """(b), (c): arctictern.virt.migrate run on the source hypervisor as a user's ad-hoc command, timed as a
        command like virsh; ``options`` are MigrationOptions fields beyond the module's defaults."""
        args = self.options(name, dest, **options).module_args()
        with tempfile.TemporaryDirectory() as tree:
            argv = [str(VENV_BIN / "ansible"), source, "-i", str(ROOT / "inventories" / "lab"),
                    "-m", "arctictern.virt.migrate", "-a", json.dumps(args), "--tree", tree]
            returncode, out, err, took_ms = timed_run(argv)
            result_file = Path(tree) / source
            result = json.loads(result_file.read_text()) if result_file.exists() else {
                "msg": "no result from ansible: %s" % _tail(out + err)}
        # ansible-core 2.19's tree callback drops 'failed' from the result; the exit code still tells.
        failed = returncode != 0 or bool(result.get("failed"))
        stats = result.get("migration") or {}
        return {"ok": not failed, "cause": module_cause(result) if failed else None,
                "error": result.get("msg") if failed else None, "command_ms": took_ms, "duration_ms": took_ms,
                "call_ms": stats.get("wall_time_ms"), "flags": (result.get("plan") or {}).get("flags"),
                "mode": stats.get("mode"), "args": args, "module_result": result}


class QemuEvents:
    """QEMU's own monitor events for one guest on both hypervisors (STOP, MIGRATION status, RESUME), with QEMU's
    timestamps converted to our monotonic clock: where the switch-over time goes. Read-only observation."""

    loop_started = False

    @classmethod
    def start_loop(cls):
        """libvirt delivers events only through an event loop registered before any connection is opened."""
        if not cls.loop_started:
            libvirt.virEventRegisterDefaultImpl()
            threading.Thread(target=cls._run_loop, daemon=True).start()
            cls.loop_started = True

    @staticmethod
    def _run_loop():
        while True:
            libvirt.virEventRunDefaultImpl()

    def __init__(self, state, name, hosts):
        self.state, self.name, self.hosts, self.events, self.callbacks = state, name, hosts, [], []
        self.offset = time.time() - time.monotonic()

    def __enter__(self):
        for host in self.hosts:
            conn = None
            try:
                conn = libvirt.open(self.state["hosts"][host]["uri"])
                self.callbacks.append((conn, libvirt_qemu.qemuMonitorEventRegister(
                    conn, None, None, self._on_event, host, 0)))
            except libvirt.libvirtError as error:
                log("  no QEMU events from %s: %s" % (host, error))
                if conn is not None:
                    conn.close()
        return self

    def __exit__(self, *exc):
        for conn, callback in self.callbacks:
            with contextlib.suppress(libvirt.libvirtError):
                libvirt_qemu.qemuMonitorEventDeregister(conn, callback)
                conn.close()

    def _on_event(self, _conn, domain, event, seconds, micros, details, host):  # pylint: disable=too-many-arguments
        if domain.name() == self.name and event in ("STOP", "RESUME", "MIGRATION"):
            status = json.loads(details).get("status") if event == "MIGRATION" and details else None
            self.events.append((seconds + micros / 1e6 - self.offset, host, event, status))

    def timeline(self, source, dest, after):
        """Monotonic times of the steps of the switch-over that began after ``after``."""
        steps = {}
        for when, host, event, status in sorted(self.events):
            if when < after:
                continue
            if host == source and event == "STOP":
                steps.setdefault("paused", when)
            elif host == source and status in ("pre-switchover", "device", "postcopy-active", "completed"):
                steps.setdefault(status, when)
            elif host == dest and event == "RESUME":
                steps.setdefault("resumed", when)
        return steps


def decompose(seen, steps):
    """Split the client's blackout (ms) into its parts, from the QEMU timeline."""
    if not (seen.get("gap_start") and seen.get("gap_end") and "paused" in steps and "resumed" in steps):
        return {}
    handed_over = steps.get("completed") if "postcopy-active" not in steps else steps["postcopy-active"]
    parts = {"before_pause_ms": steps["paused"] - seen["gap_start"],
             "paused_ms": steps["resumed"] - steps["paused"],
             "after_resume_ms": seen["gap_end"] - steps["resumed"]}
    if handed_over and steps["paused"] <= handed_over <= steps["resumed"]:
        parts["qemu_copy_ms"] = handed_over - steps["paused"]
        parts["libvirt_resume_ms"] = steps["resumed"] - handed_over
    return {key: round(value * 1000, 1) for key, value in parts.items()}


# --- one migration with the probe running, the rounds of a variant --------------------------------------------


def observe(trace, began, ended, steps):
    """What the probe's ``trace`` shows of a migration from ``began`` to ``ended`` (monotonic s) with QEMU's
    ``steps``: the blackout and its parts, whether the probe outlasted the migration (``covered``), and the samples
    around the switch-over (full results only)."""
    switch = (steps["paused"], steps["resumed"]) if "paused" in steps and "resumed" in steps else None
    seen = blackout(trace, began, ended, switch)
    seen["covered"] = ended + 0.2 <= trace["start_monotonic"] + trace["sent_s"][-1]
    seen["parts"] = decompose(seen, steps)
    centre = seen["gap_start"] or ended
    seen["trace"] = dict(trace_excerpt(trace, centre), migration_s=[round(began - centre, 4), round(ended - centre, 4)],
                         qemu_s={step: round(when - centre, 4) for step, when in steps.items()})
    return seen


def migrate_probed(bench, address, name, route, migrate, probe_seconds):
    """Run ``migrate()`` while the client probes for ``probe_seconds``: its outcome with what the probe saw, or
    with ``probe_error`` when the probe gave nothing (the migration is made and counted all the same)."""
    source, dest = route
    with QemuEvents(bench.state, name, route) as events:
        probe = Probe(bench.state, address, probe_seconds)
        try:
            time.sleep(LEAD_S)
            began = time.monotonic()
            outcome = migrate()
            ended = time.monotonic()
            trace = probe.result()
        finally:
            probe.kill()
        time.sleep(0.2)     # the last events
    outcome["probe_s"] = probe_seconds
    if trace is None:
        outcome["probe_error"] = probe.error
    else:
        outcome.update(observe(trace, began, ended, events.timeline(source, dest, began)))
    return outcome


def migration_of(bench, variant, route, options):
    """The migration function of a variant, for the guest along ``route``."""
    if variant == "a":
        return functools.partial(bench.virsh_migrate, GUEST, *route)
    if variant == "l":
        return functools.partial(bench.call_migrate, GUEST, *route)
    return functools.partial(bench.module_migrate, GUEST, *route, **(options or {}))


def run_variant(bench, address, variant, rounds, attempts, options=None, warmup=True, probe_length=None):
    """A warm-up migration (unprobed, recorded with ``warmup``) when ``warmup``, then ``rounds`` probed ones,
    alternating direction, each appended to ``attempts`` as it ends (a run that stops early keeps them). Every one
    is kept whatever its outcome, and none is run again."""
    probe_length = probe_length or ProbeLength()
    previous = bench.guest_answer(GUEST, address)[0]
    for number in range(0 if warmup else 1, rounds + 1):
        route = bench.route(GUEST)
        migrate = migration_of(bench, variant, route, options)
        if number == 0:
            attempt = dict(migrate(), warmup=True)
        else:
            attempt = migrate_probed(bench, address, GUEST, route, migrate, probe_length.seconds())
        probe_length.saw(attempt)
        attempt.update(variant=variant, attempt=number, source=route[0], dest=route[1],
                       job=bench.completed_job(route[1], GUEST) if attempt["ok"] else None)
        previous, attempt["guest_problem"], attempt["serial_tail"] = bench.check_serving(GUEST, address, previous)
        log_attempt(attempt)
        attempts.append(attempt)


def log_attempt(attempt):
    what = "warm-up" if attempt.get("warmup") else "attempt %d" % attempt["attempt"]
    outcome = "ok" if attempt["ok"] else "FAILED (%s: %s)" % (attempt["cause"], attempt["error"])
    if attempt.get("probe_error"):
        seen = attempt["probe_error"]
    elif "covered" in attempt:
        seen = "blackout %s ms%s" % (attempt["blackout_ms"], "" if attempt["covered"] else " (not fully observed)")
    else:
        seen = "unprobed"
    log("  (%s) %s %s->%s: %s, %.0f ms; %s%s" % (
        attempt["variant"], what, attempt["source"], attempt["dest"], outcome, attempt["duration_ms"], seen,
        "; GUEST BROKEN: %s" % attempt["guest_problem"] if attempt["guest_problem"] else ""))


def tuned_options(downtime):
    """Variant (c): MigrationOptions fields beyond the module's defaults, ``downtime`` as max_downtime and a
    timeout, whose default action (abort) leaves the guest where it runs should pre-copy not converge."""
    return {"max_downtime": downtime, "timeout": TUNED_TIMEOUT}


def calibrate(bench, address, tried):
    """The lowest max_downtime (ms) at which the module's pre-copy converged and the guest kept serving in
    CALIBRATION_ROUNDS migrations, or None; each candidate's attempts go to ``tried``."""
    probe_length = ProbeLength()
    for downtime in CALIBRATION_DOWNTIMES:
        step = {"max_downtime": downtime, "attempts": []}
        tried.append(step)
        run_variant(bench, address, "c", CALIBRATION_ROUNDS, step["attempts"], tuned_options(downtime), warmup=False,
                    probe_length=probe_length)
        # A setting after which the guest stopped serving is no candidate either.
        step["converged"] = all(attempt["ok"] and not attempt["guest_problem"] for attempt in step["attempts"])
        log("  calibration max_downtime=%d ms: %s" % (
            downtime, "converged" if step["converged"] else "did not converge, or the guest stopped serving"))
        if step["converged"]:
            return downtime
    return None


def noise_floor(bench, address, seconds=5.0):
    """The same blackout measure with no migration: what the probe and a TCG guest give on their own."""
    probe = Probe(bench.state, address, seconds)
    trace = probe.result()
    if trace is None:
        return {"probe_error": probe.error}
    start = trace["start_monotonic"]
    floor = blackout(trace, start, start + seconds)
    rtts = [trace["rtt_ms"][i] for i in answered(trace)]
    tail_label, tail = percentile_or_max(rtts, 99)
    return {"blackout_ms": floor["blackout_ms"], "lost": floor["lost"], "answers": len(rtts),
            "rtt_median_ms": percentile_or_max(rtts, 50)[1], "rtt_tail_label": tail_label, "rtt_tail_ms": tail}


# --- the guest that dirties memory faster than the link carries it -----------------------------------------


def start_dirtying(address):
    """Start the guest's memory rewriter; the agent forks it before answering, so allow for a slow answer."""
    answer = client_http(address, wait=10)
    if answer.get("answer", {}).get("dirty") != "1":
        client_http(address, path="/dirty?mib=%d" % DIRTY_MIB, wait=10)
        answer = client_http(address, wait=10)
    if answer.get("answer", {}).get("dirty") != "1":
        raise RuntimeError("the guest at %s does not dirty memory: %s" % (address, answer))
    return answer["answer"]


def dirtying_check(bench, address):
    """Whether the guest really dirties memory faster than the capped link carries it, measured by QEMU."""
    start_dirtying(address)
    rate = bench.dirty_rate(bench.location(DIRTY_GUEST), DIRTY_GUEST)
    check = {"dirty_rate_mib_s": rate, "bandwidth_mib_s": DIRTY_BANDWIDTH,
             "ok": rate is not None and rate >= 2 * DIRTY_BANDWIDTH}
    if not check["ok"]:
        check["msg"] = ("Not measured: QEMU saw the guest dirty %s MiB/s after `GET /dirty?mib=%d`, not clearly more "
                        "than the link's %d MiB/s, so every migration would converge and show nothing. (The agent's "
                        "rewriter must really store to its buffer: compiled with -O2 from a plain `unsigned char *`, "
                        "GCC drops the stores and the child only spins.)" % (rate, DIRTY_MIB, DIRTY_BANDWIDTH))
    return check


def dirty_cases():
    return [
        ("pre-copy (plain)", {}),
        ("pre-copy + auto_converge", {"auto_converge": True}),
        # The capped link carries post-copy's background copy too (QEMU leaves that unlimited by default).
        ("post-copy", {"mode": "postcopy", "postcopy_bandwidth": DIRTY_BANDWIDTH}),
        ("auto (post-copy after %g s)" % MigrationOptions.postcopy_after,
         {"mode": "auto", "postcopy_bandwidth": DIRTY_BANDWIDTH}),
    ]


def dirty_scenarios(bench, address, timeout, runs):
    """Each way of moving the dirtying guest, once, appended to ``runs`` whatever its outcome. The probe covers
    the module's timeout and a margin, set before the migration starts."""
    for label, options in dirty_cases():
        route = bench.route(DIRTY_GUEST)
        before = start_dirtying(address)
        job = dict(options, bandwidth=DIRTY_BANDWIDTH, timeout=timeout)
        migrate = functools.partial(bench.module_migrate, DIRTY_GUEST, *route, **job)
        outcome = migrate_probed(bench, address, DIRTY_GUEST, route, migrate, LEAD_S + timeout + 10)
        after = client_http(address, wait=30).get("answer", {})
        outcome.update(label=label, source=route[0], dest=route[1], options=job,
                       running_on=bench.location(DIRTY_GUEST), counter_before=int(before["counter"]),
                       counter_after=int(after["counter"]) if after else None,
                       same_boot=after.get("boot") == before["boot"],
                       job=bench.completed_job(route[1], DIRTY_GUEST) if outcome["ok"] else None)
        outcome["converged"] = outcome["ok"] and outcome["running_on"] == route[1]
        runs.append(outcome)
        log("  %s: %s, guest runs on %s, same boot %s, %.1f s, blackout %s ms" % (
            label, "converged" if outcome["converged"] else "did not converge (%s)" % outcome["error"],
            outcome["running_on"], outcome["same_boot"], outcome["duration_ms"] / 1000,
            outcome.get("blackout_ms", outcome.get("probe_error"))))
    return runs


# --- figures: what a sample supports ------------------------------------------------------------------------


def _p(values, percent):
    """The ``percent``th percentile of sorted ``values`` (linear interpolation; inf stays inf)."""
    if len(values) == 1:
        return values[0]
    rank = (len(values) - 1) * percent / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    if values[high] == math.inf:
        return values[low] if rank == low else math.inf
    return values[low] + (values[high] - values[low]) * (rank - low)


def percentile_or_max(values, percent):
    """(label, value): the ``percent``th percentile of ``values`` ("median", "p95", "p99") when the sample is large
    enough for it (MIN_SAMPLES), else its maximum labelled with the sample size ("max (n=20)"). None values are
    left out; (None, None) when nothing is left. The one place that decides which percentile a table may give."""
    values = sorted(value for value in values if value is not None)
    if not values:
        return None, None
    if len(values) < MIN_SAMPLES[percent]:
        return "max (n=%d)" % len(values), values[-1]
    return "median" if percent == 50 else "p%d" % percent, _p(values, percent)


def _fmt(value, digits=0):
    if value is None:
        return "-"
    if value == math.inf:
        return "never"
    return "%.*f" % (digits, value)


def figure_cell(values, percent, digits=0):
    """A table cell for a percentile: the value, or "max (n=12): 319" when the sample is too small for it."""
    label, value = percentile_or_max(values, percent)
    if label is None or not label.startswith("max"):
        return _fmt(value, digits)
    return "%s: %s" % (label, _fmt(value, digits))


def median(values):
    return percentile_or_max(values, 50)[1]


def _ratio(value, base):
    if value is None or not base or value == math.inf or base == math.inf:
        return "-"
    return "%.2f" % (value / base)


def blackout_of(attempt):
    """An attempt's blackout in ms; math.inf when the guest never answered again while the probe ran."""
    value = attempt.get("blackout_ms")
    return math.inf if value in ("never", math.inf) else value


def failure_cause(attempt):
    """Why a probed attempt gave no blackout figure, or None: the migration failed (its cause), the probe gave no
    samples, or the migration outlasted the probe."""
    if not attempt["ok"]:
        return attempt.get("cause") or "failed"
    if attempt.get("probe_error"):
        return "probe error"
    if not attempt.get("covered"):
        return "blackout not fully observed"
    return None


def failures_text(causes):
    """"0", or the count with the causes, e.g. "2 (1 probe error, 1 timeout)"; None causes are successes."""
    counts = collections.Counter(cause for cause in causes if cause)
    if not counts:
        return "0"
    return "%d (%s)" % (sum(counts.values()), ", ".join("%d %s" % (n, cause) for cause, n in sorted(counts.items())))


PARTS = ("before_pause_ms", "qemu_copy_ms", "libvirt_resume_ms", "after_resume_ms", "paused_ms")


def summarize(attempts):
    """A variant's figures from all its attempts: warm-ups apart; every other attempt counted; blackouts from
    those the probe saw through; times from those that migrated."""
    counted = [attempt for attempt in attempts if not attempt.get("warmup")]
    measured = [attempt for attempt in counted if not failure_cause(attempt)]
    migrated = [attempt for attempt in counted if attempt["ok"]]
    row = {"attempts": len(counted), "warmups": [attempt for attempt in attempts if attempt.get("warmup")],
           "failures": failures_text(failure_cause(attempt) for attempt in counted),
           "broken": sum(1 for attempt in counted if attempt.get("guest_problem")),
           "blackouts": [blackout_of(attempt) for attempt in measured],
           "command_ms": [attempt.get("command_ms") for attempt in migrated if attempt.get("command_ms") is not None],
           "call_ms": [attempt.get("call_ms") for attempt in migrated if attempt.get("call_ms") is not None],
           "flags": sorted({tuple(sorted(attempt["flags"])) for attempt in counted if attempt.get("flags")}),
           "downtime": median([(attempt["job"] or {}).get("downtime") for attempt in migrated]),
           "elapsed": median([(attempt["job"] or {}).get("time_elapsed") for attempt in migrated])}
    for part in PARTS:
        row[part] = median([attempt.get("parts", {}).get(part) for attempt in measured])
    return row


# --- tables -------------------------------------------------------------------------------------------------


def warmup_note(warmup):
    """" + 1 warm-up", saying when it failed or broke the guest."""
    trouble = []
    if not warmup["ok"]:
        trouble.append("failed: %s" % warmup.get("cause"))
    if warmup.get("guest_problem"):
        trouble.append("guest stopped serving")
    return " + 1 warm-up" + (" (%s)" % ", ".join(trouble) if trouble else "")


def attempts_cell(row):
    """"20", or "20 + 1 warm-up" with what went wrong in the warm-up."""
    return "%d%s" % (row["attempts"], "".join(warmup_note(warmup) for warmup in row["warmups"]))


def main_table(rows, labels):
    base = median(rows["a"]["blackouts"]) if "a" in rows else None
    lines = ["| variant | attempts | failed (causes) | guest stopped serving after | blackouts measured | "
             "blackout median ms | p95 ms | p99 ms | median / (a) |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant, row in rows.items():
        lines.append("| (%s) %s | %s | %s | %d | %d | %s | %s | %s | %s |" % (
            variant, labels[variant], attempts_cell(row), row["failures"], row["broken"], len(row["blackouts"]),
            _fmt(median(row["blackouts"])), figure_cell(row["blackouts"], 95), figure_cell(row["blackouts"], 99),
            _ratio(median(row["blackouts"]), base)))
    return "\n".join(lines)


# The like-for-like pairs: (attempt field, the baseline variant, what is timed, how).
PAIRS = (
    ("command_ms", "a", "whole command", "`time.monotonic()` around `subprocess.run` of `virsh migrate ...` for (a) "
                                         "and of `ansible <source> -m arctictern.virt.migrate ...` for the module"),
    ("call_ms", "l", "libvirt call", "`time.monotonic()` around `migrateToURI3`: this script's own call for (l), the "
                                     "module's figure for its call (`migration.wall_time_ms`) for the module"),
)


def _median_cell(values):
    return "%s (n=%d)" % (_fmt(median(values)), len(values)) if values else "-"


def timing_table(rows):
    """Like for like: each module variant against (a) as whole commands and against (l) as bare libvirt calls."""
    lines = ["| timed | baseline | median ms (n) | module | median ms (n) | module / baseline |",
             "| --- | --- | ---: | --- | ---: | ---: |"]
    for variant in (variant for variant in MODULE_VARIANTS if variant in rows):
        for key, base, timed, _how in PAIRS:
            if base in rows:
                lines.append("| %s | (%s) | %s | (%s) | %s | %s |" % (
                    timed, base, _median_cell(rows[base][key]), variant, _median_cell(rows[variant][key]),
                    _ratio(median(rows[variant][key]), median(rows[base][key]))))
    return "\n".join(lines + [""] + ["- %s: %s." % (timed, how) for _key, _base, timed, how in PAIRS])


def _flags_text(flag_sets):
    return " / ".join(", ".join(flags) for flags in flag_sets) or "none recorded"


def _flags_difference(flag_sets, reference):
    used = {flag for flags in flag_sets for flag in flags}
    wanted = {flag for flags in reference for flag in flags}
    return " (DIFFERENT from (a): adds %s, lacks %s)" % (", ".join(sorted(used - wanted)) or "nothing",
                                                         ", ".join(sorted(wanted - used)) or "nothing")


def flags_line(rows):
    """Which VIR_MIGRATE_* flags each variant's attempts recorded, against (a)'s: a pair is like for like only where
    they agree."""
    reference = rows["a"]["flags"] if "a" in rows else None
    parts = []
    for variant, row in rows.items():
        if variant != "a" and row["flags"] == reference:
            parts.append("(%s) the same as (a)" % variant)
        else:
            difference = _flags_difference(row["flags"], reference) if reference is not None and variant != "a" else ""
            parts.append("(%s) %s%s" % (variant, _flags_text(row["flags"]), difference))
    return "Migration flags (VIR_MIGRATE_*): %s." % "; ".join(parts)


def parts_table(rows):
    """Where the blackout goes, medians per variant (the parts' medians need not add up to the blackout's)."""
    lines = ["| variant | last answer -> paused | paused -> QEMU done (final copy) | QEMU done -> resumed "
             "(libvirt) | resumed -> first answer | guest paused (QEMU) | libvirt's downtime | QEMU job time |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant, row in rows.items():
        lines.append("| (%s) | %s | %s | %s | %s | %s | %s | %s |" % (
            variant, _fmt(row["before_pause_ms"]), _fmt(row["qemu_copy_ms"]), _fmt(row["libvirt_resume_ms"]),
            _fmt(row["after_resume_ms"]), _fmt(row["paused_ms"]), _fmt(row["downtime"]), _fmt(row["elapsed"])))
    return "\n".join(lines)


def calibration_line(calibration):
    tried = ["%d ms: %d attempts, failed %s, guest stopped serving after %d%s" % (
        step["max_downtime"], len(step["attempts"]), failures_text(failure_cause(a) for a in step["attempts"]),
        sum(1 for a in step["attempts"] if a.get("guest_problem")), " (chosen)" if step.get("converged") else "")
        for step in calibration]
    return ("(c)'s max_downtime is the first of the candidates, tried in this order, at which every calibration "
            "migration converged with the guest still serving: %s." % "; ".join(tried))


def blackout_targets(rows):
    """The blackout targets, judged on the module variant with the lowest median; p99 only from enough samples."""
    module = [variant for variant in MODULE_VARIANTS if variant in rows and rows[variant]["blackouts"]]
    if not module:
        return []
    best = min(module, key=lambda variant: median(rows[variant]["blackouts"]))
    blackouts = rows[best]["blackouts"]
    lines = ["- blackout p50 <= 20 ms: %s (best module variant (%s): median %s ms of %d)" % (
        "met" if median(blackouts) <= 20 else "NOT met", best, _fmt(median(blackouts)), len(blackouts))]
    label, value = percentile_or_max(blackouts, 99)
    if label == "p99":
        lines.append("- blackout p99 <= 50 ms: %s ((%s): %s ms)" % ("met" if value <= 50 else "NOT met", best, _fmt(value)))
    else:
        lines.append("- blackout p99 <= 50 ms: not judged: p99 needs %d measured migrations, (%s) has %d "
                     "(`--rounds 100`); their %s is %s ms" % (MIN_SAMPLES[99], best, len(blackouts), label, _fmt(value)))
    return lines


def time_targets(rows):
    """Total time no worse than the baseline, for each like-for-like pair."""
    lines = []
    for key, base, timed, _how in PAIRS:
        compared = [(variant, median(rows[variant][key])) for variant in MODULE_VARIANTS
                    if variant in rows and rows[variant][key]]
        if base not in rows or not compared:
            continue
        base_median = median(rows[base][key])
        if base_median is None:
            verdict = "not judged: no (%s) migration succeeded" % base
        else:
            verdict = "NOT met" if any(value > base_median for _variant, value in compared) else "met"
        lines.append("- total time no worse than (%s), %s: %s (module / baseline, medians: %s)" % (
            base, timed, verdict, ", ".join("(%s) %s" % (variant, _ratio(value, base_median)) for variant, value in compared)))
    return lines


def convergence_target(dirty_runs):
    plain = next((run for run in dirty_runs if run["label"] == "pre-copy (plain)"), None)
    plain_converged = plain is None or plain["converged"]
    helped = [run["label"] for run in dirty_runs if run["converged"] and run is not plain]
    return ["- convergence where plain pre-copy fails: %s (plain pre-copy %s; converged: %s)" % (
        "met" if not plain_converged and helped else "not shown",
        "converged" if plain_converged else "did not converge", ", ".join(helped) or "none")] if dirty_runs else []


def targets(rows, dirty_runs):
    return "\n".join(blackout_targets(rows) + time_targets(rows) + convergence_target(dirty_runs))


def dirty_blackout_cells(run):
    """The blackout and its two main parts, or what kept the probe from seeing them."""
    if not run["converged"]:
        return ["-"] * 3
    if failure_cause(run):
        return [failure_cause(run), "-", "-"]
    parts = run.get("parts", {})
    return [_fmt(blackout_of(run)), _fmt(parts.get("paused_ms")), _fmt(parts.get("after_resume_ms"))]


def _seconds(ms):
    return _fmt(ms / 1000 if ms is not None else None, 1)


def dirty_table(runs):
    lines = ["| how | converged | guest runs on afterwards | same boot, counter kept | whole command s | libvirt call s "
             "| client blackout ms | of it: guest paused | of it: resumed -> first answer | mode that finished |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for run in runs:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            run["label"], "yes" if run["converged"] else "no (%s)" % (run["error"] or run["cause"] or "?").replace("|", "/")[:90],
            run["running_on"] or "nowhere",
            "yes" if run["same_boot"] and (run["counter_after"] or 0) > (run["counter_before"] or 0) else "NO",
            _seconds(run.get("command_ms")), _seconds(run.get("call_ms")), *dirty_blackout_cells(run),
            run.get("mode") if run["converged"] else "-"))
    return "\n".join(lines)


# --- the plot ---------------------------------------------------------------------------------------------


def median_attempt(attempts):
    """The attempt with the median blackout of those the probe saw through (with their samples), or None."""
    good = sorted((attempt for attempt in attempts if not attempt.get("warmup") and not failure_cause(attempt)
                   and blackout_of(attempt) != math.inf), key=blackout_of)
    return good[len(good) // 2] if good else None


def plot(variants, labels, path):
    """Client RTT over time around the switch-over: the median-blackout attempt of the baseline and of the tuned
    module. Returns {variant: attempt number} of what it drew."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    chosen = [(variant, median_attempt(variants[variant])) for variant in ("a", "c") if variant in variants]
    chosen = [(variant, attempt) for variant, attempt in chosen if attempt]
    if not chosen:
        return {}
    figure, axes = pyplot.subplots(len(chosen), 1, figsize=(10, 3.2 * len(chosen)), sharex=True, squeeze=False)
    for axis, (variant, attempt) in zip(axes[:, 0], chosen):
        trace = attempt["trace"]
        times = [t * 1000 for t, r in zip(trace["t_s"], trace["rtt_ms"]) if r is not None]
        rtts = [r for r in trace["rtt_ms"] if r is not None]
        lost = [t * 1000 for t, r in zip(trace["t_s"], trace["rtt_ms"]) if r is None]
        axis.plot(times, rtts, ".", markersize=2, color="tab:blue", label="answered request (RTT)")
        top = max(rtts + [10]) * 1.15
        axis.plot(lost, [top] * len(lost), "|", color="tab:red", markersize=6, label="lost request")
        axis.axvspan(0, attempt["blackout_ms"], color="tab:red", alpha=0.12,
                     label="blackout %.0f ms (switch-over)" % attempt["blackout_ms"])
        axis.axvline(0, color="tab:red", linewidth=0.8)
        marks = {"paused": ("guest paused (source)", "tab:orange"), "completed": ("QEMU done", "tab:purple"),
                 "postcopy-active": ("post-copy", "tab:purple"), "resumed": ("guest resumed (destination)", "tab:green")}
        for step, (text, colour) in marks.items():
            if step in trace.get("qemu_s", {}):
                axis.axvline(trace["qemu_s"][step] * 1000, color=colour, linestyle="--", linewidth=1, label=text)
        axis.set_ylim(0, top * 1.08)
        axis.set_ylabel("RTT ms")
        axis.set_title("(%s) %s: attempt %d, %s -> %s, libvirt downtime %s ms" % (
            variant, labels[variant].replace("`", ""), attempt["attempt"], attempt["source"], attempt["dest"],
            (attempt["job"] or {}).get("downtime", "?")), fontsize=9)
        axis.legend(loc="upper right", fontsize=7)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlim(-600, 800)
    axes[-1, 0].set_xlabel("ms from the last answer before the switch-over (client probe, one request per ms)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return {variant: attempt["attempt"] for variant, attempt in chosen}


# --- raw results and the doc's blocks -----------------------------------------------------------------------


def _json_safe(value, drop=()):
    """``value`` for JSON: inf as "never" (a blackout that did not end while the probe ran), without the keys
    ``drop`` at any depth."""
    if isinstance(value, float) and math.isinf(value):
        return "never"
    if isinstance(value, dict):
        return {key: _json_safe(item, drop) for key, item in value.items() if key not in drop}
    if isinstance(value, list):
        return [_json_safe(item, drop) for item in value]
    return value


def write_raws(results, name):
    """The full results under results/ and the raw result (the same, without FULL_ONLY) under docs/results/;
    returns the raw result's path."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(_json_safe(results), indent=1) + "\n")
    RAW_DIR.mkdir(exist_ok=True)
    raw = RAW_DIR / name
    raw.write_text(json.dumps(_json_safe(results, FULL_ONLY), indent=1) + "\n")
    return raw


def cite(path):
    """How the docs name a raw result: relative to the repository when it is in it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def generated_line(raw_name):
    return "Generated by `benchmarks/migration.py --from %s`: edit the script, not this block." % raw_name


def header(results, raw_name):
    accel = "KVM" if results["virt_type"] == "kvm" else "QEMU TCG (no usable KVM on this machine)"
    versions = "; ".join("%s libvirt %s, QEMU %s" % (host, v["libvirt"], v["qemu"])
                         for host, v in sorted(results.get("versions", {}).items()))
    floor = results.get("noise_floor") or {}
    if floor.get("probe_error"):
        probe_alone = "Probe alone (no migration, 5 s): not measured (%s)." % floor["probe_error"]
    else:
        probe_alone = "Probe alone (no migration, 5 s): longest gap %s ms, RTT median %s ms, %s %s ms (%d answers)." % (
            _fmt(blackout_of(floor)), _fmt(floor.get("rtt_median_ms"), 1), floor.get("rtt_tail_label"),
            _fmt(floor.get("rtt_tail_ms"), 1), floor.get("answers", 0))
    rule = results["probe_rule"]
    lines = [generated_line(raw_name),
             "Run of %s (%s min) on %d cores, guests under %s (%s), by `PYTHONPATH=.collections:. .venv/bin/python "
             "%s`. %s" % (
                 results["started"], _fmt(results.get("minutes"), 1), results["cores"], accel,
                 versions or "versions not recorded", shlex.join(["benchmarks/migration.py", *results["argv"]]),
                 probe_alone),
             "Each probe's length was set before its migration: %g s of lead + %g x the longest successful migration "
             "of its kind before it + %g s (%g s standing in for that migration until one had succeeded). Each "
             "variant's first migration was an unprobed warm-up." % (
                 rule["lead_s"], rule["factor"], rule["margin_s"], rule["first_guess_s"])]
    if results.get("stopped_early"):
        lines.append("The run stopped early: %s. What it did is below." % results["stopped_early"])
    return "\n\n".join(lines)


def plot_lines(results):
    drawn = results.get("plot")
    if not drawn:
        return []
    which = " and ".join("attempt %d of (%s)" % (number, variant) for variant, number in sorted(drawn.items()))
    return ["![Client round-trip times across one migration, baseline and tuned module](migration-blackout.png)",
            "The plot shows %s, each its variant's median blackout, drawn from the probe's samples in this run's full "
            "results (results/, not committed): every answered request as a dot at its round-trip time, plotted at "
            "the time it was sent; lost requests as red ticks along the top; the blackout (no answer arriving) "
            "shaded; QEMU's pause, completion and resume as dashed lines." % which]


def render_blocks(results, raw_name):
    """{(begin, end): block} of docs/performance.md, from a raw result (as read back from its JSON)."""
    labels = results["labels"]
    rows = {variant: summarize(attempts) for variant, attempts in results["variants"].items()}
    dirty_runs = results.get("dirty", [])
    parts = [header(results, raw_name), main_table(rows, labels)]
    if results.get("calibration"):
        parts.append(calibration_line(results["calibration"]))
    parts += ["Total time, like for like (migrations that succeeded):", timing_table(rows), flags_line(rows),
              "Where the blackout goes (medians, ms; from QEMU's own event times):", parts_table(rows),
              targets(rows, dirty_runs)] + plot_lines(results)
    check = results.get("dirty_check") or {}
    if dirty_runs:
        dirty = "QEMU measured the guest dirtying %s MiB/s (page sampling); the link is capped at %d MiB/s.\n\n%s" % (
            check.get("dirty_rate_mib_s"), check.get("bandwidth_mib_s", DIRTY_BANDWIDTH), dirty_table(dirty_runs))
    else:
        dirty = check.get("msg") or "The run left out the dirtying guest."
    return {(BEGIN, END): "\n\n".join(parts), (DIRTY_BEGIN, DIRTY_END): generated_line(raw_name) + "\n\n" + dirty}


def write_blocks(doc, blocks, check=False):
    """Write ``blocks`` into ``doc``; with ``check`` write nothing and return how the doc differs ("" if not)."""
    if check:
        return "\n".join(diff for (begin, end), block in blocks.items() if (diff := block_diff(doc, begin, end, block)))
    for (begin, end), block in blocks.items():
        replace_block(doc, begin, end, block)
    return ""


def render_from(raw, doc, check=False):
    """The doc's blocks from the raw result file ``raw``: printed, and written into ``doc`` (checked with
    ``check``). 1 when checking found a difference, else 0."""
    blocks = render_blocks(json.loads(Path(raw).read_text()), cite(raw))
    print("\n\n".join(blocks.values()))
    differences = write_blocks(doc, blocks, check)
    if differences:
        print("\n%s differs from what %s gives (edited by hand?):\n%s" % (doc, cite(raw), differences))
        return 1
    if not check:
        log("wrote %s from %s" % (doc, cite(raw)))
    return 0


# --- measuring ----------------------------------------------------------------------------------------------


def new_results(args, state, bench, started):
    return {"started": started.isoformat(timespec="seconds"), "virt_type": state["virt_type"], "cores": os.cpu_count(),
            "argv": args.argv, "versions": bench.versions(),
            "rounds": args.rounds, "probe_interval_ms": PROBE_INTERVAL_MS,
            "probe_rule": {"lead_s": LEAD_S, "factor": PROBE_FACTOR, "margin_s": PROBE_MARGIN_S,
                           "first_guess_s": FIRST_GUESS_S},
            "labels": {variant: VARIANTS[variant] for variant in args.variants}, "variants": {}}


def measure_variants(bench, address, args, results):
    for variant in args.variants:
        options = None
        if variant == "c":
            log("(c) calibrating max_downtime over %s ms" % (CALIBRATION_DOWNTIMES,))
            downtime = calibrate(bench, address, results.setdefault("calibration", []))
            if downtime is None:
                log("(c) no max_downtime converged; (c) left out")
                results["labels"].pop("c")
                continue
            results["labels"]["c"] = "arctictern.virt.migrate, max_downtime=%d" % downtime
            options = tuned_options(downtime)
        log("(%s) %s, %d rounds after a warm-up" % (variant, results["labels"][variant], args.rounds))
        run_variant(bench, address, variant, args.rounds, results["variants"].setdefault(variant, []), options)


def measure_dirty(bench, address, timeout, results):
    log("booting %s at %s on hv1; it rewrites %d MiB in a loop, link capped at %d MiB/s" % (
        DIRTY_GUEST, address, DIRTY_MIB, DIRTY_BANDWIDTH))
    bench.boot("hv1", DIRTY_GUEST, address)
    results["dirty_check"] = dirtying_check(bench, address)
    log("dirtying guest: %s" % results["dirty_check"])
    if results["dirty_check"]["ok"]:
        dirty_scenarios(bench, address, timeout, results.setdefault("dirty", []))


def measure(args, complete):
    """Run the benchmark; the raw result's path (written however the run ends)."""
    QemuEvents.start_loop()
    first = int(os.environ.get("ATV_TEST_ADDRESSES", "240-249").split("-")[0])
    address, dirty_address = "198.18.0.%d" % first, "198.18.0.%d" % (first + 1)
    started = datetime.datetime.now()
    # Bring the lab up only when it is down: others may be in the middle of a fault test on a daemon.
    state = lab_control.read_state() or lab_control.up(log=log)
    bench = Bench(state, Ansible(), args.initrd)
    for host in HYPERVISORS:
        bench.ansible.ok(host, "host_bridge", name="br0", uplink="eth0")
    results = new_results(args, state, bench, started)
    try:
        for name in (GUEST, DIRTY_GUEST):
            bench.remove(name)      # leftovers of an interrupted run
        log("booting %s at %s on hv1" % (GUEST, address))
        bench.boot("hv1", GUEST, address)
        results["noise_floor"] = noise_floor(bench, address)
        log("no migration: %s" % results["noise_floor"])
        measure_variants(bench, address, args, results)
        bench.remove(GUEST)
        if not args.skip_dirty:
            measure_dirty(bench, dirty_address, args.dirty_timeout, results)
        if complete:
            results["plot"] = plot(results["variants"], results["labels"], PLOT)
    except BaseException as error:
        results["stopped_early"] = "%s: %s" % (type(error).__name__, error)
        raise
    finally:
        results["minutes"] = round((datetime.datetime.now() - started).total_seconds() / 60, 1)
        raw = write_raws(results, "migration-%s.json" % started.strftime("%Y%m%d-%H%M"))
        log("raw result: %s (full results: %s)" % (cite(raw), cite(RESULTS / raw.name)))
        for name in (GUEST, DIRTY_GUEST):
            bench.remove(name)
    return raw


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20,
                        help="probed migrations per variant after its warm-up (p95 from 20, p99 from 100)")
    parser.add_argument("--variants", default="albc", help="which of a, l, b, c to run (docs only with all four)")
    parser.add_argument("--skip-dirty", action="store_true", help="leave out the memory-dirtying guest")
    parser.add_argument("--dirty-timeout", type=int, default=45, help="seconds before a dirty-guest migration aborts")
    parser.add_argument("--initrd", help="boot the guests from this initramfs instead of the lab image's (e.g. one built "
                        "from modified lab/guest sources)")
    parser.add_argument("--from", dest="raw", metavar="RAW.json",
                        help="measure nothing: write the doc's tables from this raw result (docs/results/...)")
    parser.add_argument("--check", action="store_true",
                        help="with --from: write nothing; exit 1 when the doc's tables differ from the raw result's")
    parser.add_argument("--doc", default=str(DOC), help="the Markdown file with the tables' markers")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.variants = [variant for variant in VARIANTS if variant in args.variants]
    if args.check and not args.raw:
        parser.error("--check needs --from")
    return args


def main(argv=None):
    args = parse_args(argv)
    doc = Path(args.doc)
    if args.raw:
        return render_from(args.raw, doc, args.check)
    if set(args.variants) & set(MODULE_VARIANTS) or not args.skip_dirty:
        if not MODULE_FILE.exists():
            sys.exit("arctictern.virt.migrate is not there (%s is missing): variants (b), (c) and the dirty-guest runs "
                     "need it. Nothing measured; run with --variants al --skip-dirty for the baselines alone."
                     % MODULE_FILE.relative_to(ROOT))
    complete = args.variants == list(VARIANTS) and not args.skip_dirty
    raw = measure(args, complete)
    if complete:
        return render_from(raw, doc)
    print("\n\n".join(render_blocks(json.loads(raw.read_text()), cite(raw)).values()))
    log("not a run of every variant with the dirty guest: %s left as it is" % doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
