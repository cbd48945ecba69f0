# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/migration.py without the lab: the rule that decides which percentile a table may give, the tables
that --from writes from a raw result (attempts, failures with their causes, the like-for-like time pairs), the
detection of a table edited by hand, and the client's probe for real in a scratch network namespace: a migration
that pauses the "guest" (a UDP echo server stopped with SIGSTOP) gives a blackout of that length, a migration that
outlasts the probe and a probe that fails are recorded in the attempt instead of stopping the run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import pytest

from benchmarks import docblock
from benchmarks import migration as bench

FLAGS = ["live", "peer2peer", "persist_dest", "undefine_source"]
DOC_TEXT = """# Performance

Intro that the scripts leave alone.

<!-- migration-table:begin -->
No committed run yet.
<!-- migration-table:end -->

Prose between the blocks.

<!-- migration-dirty:begin -->
No committed run yet.
<!-- migration-dirty:end -->

The end.
"""


# --- which percentile a sample supports ---------------------------------------------------------------------


@pytest.mark.parametrize("count, percent, label", [
    (1, 50, "median"),
    (19, 95, "max (n=19)"),
    (20, 95, "p95"),
    (20, 99, "max (n=20)"),
    (99, 99, "max (n=99)"),
    (100, 99, "p99"),
])
def test_a_percentile_is_given_only_from_enough_samples(count, percent, label):
    values = list(range(1, count + 1))
    got_label, value = bench.percentile_or_max(values, percent)
    assert got_label == label
    if label.startswith("max"):
        assert value == count
    else:
        assert value == pytest.approx(1 + (count - 1) * percent / 100)


def test_percentile_leaves_out_missing_values_and_keeps_never():
    assert bench.percentile_or_max([], 50) == (None, None)
    assert bench.percentile_or_max([None, None], 50) == (None, None)
    # 19 measured values and one missing: not enough for p95.
    assert bench.percentile_or_max([5.0] * 19 + [None], 95) == ("max (n=19)", 5.0)
    assert bench.percentile_or_max([1.0, float("inf")], 50)[1] == float("inf")
    assert bench.figure_cell([1.0] * 19 + [float("inf")], 99) == "max (n=20): never"


def test_failures_are_counted_by_cause():
    assert bench.failures_text([None, None]) == "0"
    assert bench.failures_text(["timeout", None, "probe error", "timeout"]) == "3 (1 probe error, 2 timeout)"


def test_why_an_attempt_has_no_blackout_figure():
    assert bench.failure_cause({"ok": True, "covered": True, "blackout_ms": 5}) is None
    assert bench.failure_cause({"ok": False, "cause": "timeout", "covered": True}) == "timeout"
    assert bench.failure_cause({"ok": False, "cause": None}) == "failed"
    assert bench.failure_cause({"ok": True, "probe_error": "the probe failed: no route"}) == "probe error"
    assert bench.failure_cause({"ok": True, "covered": False, "blackout_ms": 5}) == "blackout not fully observed"


def test_the_probe_length_comes_from_earlier_successful_migrations_only():
    length = bench.ProbeLength()
    first = bench.LEAD_S + bench.PROBE_FACTOR * bench.FIRST_GUESS_S + bench.PROBE_MARGIN_S
    assert length.seconds() == pytest.approx(first)
    length.saw({"ok": False, "duration_ms": 60000})           # a timeout says nothing about a migration's length
    assert length.seconds() == pytest.approx(first)
    length.saw({"ok": True, "duration_ms": 2000})
    assert length.seconds() == pytest.approx(bench.LEAD_S + bench.PROBE_FACTOR * 2 + bench.PROBE_MARGIN_S)
    length.saw({"ok": True, "duration_ms": 1000})             # the longest so far stays
    length.saw({"ok": True, "duration_ms": 4000})
    assert length.seconds() == pytest.approx(bench.LEAD_S + bench.PROBE_FACTOR * 4 + bench.PROBE_MARGIN_S)


# --- a synthetic raw result and the tables --from writes ----------------------------------------------------


