"""The libvirt inventory plugin over a fleet: hypervisors read one after the other versus concurrently.

    PYTHONPATH=.collections:. .venv/bin/python benchmarks/inventory.py [--hypervisors 50] [--guests 20]
        [--delay-ms 50] [--sample 5]

Builds a fleet of libvirt test-driver hypervisors (one node XML each: `test:///<file>` gives every URI its own
in-process driver, with its own guests) and reads it with the arctictern.virt.libvirt inventory plugin, as
`ansible-inventory` would (the plugin's parse, hosts, groups and variables), along two paths:

- in-process: `test:///<node.xml>` (no round trips at all; what is left is the plugin's own work);
- delayed: one private libvirtd serves the same node XMLs as `test+tcp://127.0.0.1:<port>/<node.xml>`, each
  hypervisor through its own loopback port of a small TCP proxy that holds every chunk `--delay-ms` in each
  direction, so every libvirt call (one RPC) costs about twice that: a hypervisor across a WAN.

Each path is read sequentially (`max_workers: 1`), with the default pool (8) and with one worker per hypervisor,
in the same run; the inventories must come out identical. Over the delayed path the sequential read of the whole
fleet takes over ten minutes, so by default it reads the first `--sample` hypervisors one after the other and scales
the time to the fleet (hypervisors are identical; `--sample 0` reads them all). The slowest single hypervisor read
alone (from the sequential read) is what concurrency can at best come down to.

The libvirtd runs as `nobody` (when started as root) with its own runtime, config and cache directories and no
hypervisor drivers, in a temporary directory; it and the proxy listen on loopback and a private socket only, and
both are stopped and reaped at the end. Nothing of the lab is used.

Prints the table, saves the raw figures to docs/performance-inventory.json and writes the table into
docs/performance.md between its markers."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import yaml
from ansible import constants as C
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import add_fragments

from ansible_collections.arctictern.virt.plugins.inventory import libvirt as libvirt_inventory
from benchmarks.docblock import replace_block

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
RAW = ROOT / "docs" / "performance-inventory.json"
BEGIN, END = "<!-- inventory-fleet:begin -->", "<!-- inventory-fleet:end -->"
PLUGIN = "arctictern.virt.libvirt"
DEFAULT_WORKERS = 8
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


def log(message):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), file=sys.stderr, flush=True)


# --- the fleet --------------------------------------------------------------------------------------------------


def node_xml(index, guests):
    """A test-driver node: a 'default' network and ``guests`` guests, three in four running, each with one NIC."""
    node = ET.Element("node")
    network = ET.SubElement(node, "network")
    ET.SubElement(network, "name").text = "default"
    ET.SubElement(network, "bridge", name="virbr0")
    ip = ET.SubElement(network, "ip", address="192.168.122.1", netmask="255.255.255.0")
    ET.SubElement(ET.SubElement(ip, "dhcp"), "range", start="192.168.122.2", end="192.168.122.254")
    for number in range(guests):
        domain = ET.SubElement(node, "domain", type="test")
        ET.SubElement(domain, "name").text = "hv%02d-g%02d" % (index, number)
        # Without a UUID the test driver makes up a new one at every connection.
        ET.SubElement(domain, "uuid").text = "a7c7e000-0000-4000-8000-%06d%06d" % (index, number)
        ET.SubElement(domain, "memory").text = "131072"
        ET.SubElement(domain, "vcpu").text = "1"
        ET.SubElement(ET.SubElement(domain, "os"), "type").text = "hvm"
        interface = ET.SubElement(ET.SubElement(domain, "devices"), "interface", type="network")
        ET.SubElement(interface, "mac", address="52:54:00:%02x:%02x:%02x" % (0x10, index, number))
        ET.SubElement(interface, "source", network="default")
        if number % 4 == 3:
            ET.SubElement(domain, "{%s}runstate" % TEST_NS).text = str(libvirt.VIR_DOMAIN_SHUTOFF)
    ET.register_namespace("test", TEST_NS)
    return ET.tostring(node, encoding="unicode")


def write_fleet(directory, hypervisors, guests):
    paths = []
    for index in range(hypervisors):
        path = directory / ("hv%02d.xml" % index)
        path.write_text(node_xml(index, guests))
        path.chmod(0o644)
        paths.append(path)
    return paths


# --- a private libvirtd and the delaying proxy ------------------------------------------------------------------


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        error = check()
        if error is None:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("%s: %s" % (what, error))
        time.sleep(0.1)


def stop(process, name):
    """Stop a process started here and reap it (PID 1 here reaps nothing)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            log("%s did not stop on SIGTERM: killing it" % name)
            process.kill()
            process.wait()


