"""A libvirt daemon per lab hypervisor, inside that host's namespaces, with its own config, state and socket; and what
shows that one serves: the versions and machine types it offers, and a throwaway guest it boots."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from ansible_collections.arctictern.virt.plugins.module_utils._facts import _version as version_text

from lab.namespaces import HostNamespaces, unshare_mounts
from lab.topology import ETC_SSH, NS_DIR

LIBVIRTD = "/usr/sbin/libvirtd"
# Each host's private copy of these directories is bind-mounted over the real path inside its mount namespace.
PRIVATE_DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
UUID_NAMESPACE = uuid.UUID("5f0c2a7e-8d1e-4a53-9a57-3c1f0d6b2a10")
# What a daemon run from a root of its own takes from that root: the programs and libraries (Debian's /usr is merged:
# /bin, /lib and /lib64 are links into it), the dynamic loader's cache of them, and the alternatives their links name.
ROOT_PATHS = ("usr", "etc/ld.so.cache", "etc/alternatives")


def _setting(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[ %s ]" % ", ".join('"%s"' % item for item in value)
    return '"%s"' % value


def _write_conf(path, settings):
    path.write_text("".join("%s = %s\n" % (key, _setting(value)) for key, value in settings.items()))


def running_pid(pid_file, program):
    """The PID ``pid_file`` names while that process runs ``program`` (an absolute path), or None: a killed daemon
    may linger as a zombie, which counts as not running."""
    try:
        pid = int(pid_file.read_text().strip())
        status = Path("/proc/%d/status" % pid).read_text()
        command = Path("/proc/%d/cmdline" % pid).read_bytes()
    except (OSError, ValueError):
        return None
    state = next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))
    # A pid file left by a reboot may name a PID that another program has since. "in", not "startswith": sshd
    # rewrites its command line ("sshd: /usr/sbin/sshd -D ... [listener] ...").
    return pid if state not in ("Z", "X") and program.encode() in command else None


def terminate(pid, running, timeout, interval=0.1):
    """SIGTERM ``pid``, then SIGKILL when ``running()`` still says so after ``timeout`` seconds."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running() and time.monotonic() < deadline:
        time.sleep(interval)
    if running():
        os.kill(pid, signal.SIGKILL)


class LabDaemon:
    """A program the lab runs inside one hypervisor's namespaces, found again through its pid file: ``lab up`` exits
    and leaves it to PID 1, which here is no init system and reaps nothing."""

    program = None   # the absolute path, which /proc/PID/cmdline starts with
    name = None

    def __init__(self, lab_host):
        self.host = lab_host
        self.namespaces = HostNamespaces("/run/netns/%s" % lab_host.netns, NS_DIR, lab_host.name)
        self.log_file = lab_host.state_dir / ("%s.out" % self.name)

    @property
    def pid_file(self):
        """The pid file as seen from the root namespace."""
        raise NotImplementedError

    def argv(self):
        raise NotImplementedError

    def ready(self):
        """Whether the started daemon serves (beyond having written its pid file)."""
        return True

    def enter(self):
        """For preexec_fn: move the child into the host."""
        self.namespaces.enter()

    def pid(self):
        """The running daemon's PID, or None."""
        return running_pid(self.pid_file, self.program)

    def start(self, timeout=30):
        if self.pid():
            return False
        self.pid_file.unlink(missing_ok=True)
        with open(self.log_file, "ab") as log:
            subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn,consider-using-with
                self.argv(), preexec_fn=self.enter, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() and self.ready():
                return True
            time.sleep(0.1)
        raise RuntimeError("%s of %s did not come up; see %s" % (self.name, self.host.name, self.log_file))

    def stop(self, timeout=15):
        pid = self.pid()
        if not pid:
            return False
        terminate(pid, self.pid, timeout)
        return True


