"""Mount and UTS namespaces for lab hosts, kept alive by bind mounts so that daemons can be (re)started in them.

Network namespaces come from the collection's netlink layer; this file adds what pyroute2 does not do:
unshare/setns for mount and UTS namespaces, and the mounts that give each host its own libvirt directories.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "%s: %s" % (what, os.strerror(errno)))


def mount(source, target, flags, fstype=None):
    _check(_libc.mount(source and str(source).encode(), str(target).encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), None), "mount %s" % target)


def umount(target):
    _check(_libc.umount2(str(target).encode(), MNT_DETACH), "umount %s" % target)


def is_mountpoint(path):
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def make_private_mount(directory):
    """Bind a directory onto itself as a private mount, as `ip netns` does for /run/netns, so namespace files
    can be bind-mounted into it."""
    directory.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(directory):
        mount(directory, directory, MS_BIND | MS_REC)
    mount(None, directory, MS_PRIVATE | MS_REC)


def setns(path, nstype):
    setns_all([(path, nstype)])


def setns_all(namespaces):
    """Enter several namespaces; all are opened first, since entering a mount namespace changes what paths mean."""
    fds = [(os.open(path, os.O_RDONLY), nstype, path) for path, nstype in namespaces]
    try:
        for fd, nstype, path in fds:
            _check(_libc.setns(fd, nstype), "setns %s" % path)
    finally:
        for fd, _nstype, _path in fds:
            os.close(fd)


def unshare_mounts(binds):
    """Move this process into a mount namespace of its own: the current mounts as a one-way copy (later mounts
    outside show inside, its own never leak out), ``binds`` (source -> target) mounted over the real paths."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    mount(None, "/", MS_REC | MS_SLAVE)
    for source, target in binds.items():
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        mount(source, target, MS_BIND)


class HostNamespaces:
    """The network, mount and UTS namespaces of one lab host, identified by files."""

    def __init__(self, netns_path, ns_dir, name):
        self.netns = Path(netns_path)
        self.mnt = Path(ns_dir) / ("%s.mnt" % name)
        self.uts = Path(ns_dir) / ("%s.uts" % name)
        self.name = name

    def exists(self):
        return is_mountpoint(self.mnt) and is_mountpoint(self.uts)

    def create(self, binds):
        """Make the host's mount and UTS namespaces (see unshare_mounts)."""
        for path in (self.mnt, self.uts):
            path.touch()

        def enter_new():
            setns(self.netns, CLONE_NEWNET)
            _check(_libc.unshare(CLONE_NEWUTS), "unshare")
            unshare_mounts(binds)
            _check(_libc.sethostname(self.name.encode(), len(self.name)), "sethostname")

        holder = subprocess.Popen(["sleep", "60"], preexec_fn=enter_new)  # pylint: disable=subprocess-popen-preexec-fn
        try:
            # The holder is in place once its namespaces differ from ours; then pin them to the files.
            while os.readlink("/proc/%d/ns/uts" % holder.pid) == os.readlink("/proc/self/ns/uts"):
                if holder.poll() is not None:
                    raise RuntimeError("could not create namespaces for lab host %s" % self.name)
            mount("/proc/%d/ns/mnt" % holder.pid, self.mnt, MS_BIND)
            mount("/proc/%d/ns/uts" % holder.pid, self.uts, MS_BIND)
        finally:
            holder.kill()
            holder.wait()

    def enter(self):
        """For preexec_fn: move the (forked, single-threaded) child into this host."""
        setns_all([(self.netns, CLONE_NEWNET), (self.mnt, CLONE_NEWNS), (self.uts, CLONE_NEWUTS)])
        os.chdir("/")

    def nsenter_argv(self):
        """The command prefix that runs a program inside this host (used as Ansible's interpreter prefix)."""
        return ["nsenter", "--net=%s" % self.netns, "--mount=%s" % self.mnt, "--uts=%s" % self.uts, "--"]

    def remove(self):
        for path in (self.mnt, self.uts):
            if is_mountpoint(path):
                umount(path)
            path.unlink(missing_ok=True)
