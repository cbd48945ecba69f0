"""Does a guest survive live migration with these settings under client traffic? Counts the guests that break.

    PYTHONPATH=.collections:. .venv/bin/python benchmarks/migration_health.py [--rounds 24]
        [--quiet max_downtime=10] [--settings default,max_downtime=10,max_downtime=50,postcopy_first_pass]
        [--hosts hv1,hv2] [--generation LABEL]
    PYTHONPATH=.collections:. .venv/bin/python benchmarks/migration_health.py --from docs/results/<file>.json
        [--from <another generation's file>.json ...] [--check]

A bridged TCG guest moves back and forth between two of the lab's hypervisors (--hosts; it boots on the first) with
arctictern.virt.migrate, --rounds times per line. A line is a named setting (SETTINGS: the module's options beyond
the guest and its destination) with or without traffic: first each of --quiet with no traffic at all, then each of
--settings with the client's probe sending the guest a UDP datagram every millisecond across each migration. The
probe's length is set before each migration from the ones before (migration.ProbeLength; the quiet lines come
first, so with one the probed migrations all have some before them). After each migration the client asks the
guest's agent whether it still serves the same boot with its request counter going on; a guest that does not is
counted as broken, the end of its serial console is kept, and it is power-cycled for the next round. Every round
is recorded, whatever its outcome: a failed migration with its cause, a probe error, a probe that ended before the
migration did.

Writes the raw rounds to docs/results/migration-health-<generation>-<date>.json, with each host's generation from
the lab's state and each line's settings name, label and the exact options it passed, and the table (one group of
lines per generation label: the newest raw result of each under docs/results/; each setting's options in a note
under it) into docs/performance.md. The label is the hosts' generation, both joined by "+" when they differ
(hv1,hv3: debian12+debian13), unless --generation names another. --from writes the table from the raw results named
instead, without the lab; --check then writes nothing and fails when the doc differs (a table edited by hand).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import shlex
import sys
from pathlib import Path

from benchmarks.migration import (
    DOC, FIRST_GUESS_S, HYPERVISORS, LEAD_S, PROBE_FACTOR, PROBE_MARGIN_S, RAW_DIR, TUNED_TIMEOUT, Bench,
    ProbeLength, QemuEvents, _fmt, blackout_of, cite, failures_text, figure_cell, log, migrate_probed, tuned_options,
    write_blocks)
from lab import lab as lab_control
from lab.ansible import Ansible, hypervisors

BEGIN, END = "<!-- migration-health:begin -->", "<!-- migration-health:end -->"
GUEST = "bench-health"
RAW_PATTERN = "migration-health-*.json"
# What a round keeps of the module's outcome (migration.Bench.module_migrate; mode: whether post-copy ran) and of
# what its probe saw (migration.observe: the client's blackout, its parts from QEMU's events, whether the probe
# outlasted the migration).
ROUND_FIELDS = ("ok", "cause", "error", "mode", "command_ms", "call_ms", "probe_s", "probe_error", "covered",
                "blackout_ms", "lost", "parts")
# The settings a line migrates with: name -> (label, arctictern.virt.migrate options beyond the guest and its
# destination). max_downtime=<ms> is one more, parsed from its name (migrated_with).
SETTINGS = {
    "default": ("the module's defaults", {}),
    "postcopy_first_pass": ("post-copy once the first full pass is done",
                            {"mode": "auto", "postcopy_after_iterations": 1, "timeout": TUNED_TIMEOUT}),
    "multifd2": ("memory over two connections (multifd)", {"parallel_connections": 2, "timeout": TUNED_TIMEOUT}),
    "low_blackout": ("the module's profile, as its users name it", {"profile": "low_blackout"}),
}
MAX_DOWNTIME = "max_downtime="
# The default run: 5 lines of 24 rounds.
DEFAULT_QUIET, DEFAULT_TRAFFIC = "max_downtime=10", "default,max_downtime=10,max_downtime=50,postcopy_first_pass"


def migrated_with(name):
    """(label, options) of the named settings; ValueError listing the choices for a name that is none of them."""
    if name in SETTINGS:
        return SETTINGS[name]
    milliseconds = name.removeprefix(MAX_DOWNTIME)
    if name.startswith(MAX_DOWNTIME) and milliseconds.isdecimal() and int(milliseconds) > 0:
        return "this downtime limit, as variant (c) of migration.py", tuned_options(int(milliseconds))
    choices = ", ".join("'%s'" % choice for choice in (*SETTINGS, MAX_DOWNTIME + "<ms above 0>"))
    raise ValueError("invalid choice: '%s' (choose from %s)" % (name, choices))


def migrate_once(bench, address, route, options, probe_length):
    """One migration of the guest with the module's ``options``; with a ``probe_length``, the client's probe runs
    across it and the outcome has what it saw, measured as migration.py measures its variants."""
    migrate = functools.partial(bench.module_migrate, GUEST, *route, **options)
    if probe_length is None:
        return migrate()
    return migrate_probed(bench, address, GUEST, route, migrate, probe_length.seconds())


def round_cause(record):
    """Why a round does not count as a clean migration under the line's conditions, or None."""
    if not record["ok"]:
        return record["cause"] or "failed"
    if record.get("probe_error"):
        return "probe error"
    # Runs before blackouts were recorded named it traffic_covered.
    if record.get("covered", record.get("traffic_covered")) is False:
        return "traffic ended before the migration"
    return None


