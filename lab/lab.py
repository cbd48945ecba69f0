"""Bring the lab up, idempotently, and tear it down. Everything lives in namespaces the lab creates."""

from __future__ import annotations

import json
import os
import shutil
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import libvirt

from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as netlink

from lab import ssh
from lab.daemon import HypervisorDaemon, describe
from lab.debian_image import ensure_debian_image
from lab.dns import DnsServer
from lab.hypervisor_root import ensure_hypervisor_root
from lab.image import ensure_image
from lab.namespaces import CLONE_NEWNET, is_mountpoint, make_private_mount, setns, umount
from lab.netlink import create_netns, create_veth_pair, link_exists, remove_netns, replace_route
from lab.topology import (
    CLIENT_ROUTES, DEBIAN13, DNS_SERVER, DNS_ZONE, HOSTS, HYPERVISORS, LAB_WEB_URL, LAN_PREFIX, LINK_PREFIX,
    MIGRATION_BRIDGE, MIGRATION_SWITCH, NETNS_PREFIX, NS_DIR, OUTSIDE_HOSTS, REMOTE_CLIENT, ROUTER, SITE_BRIDGE,
    SITE_GATEWAY_MAC, SITES, STATE_DIR, SWITCH, WAN_PREFIX, WAN_SUPERNET, ssh_uri,
)
from lab.topology import host as topology_host
from lab.web import WebServer

STATE_FILE = STATE_DIR / "lab.json"
BIN_DIR = STATE_DIR / "bin"
SWITCH_NETNS = NETNS_PREFIX + SWITCH
MIGRATION_NETNS = NETNS_PREFIX + MIGRATION_SWITCH
ROUTER_NETNS = NETNS_PREFIX + ROUTER
# The WAN's rate limit (tc tbf on the router's links to the sites); delay and loss need netem, which not every
# kernel has: the lab tries it and records what it used in lab.json.
WAN_RATE = os.environ.get("ATV_WAN_RATE", "1gbit")
WAN_DELAY = os.environ.get("ATV_WAN_DELAY", "10ms")
KVM_PROBE_SECONDS = 30


def _ensure_netns(name):
    path = Path("/run/netns") / name
    if name in netlink.netns_names() and not is_mountpoint(path):
        # A leftover of a reboot (/run is not always a tmpfs): a plain file where a namespace was pinned.
        path.unlink()
    if name not in netlink.netns_names():
        create_netns(name)
    with netlink.open_ipr(name) as ipr:
        netlink.set_up(ipr, "lo")


def _cable(host_ns, ifname, peer_ns, peer_ifname, address=None, prefix=None, bridge=None):
    """A veth between two namespaces, its peer end a port of ``bridge`` there if given; the address is set only
    when the cable is new, because playbooks may move it afterwards (host_bridge moves eth0's address onto a
    bridge)."""
    with netlink.open_ipr(host_ns) as ipr:
        if link_exists(ipr, ifname):
            return
        create_veth_pair(ipr, ifname, peer_ifname, peer_netns=peer_ns)
        if address:
            netlink.add_address(ipr, ifname, "%s/%d" % (address, prefix))
        netlink.set_up(ipr, ifname)
    with netlink.open_ipr(peer_ns) as peer:
        if bridge:
            netlink.set_master(peer, peer_ifname, bridge)
        netlink.set_up(peer, peer_ifname)


def build_network():
    """Namespaces and cables: every host on the LAN switch, every hypervisor on the migration link's switch."""
    for name in [SWITCH_NETNS, MIGRATION_NETNS] + [host.netns for host in HOSTS]:
        _ensure_netns(name)
    for netns, bridge in ((SWITCH_NETNS, SWITCH), (MIGRATION_NETNS, MIGRATION_BRIDGE)):
        with netlink.open_ipr(netns) as switch:
            if not link_exists(switch, bridge):
                netlink.create_bridge(switch, bridge)
            netlink.set_up(switch, bridge)
    for host in HOSTS:
        _cable(host.netns, "eth0", SWITCH_NETNS, "p-" + host.name, host.lan_address, LAN_PREFIX, bridge=SWITCH)
    for hypervisor in HYPERVISORS:
        _cable(hypervisor.netns, "mig0", MIGRATION_NETNS, "p-" + hypervisor.name, hypervisor.link_address, LINK_PREFIX,
               bridge=MIGRATION_BRIDGE)
        _enable_forwarding(hypervisor.netns)
    with netlink.open_ipr(NETNS_PREFIX + "client") as client:
        for subnet, gateway in CLIENT_ROUTES.items():
            replace_route(client, subnet, gateway=gateway)


