"""Does a guest survive live migration with a lowered max_downtime? Counts the guests that stop serving.

    PYTHONPATH=.collections:. .venv/bin/python benchmarks/migration_health.py [--rounds 24] [--downtimes 10,20,50,300]

A bridged TCG guest moves back and forth between the lab's hypervisors with arctictern.virt.migrate, tuned as
variant (c) of migration.py is (`max_downtime` as given, `timeout: 60` with `abort`). That happens once for each
limit with the client's probe sending the guest a UDP datagram every millisecond across each migration, and once
with the lowest limit and no traffic at all. After each migration the
client asks the guest's agent whether it still serves the same boot with its request counter going on; a guest that
does not is counted as broken, the end of its serial console is kept, and it is power-cycled for the next round.

Prints the table and saves the raw rounds under results/. docs/performance.md has the figures of a run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

from migration import HYPERVISORS, LEAD_S, RESULTS, Bench, Probe, log, tuned_options

from lab import lab as lab_control
from lab.ansible import Ansible

GUEST = "bench-health"
PROBE_S = 6.0   # the probe's length: it covers the module's start-up and the whole migration


def migrate_once(bench, address, source, dest, downtime, traffic):
    """One migration of the guest, with the client's probe running across it when ``traffic``."""
    if not traffic:
        return bench.module_migrate(GUEST, source, dest, **tuned_options(downtime))
    probe = Probe(bench.state, address, PROBE_S)
    try:
        time.sleep(LEAD_S)
        outcome = bench.module_migrate(GUEST, source, dest, **tuned_options(downtime))
        probe.result()  # the probe ends before the guest is checked and the next round starts
        return outcome
    finally:
        probe.kill()


def migrate_rounds(bench, address, rounds, downtime, traffic):
    """``rounds`` migrations back and forth; each as {round, source, dest, ok, error, problem, serial}."""
    previous = bench.guest_answer(GUEST, address)[0]
    done = []
    for number in range(1, rounds + 1):
        source, dest = bench.route(GUEST)
        outcome = migrate_once(bench, address, source, dest, downtime, traffic)
        previous, problem, serial = bench.check_serving(GUEST, address, previous)
        done.append({"round": number, "source": source, "dest": dest, "ok": outcome["ok"], "error": outcome["error"],
                     "problem": problem, "serial": serial})
        log("  max_downtime %d ms, %s, round %d %s->%s: %s" % (
            downtime, "traffic" if traffic else "quiet", number, source, dest,
            problem or ("healthy" if outcome["ok"] else "migration failed: %s" % outcome["error"])))
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(prog="benchmarks/migration_health.py", description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=24, help="migrations per line of the table")
    parser.add_argument("--downtimes", default="10,20,50,300", help="max_downtime values in ms, comma-separated")
    args = parser.parse_args(argv)
    downtimes = [int(value) for value in args.downtimes.split(",")]
    address = "198.18.0.%d" % int(os.environ.get("ATV_TEST_ADDRESSES", "236-239").split("-")[0])
    started = datetime.datetime.now()
    state = lab_control.read_state() or lab_control.up(log=log)
    ansible = Ansible()
    bench = Bench(state, ansible)
    for host in HYPERVISORS:
        ansible.ok(host, "host_bridge", name="br0", uplink="eth0")
    lines = [(min(downtimes), False)] + [(downtime, True) for downtime in downtimes]
    results = {"started": started.isoformat(timespec="seconds"), "virt_type": state["virt_type"],
               "cores": os.cpu_count(), "rounds": args.rounds, "lines": []}
    bench.remove(GUEST)
    try:
        bench.boot("hv1", GUEST, address)
        for downtime, traffic in lines:
            rounds = migrate_rounds(bench, address, args.rounds, downtime, traffic)
            results["lines"].append({"max_downtime": downtime, "traffic": traffic, "rounds": rounds,
                                     "broken": sum(1 for record in rounds if record["problem"]),
                                     "failed": sum(1 for record in rounds if not record["ok"])})
    finally:
        bench.remove(GUEST)
    RESULTS.mkdir(exist_ok=True)
    raw = RESULTS / ("migration-health-%s.json" % started.strftime("%Y%m%d-%H%M%S"))
    raw.write_text(json.dumps(results, indent=1))
    print("\nGuests under %s, %d cores, %d migrations per line; raw rounds in %s\n" % (
        "QEMU TCG" if state["virt_type"] == "qemu" else "KVM", results["cores"], args.rounds, raw))
    print("| `max_downtime` | client traffic (UDP datagram every ms) | guests broken | migrations failed |")
    print("| ---: | --- | ---: | ---: |")
    for line in results["lines"]:
        traffic = "yes" if line["traffic"] else "none"
        print("| %d ms | %s | %d of %d | %d |" % (line["max_downtime"], traffic, line["broken"], args.rounds, line["failed"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