def migrate_rounds(bench, address, line, rounds, probe_length):
    """``rounds`` migrations back and forth for one line (its ``options`` and ``traffic``), appended to
    ``line["rounds"]`` as they happen; ``probe_length`` learns from every one."""
    previous = bench.guest_answer(GUEST, address)[0]
    for number in range(1, rounds + 1):
        route = bench.route(GUEST)
        outcome = migrate_once(bench, address, route, line["options"], probe_length if line["traffic"] else None)
        probe_length.saw(outcome)
        previous, problem, serial = bench.check_serving(GUEST, address, previous)
        record = {"round": number, "source": route[0], "dest": route[1], "problem": problem, "serial": serial}
        record.update({key: outcome.get(key) for key in ROUND_FIELDS})
        line["rounds"].append(record)
        log("  %s, %s, round %d %s->%s: %s" % (
            line["settings"], "traffic" if line["traffic"] else "quiet", number, route[0], route[1],
            problem or round_cause(record) or "healthy"))


# --- the table ----------------------------------------------------------------------------------------------


def line_row(generation, line):
    rounds = line["rounds"]
    traffic = "yes" if line["traffic"] else "none"
    # A blackout counts from a clean round whose probe recorded one (runs before blackouts were kept have none).
    clean = [record for record in rounds if not round_cause(record) and "blackout_ms" in record]
    blackouts = [blackout_of(record) for record in clean]
    paused = [record["parts"].get("paused_ms") for record in clean if record.get("parts")]
    return "| %s | `%s` | %s | %d | %d | %s | %s | %s | %s |" % (
        generation, line["settings"], traffic, len(rounds), sum(1 for record in rounds if record["problem"]),
        failures_text(round_cause(record) for record in rounds), figure_cell(blackouts, 50),
        figure_cell(blackouts, 95), figure_cell(paused, 50))


def settings_note(line):
    """The note under the table that says what a line's settings name stands for."""
    options = ", ".join("%s: %s" % (key, value if isinstance(value, str) else json.dumps(value))
                        for key, value in line["options"].items())
    return "- `%s`: %s (%s)." % (line["settings"], line["label"], "`%s`" % options if options else "no options")