def attempt(variant, number, blackout=100.0, **fields):
    """One probed attempt as the raw result keeps it; ``fields`` override."""
    record = {"variant": variant, "attempt": number, "source": "hv1", "dest": "hv2", "ok": True, "cause": None,
              "error": None, "flags": FLAGS, "probe_s": 8.0, "covered": True, "blackout_ms": blackout, "lost": 3,
              "parts": {"before_pause_ms": 1.0, "qemu_copy_ms": 150.0, "libvirt_resume_ms": 6.0,
                        "after_resume_ms": 48.0, "paused_ms": 160.0},
              "job": {"downtime": 170, "time_elapsed": 700}, "guest_problem": None, "serial_tail": None}
    if variant in ("a", "b", "c"):
        record["command_ms"] = 2000.0
    if variant in ("l", "b", "c"):
        record["call_ms"] = 2000.0
    record.update(fields)
    return record


def warmup(variant, **fields):
    record = attempt(variant, 0, warmup=True, **fields)
    for key in ("probe_s", "covered", "blackout_ms", "lost", "parts"):
        record.pop(key)
    return record


def variant_a():
    """21 attempts of the baseline: one failed, one probe error, one that outlasted its probe."""
    attempts = [warmup("a")] + [attempt("a", n, blackout=100.0 + n) for n in range(1, 21)]
    attempts[3].update(ok=False, cause="virsh error", error="error: operation failed", job=None)
    attempts[5].update(probe_error="the probe failed: OSError: [Errno 113] No route to host")
    for key in ("covered", "blackout_ms", "lost", "parts"):
        attempts[5].pop(key)
    attempts[7].update(covered=False)
    return attempts


def variant_l():
    return [warmup("l")] + [attempt("l", n, blackout=500.0 if n == 20 else 100.0) for n in range(1, 21)]


def variant_b():
    """100 measured attempts (enough for p99), one timeout, one guest that stopped serving."""
    blackouts = [50.0] * 98 + [60.0, 1000.0]
    attempts = [warmup("b")] + [attempt("b", n + 1, blackout=value, command_ms=3500.0, call_ms=1900.0)
                                for n, value in enumerate(blackouts)]
    attempts[10].update(guest_problem="the guest rebooted", serial_tail="Kernel panic")
    attempts.append(attempt("b", 101, ok=False, cause="timeout", error="timeout: ...", command_ms=61000.0,
                            call_ms=60000.0, job=None))
    return attempts


def variant_c():
    return [warmup("c", ok=False, cause="timeout", job=None)] + [
        attempt("c", n, blackout=70.0 + 5 * n, command_ms=3600.0, call_ms=2100.0) for n in range(1, 6)]


def raw_result():
    variants = {"a": variant_a(), "l": variant_l(), "b": variant_b(), "c": variant_c()}
    labels = dict(bench.VARIANTS, c="arctictern.virt.migrate, max_downtime=20")
    calibration = [
        {"max_downtime": 10, "converged": False, "attempts": [attempt("c", 1), attempt("c", 2, ok=False, cause="timeout")]},
        {"max_downtime": 20, "converged": True, "attempts": [attempt("c", 1), attempt("c", 2)]},
    ]
    dirty = [
        dict(attempt("b", 1), label="pre-copy (plain)", ok=False, cause="timeout", error="timeout: aborted",
             converged=False, running_on="hv1", same_boot=True, counter_before=3, counter_after=9, command_ms=47000.0,
             call_ms=45100.0),
        dict(attempt("b", 1), label="post-copy", converged=True, running_on="hv2", same_boot=True, counter_before=9,
             counter_after=15, probe_error="the probe failed: no route", mode="postcopy"),
    ]
    return {"started": "2026-12-07T16:00:00", "minutes": 27.5, "virt_type": "qemu", "cores": 2, "argv": ["--rounds", "20"],
            "versions": {"hv1": {"libvirt": "9.0.0", "qemu": "7.2.0"}, "hv2": {"libvirt": "9.0.0", "qemu": "7.2.0"}},
            "rounds": 20, "probe_interval_ms": 1.0,
            "probe_rule": {"lead_s": 0.5, "factor": 1.5, "margin_s": 1.5, "first_guess_s": 10.0},
            "labels": labels, "variants": variants, "calibration": calibration,
            "noise_floor": {"blackout_ms": 6.0, "lost": 0, "answers": 4990, "rtt_median_ms": 0.3,
                            "rtt_tail_label": "p99", "rtt_tail_ms": 1.5},
            "dirty_check": {"dirty_rate_mib_s": 32, "bandwidth_mib_s": 5, "ok": True}, "dirty": dirty}


