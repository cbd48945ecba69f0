"""An sshd per lab hypervisor, inside that host's namespaces and listening on its LAN address and its site's WAN address
only: the management path of the production layout (qemu+ssh://), which the other hypervisor's daemon and the modules running there use
with the lab's key. Each host's ssh directory is also its /etc/ssh, so ssh run inside a host trusts exactly the lab
hosts' keys and never writes the known_hosts of the machine's root user, which lies outside the lab."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.daemon import LabDaemon
from lab.topology import SITES, SSH_KEY

SSHD = "/usr/sbin/sshd"
# sshd's privilege separation directory: compiled in, created by Debian's service at start (none runs here).
PRIVSEP_DIR = Path("/run/sshd")
HOST_KEY = "ssh_host_ed25519_key"

# Paths from the root namespace, which are the same inside the host: sshd does not depend on the /etc/ssh bind.
SSHD_CONFIG = """\
# Written by python -m lab up: the sshd of lab host {name}, on its LAN (management) and WAN addresses only.
{listen}
HostKey {directory}/{host_key}
PidFile {directory}/sshd.pid
AuthorizedKeysFile {directory}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
"""
SSH_CONFIG = """\
# Written by python -m lab up: ssh inside a lab host trusts only the lab hosts' keys (ssh_known_hosts beside this
# file) and writes no known_hosts of its own.
Host *
    GlobalKnownHostsFile /etc/ssh/ssh_known_hosts
    UserKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    IdentitiesOnly yes
"""


def _keygen(path, comment):
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       stdin=subprocess.DEVNULL, capture_output=True, check=True)


def _public_key(private_key):
    """'type base64' of a key pair's public half, without its comment."""
    return " ".join(Path("%s.pub" % private_key).read_text().split()[:2])


def ssh_addresses(host):
    """Where the host's sshd listens: its LAN address, and its WAN address where it routes a site."""
    return [host.lan_address] + [site.wan_address for site in SITES if site.hypervisor == host.name]


def prepare(hypervisors):
    """The lab's key, each hypervisor's host key and configuration, and the known hosts they all trust; keys are
    made once, so a lab brought up again keeps them."""
    SSH_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _keygen(SSH_KEY, "arctictern-lab")
    known_hosts = []
    for host in hypervisors:
        directory = host.ssh_dir
        directory.mkdir(parents=True, exist_ok=True)
        # sshd's StrictModes: nothing on the path to authorized_keys may be writable by others.
        directory.chmod(0o755)
        _keygen(directory / HOST_KEY, "%s host key" % host.name)
        addresses = ssh_addresses(host)
        known_hosts.append("%s %s\n" % (",".join(addresses), _public_key(directory / HOST_KEY)))
        # restrict: the key runs commands (virt-ssh-helper) and nothing else: no forwarding, no terminal.
        (directory / "authorized_keys").write_text("restrict %s arctictern-lab\n" % _public_key(SSH_KEY))
        (directory / "sshd_config").write_text(SSHD_CONFIG.format(
            name=host.name, listen="\n".join("ListenAddress %s" % address for address in addresses), directory=directory,
            host_key=HOST_KEY))
        (directory / "ssh_config").write_text(SSH_CONFIG)
    for host in hypervisors:
        (host.ssh_dir / "ssh_known_hosts").write_text("".join(known_hosts))


class SSHDaemon(LabDaemon):
    """The host's sshd; a session's libvirt helper (virt-ssh-helper, or nc) reaches the host's own libvirtd,
    since sshd and its sessions live in the host's mount namespace, with its private /run/libvirt."""

    program = SSHD
    name = "sshd"

    @property
    def pid_file(self):
        return self.host.ssh_dir / "sshd.pid"

    def argv(self):
        # -D: stay in the foreground, so that it is our child; -e: log to the log file.
        return [SSHD, "-D", "-e", "-f", str(self.host.ssh_dir / "sshd_config")]

    def start(self, timeout=30):
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        return super().start(timeout)