def source_line(results, raw_name):
    accel = "KVM" if results["virt_type"] == "kvm" else "QEMU TCG"
    versions = "; ".join("%s libvirt %s, QEMU %s" % (host, v["libvirt"], v["qemu"])
                         for host, v in sorted(results["versions"].items()))
    stopped = " The run stopped early: %s." % results["stopped_early"] if results.get("stopped_early") else ""
    return "- **%s** (%s): run %s of %s (%s min) on %d cores, guests under %s, by `PYTHONPATH=.collections:. " \
           ".venv/bin/python %s`.%s" % (
               results["generation"], versions, raw_name, results["started"], _fmt(results.get("minutes"), 1),
               results["cores"], accel, shlex.join(["benchmarks/migration_health.py", *results["argv"]]), stopped)


def render_block(raws):
    """The doc's block from raw results: [(how the doc names it, the result as read back from its JSON)]."""
    names = " ".join("--from %s" % name for name, _results in raws)
    lines = ["Generated by `benchmarks/migration_health.py %s`: edit the script, not this block." % names, ""]
    lines += [source_line(results, name) for name, results in raws]
    lines += ["", "| generation | settings | client traffic (UDP datagram every ms) | migrations | guests broken | "
                  "failed or not fully probed (causes) | client blackout median ms | p95 ms | guest paused (QEMU) median ms |",
              "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    table_lines = [(results["generation"], line) for _name, results in raws for line in results["lines"]]
    lines += [line_row(generation, line) for generation, line in table_lines]
    # One note per name, from the first line with it: the names are the script's, their options stay the same.
    notes = {}
    for _generation, line in table_lines:
        notes.setdefault(line["settings"], settings_note(line))
    lines += ["", "Settings: what each name passed to `arctictern.virt.migrate` beyond the guest and its destination "
                  "(`name`, `dest_uri`, `migrate_uri`):"]
    lines += notes.values()
    return "\n".join(lines)


def newest_per_generation(directory):
    """The newest raw result (by its start) of each generation under ``directory``, in the generations' order."""
    newest = {}
    for path in directory.glob(RAW_PATTERN):
        results = json.loads(path.read_text())
        known = newest.get(results["generation"])
        if known is None or results["started"] > known[1]["started"]:
            newest[results["generation"]] = (path, results)
    return [newest[generation][0] for generation in sorted(newest)]


def render_from(paths, doc, check=False):
    """Print the block from the raw result files ``paths`` and write it into ``doc`` (with ``check``, only
    compare). 1 when checking found a difference, else 0."""
    block = render_block([(cite(path), json.loads(Path(path).read_text())) for path in paths])
    print(block)
    differences = write_blocks(doc, {(BEGIN, END): block}, check)
    if differences:
        print("\n%s differs from what the raw results give (edited by hand?):\n%s" % (doc, differences))
        return 1
    return 0


# --- measuring ----------------------------------------------------------------------------------------------


def host_generations(state, hosts):
    """{host: generation} from the lab's state; SystemExit for a host that is no hypervisor of the lab."""
    known = hypervisors(state)
    for host in hosts:
        if host not in known:
            raise SystemExit("--hosts: %s is not a hypervisor of the lab (%s)" % (host, ", ".join(known)))
    return {host: state["hosts"][host]["generation"] for host in hosts}


def generation_label(generations):
    """The table's label of a run between hosts of these generations: theirs, or both joined (debian12+debian13)."""
    return "+".join(dict.fromkeys(generations.values()))


def measure(args):
    """Run every line; the raw result's path (written however the run ends)."""
    address = "198.18.0.%d" % int(os.environ.get("ATV_TEST_ADDRESSES", "236-239").split("-")[0])
    started = datetime.datetime.now()
    QemuEvents.start_loop()
    state = lab_control.read_state() or lab_control.up(log=log)
    generations = host_generations(state, args.hosts)
    generation = args.generation or generation_label(generations)
    bench = Bench(state, Ansible(), hosts=args.hosts)
    for host in args.hosts:
        bench.ansible.ok(host, "host_bridge", name="br0", uplink="eth0")
    results = {"generation": generation, "generations": generations, "started": started.isoformat(timespec="seconds"),
               "virt_type": state["virt_type"], "cores": os.cpu_count(), "versions": bench.versions(),
               "argv": args.argv, "rounds": args.rounds,
               "probe_rule": {"lead_s": LEAD_S, "factor": PROBE_FACTOR, "margin_s": PROBE_MARGIN_S,
                              "first_guess_s": FIRST_GUESS_S}, "lines": []}
    probe_length = ProbeLength()
    bench.remove(GUEST)
    try:
        bench.boot(args.hosts[0], GUEST, address)
        for line in planned_lines(args):
            results["lines"].append(line)
            migrate_rounds(bench, address, line, args.rounds, probe_length)
    except BaseException as error:
        results["stopped_early"] = "%s: %s" % (type(error).__name__, error)
        raise
    finally:
        results["minutes"] = round((datetime.datetime.now() - started).total_seconds() / 60, 1)
        RAW_DIR.mkdir(exist_ok=True)
        raw = RAW_DIR / ("migration-health-%s-%s.json" % (generation, started.strftime("%Y%m%d-%H%M")))
        raw.write_text(json.dumps(results, indent=1) + "\n")
        log("raw rounds: %s" % cite(raw))
        bench.remove(GUEST)
    return raw


def planned_lines(args):
    """The lines to run, in order: each of --quiet without traffic, then each of --settings with traffic."""
    lines = []
    for names, traffic in ((args.quiet, False), (args.settings, True)):
        for name in names:
            label, options = migrated_with(name)
            lines.append({"settings": name, "label": label, "options": dict(options), "traffic": traffic, "rounds": []})
    return lines


def settings_names(text):
    """A --settings or --quiet value: names of SETTINGS or max_downtime=<ms>, comma-separated; "" for none."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        try:
            migrated_with(name)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return names


def two_hosts(text):
    """The --hosts value: two different hypervisors, comma-separated."""
    hosts = tuple(name.strip() for name in text.split(","))
    if len(hosts) != 2 or len(set(hosts)) != 2 or not all(hosts):
        raise argparse.ArgumentTypeError("two different hypervisors, comma-separated (e.g. hv1,hv3), got '%s'" % text)
    return hosts


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/migration_health.py", description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=24, help="migrations per line of the table")
    parser.add_argument("--quiet", type=settings_names, default=DEFAULT_QUIET,
                        help="settings of the lines without traffic, run first, comma-separated; '' for none "
                             "(default: %s; choices: %s, max_downtime=<ms>)" % (DEFAULT_QUIET, ", ".join(SETTINGS)))
    parser.add_argument("--settings", type=settings_names, default=DEFAULT_TRAFFIC,
                        help="settings of the lines with client traffic, in this order, comma-separated "
                             "(default: %s)" % DEFAULT_TRAFFIC)
    parser.add_argument("--hosts", type=two_hosts, default=HYPERVISORS,
                        help="the two hypervisors the guest moves between, comma-separated; it boots on the first "
                             "(default: %s)" % ",".join(HYPERVISORS))
    parser.add_argument("--generation",
                        help="the run's label in the table (default: the hosts' generation from the lab's state, "
                             "both joined by + when they differ)")
    parser.add_argument("--from", dest="raws", action="append", metavar="RAW.json",
                        help="measure nothing: write the table from these raw results (repeat for each generation)")
    parser.add_argument("--check", action="store_true",
                        help="with --from: write nothing; exit 1 when the doc's table differs from the raw results'")
    parser.add_argument("--doc", default=str(DOC), help="the Markdown file with the table's markers")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.check and not args.raws:
        parser.error("--check needs --from")
    if not args.raws and not args.quiet + args.settings:
        parser.error("--settings and --quiet are both empty: no line to run")
    return args


def main(argv=None):
    args = parse_args(argv)
    doc = Path(args.doc)
    if args.raws:
        return render_from(args.raws, doc, args.check)
    measure(args)
    return render_from(newest_per_generation(RAW_DIR), doc)


if __name__ == "__main__":
    sys.exit(main())