class HypervisorDaemon(LabDaemon):
    """The host's libvirtd, from the machine's packages or from ``root``, a Debian root of another release (see
    lab.hypervisor_root)."""

    program = LIBVIRTD
    name = "libvirtd"

    def __init__(self, lab_host, root="/"):
        super().__init__(lab_host)
        self.root = Path(root)

    def enter(self):
        """Into the host, and for a root of its own into a mount namespace of the daemon's own (its QEMU processes
        inherit it) where the root's programs replace the machine's: every other path (the private libvirt
        directories, images, disks, sockets) stays the one the host sees, and the host's other programs (sshd,
        Ansible's Python) keep the machine's."""
        super().enter()
        if self.root != Path("/"):
            unshare_mounts({self.root / path: "/" + path for path in ROOT_PATHS})

    @property
    def pid_file(self):
        return self.host.state_dir / "run" / "libvirtd.pid"

    def argv(self):
        return [LIBVIRTD, "--listen", "--pid-file", "/run/libvirt/libvirtd.pid"]

    def ready(self):
        return self.host.socket.exists()

    def prepare(self):
        """Private directories and configuration; idempotent (keeps a running daemon's state)."""
        state = self.host.state_dir
        for sub, real in PRIVATE_DIRS.items():
            (state / sub).mkdir(parents=True, exist_ok=True)
            # The package's directory skeleton (e.g. /var/log/libvirt/qemu), which libvirtd expects to exist.
            packaged = self.root / real.lstrip("/")
            for directory, _subdirs, _files in os.walk(packaged):
                (state / sub / os.path.relpath(directory, packaged)).mkdir(parents=True, exist_ok=True)
        etc = state / "etc"
        if not (etc / "libvirtd.conf").exists():
            shutil.copytree(self.root / "etc" / "libvirt", etc, dirs_exist_ok=True)
            # Each lab host starts without libvirt's 'default' NAT network: the playbooks say what networks exist.
            shutil.rmtree(etc / "qemu" / "networks", ignore_errors=True)
            (etc / "qemu" / "networks" / "autostart").mkdir(parents=True)
        _write_conf(etc / "libvirtd.conf", {
            "host_uuid": str(uuid.uuid5(UUID_NAMESPACE, self.host.name)),
            # Lab only: peers migrate over plain TCP on the migration link. Production uses qemu+ssh or qemu+tls.
            "listen_tls": False,
            "listen_tcp": True,
            "listen_addr": self.host.link_address,
            "auth_tcp": "none",
            "log_outputs": "3:file:/var/log/libvirt/libvirtd.log",
        })
        _write_conf(etc / "qemu.conf", {
            "user": "root",
            "group": "root",
            "dynamic_ownership": False,
            "remember_owner": False,
            "security_driver": "none",
            # Two daemons on one machine must not fight over the cgroup tree, nor need virtlogd.
            "cgroup_controllers": [],
            "stdio_handler": "file",
            "namespaces": [],
            # Incoming migrations are offered on the link (migration_host) unless migrate_uri names another path, as
            # a move between sites does (tcp://<WAN address>): QEMU listens on every address the host has.
            "migration_address": "0.0.0.0",
            "migration_host": self.host.link_address,
        })
        if not self.namespaces.exists():
            self.host.ssh_dir.mkdir(parents=True, exist_ok=True)
            binds = {state / sub: target for sub, target in PRIVATE_DIRS.items()}
            binds[self.host.ssh_dir] = ETC_SSH
            self.namespaces.create(binds)


def describe(conn):
    """What a daemon runs: libvirt's and QEMU's versions, the x86_64 machine types QEMU offers, and the versioned
    machine each alias (pc, q35) stands for, which is what a guest defined with the alias keeps."""
    capabilities = ET.fromstring(conn.getCapabilities())
    machines = [machine for arch in capabilities.iterfind("guest/arch[@name='x86_64']")
                for machine in arch.iterfind("machine")]
    return {
        "libvirt": version_text(conn.getLibVersion()),
        "qemu": version_text(conn.getVersion()),
        "machines": sorted({machine.text for machine in machines}),
        "aliases": {machine.text: machine.get("canonical") for machine in machines if machine.get("canonical")},
    }


def boot_probe(conn, image, console, virt_type="qemu", timeout=60):
    """Boot a throwaway guest of the lab's image (lab.image.GuestImage; no NIC, its console to the file
    ``console``) under the daemon ``conn`` reaches, until its agent is up; then destroy and undefine it.

    Returns the seconds that took and the machine type the guest got."""
    domain = conn.defineXML(_probe_xml(image, console, virt_type))
    try:
        started = time.monotonic()
        domain.create()
        while b"ARCTICTERN-AGENT-READY" not in _read(console):
            if not domain.isActive() or time.monotonic() - started > timeout:
                raise RuntimeError("the probe guest did not come up; see %s" % console)
            time.sleep(0.2)
        seconds = time.monotonic() - started
        machine = ET.fromstring(domain.XMLDesc()).find("os/type").get("machine")
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()
    return {"seconds": round(seconds, 1), "machine": machine}


def _read(path):
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return b""


def _probe_xml(image, console, virt_type):
    domain = ET.Element("domain", type=virt_type)
    ET.SubElement(domain, "name").text = "boot-probe"
    ET.SubElement(domain, "memory", unit="MiB").text = "128"
    os_element = ET.SubElement(domain, "os")
    ET.SubElement(os_element, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_element, "kernel").text = str(image.kernel)
    ET.SubElement(os_element, "initrd").text = str(image.initrd)
    ET.SubElement(os_element, "cmdline").text = image.cmdline("boot-probe", ip="127.0.0.2/8")
    cpu = ET.SubElement(domain, "cpu", mode="custom", match="exact")
    ET.SubElement(cpu, "model", fallback="forbid").text = "qemu64"
    serial = ET.SubElement(ET.SubElement(domain, "devices"), "serial", type="file")
    ET.SubElement(serial, "source", path=str(console))
    return ET.tostring(domain, encoding="unicode")
