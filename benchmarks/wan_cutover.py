"""WAN cutover: what clients see while a guest moves from site A to site B (another subnet) with
playbooks/migrate_wan.yml, against the same move without the tunnel and a LAN migration in the same run.

    PYTHONPATH=.collections:. .venv/bin/python benchmarks/wan_cutover.py [--rounds N] [--connections 20]

Each round, in this order:
  lan     a guest on the LAN bridge moves hv1 -> hv2 over the migration link (arctictern.virt.migrate) while the LAN
          client streams to it: the reference blackout;
  tunnel  web-wan moves site A -> site B with the role (tunnel, DNS, drain) while the remote client streams to it
          by its DNS name; once the guest has run at site B for --after seconds the streams end (which lets the
          drain finish), then new connections open by name;
  dns     the same move with wan_migration_tunnel=false (migration and DNS only): the baseline.
Streams (lab/streams.py): --connections TCP connections to the guest's echo port, each sending --rate numbered,
checksummed records per second and checking the echo. A caching resolver on the remote client asks for the name
every 100 ms. iperf3 measures the WAN directly and through the tunnel, alternating, in the same run.

Writes the raw results to docs/wan-cutover.json, a timeline of one tunnel move to docs/wan-cutover.png and the
table into docs/performance.md between its markers. Every attempt stays in the results; a failed one is counted
and named in the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import libvirt

from benchmarks.docblock import replace_block
from lab import lab as lab_control
from lab.ansible import ROOT, Ansible, ansible_env, client_http

DOC = ROOT / "docs" / "performance.md"
RESULTS = ROOT / "results"
RAW = ROOT / "docs" / "wan-cutover.json"
PLOT = ROOT / "docs" / "wan-cutover.png"
BEGIN, END = "<!-- wan-cutover:begin -->", "<!-- wan-cutover:end -->"
PLAYBOOK = ROOT / "playbooks" / "migrate_wan.yml"
GUEST_PLAYBOOK = ROOT / "playbooks" / "wan_guest.yml"
WAN_GUEST, OLD, NEW = "web-wan", "198.19.1.50", "198.19.2.50"
LAN_GUEST, LAN_ADDRESS = "bench-lan", "198.18.0.60"
RECORD_TTL, LOW_TTL = 10, 2
IPERF_SECONDS, IPERF_REPEATS = 5, 3
FRESH_CONNECTIONS = 5


def log(message):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), message), flush=True)


class Streams:
    """lab/streams.py running inside a lab host until stopped."""

    def __init__(self, host, *args):
        self.stop_file = Path(tempfile.mkdtemp()) / "stop"
        python = lab_control.read_state()["hosts"][host]["python"]
        self.proc = subprocess.Popen([python, "-m", "lab.streams", *args, "--until-file", str(self.stop_file)],
                                     cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def finish(self):
        self.stop_file.touch()
        out, err = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0 or not out.strip():
            return {"error": err.strip()[-2000:] or "no output"}
        return json.loads(out)


def runs_on(state, host, name):
    """Whether the guest runs on ``host``: an incoming migration's guest is there too, paused, and does not count."""
    conn = libvirt.open(state["hosts"][host]["uri"])
    try:
        return conn.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def wait_until_runs(state, host, name, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if runs_on(state, host, name):
            return time.time()
        time.sleep(0.1)
    return None


def stalls(streams):
    return [conn["longest_stall_s"] for conn in streams.get("connections", []) if conn["longest_stall_s"] is not None]


def summarize_streams(streams, wanted):
    """The figures of one run of lab/streams.py that opened ``wanted`` connections: a connection that failed to
    open, or that the probe could not report on, counts as lost."""
    connections = streams.get("connections", [])
    lost = [conn for conn in connections if conn["lost"] or conn["echoed"] < conn["sent"]]
    return {
        "connections": len(connections),
        "connect_failures": len(streams.get("connect_failures", [])),
        "lost": len(lost) + (wanted - len(connections)),
        "bytes_lost": sum(conn["bytes_lost"] for conn in connections),
        "corrupted": sum(conn["corrupted"] for conn in connections),
        "reordered": sum(conn["reordered"] for conn in connections),
        "stall_p50_s": statistics.median(stalls(streams)) if stalls(streams) else None,
        "stall_max_s": max(stalls(streams)) if stalls(streams) else None,
        "error": streams.get("error"),
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.ansible = Ansible()
        self.state = lab_control.read_state() or lab_control.up(log=log)
        self.dns = self.state["wan"]["dns"]
        self.record = "%s.%s" % (WAN_GUEST, self.dns["zone"])

    # -- the LAN reference --------------------------------------------------------------------------------------

    def lan_round(self):
        for host in ("hv1", "hv2"):
            self.ansible.ok(host, "host_bridge", name="br0", uplink="eth0")
        source = "hv1" if not runs_on(self.state, "hv2", LAN_GUEST) else "hv2"
        dest = "hv2" if source == "hv1" else "hv1"
        if not runs_on(self.state, source, LAN_GUEST):
            cmdline = "console=ttyS0 quiet panic=-1 atv.name=%s atv.ip=%s/24" % (LAN_GUEST, LAN_ADDRESS)
            self.ansible.ok(source, "guest", name=LAN_GUEST, state="running", memory=128,
                            hypervisor=self.state["virt_type"], kernel=self.state["image"]["kernel"],
                            initrd=self.state["image"]["initrd"], cmdline=cmdline, nics=[{"bridge": "br0"}])
            if not client_http(LAN_ADDRESS, wait=120)["ok"]:
                raise RuntimeError("the LAN guest never answered")
        streams = Streams("client", "tcp", LAN_ADDRESS, "--count", str(self.args.connections),
                          "--rate", str(self.args.rate))
        time.sleep(self.args.before)
        started = time.time()
        result = self.ansible.module(source, "arctictern.virt.migrate", name=LAN_GUEST,
                                     dest_uri=self.state["hosts"][dest]["migration_uri"],
                                     migrate_uri="tcp://%s" % self.state["hosts"][dest]["link_address"])
        ended = time.time()
        time.sleep(self.args.after)
        raw = streams.finish()
        return {"variant": "lan", "ok": not result.get("failed"), "error": result.get("msg") if result.get("failed") else None,
                "migration": {"started": started, "ended": ended, "downtime_ms": (result.get("stats") or {}).get("downtime_ms")},
                "summary": summarize_streams(raw, self.args.connections), "streams": raw}

    # -- the WAN moves ------------------------------------------------------------------------------------------

    def reset_wan(self):
        """web-wan back at site A with its old address published, nothing of an earlier move left."""
        if runs_on(self.state, "hv2", WAN_GUEST):
            self.ansible.ok("hv2", "guest", name=WAN_GUEST, state="absent")
        for host in ("hv1", "hv2"):
            self.ansible.ok(host, "tunnel", name="wanmig0", state="absent")
        self.ansible.ok("hv2", "address_map", address=NEW, guest_address=OLD, bridge="site0", state="absent")
        proc = self.ansible.playbook(GUEST_PLAYBOOK, extra_vars={"record_ttl": RECORD_TTL})
        if proc.returncode != 0:
            raise RuntimeError("could not start %s at site A: %s" % (WAN_GUEST, proc.stdout[-3000:]))
        self.ansible.ok("hv1", "ddns", server=self.dns["server"], record=self.record, value=[OLD], ttl=RECORD_TTL,
                        state="exact", key_name=self.dns["key_name"], key_secret=self.dns["key_secret"],
                        key_algorithm=self.dns["key_algorithm"])
        if not client_http(OLD, host="remote", wait=120)["ok"]:
            raise RuntimeError("%s does not answer at %s" % (WAN_GUEST, OLD))

    def wan_round(self, tunnel):
        self.reset_wan()
        # A resolver that has cached the old address for its whole TTL: the worst case the TTL allows.
        resolver = Streams("remote", "resolve", self.record, "--server", self.dns["server"])
        streams = Streams("remote", "tcp", self.record, "--server", self.dns["server"],
                          "--count", str(self.args.connections), "--rate", str(self.args.rate))
        time.sleep(self.args.before)
        report_path = Path(tempfile.mkdtemp()) / "report.json"
        extra = {"wan_migration_tunnel": tunnel, "wan_migration_report_path": str(report_path),
                 "wan_migration_dns_low_ttl": LOW_TTL, "wan_migration_dns_ttl": RECORD_TTL,
                 "wan_migration_drain_timeout": self.args.drain_timeout,
                 "wan_migration_drain_idle": self.args.drain_idle}
        finished = {}

        def play():
            finished["proc"] = self.ansible.playbook(PLAYBOOK, extra_vars=extra)
            finished["at"] = time.time()

        started = time.time()
        runner = threading.Thread(target=play)
        runner.start()
        arrived = wait_until_runs(self.state, "hv2", WAN_GUEST, timeout=600)
        if arrived:
            # The old connections run through the tunnel for a while, then end, which lets the drain finish.
            time.sleep(self.args.after)
        raw = streams.finish()
        runner.join(timeout=1800)
        time.sleep(1)
        fresh = Streams("remote", "tcp", self.record, "--server", self.dns["server"], "--count", str(FRESH_CONNECTIONS),
                        "--rate", str(self.args.rate))
        time.sleep(3)
        fresh_raw = fresh.finish()
        resolved = resolver.finish()
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        proc = finished["proc"]
        return {
            "variant": "tunnel" if tunnel else "dns",
            "ok": proc.returncode == 0,
            "error": None if proc.returncode == 0 else proc.stdout[-3000:],
            "started": started, "arrived": arrived, "role_ended": finished["at"],
            "report": report,
            "summary": summarize_streams(raw, self.args.connections),
            "dns_seconds": dns_switch_seconds(report, resolved),
            "fresh": {"summary": summarize_streams(fresh_raw, FRESH_CONNECTIONS), "address": fresh_raw.get("address")},
            "streams": raw, "resolver": resolved,
        }

    # -- iperf3 through the tunnel and directly ------------------------------------------------------------------

    def iperf(self):
        tunnel = dict(name="wanmig0", kind="vxlan", vni=4242, port=4789)
        wan = self.state["wan"]["sites"]
        self.ansible.ok("hv1", "tunnel", local=wan["hv1"]["wan_address"], remote=wan["hv2"]["wan_address"],
                        address=["169.254.86.1/30"], peer="169.254.86.2", **tunnel)
        self.ansible.ok("hv2", "tunnel", local=wan["hv2"]["wan_address"], remote=wan["hv1"]["wan_address"],
                        address=["169.254.86.2/30"], peer="169.254.86.1", **tunnel)
        server = subprocess.Popen(["nsenter", "--net=/run/netns/atv-hv2", "iperf3", "-s"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        samples = []
        try:
            for repeat in range(IPERF_REPEATS):
                for path, address in (("direct", wan["hv2"]["wan_address"]), ("tunnel", "169.254.86.2")):
                    proc = subprocess.run(["nsenter", "--net=/run/netns/atv-hv1", "iperf3", "-c", address, "-t",
                                           str(IPERF_SECONDS), "-J"], capture_output=True, text=True, timeout=60,
                                          check=False)
                    try:
                        end = json.loads(proc.stdout)["end"]
                        bps = end["sum_received"]["bits_per_second"]
                        samples.append({"repeat": repeat, "path": path, "ok": True, "mbit_s": round(bps / 1e6, 1),
                                        "retransmits": end["sum_sent"].get("retransmits")})
                    except (ValueError, KeyError) as error:
                        samples.append({"repeat": repeat, "path": path, "ok": False,
                                        "error": "%s: %s" % (error, (proc.stderr or proc.stdout)[-300:])})
        finally:
            server.kill()
            server.wait()
            for host in ("hv1", "hv2"):
                self.ansible.ok(host, "tunnel", name="wanmig0", state="absent")
        return samples


def dns_switch_seconds(report, resolved):
    """Seconds from the start of the role's dns_new step until the caching resolver answered the new address."""
    if not report or "changes" not in resolved:
        return None
    step = next((step for step in report["steps"] if step["step"] == "dns_new"), None)
    change = next((change for change in resolved["changes"] if change["answer"] == [NEW]), None)
    if step is None or change is None:
        return None
    return round(change["t"] - step["started"], 2)


def _number(value):
    """Whole numbers as such (bytes), others to three decimals."""
    return "%d" % value if float(value).is_integer() else "%g" % round(value, 3)


def spread(values, unit=""):
    values = [value for value in values if value is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return "%s%s" % (_number(values[0]), unit)
    return "%s%s (%s–%s)" % (_number(statistics.median(values)), unit, _number(min(values)), _number(max(values)))


def table(results):
    rounds = results["rounds"]
    lines = ["Run of %s: %d rounds, %d connections per move at %g records/s of %d bytes each way, lab WAN: %s." % (
        results["run"], len(rounds), results["connections"], results["rate"], 256, results["wan_shaping"]),
        "Values: median (min–max) over the rounds that completed.", "",
        "| move | attempts | failed | connections lost | bytes lost | corrupted / reordered | longest stall p50 | "
        "longest stall max | fresh lookup gets new address | new connections | drain | role total |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for variant, title in (("lan", "LAN migration (reference)"), ("tunnel", "WAN, role with tunnel"),
                           ("dns", "WAN, migration + DNS only")):
        attempts = [rnd[variant] for rnd in rounds if variant in rnd]
        done = [attempt for attempt in attempts if attempt["ok"]]
        failed = ["round %d: %s" % (index + 1, (attempt["error"] or "")[-120:].replace("|", "/").replace("\n", " "))
                  for index, attempt in enumerate(attempts) if not attempt["ok"]]
        summaries = [attempt["summary"] for attempt in done]
        steps = [{step["step"]: step["seconds"] for step in (attempt.get("report") or {}).get("steps", [])}
                 for attempt in done]
        lines.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            title, len(attempts), len(failed) if not failed else "%d (%s)" % (len(failed), "; ".join(failed)),
            spread([s["lost"] for s in summaries], "/%d" % results["connections"]),
            spread([s["bytes_lost"] for s in summaries]),
            "%s / %s" % (sum(s["corrupted"] for s in summaries), sum(s["reordered"] for s in summaries)),
            spread([s["stall_p50_s"] for s in summaries], " s"), spread([s["stall_max_s"] for s in summaries], " s"),
            spread([attempt.get("dns_seconds") for attempt in done], " s") if variant != "lan" else "-",
            ("%s lost of %s" % (spread([a["fresh"]["summary"]["lost"] + a["fresh"]["summary"]["connect_failures"] for a in done]),
                                spread([a["fresh"]["summary"]["connections"] + a["fresh"]["summary"]["connect_failures"] for a in done])))
            if variant != "lan" else "-",
            spread([step.get("drain") for step in steps], " s") if variant == "tunnel" else "-",
            spread([(attempt.get("report") or {}).get("total_seconds") for attempt in done], " s") if variant != "lan" else "-"))
    direct = [sample["mbit_s"] for sample in results["iperf"] if sample["ok"] and sample["path"] == "direct"]
    tunnel = [sample["mbit_s"] for sample in results["iperf"] if sample["ok"] and sample["path"] == "tunnel"]
    failed_iperf = [sample for sample in results["iperf"] if not sample["ok"]]
    lines += ["", "iperf3 hv1 -> hv2, %d s each, alternating, %d failed: direct %s Mbit/s, through the tunnel %s Mbit/s%s." % (
        IPERF_SECONDS, len(failed_iperf), spread(direct), spread(tunnel),
        " (%.0f %% of direct, medians)" % (100 * statistics.median(tunnel) / statistics.median(direct)) if direct and tunnel else "")]
    # Goals are judged over every attempt: a failed move or a missing measurement does not meet them.
    tunnel_moves = [rnd["tunnel"] for rnd in rounds if "tunnel" in rnd]
    moves = tunnel_moves + [rnd["dns"] for rnd in rounds if "dns" in rnd]
    dns_times = [attempt.get("dns_seconds") for attempt in moves]
    if moves:
        met = [value is not None and value <= LOW_TTL + 1 for value in dns_times]
        known = [value for value in dns_times if value is not None]
        lines.append("Goal for a fresh lookup through a caching resolver: the lowered TTL (%d s) plus 1 s after the "
                     "update: %d of %d moves met it (slowest %s)." % (
                         LOW_TTL, sum(met), len(moves), "%.2f s" % max(known) if known else "not measured"))
    if tunnel_moves:
        failed = sum(not attempt["ok"] or "summary" not in attempt for attempt in tunnel_moves)
        lost_total = sum(attempt["summary"]["lost"] for attempt in tunnel_moves if "summary" in attempt)
        damaged = sum(attempt["summary"]["corrupted"] + attempt["summary"]["reordered"]
                      for attempt in tunnel_moves if "summary" in attempt)
        lines.append("Goal of no connection lost, corrupted or reordered with the tunnel: %s (%d lost, %d records "
                     "corrupted or out of order, %d of %d moves failed)." % (
                         "met" if lost_total == damaged == failed == 0 else "not met", lost_total, damaged, failed,
                         len(tunnel_moves)))
    ratio = statistics.median(tunnel) / statistics.median(direct) if direct and tunnel else None
    lines.append("Goal for throughput through the tunnel: at least 90 %% of the direct path: %s." % (
        "not measured" if ratio is None else "met" if ratio >= 0.9 else "not met"))
    lan = [rnd["lan"]["summary"]["stall_max_s"] for rnd in rounds if rnd.get("lan", {}).get("ok")]
    wan = [rnd["tunnel"]["summary"]["stall_max_s"] for rnd in rounds if rnd.get("tunnel", {}).get("ok")]
    if len(wan) < len(tunnel_moves) or not lan:
        lines.append("Goal for the tunnel move's longest stall: not met (%d of %d tunnel moves and %d LAN migrations "
                     "measured)." % (len(wan), len(tunnel_moves), len(lan)))
    else:
        lines.append("Goal for the tunnel move's longest stall: at most twice the LAN migration's of the same run "
                     "(medians of the per-move maximum): %.2f s against 2 x %.2f s: %s." % (
                         statistics.median(wan), statistics.median(lan),
                         "met" if statistics.median(wan) <= 2 * statistics.median(lan) else "not met"))
    return "\n".join(lines)


def plot(results):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    attempt = next((rnd["tunnel"] for rnd in results["rounds"] if rnd.get("tunnel", {}).get("ok")), None)
    if attempt is None:
        return False
    origin = attempt["started"]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    for conn in attempt["streams"]["connections"]:
        points = conn["progress"]
        ax.plot([moment - origin for moment, _count in points], [count for _moment, count in points], linewidth=0.8)
    for step in (attempt["report"] or {}).get("steps", []):
        ax.axvline(step["started"] - origin, color="grey", linestyle=":", linewidth=0.8)
        ax.text(step["started"] - origin, ax.get_ylim()[1] * 0.98, step["step"], rotation=90, fontsize=7,
                va="top", ha="right", color="dimgrey")
    ax.set_xlabel("seconds since the role started (run %s)" % results["run"])
    ax.set_ylabel("records echoed back, per connection")
    ax.set_title("%d TCP connections to %s while it moves from site A to site B (role arctictern.virt.wan_migration)"
                 % (len(attempt["streams"]["connections"]), WAN_GUEST), fontsize=10)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="records per second per connection")
    parser.add_argument("--before", type=float, default=3.0, help="seconds of streaming before a move starts")
    parser.add_argument("--after", type=float, default=10.0, help="seconds the old streams go on after the guest arrives")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--drain-idle", type=float, default=10.0,
                        help="connections without a packet this long do not count as still to drain")
    parser.add_argument("--no-doc", action="store_true", help="print only; write nothing under docs/")
    parser.add_argument("--from-raw", action="store_true",
                        help="measure nothing: write the table and the timeline again from %s" % RAW.relative_to(ROOT))
    args = parser.parse_args(argv)
    if args.from_raw:
        results = json.loads(RAW.read_text())
        block = table(results)
        print(block)
        plot(results)
        replace_block(DOC, BEGIN, END, block)
        return 0
    bench = Bench(args)
    run = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    results = {"run": run, "connections": args.connections, "rate": args.rate,
               "wan_shaping": bench.state["wan"]["shaping"]["note"] or "delay %s, rate %s" % (
                   bench.state["wan"]["shaping"]["delay"], bench.state["wan"]["shaping"]["rate"]),
               "rounds": [], "iperf": []}
    for index in range(args.rounds):
        rnd = {}
        for variant, measure in (("lan", bench.lan_round), ("tunnel", lambda: bench.wan_round(True)),
                                 ("dns", lambda: bench.wan_round(False))):
            log("round %d: %s" % (index + 1, variant))
            try:
                rnd[variant] = measure()
            except Exception as error:  # pylint: disable=broad-except
                rnd[variant] = {"variant": variant, "ok": False, "error": "%s: %s" % (type(error).__name__, error)}
            log("  %s" % json.dumps(rnd[variant].get("summary") or rnd[variant].get("error")))
        results["rounds"].append(rnd)
    log("iperf3")
    results["iperf"] = bench.iperf()
    block = table(results)
    print(block)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("wan-cutover-%s.json" % run.replace(":", ""))).write_text(json.dumps(results) + "\n")
    if not args.no_doc:
        RAW.write_text(json.dumps(results) + "\n")
        plot(results)
        replace_block(DOC, BEGIN, END, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
