"""Live-migration blackout: what a client on the LAN sees while a guest moves between the lab's hypervisors.

    PYTHONPATH=.collections:. .venv/bin/python benchmarks/migration.py [--rounds N] [--skip-dirty] [--initrd PATH]

A client probes the guest's UDP echo every millisecond (lab/client.py udp-probe) across each migration. The
guest moves back and forth N times with (a) libvirt's plain live migration as `virsh migrate --live --p2p` does
it (the baseline), (b) arctictern.virt.migrate with its defaults, (c) the module tuned (the lowest max_downtime
that converged in a short calibration). Then a guest that dirties memory faster than the (capped) migration link
carries it shows what plain pre-copy, auto-converge, post-copy and `auto` do.

Prints the tables, saves the raw samples under results/, plots one migration to docs/migration-blackout.png and
writes the tables into docs/performance.md between its markers. Variants (b), (c) and the dirty guest need the
module: without plugins/modules/migrate.py the script says so and stops (`--variants a` runs the baseline alone
and writes no docs)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time

import libvirt
import libvirt_qemu

from ansible_collections.arctictern.virt.plugins.module_utils._migration import MigrationOptions
from benchmarks.docblock import replace_block
from lab import lab as lab_control
from lab import topology as lab_topology
from lab.ansible import ROOT, Ansible, ansible_env, client_http

RESULTS = ROOT / "results"
DOC = ROOT / "docs" / "performance.md"
PLOT = ROOT / "docs" / "migration-blackout.png"
MODULE_FILE = ROOT / "plugins" / "modules" / "migrate.py"
BEGIN, END = "<!-- migration-table:begin -->", "<!-- migration-table:end -->"
DIRTY_BEGIN, DIRTY_END = "<!-- migration-dirty:begin -->", "<!-- migration-dirty:end -->"
GUEST, DIRTY_GUEST = "bench-mig", "bench-dirty"
HYPERVISORS = ("hv1", "hv2")
VARIANTS = {
    "a": "virsh migrate --live --p2p (baseline)",
    "b": "arctictern.virt.migrate, defaults",
    "c": "arctictern.virt.migrate, tuned",
}
PROBE_INTERVAL_MS = 1.0
# An echo counts as an answer if it comes back within the probe's own timeout (lab.client.udp_probe's 1000 ms).
ANSWER_TIMEOUT_MS = 1000.0
LEAD_S = 0.5            # probing before the migration starts
CALIBRATION_DOWNTIMES = (10, 20, 50)
DAEMON_PATIENCE = 180   # seconds to wait for a daemon that another engineer's fault test has stopped
TUNED_TIMEOUT = 60      # (c) gives up (abort, guest stays) rather than iterate forever at a tiny max_downtime
DIRTY_MIB, DIRTY_BANDWIDTH = 32, 5

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


# --- the probe and what it saw -------------------------------------------------------------------------------


class Probe:
    """lab.client udp-probe running in the client namespace in the background."""

    def __init__(self, state, address, seconds):
        argv = [state["hosts"]["client"]["python"], "-c", PROBE_CODE, address, "%.3f" % seconds,
                str(PROBE_INTERVAL_MS)]
        self.seconds = seconds
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                     stderr=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError("probe did not start: %s" % self.proc.communicate()[1])

    def result(self):
        out, err = self.proc.communicate(timeout=self.seconds + 60)
        if self.proc.returncode:
            raise RuntimeError("probe failed: %s" % err)
        return json.loads(out)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


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
    """The probe samples within ``seconds`` of ``centre`` (monotonic), for the raw results and the plot."""
    start = trace["start_monotonic"]
    keep = [i for i, sent in enumerate(trace["sent_s"]) if abs(start + sent - centre) <= seconds]
    return {"t_s": [round(start + trace["sent_s"][i] - centre, 5) for i in keep],
            "rtt_ms": [None if trace["rtt_ms"][i] is None else round(trace["rtt_ms"][i], 3) for i in keep]}


# --- the lab: guests, where they run, what libvirt recorded --------------------------------------------------


class Bench:
    def __init__(self, state, ansible, initrd=None):
        self.state = state
        self.ansible = ansible
        self.initrd = initrd

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

    def location(self, name):
        """The hypervisor on which the guest runs, or None."""
        running = []
        for host in HYPERVISORS:
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
        return source, "hv2" if source == "hv1" else "hv1"

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
        host = self.location(name) or "hv1"
        self.ansible.ok(host, "guest", name=name, state="destroyed")
        self.ansible.ok(host, "guest", name=name, state="running")
        answer = client_http(address, wait=120)
        if not answer["ok"]:
            raise RuntimeError("guest %s did not come back after a restart: %s" % (name, answer))
        return answer["answer"]

    def remove(self, name):
        for host in HYPERVISORS:
            for attempt in range(3):
                self.connect(host).close()
                result = self.ansible.module(host, "guest", name=name, state="absent")
                if not result.get("failed"):
                    break
                log("could not remove %s from %s (attempt %d): %s" % (name, host, attempt + 1, result.get("msg")))

    def virsh_migrate(self, name, source, dest):
        """The baseline: virsh's default live migration, peer to peer over the migration link."""
        link = self.state["hosts"][dest]["link_address"]
        argv = ["virsh", "-c", self.state["hosts"][source]["uri"], "migrate", "--live", "--p2p", name,
                self.state["hosts"][dest]["migration_uri"], "tcp://%s" % link]
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        took = time.monotonic() - started
        return {"ok": proc.returncode == 0, "wall_ms": round(took * 1000, 1), "command": shlex.join(argv),
                "error": proc.stderr.strip() or None}

    def module_migrate(self, name, source, dest, **options):
        """arctictern.virt.migrate run on the source hypervisor, as a user's ad-hoc command or play does: ``options``
        are MigrationOptions fields, checked here; the task gets those that differ from the module's defaults."""
        link = self.state["hosts"][dest]["link_address"]
        args = MigrationOptions(name=name, dest_uri=self.state["hosts"][dest]["migration_uri"], migrate_uri="tcp://%s" % link,
                                **options).module_args()
        started = time.monotonic()
        result = self.ansible.module(source, "arctictern.virt.migrate", **args)
        took = time.monotonic() - started
        result.pop("_stdout", None)
        return {"ok": not result.get("failed"), "wall_ms": round(took * 1000, 1), "args": args, "result": result,
                "error": result.get("msg") if result.get("failed") else None, "cause": result.get("cause")}