@pytest.fixture
def written(tmp_path):
    """(raw file, doc) after `migration.py --from raw --doc doc`."""
    raw = tmp_path / "migration-20261207-1600.json"
    raw.write_text(json.dumps(raw_result()))
    doc = tmp_path / "performance.md"
    doc.write_text(DOC_TEXT)
    assert bench.main(["--from", str(raw), "--doc", str(doc)]) == 0
    return raw, doc


def table_rows(text, first_cell_prefix):
    """The cells of the Markdown table rows whose first cell starts with ``first_cell_prefix``."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| " + first_cell_prefix)]


def test_from_writes_every_attempt_and_its_failures(written):
    _raw, doc = written
    block = docblock.read_block(doc, bench.BEGIN, bench.END)
    (row_a,) = table_rows(block, "(a) `virsh")
    # variant | attempts | failed (causes) | guest stopped serving after | blackouts measured | median | p95 | p99 | median / (a)
    assert row_a[1:] == ["20 + 1 warm-up", "3 (1 blackout not fully observed, 1 probe error, 1 virsh error)", "0",
                         "17", "112", "max (n=17): 120", "max (n=17): 120", "1.00"]
    (row_l,) = table_rows(block, "(l) libvirt")
    assert row_l[1:6] == ["20 + 1 warm-up", "0", "0", "20", "100"]
    assert row_l[6:8] == ["120", "max (n=20): 500"]     # p95 from 20 values; p99 is not, so the maximum
    (row_b,) = table_rows(block, "(b) arctictern")
    assert row_b[1:8] == ["101 + 1 warm-up", "1 (1 timeout)", "1", "100", "50", "50", "69"]
    (row_c,) = table_rows(block, "(c) arctictern.virt.migrate, max_downtime=20")
    assert row_c[1:8] == ["5 + 1 warm-up (failed: timeout)", "0", "0", "5", "85", "max (n=5): 95", "max (n=5): 95"]


def test_from_writes_both_like_for_like_time_pairs(written):
    _raw, doc = written
    block = docblock.read_block(doc, bench.BEGIN, bench.END)
    rows = table_rows(block, "whole command |") + table_rows(block, "libvirt call |")
    assert ["whole command", "(a)", "2000 (n=19)", "(b)", "3500 (n=100)", "1.75"] in rows
    assert ["libvirt call", "(l)", "2000 (n=20)", "(b)", "1900 (n=100)", "0.95"] in rows
    assert ["libvirt call", "(l)", "2000 (n=20)", "(c)", "2100 (n=5)", "1.05"] in rows
    assert ("Migration flags (VIR_MIGRATE_*): (a) live, peer2peer, persist_dest, undefine_source; (l) the same as (a); "
            "(b) the same as (a); (c) the same as (a).") in block
    assert "- total time no worse than (a), whole command: NOT met (module / baseline, medians: (b) 1.75, (c) 1.80)" in block
    assert "- total time no worse than (l), libvirt call: NOT met (module / baseline, medians: (b) 0.95, (c) 1.05)" in block


def test_from_judges_p99_only_from_100_migrations(written):
    _raw, doc = written
    block = docblock.read_block(doc, bench.BEGIN, bench.END)
    assert "- blackout p50 <= 20 ms: NOT met (best module variant (b): median 50 ms of 100)" in block
    assert "- blackout p99 <= 50 ms: NOT met ((b): 69 ms)" in block
    rows = bench.summarize(variant_c())
    lines = bench.blackout_targets({"c": rows})
    assert lines[1] == ("- blackout p99 <= 50 ms: not judged: p99 needs 100 measured migrations, (c) has 5 "
                        "(`--rounds 100`); their max (n=5) is 95 ms")


def test_from_cites_the_raw_result_and_keeps_the_rest_of_the_doc(written):
    raw, doc = written
    text = doc.read_text()
    for kept in ("# Performance\n\nIntro that the scripts leave alone.\n\n<!-- migration-table:begin -->\n",
                 "<!-- migration-table:end -->\n\nProse between the blocks.\n\n<!-- migration-dirty:begin -->\n",
                 "<!-- migration-dirty:end -->\n\nThe end.\n"):
        assert kept in text
    assert "No committed run yet" not in text
    for begin, end in ((bench.BEGIN, bench.END), (bench.DIRTY_BEGIN, bench.DIRTY_END)):
        assert docblock.read_block(doc, begin, end).startswith(
            "Generated by `benchmarks/migration.py --from %s`" % raw)
    block = docblock.read_block(doc, bench.BEGIN, bench.END)
    assert ("(c)'s max_downtime is the first of the candidates, tried in this order, at which every calibration "
            "migration converged with the guest still serving: 10 ms: 2 attempts, failed 1 (1 timeout), guest stopped "
            "serving after 0; 20 ms: 2 attempts, failed 0, guest stopped serving after 0 (chosen).") in block
    assert "by `PYTHONPATH=.collections:. .venv/bin/python benchmarks/migration.py --rounds 20`." in block


def test_from_writes_the_dirty_guest_table_with_each_run(written):
    _raw, doc = written
    dirty = docblock.read_block(doc, bench.DIRTY_BEGIN, bench.DIRTY_END)
    (plain,) = table_rows(dirty, "pre-copy (plain)")
    assert plain[1:] == ["no (timeout: aborted)", "hv1", "yes", "47.0", "45.1", "-", "-", "-", "-"]
    (postcopy,) = table_rows(dirty, "post-copy")
    assert postcopy[1:6] == ["yes", "hv2", "yes", "2.0", "2.0"]
    assert postcopy[6:] == ["probe error", "-", "-", "postcopy"]


def test_a_hand_edited_table_is_detected_and_overwritten(written, capsys):
    raw, doc = written
    script_made = doc.read_text()
    edited = script_made.replace("| 17 | 112 |", "| 17 | 99 |")
    assert edited != script_made
    doc.write_text(edited)
    capsys.readouterr()
    assert bench.main(["--from", str(raw), "--doc", str(doc), "--check"]) == 1
    assert "-| (a) " in capsys.readouterr().out        # the diff shows the edited row
    assert doc.read_text() == edited                    # --check writes nothing
    assert bench.main(["--from", str(raw), "--doc", str(doc)]) == 0
    assert doc.read_text() == script_made
    assert bench.main(["--from", str(raw), "--doc", str(doc), "--check"]) == 0


def test_flags_that_differ_from_virshs_are_named():
    rows = {"a": bench.summarize([attempt("a", 1)]),
            "b": bench.summarize([attempt("b", 1, flags=["live", "peer2peer", "compressed"])])}
    assert bench.flags_line(rows) == (
        "Migration flags (VIR_MIGRATE_*): (a) live, peer2peer, persist_dest, undefine_source; (b) compressed, live, "
        "peer2peer (DIFFERENT from (a): adds compressed, lacks persist_dest, undefine_source).")


def test_the_raw_result_keeps_no_probe_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bench, "RAW_DIR", tmp_path / "docs-results")
    results = {"variants": {"a": [dict(attempt("a", 1, blackout=float("inf")), gap_start=12.5, gap_end=None,
                                       trace={"t_s": [0.0] * 2000, "rtt_ms": [0.3] * 2000})]}}
    raw = bench.write_raws(results, "migration-x.json")
    (kept,) = json.loads(raw.read_text())["variants"]["a"]
    assert "trace" not in kept and "gap_start" not in kept
    assert kept["blackout_ms"] == "never" and bench.blackout_of(kept) == float("inf")
    full = json.loads((tmp_path / "results" / "migration-x.json").read_text())
    assert len(full["variants"]["a"][0]["trace"]["t_s"]) == 2000


# --- the doc in the repository ------------------------------------------------------------------------------


def test_the_docs_generated_blocks_are_what_their_raw_results_give():
    """Each migration block of docs/performance.md is a placeholder or exactly what --from gives from the committed
    raw result it cites: a figure edited by hand fails here."""
    for begin, end in ((bench.BEGIN, bench.END), (bench.DIRTY_BEGIN, bench.DIRTY_END)):
        block = docblock.read_block(bench.DOC, begin, end)
        cited = re.match(r"Generated by `benchmarks/migration\.py --from (docs/results/\S+\.json)`", block)
        if cited is None:
            assert "No committed run yet" in block, block
            continue
        assert bench.main(["--from", str(bench.ROOT / cited.group(1)), "--check"]) == 0


# --- the probe for real, in a scratch network namespace --------------------------------------------------------


ECHO = """
import socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 7))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(64)
    sock.sendto(data, peer)
