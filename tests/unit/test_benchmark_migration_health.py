# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/migration_health.py without the lab: the lines --quiet and --settings make from named settings (and the
names refused), the table --from writes from raw results of several hypervisor generations (every round counted,
broken guests, failures with their causes, a note on each settings name's options), the choice of the newest raw
result of each generation, and the detection of a table edited by hand."""

from __future__ import annotations

import json
import math
import re

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils._migration import MigrationOptions
from benchmarks import docblock
from benchmarks import migration_health as health
from benchmarks.migration import TUNED_TIMEOUT
from lab.ansible import ROOT

DOC_TEXT = "# Performance\n\nBefore.\n\n%s\nNo committed run yet.\n%s\n\nAfter.\n" % (health.BEGIN, health.END)


def record(number, **fields):
    """One round as the raw result keeps it; ``fields`` override."""
    kept = {"round": number, "source": "hv1", "dest": "hv2", "problem": None, "serial": None, "ok": True,
            "cause": None, "error": None, "mode": "precopy", "command_ms": 4000.0, "call_ms": 2300.0, "probe_s": 8.0,
            "probe_error": None, "traffic_covered": True}
    kept.update(fields)
    return kept


def raw_result(generation, started, lines):
    return {"generation": generation, "started": started, "virt_type": "qemu", "cores": 2,
            "versions": {"hv1": {"libvirt": "9.0.0", "qemu": "7.2.0"}, "hv2": {"libvirt": "9.0.0", "qemu": "7.2.0"}},
            "argv": ["--generation", generation], "rounds": 3, "probe_rule": {}, "lines": lines}


def line(settings, traffic, rounds):
    """A line as the raw result keeps it, its label and options those the script gives the name."""
    label, options = health.migrated_with(settings)
    return {"settings": settings, "label": label, "options": options, "traffic": traffic, "rounds": rounds}


def debian12():
    quiet = [record(n, probe_s=None, traffic_covered=None) for n in (1, 2, 3)]
    traffic_10 = [record(1, problem="the guest rebooted", serial="Kernel panic - not syncing"),
                  record(2, ok=False, cause="timeout", error="timeout: aborted"),
                  record(3, probe_error="the probe failed: OSError: [Errno 113] No route to host", traffic_covered=None)]
    default = [record(1), record(2, traffic_covered=False), record(3)]
    return raw_result("debian12", "2026-12-07T16:00:00", [
        line("max_downtime=10", False, quiet), line("max_downtime=10", True, traffic_10),
        line("default", True, default)])


def probed(number, blackout_ms, **fields):
    """A round as runs that keep the client's blackout record it (``covered`` instead of ``traffic_covered``)."""
    kept = record(number, **{"blackout_ms": blackout_ms, "lost": 3, "parts": {"paused_ms": 90.0}, "covered": True,
                             **fields})
    del kept["traffic_covered"]
    return kept


def next_generation():
    result = raw_result("debian13", "2026-12-08T09:00:00", [
        line("max_downtime=10", True, [probed(1, 400.0), probed(2, 500.0), probed(3, 90.0, covered=False)]),
        line("postcopy_first_pass", True, [probed(1, 300.0, mode="postcopy"), probed(2, math.inf, mode="postcopy")])])
    result["versions"] = {"hv3": {"libvirt": "11.3.0", "qemu": "10.0.2"}, "hv4": {"libvirt": "11.3.0", "qemu": "10.0.2"}}
    return result


@pytest.fixture
def written(tmp_path):
    """(raw files, doc) after `migration_health.py --from <debian12> --from <debian13> --doc doc`."""
    raws = []
    for name, result in (("migration-health-debian12-20261207-1600.json", debian12()),
                         ("migration-health-debian13-20261208-0900.json", next_generation())):
        raws.append(tmp_path / name)
        raws[-1].write_text(json.dumps(result))
    doc = tmp_path / "performance.md"
    doc.write_text(DOC_TEXT)
    assert health.main(["--from", str(raws[0]), "--from", str(raws[1]), "--doc", str(doc)]) == 0
    return raws, doc


def table_rows(text):
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if re.match(r"\| debian1[23] \|", line)]


def test_from_writes_one_group_of_lines_per_generation(written):
    raws, doc = written
    block = docblock.read_block(doc, health.BEGIN, health.END)
    # generation | settings | client traffic | migrations | guests broken | failed or not fully probed (causes) |
    # blackout median | p95 | paused median: blackouts only from clean rounds that recorded one (debian12's run kept
    # none), the p95 as the maximum of a sample too small for it, a guest that never answered again as "never".
    assert table_rows(block) == [
        ["debian12", "`max_downtime=10`", "none", "3", "0", "0", "-", "-", "-"],
        ["debian12", "`max_downtime=10`", "yes", "3", "1", "2 (1 probe error, 1 timeout)", "-", "-", "-"],
        ["debian12", "`default`", "yes", "3", "0", "1 (1 traffic ended before the migration)", "-", "-", "-"],
        ["debian13", "`max_downtime=10`", "yes", "3", "0", "1 (1 traffic ended before the migration)", "450",
         "max (n=2): 500", "90"],
        ["debian13", "`postcopy_first_pass`", "yes", "2", "0", "0", "never", "max (n=2): never", "90"],
    ]
    assert block.startswith("Generated by `benchmarks/migration_health.py --from %s --from %s`" % tuple(raws))
    assert "- **debian12** (hv1 libvirt 9.0.0, QEMU 7.2.0; hv2 libvirt 9.0.0, QEMU 7.2.0): run %s" % raws[0] in block
    assert "- **debian13** (hv3 libvirt 11.3.0, QEMU 10.0.2; hv4 libvirt 11.3.0, QEMU 10.0.2): run %s" % raws[1] in block
    assert doc.read_text().startswith("# Performance\n\nBefore.\n\n%s\nGenerated by" % health.BEGIN)
    assert doc.read_text().endswith("%s\n\nAfter.\n" % health.END)


