"""Builds the lab's Debian guest: a Debian 12 root file system made with debootstrap from Debian's packages (systemd,
openssh-server, python3), as an ext4 whole-disk image that guests boot from copy-on-write overlays, with Debian's
kernel and a small busybox initramfs; the key pair Ansible logs in with; and a flat apt repository of the packages
the collection's roles install (the guests have no internet; the lab serves it over HTTP).

Everything is cached under image.CACHE_DIR by a key over every input (kernel package version, suite, package
lists, the guest sources, this file), so it is rebuilt only when one of them changes. A build takes a few minutes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab.image import BUSYBOX, CACHE_DIR, Cpio, extract_kernel, kernel_package
from lab.topology import LAB_WEB_URL

SUITE = "bookworm"
MIRROR = os.environ.get("ATV_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("ATV_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
# What Ansible needs on a managed Debian host (python3; python3-apt for ansible.builtin.apt), what boots it, and
# the QEMU guest agent (its udev rule starts it when the guest has the agent's channel), which migrate's verify pings.
PACKAGES = ("systemd-sysv", "udev", "openssh-server", "python3", "python3-apt", "iproute2", "qemu-guest-agent")
# Served to the guests by the lab's apt repository, with whatever they need beyond the image.
REPOSITORY_PACKAGES = ("tinyproxy", "iperf3")
SOURCES = Path(__file__).parent / "debian_guest"
# Loaded by the initramfs in this order: the virtio disk, NIC and console (the agent's channel is a virtio serial
# port; the image has no other kernel modules), and ext4 with what it needs.
MODULES = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk",
    "failover", "net_failover", "virtio_net", "virtio_console", "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4",
)
DISK_SIZE = "2G"
# Units a lab guest does not need; masking them saves boot time under TCG and keeps timers from running apt.
MASKED_UNITS = (
    "systemd-networkd-wait-online.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "fstrim.timer", "getty@tty1.service", "systemd-udev-settle.service",
)
# Every clone of the image would share one SSH host key: each guest makes its own at first boot.
HOST_KEY_UNIT = """\
[Unit]
Description=Generate this guest's own SSH host key (clones of one image must not share it)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
RequiredBy=ssh.service
"""
SSHD_CONFIG = """\
# The lab's Debian guest: root logs in with the lab's key only.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""
APT_CONFIG = 'APT::Install-Recommends "false";\nAcquire::Languages "none";\n'


@dataclass(frozen=True)
class DebianImage:
    disk: Path        # raw ext4 image of the whole disk (no partition table): the read-only base of guest overlays
    initrd: Path      # boots Debian's kernel (the same vmlinux as the small guest's) into the disk's systemd
    key: Path         # the private key root's authorized_keys trusts
    repository: Path  # a flat apt repository: deb [trusted=yes] LAB_WEB_URL ./

    def cmdline(self, name, ip, gateway=None):
        words = ["console=ttyS0", "quiet", "net.ifnames=0", "panic=-1", "atv.name=%s" % name, "atv.ip=%s" % ip]
        return " ".join(words + (["atv.gw=%s" % gateway] if gateway else []))


def _run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def cache_key(package, version):
    digest = hashlib.sha256("|".join([package, version, SUITE, MIRROR, SECURITY_MIRROR, LAB_WEB_URL, *PACKAGES, "+",
                                      *REPOSITORY_PACKAGES]).encode())
    # Files only: a __pycache__ the unit tests leave there is not an input.
    for path in sorted(path for path in SOURCES.iterdir() if path.is_file()) + [Path(__file__), BUSYBOX]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return "debian-" + digest.hexdigest()[:16]


def ensure_debian_image(log=print):
    """The cached Debian guest image, built first if any input changed."""
    package, version = kernel_package()
    target = CACHE_DIR / cache_key(package, version)
    image = DebianImage(disk=target / "disk.raw", initrd=target / "initrd.cpio", key=target / "id_ed25519",
                        repository=target / "repository")
    if not all(path.exists() for path in (image.disk, image.initrd, image.key, image.repository / "Packages")):
        log("building the Debian guest image (%s, debootstrap, a few minutes)" % SUITE)
        _build(package, target)
    return image


