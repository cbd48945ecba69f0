"""Builds a Debian root that a lab hypervisor runs libvirtd and QEMU from: the next generation (Debian 13: libvirt
11, QEMU 10) beside hypervisors on the machine's own packages (Debian 12: libvirt 9, QEMU 7.2).

debootstrap --variant=minbase, then apt inside the root installs the daemon without recommended packages (apt,
unlike debootstrap, resolves alternatives and virtual packages). The root is cached under image.CACHE_DIR by a key
over the suite, the mirrors, the package list and this file; build.json beside it records the versions, the build
time and the size. HypervisorDaemon(host, root=...) runs the daemon from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.debian_image import MIRROR, SECURITY_MIRROR
from lab.image import CACHE_DIR

SUITE = "trixie"
# The daemon with its QEMU and network drivers (libvirt's networks pull dnsmasq, iptables/nftables, iproute2),
# qemu-img, and ssh for peer-to-peer migration over qemu+ssh.
PACKAGES = ("libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-daemon-driver-network", "qemu-system-x86",
            "qemu-utils", "openssh-client")
# What a daemon never reads: documentation, translations, apt's lists and downloads.
UNREAD = ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/lib/apt/lists", "var/cache/apt")
# Keeps package scripts from starting services on this machine while apt runs in the root.
POLICY_RC_D = "usr/sbin/policy-rc.d"


@dataclass(frozen=True)
class HypervisorRoot:
    path: Path
    build: dict   # libvirt and qemu versions, seconds the build took, bytes on disk


def cache_key():
    digest = hashlib.sha256("|".join([SUITE, MIRROR, SECURITY_MIRROR, *PACKAGES]).encode())
    digest.update(Path(__file__).read_bytes())
    return "root-%s-%s" % (SUITE, digest.hexdigest()[:16])


def ensure_hypervisor_root(log=print):
    """The cached root, built first if any input changed (about a minute; about 260 MB)."""
    target = CACHE_DIR / cache_key()
    if not (target / "build.json").exists():
        log("building the %s hypervisor root (debootstrap, about a minute)" % SUITE)
        _build(target)
    return HypervisorRoot(path=target / "root", build=json.loads((target / "build.json").read_text()))


def _run(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          env=dict(os.environ, DEBIAN_FRONTEND="noninteractive")).stdout


def _build(target):
    started = time.monotonic()
    staging = target.with_suffix(".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    root = staging / "root"
    _run(["debootstrap", "--variant=minbase", SUITE, str(root), MIRROR])
    # The release with its security and stable updates, as a Debian 13 host installs from.
    (root / "etc" / "apt" / "sources.list").write_text("".join(
        "deb %s %s main\n" % (mirror, suite) for mirror, suite in (
            (MIRROR, SUITE), (MIRROR, SUITE + "-updates"), (SECURITY_MIRROR, SUITE + "-security"))))
    policy = root / POLICY_RC_D
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    _run(["chroot", str(root), "apt-get", "update", "-q"])
    _run(["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES])
    policy.unlink()
    for directory in UNREAD:
        shutil.rmtree(root / directory, ignore_errors=True)
    build = {
        "suite": SUITE,
        "libvirt": _banner_version(_run(["chroot", str(root), "libvirtd", "--version"])),
        "qemu": _banner_version(_run(["chroot", str(root), "qemu-system-x86_64", "--version"])),
        "seconds": round(time.monotonic() - started),
        "bytes": int(_run(["du", "-sb", str(root)]).split()[0]),
    }
    (staging / "build.json").write_text(json.dumps(build, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _banner_version(banner):
    """'11.3.0' from 'libvirtd (libvirt) 11.3.0', '10.0.13' from 'QEMU emulator version 10.0.13 (Debian ...)'."""
    return re.search(r"\d+\.\d+\.\d+", banner).group(0)