class Daemon:
    """libvirtd with everything of its own under ``directory``: runtime dir (its socket), config, cache, and an
    empty driver directory, so that it loads no hypervisor, network or storage driver (the test driver is part of
    libvirt itself). As root it runs as nobody: a session daemon, never the system one."""

    def __init__(self, directory):
        self.directory = directory
        self.socket = directory / "run" / "libvirt" / "libvirt-sock"
        self.process = None

    def __enter__(self):
        for sub in ("run", "home", "config", "cache", "drivers"):
            (self.directory / sub).mkdir(mode=0o755, parents=True)
        conf = self.directory / "libvirtd.conf"
        conf.write_text('log_outputs = "3:stderr"\nmax_clients = 500\nmax_workers = 20\n')
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.directory / "home"),
               "XDG_RUNTIME_DIR": str(self.directory / "run"), "XDG_CONFIG_HOME": str(self.directory / "config"),
               "XDG_CACHE_HOME": str(self.directory / "cache"), "LIBVIRT_DRIVER_DIR": str(self.directory / "drivers")}
        command = ["/usr/sbin/libvirtd", "-f", str(conf)]
        if os.geteuid() == 0:
            for sub in ("run", "home", "config", "cache"):
                shutil.chown(self.directory / sub, "nobody", "nogroup")
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + command
        self.log = open(self.directory / "libvirtd.log", "w")  # pylint: disable=consider-using-with
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self.log,  # pylint: disable=consider-using-with
                                        stderr=subprocess.STDOUT, cwd=self.directory)

        def answers():
            if self.process.poll() is not None:
                log_text = (self.directory / "libvirtd.log").read_text()
                raise RuntimeError("libvirtd exited with %s:\n%s" % (self.process.returncode, log_text))
            try:
                libvirt.open("test+unix:///default?socket=%s" % self.socket).close()
            except libvirt.libvirtError as error:
                return str(error)
            return None

        wait_for(answers, 30, "libvirtd did not answer on %s" % self.socket)
        return self

    def __exit__(self, *_exc):
        stop(self.process, "libvirtd")
        self.log.close()


PROXY_CODE = r"""
import asyncio, json, sys

upstream, delay, count = sys.argv[1], float(sys.argv[2]) / 1000.0, int(sys.argv[3])


async def delay_line(reader, writer):
    # Every chunk leaves `delay` after it arrived, in order, however many are in flight: latency, not bandwidth.
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def pump():
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if data is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(pump())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data or None))
            if not data:
                break
        await sender
    except (ConnectionError, asyncio.CancelledError):
        sender.cancel()
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_unix_connection(upstream)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(delay_line(client_reader, server_writer), delay_line(server_reader, client_writer),
                         return_exceptions=True)


async def main():
    servers = [await asyncio.start_server(handle, "127.0.0.1", 0) for _ in range(count)]
    print(json.dumps([server.sockets[0].getsockname()[1] for server in servers]), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class DelayProxy:
    """``count`` loopback ports, each forwarding to the libvirtd socket ``upstream`` with ``delay_ms`` added in
    each direction (a separate process, so that its timers do not wait on the measured process's GIL)."""

    def __init__(self, upstream, delay_ms, count):
        self.args = [sys.executable, "-c", PROXY_CODE, str(upstream), str(delay_ms), str(count)]
        self.process = None
        self.ports = []

    def __enter__(self):
        self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)  # pylint: disable=consider-using-with
        line = self.process.stdout.readline()
        if not line:
            stop(self.process, "delay proxy")
            raise RuntimeError("the delay proxy did not start (exit %s)" % self.process.returncode)
        self.ports = json.loads(line)
        return self

    def __exit__(self, *_exc):
        stop(self.process, "delay proxy")
        self.process.stdout.close()


def round_trip_ms(uri, calls=20):
    """The median time of a call that is one RPC and no work (virConnectGetLibVersion) over ``uri``."""
    conn = libvirt.open(uri)
    try:
        times = []
        for _call in range(calls):
            start = time.perf_counter()
            conn.getLibVersion()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)
    finally:
        conn.close()


# --- reading the fleet with the plugin --------------------------------------------------------------------------