def test_each_settings_name_is_explained_once_under_the_table_from_the_raw_results(written):
    block = docblock.read_block(written[1], health.BEGIN, health.END)
    notes = block.split("\n\nSettings: what each name passed to `arctictern.virt.migrate` beyond the guest and its "
                        "destination (`name`, `dest_uri`, `migrate_uri`):\n")[1]
    assert notes.splitlines() == [
        "- `max_downtime=10`: this downtime limit, as variant (c) of migration.py (`max_downtime: 10, timeout: %d`)."
        % TUNED_TIMEOUT,
        "- `default`: the module's defaults (no options).",
        "- `postcopy_first_pass`: post-copy once the first full pass is done "
        "(`mode: auto, postcopy_after_iterations: 1, timeout: %d`)." % TUNED_TIMEOUT,
    ]


def test_the_notes_come_from_the_raw_result_not_from_the_script():
    """A raw result keeps the options and label it ran with; the block shows those, whatever the script says now."""
    result = next_generation()
    result["lines"][1].update(label="an older label", options={"mode": "auto", "postcopy_after_iterations": 2})
    block = health.render_block([("docs/results/x.json", result)])
    assert "- `postcopy_first_pass`: an older label (`mode: auto, postcopy_after_iterations: 2`)." in block


def test_a_hand_edited_health_table_is_detected_and_overwritten(written, capsys):
    raws, doc = written
    script_made = doc.read_text()
    row = "| debian12 | `max_downtime=10` | yes | 3 |"
    edited = script_made.replace(row + " 1 |", row + " 0 |")
    assert edited != script_made
    doc.write_text(edited)
    argv = ["--from", str(raws[0]), "--from", str(raws[1]), "--doc", str(doc)]
    assert health.main(argv + ["--check"]) == 1
    assert "+| debian12 | `max_downtime=10` | yes | 3 | 1 |" in capsys.readouterr().out
    assert doc.read_text() == edited
    assert health.main(argv) == 0
    assert doc.read_text() == script_made


def test_a_run_stopped_early_says_so():
    result = debian12()
    result["stopped_early"] = "RuntimeError: guest bench-health did not come back after a restart"
    block = health.render_block([("docs/results/x.json", result)])
    assert "The run stopped early: RuntimeError: guest bench-health did not come back after a restart." in block


def test_the_newest_raw_result_of_each_generation_is_shown(tmp_path):
    older, newer = debian12(), debian12()
    newer["started"] = "2026-12-09T10:00:00"
    files = {"migration-health-debian12-20261209-1000.json": newer,
             "migration-health-debian12-20261207-1600.json": older,
             "migration-health-debian13-20261208-0900.json": next_generation(),
             "migration-20261207-1600.json": {"not": "a health result"}}
    for name, result in files.items():
        (tmp_path / name).write_text(json.dumps(result))
    assert [path.name for path in health.newest_per_generation(tmp_path)] == [
        "migration-health-debian12-20261209-1000.json", "migration-health-debian13-20261208-0900.json"]


def test_the_docs_health_block_is_what_its_raw_results_give():
    """The health block of docs/performance.md is a placeholder or exactly what --from gives from the committed raw
    results it cites."""
    block = docblock.read_block(health.DOC, health.BEGIN, health.END)
    cited = re.match(r"Generated by `benchmarks/migration_health\.py ((?:--from docs/results/\S+\.json ?)+)`", block)
    if cited is None:
        assert "No committed run yet" in block, block
        return
    raws = [str(ROOT / word) for word in cited.group(1).split() if word != "--from"]
    assert health.main([word for raw in raws for word in ("--from", raw)] + ["--check"]) == 0


LAB_STATE = {"hosts": {
    "hv1": {"uri": "qemu+unix:///system?socket=/run/hv1", "generation": "debian12"},
    "hv2": {"uri": "qemu+unix:///system?socket=/run/hv2", "generation": "debian12"},
    "hv3": {"uri": "qemu+unix:///system?socket=/run/hv3", "generation": "debian13"},
    "client": {"uri": None, "generation": None},
}}


def lines_of(argv):
    lines = health.planned_lines(health.parse_args(argv))
    return [(line["settings"], line["options"], line["traffic"]) for line in lines]


