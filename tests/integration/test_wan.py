"""Moving a guest to another site (issue #8) on the lab's WAN layout: the modules against the real BIND, kernel and
daemons, and the role end to end while a remote client streams to the guest by its DNS name, with real faults:
BIND stopped mid-cutover, the destination daemon killed during the migration, the tunnel's far end unreachable."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import libvirt
import pytest

from lab import lab as lab_control
from lab.ansible import ROOT, ansible_env, client_http, run_in
from lab.daemon import HypervisorDaemon
from lab.topology import host as lab_host

pytestmark = [pytest.mark.lab]
libvirt.registerErrorHandler(lambda _ctx, _error: None, None)

GUEST, OLD, NEW = "web-wan", "198.19.1.50", "198.19.2.50"
PLAYBOOK = ROOT / "playbooks" / "migrate_wan.yml"
GUEST_PLAYBOOK = ROOT / "playbooks" / "wan_guest.yml"
CONNECTIONS = 20


@pytest.fixture(scope="module", name="wan")
def fixture_wan(lab):
    return lab["wan"]


def dns_args(wan, **options):
    dns = wan["dns"]
    args = dict(server=dns["server"], key_name=dns["key_name"], key_secret=dns["key_secret"],
                key_algorithm=dns["key_algorithm"])
    args.update(options)
    return args


def query(wan, name, rdtype="A"):
    """(ttl, sorted values) of a record set, asked from the remote client straight at the lab's server."""
    code = ("import dns.message, dns.query, json, sys\n"
            "answer = dns.query.udp(dns.message.make_query(sys.argv[1], sys.argv[2]), sys.argv[3], timeout=3)\n"
            "sets = [r for r in answer.answer if r.rdtype == dns.rdatatype.from_text(sys.argv[2])]\n"
            "print(json.dumps([sets[0].ttl, sorted(i.to_text() for i in sets[0])] if sets else [None, []]))\n")
    proc = run_in("remote", "-c", code, name, rdtype, wan["dns"]["server"])
    assert proc.returncode == 0, proc.stderr
    ttl, values = json.loads(proc.stdout)
    return ttl, values


# -- ddns against the lab's BIND -----------------------------------------------------------------------------------


def test_ddns_check_apply_again_and_diff(ansible, wan):
    name = "t-%s.%s." % (uuid.uuid4().hex[:8], wan["dns"]["zone"])
    cases = [
        dns_args(wan, record=name, value=["192.0.2.10", "192.0.2.11"], ttl=60, state="exact"),
        dns_args(wan, record=name, type="AAAA", value=["2001:db8::10"], ttl=60, state="present"),
        dns_args(wan, record=name, type="TXT", value=["moved by arctictern"], ttl=60, state="present"),
    ]
    results = ansible.module_passes("hv1", "ddns", cases, [
        ("predicted", {"check_mode": True, "diff": True}), ("applied", {"diff": True}), ("again", {})])
    for index in range(len(cases)):
        predicted, applied, again = (results[label][index] for label in ("predicted", "applied", "again"))
        assert not applied.get("failed"), applied.get("msg")
        assert predicted["changed"] and applied["changed"] and not again["changed"]
        assert predicted["diff"] == applied["diff"], "check mode predicts what the run does"
        assert applied["diff"]["before"]["values"] == [] and applied["diff"]["after"]["values"]
    assert query(wan, name) == (60, ["192.0.2.10", "192.0.2.11"])
    assert query(wan, name, "AAAA") == (60, ["2001:db8::10"])
    # The same data with another TTL is a change.
    lowered = dns_args(wan, record=name, value=["192.0.2.10", "192.0.2.11"], ttl=5, state="exact")
    ttl = ansible.ok("hv1", "ddns", **lowered)
    assert ttl["changed"] and ttl["previous"]["ttl"] == 60
    assert query(wan, name) == (5, ["192.0.2.10", "192.0.2.11"])
    gone = ansible.ok("hv1", "ddns", **dns_args(wan, record=name, value=["192.0.2.10"], state="absent"))
    assert gone["changed"] and query(wan, name) == (5, ["192.0.2.11"])