def make_plugin():
    """What ansible's plugin loader does: register the documented options, then name the plugin."""
    if not C.config.has_configuration_definition("inventory", PLUGIN):
        doc = yaml.safe_load(libvirt_inventory.DOCUMENTATION)
        add_fragments(doc, libvirt_inventory.__file__, fragment_loader=fragment_loader)
        C.config.initialize_plugin_configuration_definitions("inventory", PLUGIN, doc["options"])
    plugin = libvirt_inventory.InventoryModule()
    plugin._load_name = plugin.ansible_name = PLUGIN  # pylint: disable=protected-access
    return plugin


class Timings:
    """Wraps the plugin's per-hypervisor read to time each hypervisor (in whichever thread reads it)."""

    def __init__(self):
        self.seconds = {}
        self.lock = threading.Lock()
        self.original = libvirt_inventory.read_guests

    def __enter__(self):
        def timed(uri, **kwargs):
            start = time.perf_counter()
            try:
                return self.original(uri, **kwargs)
            finally:
                with self.lock:
                    self.seconds[uri] = time.perf_counter() - start

        libvirt_inventory.read_guests = timed
        return self

    def __exit__(self, *_exc):
        libvirt_inventory.read_guests = self.original


def read_fleet(directory, uris, workers):
    """Parse an inventory of ``uris`` with ``max_workers: workers``: (wall seconds, per-hypervisor seconds, what
    the inventory holds in order)."""
    path = directory / "fleet.libvirt.yml"
    path.write_text(yaml.safe_dump({"plugin": PLUGIN, "uris": uris, "max_workers": workers, "strict": True}))
    plugin = make_plugin()
    inventory = InventoryData()
    with Timings() as timings:
        start = time.perf_counter()
        plugin.parse(inventory, DataLoader(), str(path), cache=False)
        wall = time.perf_counter() - start
    held = {"hosts": [(name, sorted(host.vars.items(), key=str)) for name, host in inventory.hosts.items()],
            "groups": [(name, [host.name for host in group.hosts]) for name, group in inventory.groups.items()]}
    return wall, timings.seconds, held


def measure_path(directory, name, uris, sample, repeats):
    """The path read sequentially (the first ``sample`` hypervisors, scaled, when sample is less than all), with
    the default pool and with a worker per hypervisor."""
    fleet = len(uris)
    record = {"path": name, "hypervisors": fleet, "runs": []}
    reference = None
    plans = [("sequential", 1, sample or fleet), ("parallel", DEFAULT_WORKERS, fleet), ("parallel", fleet, fleet)]
    for mode, workers, count in plans:
        for repeat in range(repeats):
            log("%s: %s, max_workers %d, %d hypervisors (%d/%d)" % (name, mode, workers, count, repeat + 1, repeats))
            wall, per_hypervisor, held = read_fleet(directory, uris[:count], workers)
            if count == fleet:
                if reference is None:
                    reference = held
                elif held != reference:
                    raise RuntimeError("%s: the inventory read with max_workers %d differs from the first one" % (name, workers))
            record["runs"].append({"mode": mode, "max_workers": workers, "hypervisors_read": count, "wall_s": round(wall, 4),
                                   "hosts": len(held["hosts"]),
                                   "per_hypervisor_s": [round(per_hypervisor[entry["uri"]], 4) for entry in uris[:count]]})
    return record


def summarize(record):
    """Medians per (mode, max_workers) and the figures compared: the fleet's sequential time, the slowest single
    hypervisor read alone."""
    fleet = record["hypervisors"]
    rows = []
    sequential = [run for run in record["runs"] if run["max_workers"] == 1]
    alone = [seconds for run in sequential for seconds in run["per_hypervisor_s"]]
    sequential_s = statistics.median(run["wall_s"] * fleet / run["hypervisors_read"] for run in sequential)
    scaled = sequential[0]["hypervisors_read"] < fleet
    slowest = max(alone)
    for workers in dict.fromkeys(run["max_workers"] for run in record["runs"]):
        runs = [run for run in record["runs"] if run["max_workers"] == workers]
        wall = statistics.median(run["wall_s"] * fleet / run["hypervisors_read"] for run in runs)
        rows.append({"max_workers": workers, "wall_s": wall, "runs": len(runs), "scaled_from": runs[0]["hypervisors_read"] if scaled and workers == 1 else None,
                     "vs_sequential": sequential_s / wall, "vs_slowest": wall / slowest})
    return {"rows": rows, "slowest_alone_s": slowest, "median_alone_s": statistics.median(alone), "sequential_s": sequential_s}