"""


@pytest.fixture
def client(scratch_netns, tmp_path):
    """A lab state whose client runs Python in a scratch namespace with its loopback up: the probe runs there.
    The hypervisors' URIs are libvirt's test driver, which has no QEMU events to give."""
    if not shutil.which("nsenter"):
        pytest.skip("needs nsenter")
    netns = scratch_netns()
    enter = ["nsenter", "--net=/run/netns/%s" % netns]
    subprocess.run(enter + ["ip", "link", "set", "lo", "up"], check=True)
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\nexec %s %s "$@"\n' % (" ".join(enter), sys.executable))
    python.chmod(0o755)
    state = {"hosts": {"client": {"python": str(python)}, "hv1": {"uri": "test:///default"},
                       "hv2": {"uri": "test:///default"}}}
    return types.SimpleNamespace(state=state, enter=enter)


@pytest.fixture
def echo(client):
    """The "guest": a UDP echo server on 127.0.0.1:7 in the client's namespace."""
    proc = subprocess.Popen(client.enter + [sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def paused_guest(echo, seconds):
    """A "migration" that pauses the guest for ``seconds``, as QEMU's stop-and-copy does."""
    def migrate():
        started = time.monotonic()
        time.sleep(0.2)
        os.kill(echo.pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(echo.pid, signal.SIGCONT)
        time.sleep(0.2)
        took = round((time.monotonic() - started) * 1000, 1)
        return {"ok": True, "cause": None, "error": None, "duration_ms": took}
    return migrate


def test_the_probe_measures_a_pause_of_the_guest_as_the_blackout(client, echo):
    outcome = bench.migrate_probed(client, "127.0.0.1", "guest", ("hv1", "hv2"), paused_guest(echo, 0.3), 3.0)
    assert "probe_error" not in outcome and outcome["covered"] is True
    assert bench.failure_cause(outcome) is None
    assert 290 <= outcome["blackout_ms"] < 1000, outcome["blackout_ms"]
    assert outcome["trace"]["t_s"], "the full results keep the samples around the switch-over"


def test_a_migration_that_outlasts_its_probe_is_recorded_as_such(client, echo):
    outcome = bench.migrate_probed(client, "127.0.0.1", "guest", ("hv1", "hv2"), paused_guest(echo, 1.5), 1.0)
    assert outcome["covered"] is False and outcome["probe_s"] == 1.0
    assert bench.failure_cause(outcome) == "blackout not fully observed"


def test_a_probe_error_is_recorded_in_the_attempt_not_fatal(client):
    def migrate():
        return {"ok": True, "cause": None, "error": None, "duration_ms": 100.0}
    # No route from the scratch namespace to the lab's LAN: the probe fails as it does when the host is unreachable.
    outcome = bench.migrate_probed(client, "198.18.0.240", "guest", ("hv1", "hv2"), migrate, 1.0)
    assert outcome["ok"] is True
    assert outcome["probe_error"].startswith("the probe failed:") and "unreachable" in outcome["probe_error"]
    assert bench.failure_cause(outcome) == "probe error"


@pytest.mark.parametrize("text", [
    "no markers at all\n",
    "<!-- migration-table:begin -->\nonly the begin marker\n",
    "<!-- migration-table:end -->\nswapped\n<!-- migration-table:begin -->\n",
    "<!-- migration-table:begin -->\na\n<!-- migration-table:end -->\n<!-- migration-table:begin -->\nb\n"
    "<!-- migration-table:end -->\n",
])
def test_a_block_needs_its_markers_once_and_in_order(tmp_path, text):
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    with pytest.raises(RuntimeError, match="exactly once, in that order"):
        docblock.replace_block(doc, bench.BEGIN, bench.END, "new")
    assert doc.read_text() == text