def test_ddns_bad_input_names_the_option_and_changes_nothing(ansible, wan):
    name = "t-%s.%s." % (uuid.uuid4().hex[:8], wan["dns"]["zone"])
    ansible.ok("hv1", "ddns", **dns_args(wan, record=name, value=["192.0.2.20"], ttl=60, state="exact"))
    wrong_key = ansible.module("hv1", "ddns", **dns_args(wan, record=name, value=["192.0.2.99"], state="exact",
                                                         key_secret="d3JvbmcgYnV0IGJhc2U2NA=="))
    assert wrong_key.get("failed") and "TSIG" in wrong_key["msg"] and wrong_key["msg"].startswith("key_secret")
    assert "d3JvbmcgYnV0IGJhc2U2NA==" not in json.dumps(wrong_key), "the secret stays out of the result"
    assert query(wan, name) == (60, ["192.0.2.20"])
    unknown = ansible.module("hv1", "ddns", **dns_args(wan, record="www", zone="nowhere.test", value=["192.0.2.1"]))
    assert unknown.get("failed") and unknown["msg"].startswith("zone"), unknown["msg"]
    unreachable = ansible.module("hv1", "ddns", **dns_args(wan, server="198.19.4.99", record=name, timeout=1,
                                                           value=["192.0.2.1"]))
    assert unreachable.get("failed") and unreachable["msg"].startswith("server"), unreachable["msg"]


# -- tunnel between the sites --------------------------------------------------------------------------------------


def tunnel_args(wan, host, **options):
    here, there = (wan["sites"][name]["wan_address"] for name in (host, "hv2" if host == "hv1" else "hv1"))
    inner = {"hv1": ("169.254.99.1/30", "169.254.99.2"), "hv2": ("169.254.99.2/30", "169.254.99.1")}[host]
    args = dict(name="t-tun0", kind="vxlan", vni=990, local=here, remote=there, address=[inner[0]], peer=inner[1])
    args.update(options)
    return args