def table(results):
    lines = ["| path | round trip ms | max_workers | hosts | wall time s | speed-up over sequential | wall / slowest hypervisor alone |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for record in results["paths"]:
        summary = summarize(record)
        hosts = record["runs"][-1]["hosts"]
        for row in summary["rows"]:
            workers = "1 (sequential)" if row["max_workers"] == 1 else "%d%s" % (
                row["max_workers"], " (default)" if row["max_workers"] == DEFAULT_WORKERS else "")
            wall = "%.2f" % row["wall_s"] if row["wall_s"] < 10 else "%.1f" % row["wall_s"]
            if row["scaled_from"]:
                wall += " (%d of %d read, scaled)" % (row["scaled_from"], record["hypervisors"])
            lines.append("| %s | %s | %s | %d | %s | %.1f | %.2f |" % (
                record["label"], "%.3g" % record["round_trip_ms"], workers, hosts, wall, row["vs_sequential"], row["vs_slowest"]))
    notes = []
    for record in results["paths"]:
        summary = summarize(record)
        notes.append("- %s: one hypervisor read alone took %.2f s (median; slowest %.2f s)." % (
            record["label"], summary["median_alone_s"], summary["slowest_alone_s"]))
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hypervisors", type=int, default=50)
    parser.add_argument("--guests", type=int, default=20, help="guests per hypervisor")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="delay added in each direction on the delayed path")
    parser.add_argument("--sample", type=int, default=5,
                        help="hypervisors read sequentially over the delayed path, scaled to the fleet (0: all)")
    parser.add_argument("--repeats", type=int, default=3, help="reads per setting on the in-process path (median)")
    parser.add_argument("--no-doc", action="store_true", help="print only: leave docs/ alone")
    args = parser.parse_args(argv)
    if not 1 <= args.hypervisors <= 99 or not 1 <= args.guests <= 99:
        parser.error("--hypervisors and --guests: 1 to 99")
    started = datetime.datetime.now()
    results = {"started": started.isoformat(timespec="seconds"), "argv": sys.argv[1:], "cores": os.cpu_count(),
               "python": platform.python_version(), "libvirt": libvirt.getVersion(), "hypervisors": args.hypervisors,
               "guests_per_hypervisor": args.guests, "delay_ms_each_way": args.delay_ms, "paths": []}
    directory = Path(tempfile.mkdtemp(prefix="atv-inventory-bench-"))
    try:
        directory.chmod(0o755)  # the node XMLs are read by the daemon, which runs as nobody
        nodes = write_fleet(directory, args.hypervisors, args.guests)
        aliases = ["hv%02d" % index for index in range(args.hypervisors)]

        uris = [{"uri": "test://%s" % path, "name": alias} for alias, path in zip(aliases, nodes)]
        record = measure_path(directory, "in-process", uris, 0, args.repeats)
        record.update(label="in-process (test:///)", round_trip_ms=round(round_trip_ms(uris[0]["uri"]), 4))
        results["paths"].append(record)

        with Daemon(directory / "daemon") as daemon, DelayProxy(daemon.socket, args.delay_ms, args.hypervisors) as proxy:
            uris = [{"uri": "test+tcp://127.0.0.1:%d%s" % (port, path), "name": alias}
                    for alias, path, port in zip(aliases, nodes, proxy.ports)]
            rtt = round_trip_ms(uris[0]["uri"])
            log("delayed path: %.1f ms per round trip" % rtt)
            sample = args.sample if 0 < args.sample < args.hypervisors else 0
            record = measure_path(directory, "delayed", uris, sample, 1)
            record.update(label="libvirtd, +%g ms each way (test+tcp://)" % args.delay_ms, round_trip_ms=round(rtt, 2))
            results["paths"].append(record)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    block = ("Measured %s on %d cores (Python %s, libvirt %s), by `PYTHONPATH=.collections:. .venv/bin/python "
             "benchmarks/inventory.py%s`: %d hypervisors of %d guests each (three in four running), read with "
             "`strict: true` and the default address sources; wall time of the plugin's parse.\n\n%s" % (
                 started.date(), os.cpu_count(), platform.python_version(),
                 "%d.%d.%d" % (results["libvirt"] // 1000000, results["libvirt"] // 1000 % 1000, results["libvirt"] % 1000),
                 "".join(" " + arg for arg in sys.argv[1:] if arg != "--no-doc"), args.hypervisors, args.guests, table(results)))
    print(block)
    if not args.no_doc:
        RAW.write_text(json.dumps(results, indent=1) + "\n")
        replace_block(DOC, BEGIN, END, block)
        log("wrote %s and %s" % (RAW.relative_to(ROOT), DOC.relative_to(ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