def module_statistics(outcome):
    """What the module reports of its migration: the whole libvirt call, QEMU's job time, downtime, mode."""
    stats = (outcome.get("result") or {}).get("migration") or {}
    return {"total_ms": stats.get("wall_time_ms"), "qemu_total_ms": stats.get("total_time_ms"),
            "downtime_ms": stats.get("downtime_ms"), "mode": stats.get("mode"),
            "module_events": stats.get("events")}


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

    def __init__(self, state, name):
        self.state, self.name, self.events, self.callbacks = state, name, [], []
        self.offset = time.time() - time.monotonic()

    def __enter__(self):
        for host in HYPERVISORS:
            try:
                conn = libvirt.open(self.state["hosts"][host]["uri"])
                self.callbacks.append((conn, libvirt_qemu.qemuMonitorEventRegister(
                    conn, None, None, self._on_event, host, 0)))
            except libvirt.libvirtError as error:
                log("  no QEMU events from %s: %s" % (host, error))
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


def decompose(outcome, steps):
    """Split the client's blackout (ms) into its parts, from the QEMU timeline."""
    if not (outcome.get("gap_start") and outcome.get("gap_end") and "paused" in steps and "resumed" in steps):
        return {}
    handed_over = steps.get("completed") if "postcopy-active" not in steps else steps["postcopy-active"]
    parts = {"before_pause_ms": steps["paused"] - outcome["gap_start"],
             "paused_ms": steps["resumed"] - steps["paused"],
             "after_resume_ms": outcome["gap_end"] - steps["resumed"]}
    if handed_over and steps["paused"] <= handed_over <= steps["resumed"]:
        parts["qemu_copy_ms"] = handed_over - steps["paused"]
        parts["libvirt_resume_ms"] = steps["resumed"] - handed_over
    return {key: round(value * 1000, 1) for key, value in parts.items()}