def _build(package, target):
    staging = target.with_suffix(".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="atv-debian-") as work:
        work = Path(work)
        _run(["apt-get", "download", "-o", "APT::Sandbox::User=root", package], cwd=work)
        _vmlinuz, modules = extract_kernel(next(work.glob("linux-image-*.deb")), MODULES)
        (staging / "initrd.cpio").write_bytes(_initramfs(modules))
        root = work / "root"
        _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, str(root), MIRROR])
        _fetch_repository(root, staging / "repository")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "arctictern-lab-guests",
              "-f", str(staging / "id_ed25519")], stdin=subprocess.DEVNULL)
        _configure(root, (staging / "id_ed25519.pub").read_text())
        # mkfs.ext4 -d copies the tree with its owners and modes: no loop mount needed.
        _run(["mkfs.ext4", "-q", "-F", "-L", "atv-debian", "-d", str(root), str(staging / "disk.raw"), DISK_SIZE])
    (staging / "disk.raw").chmod(0o444)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _fetch_repository(root, repository):
    """The .deb files the roles install that the image lacks, exactly as apt inside the image resolves them, and
    their index."""
    archives = root / "var" / "cache" / "apt" / "archives"
    for deb in archives.glob("*.deb"):   # debootstrap's own downloads, all installed already
        deb.unlink()
    # The release with its security and stable updates, as a Debian host would install from.
    (root / "etc" / "apt" / "sources.list").write_text("".join(
        "deb %s %s main\n" % (mirror, suite) for mirror, suite in (
            (MIRROR, SUITE), (MIRROR, SUITE + "-updates"), (SECURITY_MIRROR, SUITE + "-security"))))
    _run(["chroot", str(root), "apt-get", "update", "-q"])
    _run(["chroot", str(root), "apt-get", "install", "--download-only", "--no-install-recommends", "-y", "-q",
          *REPOSITORY_PACKAGES])
    repository.mkdir()
    for deb in archives.glob("*.deb"):
        shutil.move(str(deb), repository / deb.name)
    index = _run(["dpkg-scanpackages", "--multiversion", "."], cwd=repository)
    (repository / "Packages").write_text(index)


def _configure(root, public_key):
    def write(path, text, mode=0o644):
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        file.chmod(mode)

    write("etc/fstab", "/dev/vda / ext4 rw,noatime 0 0\n")
    write("etc/apt/sources.list", "deb [trusted=yes] %s ./\n" % LAB_WEB_URL)
    write("etc/apt/apt.conf.d/90arctictern-lab", APT_CONFIG)
    write("etc/systemd/journald.conf.d/volatile.conf", "[Journal]\nStorage=volatile\n")
    write("etc/ssh/sshd_config.d/arctictern-lab.conf", SSHD_CONFIG)
    write("etc/systemd/system/ssh-host-key.service", HOST_KEY_UNIT)
    # Every Ansible task imports its module_utils from a zip: their bytecode is kept (see the file).
    write("usr/lib/python3/dist-packages/atv_zipimport_cache.py", (SOURCES / "atv_zipimport_cache.py").read_text())
    write("usr/lib/python3/dist-packages/atv_zipimport_cache.pth", "import atv_zipimport_cache\n")
    (root / "root" / ".ssh").mkdir(mode=0o700, exist_ok=True)
    write("root/.ssh/authorized_keys", public_key, mode=0o600)
    write("etc/resolv.conf", "")
    # Empty: systemd gives each guest its own machine ID at first boot.
    write("etc/machine-id", "", mode=0o444)
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    _run(["systemctl", "--root", str(root), "enable", "systemd-networkd.service", "ssh-host-key.service"])
    _run(["systemctl", "--root", str(root), "mask", *MASKED_UNITS])
    # What a guest never reads: documentation, translations, apt's downloaded lists and caches.
    for directory in ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/lib/apt/lists"):
        shutil.rmtree(root / directory, ignore_errors=True)
    lists = root / "var" / "lib" / "apt" / "lists"
    (lists / "partial").mkdir(parents=True)
    # An old time stamp: apt's cache_valid_time (ansible.builtin.apt) reads the lists' age from this directory, and
    # a recent one would make the empty lists count as fresh, so the first apt task would find no packages.
    os.utime(lists, (0, 0))
    for cache in (root / "var" / "cache" / "apt").glob("*.bin"):
        cache.unlink()


def _initramfs(modules):
    cpio = Cpio()
    for directory in ("bin", "dev", "lib", "lib/modules", "proc", "sys", "newroot"):
        cpio.add(directory, stat.S_IFDIR | 0o755)
    cpio.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    cpio.add("init", stat.S_IFREG | 0o755, (SOURCES / "init").read_bytes())
    cpio.add("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes())
    cpio.add("lib/modules/load-order", stat.S_IFREG | 0o644, ("\n".join(MODULES) + "\n").encode())
    for name in MODULES:
        cpio.add("lib/modules/%s.ko" % name, stat.S_IFREG | 0o644, modules[name])
    return cpio.finish()