def test_the_default_run_is_one_quiet_line_and_four_with_traffic():
    tuned = {"max_downtime": 10, "timeout": TUNED_TIMEOUT}
    assert lines_of([]) == [
        ("max_downtime=10", tuned, False),
        ("default", {}, True),
        ("max_downtime=10", tuned, True),
        ("max_downtime=50", {"max_downtime": 50, "timeout": TUNED_TIMEOUT}, True),
        ("postcopy_first_pass", {"mode": "auto", "postcopy_after_iterations": 1, "timeout": TUNED_TIMEOUT}, True),
    ]
    assert [line["label"] for line in health.planned_lines(health.parse_args([]))][:2] == [
        "this downtime limit, as variant (c) of migration.py", "the module's defaults"]


def test_the_lines_follow_quiet_then_settings_in_the_order_given():
    assert lines_of(["--settings", "multifd2, max_downtime=300", "--quiet", "default,postcopy_first_pass"]) == [
        ("default", {}, False),
        ("postcopy_first_pass", {"mode": "auto", "postcopy_after_iterations": 1, "timeout": TUNED_TIMEOUT}, False),
        ("multifd2", {"parallel_connections": 2, "timeout": TUNED_TIMEOUT}, True),
        ("max_downtime=300", {"max_downtime": 300, "timeout": TUNED_TIMEOUT}, True),
    ]
    assert lines_of(["--quiet", "", "--settings", "default"]) == [("default", {}, True)]
    assert lines_of(["--quiet", "multifd2", "--settings", ""]) == [("multifd2", {"parallel_connections": 2, "timeout": TUNED_TIMEOUT}, False)]


@pytest.mark.parametrize("name", ["max_downtime=10", "max_downtime=1", *health.SETTINGS])
def test_every_setting_is_a_valid_set_of_migrate_options(name):
    """The module would refuse options that do not go together (multifd with post-copy, say) or a bad value."""
    _label, options = health.migrated_with(name)
    assert MigrationOptions(name="guest", dest_uri="qemu+tcp://hv2/system", **options).module_args() == dict(
        name="guest", dest_uri="qemu+tcp://hv2/system", **options)


@pytest.mark.parametrize("option", ["--settings", "--quiet"])
@pytest.mark.parametrize("value, bad", [("default,postcopy", "postcopy")] + [(name, name) for name in (
    "fast", "Default", "max_downtime", "max_downtime=", "max_downtime=0", "max_downtime=-5", "max_downtime=1.5")])
def test_unknown_settings_names_are_refused_naming_the_option_and_the_choices(option, value, bad, capsys):
    with pytest.raises(SystemExit):
        health.parse_args([option, value])
    assert ("argument %s: invalid choice: '%s' (choose from 'default', 'postcopy_first_pass', 'multifd2', 'low_blackout', "
            "'max_downtime=<ms above 0>')" % (option, bad)) in capsys.readouterr().err


def test_a_run_without_any_line_and_the_old_downtimes_are_refused(capsys):
    with pytest.raises(SystemExit):
        health.parse_args(["--quiet", "", "--settings", ""])
    assert "--settings and --quiet are both empty: no line to run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        health.parse_args(["--downtimes", "10,20"])
    assert "unrecognized arguments: --downtimes" in capsys.readouterr().err


def test_the_hosts_are_two_different_hypervisors_hv1_and_hv2_by_default():
    assert health.parse_args([]).hosts == ("hv1", "hv2")
    assert health.parse_args(["--hosts", "hv1, hv3"]).hosts == ("hv1", "hv3")


@pytest.mark.parametrize("value", ["hv1", "hv1,hv1", "hv1,hv2,hv3", "hv1,"])
def test_hosts_other_than_two_different_names_are_refused(value, capsys):
    with pytest.raises(SystemExit):
        health.parse_args(["--hosts", value])
    assert "--hosts: two different hypervisors, comma-separated (e.g. hv1,hv3), got '%s'" % value in capsys.readouterr().err


@pytest.mark.parametrize("hosts, generations, label", [
    (("hv1", "hv2"), {"hv1": "debian12", "hv2": "debian12"}, "debian12"),
    (("hv1", "hv3"), {"hv1": "debian12", "hv3": "debian13"}, "debian12+debian13"),
    (("hv3", "hv1"), {"hv3": "debian13", "hv1": "debian12"}, "debian13+debian12"),
])
def test_each_hosts_generation_comes_from_the_lab_and_labels_the_run(hosts, generations, label):
    assert health.host_generations(LAB_STATE, hosts) == generations
    assert health.generation_label(generations) == label


def test_a_host_that_is_no_hypervisor_of_the_lab_is_refused():
    with pytest.raises(SystemExit, match=r"^--hosts: client is not a hypervisor of the lab \(hv1, hv2, hv3\)$"):
        health.host_generations(LAB_STATE, ("hv1", "client"))
    with pytest.raises(SystemExit, match="hv9 is not a hypervisor"):
        health.host_generations(LAB_STATE, ("hv9", "hv1"))