# --- one migration with the probe running ---------------------------------------------------------------------


def migrate_probed(bench, address, name, route, migrate, probe_seconds):
    """Run ``migrate()`` while the client probes; the migration must end within the probe's run."""
    source, dest = route
    with QemuEvents(bench.state, name) as events:
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
    probe_end = trace["start_monotonic"] + trace["sent_s"][-1]
    outcome["covered"] = ended + 0.2 <= probe_end
    outcome["began"], outcome["ended"] = began, ended
    steps = events.timeline(source, dest, began)
    switch = (steps["paused"], steps["resumed"]) if "paused" in steps and "resumed" in steps else None
    outcome.update(blackout(trace, began, ended, switch))
    centre = outcome["gap_start"] if outcome.get("gap_start") else ended
    outcome["trace"] = trace_excerpt(trace, centre)
    outcome["trace"]["migration_s"] = [round(began - centre, 4), round(ended - centre, 4)]
    outcome["trace"]["qemu_s"] = {step: round(when - centre, 4) for step, when in steps.items()}
    outcome["parts"] = decompose(outcome, steps)
    outside = [trace["rtt_ms"][i] for i in answered(trace)
               if not began <= trace["start_monotonic"] + trace["sent_s"][i] <= ended]
    outcome["rtt_outside_p99_ms"] = _p(outside, 99)
    return outcome


