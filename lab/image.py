"""Builds the lab's guest image from Debian packages: Debian's kernel plus a small busybox initramfs.

The image is cached under CACHE_DIR by a key over every input (kernel package version, the guest sources, this
file), so it is rebuilt only when one of them changes.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("ATV_IMAGE_CACHE", "/var/cache/arctictern-lab/images"))
GUEST_SOURCES = Path(__file__).parent / "guest"
KERNEL_METAPACKAGE = "linux-image-amd64"
BUSYBOX = Path("/bin/busybox")
# Loaded by the guest's init in this order: the virtio NIC and disk, and the ACPI power button for graceful shutdown.
MODULES = (
    "virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
    "failover", "net_failover", "virtio_net", "virtio_blk", "button", "evdev",
)
XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class GuestImage:
    kernel: Path   # uncompressed vmlinux: booted through its PVH entry, about twice as fast as bzImage under TCG
    initrd: Path
    kernel_release: str

    def cmdline(self, name, ip="dhcp", gateway=None, extra=""):
        words = ["console=ttyS0", "quiet", "panic=-1", "atv.name=%s" % name, "atv.ip=%s" % ip]
        if gateway:
            words.append("atv.gw=%s" % gateway)
        return " ".join(words + ([extra] if extra else []))


def _run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def kernel_package():
    """The versioned kernel package Debian's metapackage points at, and its candidate version."""
    depends = _run(["apt-cache", "depends", KERNEL_METAPACKAGE])
    package = next(line.split()[-1] for line in depends.splitlines() if line.strip().startswith("Depends: linux-image-"))
    policy = _run(["apt-cache", "policy", package])
    version = next(line.split()[-1] for line in policy.splitlines() if line.strip().startswith("Candidate:"))
    return package, version


def cache_key(package, version):
    digest = hashlib.sha256(("%s=%s" % (package, version)).encode())
    for path in sorted(GUEST_SOURCES.iterdir()) + [Path(__file__), BUSYBOX]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_image(log=print):
    """The cached image, built first if any input changed."""
    package, version = kernel_package()
    target = CACHE_DIR / cache_key(package, version)
    kernel, initrd, release_file = target / "vmlinux", target / "initrd.cpio", target / "kernel-release"
    if not (kernel.exists() and initrd.exists() and release_file.exists()):
        log("building guest image from %s %s" % (package, version))
        _build(package, target)
    return GuestImage(kernel=kernel, initrd=initrd, kernel_release=release_file.read_text().strip())


def _build(package, target):
    with tempfile.TemporaryDirectory(prefix="atv-image-") as work:
        work = Path(work)
        _run(["apt-get", "download", "-o", "APT::Sandbox::User=root", package], cwd=work)
        deb = next(work.glob("linux-image-*.deb"))
        vmlinuz, modules = extract_kernel(deb)
        agent = work / "agent"
        _run(["gcc", "-static", "-O2", "-Wall", "-o", str(agent), str(GUEST_SOURCES / "agent.c")])
        staging = target.with_suffix(".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / "vmlinux").write_bytes(_decompress_kernel(vmlinuz))
        (staging / "initrd.cpio").write_bytes(_initramfs(agent.read_bytes(), modules))
        (staging / "kernel-release").write_text(deb.name.split("_")[0].replace("linux-image-", "") + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)


def extract_kernel(deb, module_names=MODULES):
    """vmlinuz and the wanted modules (name -> bytes) from the kernel package, streamed out of dpkg-deb."""
    wanted = {name.replace("_", "-"): name for name in module_names}
    modules, vmlinuz = {}, None
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                base = os.path.basename(member.name)
                if member.isfile() and base.startswith("vmlinuz-"):
                    vmlinuz = tar.extractfile(member).read()
                elif member.isfile() and base.endswith(".ko") and base[:-3].replace("_", "-") in wanted:
                    modules[wanted[base[:-3].replace("_", "-")]] = tar.extractfile(member).read()
    missing = set(module_names) - set(modules)
    if vmlinuz is None or missing:
        raise RuntimeError("kernel package %s lacks %s" % (deb.name, sorted(missing) or "vmlinuz"))
    return vmlinuz, modules


def _decompress_kernel(vmlinuz):
    """The ELF vmlinux inside an XZ-compressed bzImage."""
    start = vmlinuz.find(XZ_MAGIC)
    if start < 0:
        raise RuntimeError("kernel image is not XZ-compressed")
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(vmlinuz[start:])


class Cpio:
    """A newc cpio archive, the format the kernel unpacks as an initramfs."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1

    def add(self, name, mode, data=b"", rdev=(0, 0)):
        header = "070701" + "".join("%08x" % value for value in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0))
        self.ino += 1
        self.out.write(header.encode() + name.encode() + b"\0")
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self):
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def finish(self):
        self.add("TRAILER!!!", 0)
        return self.out.getvalue()


def _initramfs(agent, modules):
    cpio = Cpio()
    for directory in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "run"):
        cpio.add(directory, stat.S_IFDIR | 0o755)
    cpio.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    cpio.add("init", stat.S_IFREG | 0o755, (GUEST_SOURCES / "init").read_bytes())
    cpio.add("etc/udhcpc.script", stat.S_IFREG | 0o755, (GUEST_SOURCES / "udhcpc.script").read_bytes())
    cpio.add("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes())
    cpio.add("bin/agent", stat.S_IFREG | 0o755, agent)
    cpio.add("lib/modules/load-order", stat.S_IFREG | 0o644, ("\n".join(MODULES) + "\n").encode())
    for name in MODULES:
        cpio.add("lib/modules/%s.ko" % name, stat.S_IFREG | 0o644, modules[name])
    return cpio.finish()