@contextlib.contextmanager
def listener(host, address, port):
    """A TCP listener inside a lab host that accepts connections and reports nothing."""
    state = lab_control.read_state()
    code = ("import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "s.bind((%r,%d))\ns.listen()\nprint('ready',flush=True)\nwhile True:\n c,_=s.accept()\n c.sendall(b'hi')\n c.close()\n"
            % (address, port))
    proc = subprocess.Popen([state["hosts"][host]["python"], "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


def connect_from(host, address, port):
    state = lab_control.read_state()
    code = ("import socket\ns=socket.create_connection((%r,%d),timeout=3)\nprint(s.recv(2).decode())" % (address, port))
    proc = subprocess.run([state["hosts"][host]["python"], "-c", code], capture_output=True, text=True, timeout=30,
                          check=False)
    return proc.stdout.strip()


def test_tunnel_between_the_sites(ansible, wan):
    try:
        results = {}
        for host in ("hv1", "hv2"):
            results[host] = ansible.module_passes(host, "tunnel", [tunnel_args(wan, host)], [
                ("predicted", {"check_mode": True, "diff": True}), ("applied", {"diff": True}), ("again", {})])
        for host, passes in results.items():
            predicted, applied, again = (passes[label][0] for label in ("predicted", "applied", "again"))
            assert not applied.get("failed"), applied.get("msg")
            assert predicted["changed"] and applied["changed"] and not again["changed"]
            assert predicted["diff"]["after"]["mtu"] == applied["tunnel"]["mtu"] == 1450, "1500 less VXLAN's 50"
            assert applied["diff"]["before"]["state"] == "absent"
        with listener("hv2", "169.254.99.2", 7999):
            assert connect_from("hv1", "169.254.99.2", 7999) == "hi", "the far end answers through the tunnel"
    finally:
        for host in ("hv1", "hv2"):
            ansible.ok(host, "tunnel", name="t-tun0", state="absent")


def test_tunnel_bad_input_names_the_option(ansible, wan):
    unreachable = ansible.module("hv1", "tunnel", **tunnel_args(wan, "hv1", remote="203.0.113.9"))
    assert unreachable.get("failed") and unreachable["msg"].startswith("remote"), unreachable["msg"]
    not_mine = ansible.module("hv1", "tunnel", **tunnel_args(wan, "hv1", local="198.19.0.9"))
    assert not_mine.get("failed") and not_mine["msg"].startswith("local"), not_mine["msg"]
    too_big = ansible.module("hv1", "tunnel", **tunnel_args(wan, "hv1", mtu=1480))
    assert too_big.get("failed") and too_big["msg"].startswith("mtu"), too_big["msg"]
    gre = ansible.module("hv1", "tunnel", **tunnel_args(wan, "hv1", kind="gre", name="t-gre0"))
    if gre.get("failed"):
        assert gre["msg"].startswith("kind") and "kernel" in gre["msg"], gre["msg"]
        pytest.skip("GRE: %s" % gre["msg"])
    ansible.ok("hv1", "tunnel", name="t-gre0", kind="gre", state="absent")


def test_address_in_no_subnet_names_the_option(ansible):
    result = ansible.module("hv2", "address_map", address="203.0.113.50", guest_address=OLD, bridge="site0")
    assert result.get("failed") and result["msg"].startswith("address"), result["msg"]


# -- the role end to end -------------------------------------------------------------------------------------------


class Streams:
    """lab/streams.py in a lab host until finished."""

    def __init__(self, host, *args):
        self.stop_file = Path(tempfile.mkdtemp()) / "stop"
        python = lab_control.read_state()["hosts"][host]["python"]
        self.proc = subprocess.Popen([python, "-m", "lab.streams", *args, "--until-file", str(self.stop_file)],
                                     cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def finish(self):
        self.stop_file.touch()
        out, err = self.proc.communicate(timeout=120)
        assert out.strip(), err[-2000:]
        return json.loads(out)


def lost(streams):
    return [conn for conn in streams["connections"] if conn["lost"] or conn["echoed"] < conn["sent"]]


def runs_on(lab, host):
    """Whether the guest runs on ``host`` (an incoming migration's guest is there too, paused: it does not count)."""
    conn = libvirt.open(lab["hosts"][host]["uri"])
    try:
        return conn.lookupByName(GUEST).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


@pytest.fixture(name="at_site_a")
def fixture_at_site_a(ansible, lab, wan):
    """web-wan running at site A with its record at the old address, nothing of an earlier move left."""
    if runs_on(lab, "hv2"):
        ansible.ok("hv2", "guest", name=GUEST, state="absent")
    for host in ("hv1", "hv2"):
        ansible.ok(host, "tunnel", name="wanmig0", state="absent")
    ansible.ok("hv2", "address_map", address=NEW, guest_address=OLD, bridge="site0", state="absent")
    proc = ansible.playbook(GUEST_PLAYBOOK, extra_vars={"record_ttl": 5})
    assert proc.returncode == 0, proc.stdout[-3000:]
    ansible.ok("hv1", "ddns", **dns_args(wan, record="%s.%s." % (GUEST, wan["dns"]["zone"]), value=[OLD], ttl=5,
                                         state="exact"))
    assert client_http(OLD, host="remote", wait=120)["ok"]
    return "%s.%s" % (GUEST, wan["dns"]["zone"])


def move(ansible, name, wan, **extra):
    """Run playbooks/migrate_wan.yml with ``extra`` variables; (process, report)."""
    report = Path(tempfile.mkdtemp()) / "report.json"
    extra_vars = {"wan_migration_report_path": str(report), "wan_migration_dns_low_ttl": 2,
                  "wan_migration_drain_timeout": 60, "wan_migration_drain_idle": 10}
    extra_vars.update(extra)
    proc = ansible.playbook(PLAYBOOK, extra_vars=extra_vars)
    return proc, (json.loads(report.read_text()) if report.exists() else None)


def streaming_move(ansible, lab, wan, name, during=None, after=8.0, **extra):
    """Streams from the remote client by name while the role moves the guest; ``during()`` injects a fault.

    Without a fault the streams end ``after`` seconds once the guest runs at site B, which lets the drain end; with
    one they go on until the role has ended (rollback included) and a little longer, so that every step is seen."""
    streams = Streams("remote", "tcp", name, "--server", wan["dns"]["server"], "--count", str(CONNECTIONS))
    time.sleep(2)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(move, ansible, name, wan, **extra)
        if during:
            during()
            proc, report = future.result(timeout=900)
        else:
            wait(lambda: runs_on(lab, "hv2") or future.done(), 600, "the guest at site B or the role's end")
        time.sleep(after)
        measured = streams.finish()
        if not during:
            proc, report = future.result(timeout=900)
    finally:
        pool.shutdown(wait=True)
    return proc, report, measured


@pytest.mark.slow
def test_role_moves_the_guest_without_losing_a_connection(ansible, lab, wan, at_site_a):
    proc, report, measured = streaming_move(ansible, lab, wan, at_site_a)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert len(measured["connections"]) == CONNECTIONS and not measured["connect_failures"]
    assert lost(measured) == [], "connections lost: %s" % lost(measured)
    assert sum(conn["corrupted"] + conn["reordered"] for conn in measured["connections"]) == 0
    assert [step["step"] for step in report["steps"]] == [
        "locate", "lower_ttl", "tunnel_up", "migrate", "switch", "dns_new", "drain", "tunnel_down", "restore_ttl"]
    switch = next(step["started"] for step in report["steps"] if step["step"] == "switch")
    assert all(conn["progress"][-1][0] > switch + 1 for conn in measured["connections"]), \
        "every connection carried data through the tunnel after the switch"
    assert report["connections"]["at_switch"] >= CONNECTIONS
    assert report["connections"]["drained"] and report["connections"]["left_at_teardown"] == 0
    assert runs_on(lab, "hv2") and not runs_on(lab, "hv1")
    assert query(wan, at_site_a + ".") == (5, [NEW]), "the record points at the new address with its TTL back"
    # New clients reach the guest by name at its new address, with the tunnel gone.
    fresh = Streams("remote", "tcp", at_site_a, "--server", wan["dns"]["server"], "--count", "3")
    time.sleep(2)
    fresh_measured = fresh.finish()
    assert fresh_measured["address"] == NEW and lost(fresh_measured) == [] and not fresh_measured["connect_failures"]
    # Re-running after a success changes nothing.
    again, again_report = move(ansible, at_site_a, wan)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1].splitlines()[1], again.stdout[-1500:]
    assert again_report["runs_on"] == "hv2"


def fault_checks(lab, report, measured, step, name, wan):
    assert report["failed"]["step"] == step, report["failed"]
    assert runs_on(lab, "hv1") and not runs_on(lab, "hv2"), "the guest runs at site A again"
    assert client_http(OLD, host="remote", wait=10)["ok"], "the guest answers at its old address"
    assert lost(measured) == [], "connections lost: %s" % lost(measured)
    assert query(wan, name + ".")[1] == [OLD]


@pytest.mark.slow
def test_fault_dns_server_stopped_mid_cutover(ansible, lab, wan, at_site_a):
    server = lab_control.dns_server()

    def stop_bind_at_arrival():
        wait(lambda: runs_on(lab, "hv2"), 600, "the guest at site B")
        server.stop()

    try:
        proc, report, measured = streaming_move(ansible, lab, wan, at_site_a, during=stop_bind_at_arrival,
                                                after=3.0)
    finally:
        server.start()
    assert proc.returncode != 0
    assert "step dns_new failed" in proc.stdout, proc.stdout[-3000:]
    undone = {entry["step"]: entry["ok"] for entry in report["rolled_back"]}
    assert undone["migrate"] and undone["tunnel_source"] and undone["tunnel_destination"] and undone["address_map"]
    assert not undone["lower_ttl"], "BIND is down: the TTL could not be restored, and the report says so"
    fault_checks(lab, report, measured, "dns_new", at_site_a, wan)


@pytest.mark.slow
def test_fault_destination_daemon_killed_during_migration(ansible, lab, wan, at_site_a):
    daemon = HypervisorDaemon(lab_host("hv2"))

    def kill_when_incoming():
        conn = libvirt.open(lab["hosts"]["hv2"]["uri"])

        def incoming():
            try:
                conn.lookupByName(GUEST)
                return True
            except libvirt.libvirtError:
                return False

        try:
            wait(incoming, 600, "the incoming guest on hv2")
        finally:
            conn.close()
        os.kill(daemon.pid(), signal.SIGKILL)

    try:
        proc, report, measured = streaming_move(ansible, lab, wan, at_site_a, during=kill_when_incoming,
                                                after=3.0, wan_migration_migrate_bandwidth=2)
    finally:
        daemon.start()
    assert proc.returncode != 0
    assert "step migrate failed" in proc.stdout, proc.stdout[-3000:]
    undone = {entry["step"]: entry["ok"] for entry in report["rolled_back"]}
    assert "migrate" not in undone, "the guest never left: nothing to migrate back"
    assert undone["tunnel_source"] and undone["tunnel_destination"] and undone["address_map"] and undone["lower_ttl"]
    wait(lambda: not runs_on(lab, "hv2"), 30, "the restarted daemon to drop the half-received guest")
    fault_checks(lab, report, measured, "migrate", at_site_a, wan)


@pytest.mark.slow
def test_fault_tunnel_far_end_unreachable(ansible, lab, wan, at_site_a):
    drop = ["-p", "udp", "--dport", "4789", "-d", wan["sites"]["hv2"]["wan_address"], "-j", "DROP"]
    router = ["nsenter", "--net=/run/netns/atv-wan", "iptables"]
    subprocess.run(router + ["-I", "FORWARD"] + drop, check=True)
    try:
        proc, report, measured = streaming_move(ansible, lab, wan, at_site_a, during=lambda: None, after=3.0)
    finally:
        subprocess.run(router + ["-D", "FORWARD"] + drop, check=True)
    assert proc.returncode != 0
    assert "step tunnel_up failed" in proc.stdout and "remote" in proc.stdout, proc.stdout[-3000:]
    undone = {entry["step"]: entry["ok"] for entry in report["rolled_back"]}
    assert undone == {"address_map": True, "tunnel_source": True, "tunnel_destination": True, "lower_ttl": True}
    fault_checks(lab, report, measured, "tunnel_up", at_site_a, wan)