def run_rounds(bench, address, variant, rounds, record, migrate_options=None):
    """``rounds`` migrations of the guest, alternating direction, appended to ``record``.

    A module migration that hit its timeout is a result (it did not converge): it is kept, marked failed, and
    counts as a round. Any other failure (a daemon restarted or the link cut by someone else's fault test) is not
    the migration's doing: it is kept under ``interrupted`` and the round is run again."""
    estimate = 5.0 if variant == "a" else 9.0
    samples = record.setdefault("samples", [])
    interrupted = record.setdefault("interrupted", [])
    done = 0
    previous = bench.guest_answer(GUEST, address)[0]
    while done < rounds:
        if len(interrupted) > max(3, rounds // 2):
            raise RuntimeError("too many interrupted migrations; last: %s" % interrupted[-1]["error"])
        source, dest = bench.route(GUEST)
        if variant == "a":
            migrate = functools.partial(bench.virsh_migrate, GUEST, source, dest)
        else:
            migrate = functools.partial(bench.module_migrate, GUEST, source, dest, **(migrate_options or {}))
        outcome = migrate_probed(bench, address, GUEST, (source, dest), migrate, LEAD_S + estimate * 1.25 + 1.5)
        estimate = max(estimate, outcome["wall_ms"] / 1000)
        outcome.update(variant=variant, round=done + 1, source=source, dest=dest,
                       job=bench.completed_job(dest, GUEST) if outcome["ok"] else None)
        if variant != "a":
            outcome.update(module_statistics(outcome))
        if outcome["ok"] and not outcome["covered"]:
            log("  %s: migration outlasted the probe (%.1f s); again with a longer probe" % (variant, estimate))
            continue
        if not outcome["ok"] and outcome.get("cause") != "timeout":
            interrupted.append(outcome)
            log("  %s round %d %s->%s interrupted, run again: %s" % (variant, done + 1, source, dest, outcome["error"]))
            time.sleep(5)
            continue
        samples.append(outcome)
        done += 1
        answer, problem, serial = bench.check_serving(GUEST, address, previous)
        outcome["guest_problem"] = problem
        log("  %s round %d %s->%s: %s blackout %s ms (lost %s), wall %.0f ms, libvirt downtime %s ms%s" % (
            variant, outcome["round"], source, dest, "ok" if outcome["ok"] else "DID NOT CONVERGE",
            outcome["blackout_ms"], outcome["lost"], outcome["wall_ms"], (outcome["job"] or {}).get("downtime"),
            ", parts %s" % outcome["parts"] if outcome["parts"] else ""))
        if problem:
            outcome["serial_tail"] = serial
            log("  GUEST BROKEN after %s round %d: %s; serial console: %s" % (variant, done, problem, serial[-300:]))
        previous = answer
    return samples


def tuned_options(downtime):
    """Variant (c): MigrationOptions fields beyond the module's defaults, ``downtime`` as max_downtime and a
    timeout, whose default action (abort) leaves the guest where it runs should pre-copy not converge."""
    return {"max_downtime": downtime, "timeout": TUNED_TIMEOUT}


def calibrate(bench, address, tried, rounds=2):
    """The lowest max_downtime (ms) at which the module's pre-copy converges and the guest keeps serving; the
    rounds go to ``tried``."""
    for downtime in CALIBRATION_DOWNTIMES:
        record = {}
        samples = run_rounds(bench, address, "c", rounds, record, tuned_options(downtime))
        # A setting after which the guest stopped serving is no candidate either.
        converged = all(sample["ok"] and not sample.get("guest_problem") for sample in samples)
        tried.append(dict(record, max_downtime=downtime, converged=converged))
        log("  calibration max_downtime=%d ms: %s" % (
            downtime, "converged" if converged else "did not converge, or the guest stopped serving"))
        if converged:
            return downtime
    return None


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


def dirty_scenarios(bench, address, timeout, runs):
    """Each way of moving the dirtying guest once, appended to ``runs``; an interrupted one is run again."""
    cases = [
        ("pre-copy (plain)", {}),
        ("pre-copy + auto_converge", {"auto_converge": True}),
        # The capped link carries post-copy's background copy too (QEMU leaves that unlimited by default).
        ("post-copy", {"mode": "postcopy", "postcopy_bandwidth": DIRTY_BANDWIDTH}),
        ("auto (post-copy after %g s)" % MigrationOptions.postcopy_after, {"mode": "auto", "postcopy_bandwidth": DIRTY_BANDWIDTH}),
    ]
    for label, options in cases:
        for attempt in range(3):
            source, dest = bench.route(DIRTY_GUEST)
            before = start_dirtying(address)
            job = dict(options, bandwidth=DIRTY_BANDWIDTH, timeout=timeout)
            migrate = functools.partial(bench.module_migrate, DIRTY_GUEST, source, dest, **job)
            outcome = migrate_probed(bench, address, DIRTY_GUEST, (source, dest), migrate, LEAD_S + timeout + 10)
            after = client_http(address, wait=30).get("answer", {})
            outcome.update(label=label, source=source, dest=dest, options=job, attempt=attempt + 1,
                           running_on=bench.location(DIRTY_GUEST), counter_before=int(before["counter"]),
                           counter_after=int(after["counter"]) if after else None,
                           same_boot=after.get("boot") == before["boot"],
                           job=bench.completed_job(dest, DIRTY_GUEST) if outcome["ok"] else None)
            outcome.update(module_statistics(outcome))
            outcome["converged"] = outcome["ok"] and outcome["running_on"] == dest
            runs.append(outcome)
            log("  %s: %s, guest runs on %s, same boot %s, wall %.1f s, blackout %s ms, parts %s" % (
                label, "converged" if outcome["converged"] else "did not converge (%s)" % outcome["error"],
                outcome["running_on"], outcome["same_boot"], outcome["wall_ms"] / 1000, outcome["blackout_ms"],
                outcome["parts"]))
            if outcome["ok"] or outcome.get("cause") == "timeout":
                break
            outcome["interrupted"] = True
            log("  %s interrupted (%s); again" % (label, outcome.get("cause")))
            time.sleep(5)
    return runs


# --- tables, plot, docs ---------------------------------------------------------------------------------------


def _p(values, percent):
    values = sorted(value for value in values if value is not None)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    rank = (len(values) - 1) * percent / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    if values[high] == math.inf:
        return values[low] if rank == low else math.inf
    return values[low] + (values[high] - values[low]) * (rank - low)


def total_ms(sample):
    """Total migration time: virsh's wall time for the baseline; the module's own figure (its libvirt call) else."""
    if sample["variant"] == "a":
        return sample["wall_ms"]
    return sample.get("total_ms")


def summarize(samples_by_variant):
    rows = {}
    for variant, samples in samples_by_variant.items():
        good = [sample for sample in samples if sample["ok"]]
        rows[variant] = {
            "n": len(good), "failed": len(samples) - len(good),
            "broken": sum(1 for sample in good if sample.get("guest_problem")),
            "p50": _p([s["blackout_ms"] for s in good], 50), "p99": _p([s["blackout_ms"] for s in good], 99),
            "max": max((s["blackout_ms"] for s in good), default=None),
            "total_p50": _p([total_ms(s) for s in good], 50),
            "downtime_p50": _p([(s["job"] or {}).get("downtime") for s in good], 50),
            "elapsed_p50": _p([(s["job"] or {}).get("time_elapsed") for s in good], 50),
        }
        for part in PARTS:
            rows[variant][part] = _p([s["parts"].get(part) for s in good], 50)
    return rows


PARTS = ("before_pause_ms", "qemu_copy_ms", "libvirt_resume_ms", "after_resume_ms", "paused_ms")


def _fmt(value, digits=0):
    if value is None:
        return "-"
    if value == math.inf:
        return "never"
    return "%.*f" % (digits, value)


def _ratio(value, base):
    if value is None or not base or value == math.inf:
        return "-"
    return "%.2f" % (value / base)


def main_table(rows, labels):
    base = rows.get("a", {})
    lines = ["| variant | migrations | guest stopped serving after | blackout p50 ms | p99 | max | total time p50 ms | "
             "blackout p50 / (a) | p99 / (a) | max / (a) | total / (a) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant, row in rows.items():
        lines.append("| (%s) %s | %d%s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            variant, labels[variant], row["n"], " (+%d not converged)" % row["failed"] if row["failed"] else "",
            row["broken"],
            _fmt(row["p50"]), _fmt(row["p99"]), _fmt(row["max"]), _fmt(row["total_p50"]),
            _ratio(row["p50"], base.get("p50")), _ratio(row["p99"], base.get("p99")),
            _ratio(row["max"], base.get("max")), _ratio(row["total_p50"], base.get("total_p50"))))
    return "\n".join(lines)


def parts_table(rows):
    """Where the blackout goes, medians per variant (the parts' medians need not add up to the blackout's)."""
    lines = ["| variant | last answer -> paused | paused -> QEMU done (final copy) | QEMU done -> resumed "
             "(libvirt) | resumed -> first answer | guest paused (QEMU) | libvirt's downtime | QEMU job time |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant, row in rows.items():
        lines.append("| (%s) | %s | %s | %s | %s | %s | %s | %s |" % (
            variant, _fmt(row["before_pause_ms"]), _fmt(row["qemu_copy_ms"]), _fmt(row["libvirt_resume_ms"]),
            _fmt(row["after_resume_ms"]), _fmt(row["paused_ms"]), _fmt(row["downtime_p50"]),
            _fmt(row["elapsed_p50"])))
    return "\n".join(lines)


def dirty_table(runs):
    lines = ["| how | converged | guest runs on afterwards | same boot, counter kept | total time s | "
             "client blackout ms | of it: guest paused | of it: resumed -> first answer | mode that finished |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for run in runs:
        total = run.get("total_ms") or (run["wall_ms"] if not run["converged"] else None)
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            run["label"], "yes" if run["converged"] else "no (%s)" % (run["error"] or "?").replace("|", "/")[:90],
            run["running_on"] or "nowhere",
            "yes" if run["same_boot"] and (run["counter_after"] or 0) > (run["counter_before"] or 0) else "NO",
            _fmt(total / 1000 if total else None, 1), _fmt(run["blackout_ms"]) if run["converged"] else "-",
            _fmt(run["parts"].get("paused_ms")), _fmt(run["parts"].get("after_resume_ms")),
            run.get("mode") if run["converged"] else "-"))
    return "\n".join(lines)


def targets(rows, dirty_runs):
    best = min((v for v in rows if v != "a"), key=lambda v: rows[v]["p50"] or math.inf, default=None)
    lines = []
    if best:
        row, base = rows[best], rows["a"]
        lines.append("- blackout p50 <= 20 ms: %s (best module variant (%s): %s ms)" % (
            "met" if (row["p50"] or math.inf) <= 20 else "NOT met", best, _fmt(row["p50"])))
        lines.append("- blackout p99 <= 50 ms: %s (%s ms)" % ("met" if (row["p99"] or math.inf) <= 50 else "NOT met",
                                                              _fmt(row["p99"])))
        worse = [v for v in rows if v != "a" and (rows[v]["total_p50"] or math.inf) > (base["total_p50"] or 0)]
        lines.append("- total time no worse than virsh migrate --live: %s" % (
            "met" if not worse else "NOT met for %s" % ", ".join(
                "(%s) (%s x)" % (v, _ratio(rows[v]["total_p50"], base["total_p50"])) for v in worse)))
    if dirty_runs:
        plain = next((run for run in dirty_runs if run["label"] == "pre-copy (plain)"), None)
        plain_converged = plain is None or plain["converged"]
        helped = [run["label"] for run in dirty_runs if run["converged"] and run is not plain]
        lines.append("- convergence where plain pre-copy fails: %s (plain pre-copy %s; converged: %s)" % (
            "met" if not plain_converged and helped else "not shown",
            "converged" if plain_converged else "did not converge", ", ".join(helped) or "none"))
    return "\n".join(lines)


def plot(samples_by_variant, labels, path):
    """Client RTT over time around the switch-over: the median-blackout round of the baseline and of the best
    module variant."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    def median_round(samples):
        good = sorted((s for s in samples if s["ok"] and s["blackout_ms"] != math.inf), key=lambda s: s["blackout_ms"])
        return good[len(good) // 2] if good else None

    chosen = [(v, median_round(s)) for v, s in samples_by_variant.items()]
    chosen = [(v, s) for v, s in chosen if s]
    figure, axes = pyplot.subplots(len(chosen), 1, figsize=(10, 3.2 * len(chosen)), sharex=True, squeeze=False)
    for axis, (variant, sample) in zip(axes[:, 0], chosen):
        trace = sample["trace"]
        times = [t * 1000 for t, r in zip(trace["t_s"], trace["rtt_ms"]) if r is not None]
        rtts = [r for r in trace["rtt_ms"] if r is not None]
        lost = [t * 1000 for t, r in zip(trace["t_s"], trace["rtt_ms"]) if r is None]
        axis.plot(times, rtts, ".", markersize=2, color="tab:blue", label="answered request (RTT)")
        top = max(rtts + [10]) * 1.15
        axis.plot(lost, [top] * len(lost), "|", color="tab:red", markersize=6, label="lost request")
        axis.axvspan(0, sample["blackout_ms"], color="tab:red", alpha=0.12,
                     label="blackout %.0f ms (switch-over)" % sample["blackout_ms"])
        axis.axvline(0, color="tab:red", linewidth=0.8)
        marks = {"paused": ("guest paused (source)", "tab:orange"), "completed": ("QEMU done", "tab:purple"),
                 "postcopy-active": ("post-copy", "tab:purple"), "resumed": ("guest resumed (destination)", "tab:green")}
        for step, (text, colour) in marks.items():
            if step in trace.get("qemu_s", {}):
                axis.axvline(trace["qemu_s"][step] * 1000, color=colour, linestyle="--", linewidth=1, label=text)
        axis.set_ylim(0, top * 1.08)
        axis.set_ylabel("RTT ms")
        axis.set_title("(%s) %s: round %d, %s -> %s, libvirt downtime %s ms" % (
            variant, labels[variant], sample["round"], sample["source"], sample["dest"],
            (sample["job"] or {}).get("downtime", "?")), fontsize=9)
        axis.legend(loc="upper right", fontsize=7)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlim(-600, 800)
    axes[-1, 0].set_xlabel("ms from the last answer before the switch-over (client probe, one request per ms)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def write_doc(table, dirty, target_lines, header):
    replace_block(DOC, BEGIN, END, header + "\n\n" + table + "\n\n" + target_lines)
    if dirty is not None:
        replace_block(DOC, DIRTY_BEGIN, DIRTY_END, dirty)


def _json_safe(value):
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


# --- main -------------------------------------------------------------------------------------------------------


def noise_floor(bench, address, seconds=5.0):
    """The same blackout measure with no migration: what the probe and a TCG guest give on their own."""
    probe = Probe(bench.state, address, seconds)
    trace = probe.result()
    start = trace["start_monotonic"]
    floor = blackout(trace, start, start + seconds)
    rtts = sorted(trace["rtt_ms"][i] for i in answered(trace))
    return {"blackout_ms": floor["blackout_ms"], "lost": floor["lost"], "rtt_p50_ms": _p(rtts, 50),
            "rtt_p99_ms": _p(rtts, 99), "rtt_max_ms": rtts[-1] if rtts else None}


def main(argv=None):  # pylint: disable=too-many-locals,too-many-statements
    QemuEvents.start_loop()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="migrations per variant (alternating direction)")
    parser.add_argument("--variants", default="abc", help="which of a, b, c to run (docs only with all three)")
    parser.add_argument("--skip-dirty", action="store_true", help="leave out the memory-dirtying guest")
    parser.add_argument("--dirty-timeout", type=int, default=45, help="seconds before a dirty-guest migration aborts")
    parser.add_argument("--initrd", help="boot the guests from this initramfs instead of the lab image's (e.g. one built "
                        "from modified lab/guest sources)")
    args = parser.parse_args(argv)
    variants = [v for v in "abc" if v in args.variants]
    if (set(variants) - {"a"} or not args.skip_dirty) and not MODULE_FILE.exists():
        sys.exit("arctictern.virt.migrate is not there (%s is missing): variants (b), (c) and the dirty-guest runs "
                 "need it. Nothing measured; run with --variants a --skip-dirty for the baseline alone."
                 % MODULE_FILE.relative_to(ROOT))
    first = int(os.environ.get("ATV_TEST_ADDRESSES", "240-249").split("-")[0])
    address, dirty_address = "198.18.0.%d" % first, "198.18.0.%d" % (first + 1)

    started = datetime.datetime.now()
    # Bring the lab up only when it is down: others may be in the middle of a fault test on a daemon.
    state = lab_control.read_state() or lab_control.up(log=log)
    ansible = Ansible()
    bench = Bench(state, ansible, args.initrd)
    for host in HYPERVISORS:
        ansible.ok(host, "host_bridge", name="br0", uplink="eth0")
    results = {"started": started.isoformat(timespec="seconds"), "virt_type": state["virt_type"],
               "cores": os.cpu_count(), "argv": sys.argv, "rounds": args.rounds, "probe_interval_ms": PROBE_INTERVAL_MS,
               "variants": {}, "labels": {}}
    labels = dict(VARIANTS)
    try:
        for name in (GUEST, DIRTY_GUEST):
            bench.remove(name)      # leftovers of an interrupted run
        log("booting %s at %s on hv1" % (GUEST, address))
        bench.boot("hv1", GUEST, address)
        results["noise_floor"] = noise_floor(bench, address)
        log("no migration: %s" % results["noise_floor"])
        if "a" in variants:
            log("(a) %s, %d rounds" % (VARIANTS["a"], args.rounds))
            run_rounds(bench, address, "a", args.rounds, results["variants"].setdefault("a", {}))
        if "b" in variants:
            log("(b) %s, %d rounds" % (VARIANTS["b"], args.rounds))
            run_rounds(bench, address, "b", args.rounds, results["variants"].setdefault("b", {}))
        if "c" in variants:
            log("(c) calibrating max_downtime over %s ms" % (CALIBRATION_DOWNTIMES,))
            downtime = calibrate(bench, address, results.setdefault("calibration", []))
            if downtime is None:
                log("(c) no max_downtime converged; (c) left out")
            else:
                labels["c"] = "arctictern.virt.migrate, max_downtime=%d" % downtime
                log("(c) %s, %d rounds" % (labels["c"], args.rounds))
                run_rounds(bench, address, "c", args.rounds, results["variants"].setdefault("c", {}),
                           tuned_options(downtime))
        results["labels"] = labels
        bench.remove(GUEST)
        if not args.skip_dirty:
            log("booting %s at %s on hv1; it rewrites %d MiB in a loop, link capped at %d MiB/s" % (
                DIRTY_GUEST, dirty_address, DIRTY_MIB, DIRTY_BANDWIDTH))
            bench.boot("hv1", DIRTY_GUEST, dirty_address)
            results["dirty_check"] = dirtying_check(bench, dirty_address)
            log("dirtying guest: %s" % results["dirty_check"])
            if results["dirty_check"]["ok"]:
                dirty_scenarios(bench, dirty_address, args.dirty_timeout, results.setdefault("dirty", []))
    finally:
        RESULTS.mkdir(exist_ok=True)
        raw = RESULTS / ("migration-%s.json" % started.strftime("%Y%m%d-%H%M%S"))
        raw.write_text(json.dumps(_json_safe(results), indent=1) + "\n")
        log("raw samples: %s" % raw.relative_to(ROOT))
        for name in (GUEST, DIRTY_GUEST):
            bench.remove(name)

    samples = {variant: record["samples"] for variant, record in results["variants"].items()}
    rows = summarize(samples)
    table = main_table(rows, labels) + "\n\nWhere the blackout goes (medians, ms; from QEMU's own event times):\n\n" + \
        parts_table(rows)
    dirty_runs = [run for run in results.get("dirty", []) if not run.get("interrupted")]
    check = results.get("dirty_check") or {}
    dirty = ("QEMU measured the guest dirtying %s MiB/s (page sampling); the link is capped at %d MiB/s.\n\n%s" % (
        check.get("dirty_rate_mib_s"), DIRTY_BANDWIDTH, dirty_table(dirty_runs))) if dirty_runs else check.get("msg")
    target_lines = targets(rows, dirty_runs)
    accel = "KVM" if state["virt_type"] == "kvm" else "QEMU TCG (no usable KVM on this machine)"
    floor = results["noise_floor"]
    header = ("Measured %s on %d cores, guests under %s, by `PYTHONPATH=.collections:. .venv/bin/python "
              "benchmarks/migration.py %s`. Probe alone (no migration, 5 s): longest gap %s ms, RTT p50 %s / "
              "p99 %s ms." % (started.date(), os.cpu_count(), accel, shlex.join(sys.argv[1:]),
                              _fmt(floor["blackout_ms"]), _fmt(floor["rtt_p50_ms"], 1), _fmt(floor["rtt_p99_ms"], 1)))
    print()
    print(header)
    print(table)
    if dirty:
        print(dirty)
    print(target_lines)
    if set(variants) == set("abc") and not args.skip_dirty:
        plot({v: samples[v] for v in ("a", "c") if v in samples}, labels, PLOT)
        write_doc(table, dirty, target_lines, header)
        log("wrote %s and %s" % (DOC.relative_to(ROOT), PLOT.relative_to(ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