def _enable_forwarding(netns):
    """Hypervisors route, as virtualization hosts do; sysctls are per network namespace. Where conntrack is loaded,
    it also counts bytes and stamps each connection's start (what arctictern.virt.connections reports)."""
    subprocess.run(["true"], preexec_fn=lambda: _write_sysctls(netns), check=True)  # pylint: disable=subprocess-popen-preexec-fn


def _write_sysctls(netns):
    setns("/run/netns/%s" % netns, CLONE_NEWNET)
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    for name in ("nf_conntrack_acct", "nf_conntrack_timestamp"):
        path = Path("/proc/sys/net/netfilter") / name
        if path.exists():
            path.write_text("1\n")


def _add_address(netns, ifname, address):
    with netlink.open_ipr(netns) as ipr:
        if address not in netlink.addresses(ipr, ifname):
            netlink.add_address(ipr, ifname, address)


def build_wan():
    """The two sites and the WAN between them: each hypervisor routes its site's subnet (on SITE_BRIDGE) and
    reaches the other site, the DNS server and the remote client through the router."""
    for name in [ROUTER_NETNS] + [host.netns for host in OUTSIDE_HOSTS]:
        _ensure_netns(name)
    _enable_forwarding(ROUTER_NETNS)
    for site in SITES:
        netns = NETNS_PREFIX + site.hypervisor
        _cable(netns, "wan0", ROUTER_NETNS, "to-" + site.hypervisor)
        _add_address(netns, "wan0", "%s/%d" % (site.wan_address, WAN_PREFIX))
        _add_address(ROUTER_NETNS, "to-" + site.hypervisor, "%s/%d" % (site.router_address, WAN_PREFIX))
        with netlink.open_ipr(netns) as ipr:
            if not link_exists(ipr, SITE_BRIDGE):
                netlink.create_bridge(ipr, SITE_BRIDGE)
                ipr.link("set", index=netlink.link_index(ipr, SITE_BRIDGE), address=SITE_GATEWAY_MAC)
            netlink.set_up(ipr, SITE_BRIDGE)
        _add_address(netns, SITE_BRIDGE, "%s/%d" % (site.gateway, site.prefix))
        with netlink.open_ipr(netns) as ipr:
            replace_route(ipr, WAN_SUPERNET, gateway=site.router_address)
        with netlink.open_ipr(ROUTER_NETNS) as router:
            replace_route(router, site.subnet, gateway=site.wan_address)
    for host in OUTSIDE_HOSTS:
        _cable(host.netns, "eth0", ROUTER_NETNS, "to-" + host.name)
        _add_address(host.netns, "eth0", "%s/%d" % (host.address, host.prefix))
        _add_address(ROUTER_NETNS, "to-" + host.name, "%s/%d" % (host.router_address, host.prefix))
        with netlink.open_ipr(host.netns) as ipr:
            replace_route(ipr, WAN_SUPERNET, gateway=host.router_address)
    return _shape_wan()


def _tc(*args):
    return subprocess.run(["tc", "-n", ROUTER_NETNS, *args], capture_output=True, text=True, check=False)


def _shape_wan():
    """Delay (netem) where the kernel has it, else a rate limit (tbf), on the router's links to the sites; what was
    used, for lab.json."""
    shaping = {"rate": None, "delay": None, "note": None}
    for site in SITES:
        device = "to-" + site.hypervisor
        netem = _tc("qdisc", "replace", "dev", device, "root", "netem", "delay", WAN_DELAY, "rate", WAN_RATE)
        if netem.returncode == 0:
            shaping.update(rate=WAN_RATE, delay=WAN_DELAY)
            continue
        shaping["note"] = "no netem in this kernel (%s): no delay or loss on the WAN, only tbf's rate limit" % (
            netem.stderr.strip().splitlines()[-1] if netem.stderr.strip() else "tc failed")
        tbf = _tc("qdisc", "replace", "dev", device, "root", "tbf", "rate", WAN_RATE, "burst", "256kb", "latency", "50ms")
        if tbf.returncode != 0:
            raise RuntimeError("tc tbf on %s failed: %s" % (device, tbf.stderr.strip()))
        shaping["rate"] = WAN_RATE
    return shaping


