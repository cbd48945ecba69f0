# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lab hypervisor of either QEMU/libvirt generation, outside the shared lab: libvirtd and QEMU from the machine's
packages (Debian 12) or from the Debian 13 root (lab/hypervisor_root.py, in a mount namespace of the daemon's own),
in a scratch network namespace (atvx-ng*), reached from the root namespace by the project's libvirt-python (built
against the machine's libvirt 9.0), booting a TCG guest of the lab's image.

Needs root and the lab's guest image (``python -m lab up`` builds it); the next generation also needs the root
(``lab.hypervisor_root.ensure_hypervisor_root()``, one to two minutes). The test builds neither: it skips."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils._facts import describe_host
from lab import hypervisor_root, image
from lab.daemon import LIBVIRTD, HypervisorDaemon, boot_probe, describe
from lab.namespaces import HostNamespaces, is_mountpoint, make_private_mount, umount
from lab.topology import LabHost

# libvirt refuses a loopback migration address: the scratch host's "link" is an address of its own on its lo.
LINK_ADDRESS = "198.18.250.1"
ROOT_BUILT = (image.CACHE_DIR / hypervisor_root.cache_key() / "build.json").exists()
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and libvirtd need root")


@dataclass(frozen=True)
class ScratchHost(LabHost):
    """A lab hypervisor outside the lab: its network namespace and state directory are the test's own."""

    scratch_dir: Path = Path("/nonexistent")

    @property
    def netns(self):
        return self.name

    @property
    def state_dir(self):
        return self.scratch_dir / "state"


@pytest.fixture(name="guest_image")
def fixture_guest_image():
    if not (image.CACHE_DIR / image.cache_key(*image.kernel_package()) / "vmlinux").exists():
        pytest.skip("the lab's guest image is not built")
    return image.ensure_image()


NEEDS_ROOT = pytest.mark.skipif(not ROOT_BUILT, reason="the hypervisor root is not built")


@pytest.fixture(name="hypervisor", params=["machine", pytest.param("next", marks=NEEDS_ROOT)])
def fixture_hypervisor(request, tmp_path):
    """A running libvirtd of the machine's or of the next generation in namespaces of the test's own, removed with
    everything in them even on failure."""
    root = hypervisor_root.ensure_hypervisor_root().path if request.param == "next" else Path("/")
    # pylint reads the inherited dataclass fields wrongly here: every argument is given once, by keyword.
    host = ScratchHost("atvx-ng%d" % os.getpid(), lan_address=LINK_ADDRESS, link_address=LINK_ADDRESS,  # pylint: disable=redundant-keyword-arg
                       scratch_dir=tmp_path)
    daemon = HypervisorDaemon(host, root=root)
    daemon.namespaces = HostNamespaces("/run/netns/%s" % host.netns, tmp_path / "ns", host.name)
    subprocess.run(["ip", "netns", "add", host.netns], check=True)
    try:
        subprocess.run(["ip", "-n", host.netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", host.netns, "address", "add", LINK_ADDRESS + "/32", "dev", "lo"], check=True)
        make_private_mount(daemon.namespaces.mnt.parent)
        daemon.prepare()
        assert daemon.start()
        yield host, daemon
    finally:
        daemon.stop()
        # QEMU outlives its daemon: whatever still runs in the namespace was started here.
        pids = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True, check=False)
        for pid in pids.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        daemon.namespaces.remove()
        if is_mountpoint(daemon.namespaces.mnt.parent):
            umount(daemon.namespaces.mnt.parent)
        subprocess.run(["ip", "netns", "del", host.netns], check=True)


def _version(*argv):
    """The x.y.z in what a program prints for --version."""
    banner = subprocess.run([*argv, "--version"], capture_output=True, text=True, check=True).stdout
    return re.search(r"\d+\.\d+\.\d+", banner).group(0)


def test_daemon_serves_the_machines_client_and_boots_a_tcg_guest(hypervisor, guest_image, tmp_path):
    host, daemon = hypervisor
    conn = libvirt.open(host.uri)
    try:
        offered = describe(conn)
        facts = describe_host(conn)
        booted = boot_probe(conn, guest_image, tmp_path / "console.log")
        assert not conn.listAllDomains(), "the probe guest was left defined"
    finally:
        conn.close()
    print(json.dumps({"client": libvirt.getVersion(), "offered": offered, "booted": booted}, indent=2))
    # The daemon and its QEMU are the root's own programs (chroot / is the machine itself).
    chroot = ["chroot", str(daemon.root)]
    assert offered["libvirt"] == _version(*chroot, LIBVIRTD)
    assert offered["qemu"] == _version(*chroot, "qemu-system-x86_64")
    # The aliases resolve to this QEMU's own machine types, and the guest got the one its alias stands for.
    release = ".".join(offered["qemu"].split(".")[:2])
    assert offered["aliases"] == {"pc": "pc-i440fx-" + release, "q35": "pc-q35-" + release}
    assert booted["machine"] == offered["aliases"]["pc"]
    # The collection's host facts read this daemon, domain capabilities included.
    assert (facts["libvirt_version"], facts["hypervisor_version"]) == (offered["libvirt"], offered["qemu"])
    assert "qemu64" in facts["arches"]["x86_64"]["virt_types"]["qemu"]["cpu_models"]
    # The root's programs stay the daemon's: the host's mount namespace (its sshd, Ansible's Python) keeps the
    # machine's, like the machine itself.
    assert _version(*daemon.namespaces.nsenter_argv(), LIBVIRTD) == _version(LIBVIRTD)
    assert daemon.stop() and daemon.pid() is None


@NEEDS_ROOT
def test_the_root_is_the_next_generation():
    build = hypervisor_root.ensure_hypervisor_root().build
    assert int(build["libvirt"].split(".")[0]) >= 11 and int(build["qemu"].split(".")[0]) >= 10
    assert int(_version(LIBVIRTD).split(".")[0]) < int(build["libvirt"].split(".")[0])