def dns_server():
    """The lab's BIND 9, authoritative for DNS_ZONE, in the DNS namespace."""
    return DnsServer(DNS_SERVER.state_dir, DNS_SERVER.address, DNS_ZONE,
                     enter=lambda: setns("/run/netns/%s" % DNS_SERVER.netns, CLONE_NEWNET))


def probe_virt_type(image):
    """'kvm' if a guest of the lab's own image boots under KVM here, else 'qemu' (TCG).

    /dev/kvm may exist and still not boot a stock kernel (a PVM hypervisor does that), so look, don't assume."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "qemu"
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "128", "-nographic", "-nodefaults",
            "-serial", "stdio", "-no-reboot", "-nic", "none", "-kernel", str(image.kernel),
            "-initrd", str(image.initrd), "-append", image.cmdline("kvm-probe", ip="127.0.0.2/8")]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL) as qemu:
        deadline = time.monotonic() + KVM_PROBE_SECONDS
        booted = False
        try:
            os.set_blocking(qemu.stdout.fileno(), False)
            output = b""
            while time.monotonic() < deadline and qemu.poll() is None and not booted:
                output += qemu.stdout.read() or b""
                booted = b"ARCTICTERN-AGENT-READY" in output
                time.sleep(0.2)
        finally:
            qemu.kill()
    return "kvm" if booted else "qemu"


def up(log=print):
    started = time.monotonic()
    image = ensure_image(log)
    debian = ensure_debian_image(log)
    make_private_mount(NS_DIR)
    build_network()
    wan = build_wan()
    ssh.prepare(HYPERVISORS)
    roots = {}
    for hypervisor in HYPERVISORS:
        daemon = HypervisorDaemon(hypervisor, root=_daemon_root(hypervisor, log))
        roots[hypervisor.name] = daemon.root
        daemon.prepare()
        for service in (daemon, ssh.SSHDaemon(hypervisor)):
            if service.start():
                log("started %s of %s (pid %s)" % (service.name, hypervisor.name, service.pid()))
    dns = dns_server()
    dns.prepare()
    if dns.start():
        log("started named of %s (pid %s)" % (DNS_SERVER.name, dns.pid()))
    if WebServer(debian.repository).start():
        log("started the lab's web server at %s (the Debian guests' apt repository)" % LAB_WEB_URL)
    previous = read_state() or {}
    virt_type = previous.get("virt_type") or probe_virt_type(image)
    state = {
        "virt_type": virt_type,
        "image": {"kernel": str(image.kernel), "initrd": str(image.initrd), "kernel_release": image.kernel_release},
        # Debian guests boot this kernel too (the one its modules came from), from overlays on the disk.
        "debian": {"kernel": str(image.kernel), "initrd": str(debian.initrd), "disk": str(debian.disk),
                   "key": str(debian.key)},
        "web": {"url": LAB_WEB_URL},
        "hosts": {host.name: _describe(host, roots.get(host.name)) for host in HOSTS + OUTSIDE_HOSTS},
        "wan": {
            "sites": {site.hypervisor: {"site": site.name, "subnet": site.subnet, "gateway": site.gateway,
                                        "wan_address": site.wan_address, "bridge": SITE_BRIDGE,
                                        "ssh_uri": ssh_uri(site.wan_address)} for site in SITES},
            "shaping": wan,
            "dns": {"server": DNS_SERVER.address, "zone": DNS_ZONE, "key_name": dns.key["name"],
                    "key_algorithm": dns.key["algorithm"], "key_secret": dns.key["secret"]},
            "remote_client": REMOTE_CLIENT.address,
        },
    }
    # Whole or not at all: Ansible reads the file at every task (inventories/lab), maybe while another up() runs.
    written = STATE_FILE.with_suffix(".new")
    written.write_text(json.dumps(state, indent=2) + "\n")
    written.replace(STATE_FILE)
    log("lab up in %.1fs: %s, guests run under %s" % (
        time.monotonic() - started, ", ".join(host.name for host in HOSTS),
        "KVM" if virt_type == "kvm" else "QEMU TCG (no usable KVM here)"))
    return state


def _daemon_root(hypervisor, log):
    """Where a hypervisor's libvirtd and QEMU come from: the machine's packages, or for the next generation the root
    lab.hypervisor_root builds (once; then from its cache)."""
    return ensure_hypervisor_root(log).path if hypervisor.generation == DEBIAN13 else "/"


def hypervisor_daemon(name):
    """The libvirtd of lab hypervisor ``name`` as up() runs it (from the root the lab's state records for it): to
    kill and start again."""
    return HypervisorDaemon(topology_host(name), root=read_state()["hosts"][name]["daemon_root"])


def _daemon_versions(hypervisor):
    """libvirt's and QEMU's versions as the host's daemon reports them: what tests and benchmarks label figures
    with."""
    conn = libvirt.open(hypervisor.uri)
    try:
        offered = describe(conn)
    finally:
        conn.close()
    return {"libvirt": offered["libvirt"], "qemu": offered["qemu"]}


def _write_interpreter(host, enter, inside):
    """A Python interpreter that runs inside the host: Ansible's ansible_python_interpreter for it.

    ``inside`` is what /proc/self/ns/... reads once in the host (e.g. ``mnt:[4026532246]``): a process already
    there (Ansible's async wrapper re-executes the interpreter) runs Python directly, since the namespace files
    that nsenter opens are not visible from inside."""
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    path = BIN_DIR / ("%s-python" % host.name)
    python = shlex.quote(sys.executable)
    kind = inside.split(":", 1)[0]
    path.write_text("#!/bin/sh\n# Python inside lab host %s (written by python -m lab up).\n"
                    "if [ \"$(readlink /proc/self/ns/%s)\" = '%s' ]; then exec %s \"$@\"; fi\n"
                    "exec %s %s \"$@\"\n" % (host.name, kind, inside, python, shlex.join(enter), python))
    path.chmod(0o755)
    return str(path)


def _describe(host, daemon_root):
    """What lab.json says of ``host``; ``daemon_root``: the root its daemon runs from (hypervisors only)."""
    daemon = HypervisorDaemon(host) if host.is_hypervisor else None
    # Hypervisors: the host's network, mount and UTS namespaces; other hosts have only a network namespace.
    if daemon:
        enter = daemon.namespaces.nsenter_argv()
        inside = "mnt:[%d]" % os.stat(daemon.namespaces.mnt).st_ino
    else:
        enter = ["nsenter", "--net=/run/netns/%s" % host.netns, "--"]
        inside = "net:[%d]" % os.stat("/run/netns/%s" % host.netns).st_ino
    return {
        "netns": host.netns,
        "lan_address": host.lan_address,
        "address": getattr(host, "address", host.lan_address),
        "link_address": host.link_address,
        "uri": host.uri if daemon else None,
        "migration_uri": host.migration_uri if daemon else None,
        "ssh_uri": host.ssh_uri if daemon else None,
        "daemon_pid": daemon.pid() if daemon else None,
        "generation": host.generation if daemon else None,
        "daemon_root": str(daemon_root) if daemon else None,
        "versions": _daemon_versions(host) if daemon else None,
        "enter": enter,
        "python": _write_interpreter(host, enter, inside),
    }


def read_state():
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def _lab_pids():
    """Processes inside any lab network namespace (daemons, QEMU, dnsmasq), found by namespace inode."""
    inodes = set()
    for name in netlink.netns_names():
        if name.startswith(NETNS_PREFIX):
            inodes.add(os.stat("/run/netns/%s" % name).st_ino)
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def down(log=print):
    for hypervisor in HYPERVISORS:
        HypervisorDaemon(hypervisor).stop()
    dns_server().stop()
    WebServer(None).stop()
    pids = _lab_pids()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for hypervisor in HYPERVISORS:
        HypervisorDaemon(hypervisor).namespaces.remove()
    for name in netlink.netns_names():
        if name.startswith(NETNS_PREFIX):
            remove_netns(name)
    if is_mountpoint(NS_DIR):
        umount(NS_DIR)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    log("lab down (%d processes stopped)" % len(pids))
