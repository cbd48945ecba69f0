"""What the lab is made of: names and addresses, in one place (playbooks read them through inventories/lab)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# 198.18.0.0/15 is reserved for network benchmarking (RFC 2544): it is never routed, and the lab routes nothing out.
STATE_DIR = Path("/run/arctictern-lab")
NS_DIR = STATE_DIR / "ns"
NETNS_PREFIX = "atv-"
SWITCH = "lan"              # the namespace and bridge that form the shared guest LAN
LAN_PREFIX = 24
LINK_PREFIX = 24
# The key the lab's hypervisors log in to each other with (root, over SSH on the LAN), and where each hypervisor
# finds its own ssh configuration: its private directory is bind-mounted over /etc/ssh inside its mount namespace.
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
ETC_SSH = "/etc/ssh"


@dataclass(frozen=True)
class LabHost:
    name: str
    lan_address: str
    link_address: str | None = None   # the migration link; hypervisors only

    @property
    def netns(self):
        return NETNS_PREFIX + self.name

    @property
    def is_hypervisor(self):
        return self.link_address is not None

    @property
    def state_dir(self):
        return STATE_DIR / "hosts" / self.name

    @property
    def socket(self):
        """The daemon's unix socket as seen from the root namespace."""
        return self.state_dir / "run" / "libvirt-sock"

    @property
    def uri(self):
        return "qemu+unix:///system?socket=%s" % self.socket

    @property
    def migration_uri(self):
        """How the other hypervisors' daemons reach this one (peer-to-peer, over the migration link)."""
        return "qemu+tcp://%s/system" % self.link_address

    @property
    def ssh_dir(self):
        """The host's own /etc/ssh (sshd configuration, host key, known hosts), as seen from the root namespace."""
        return self.state_dir / "ssh"

    @property
    def ssh_uri(self):
        """The production layout: how the other hypervisors reach this one over SSH on the LAN (management), with
        the lab's key; the host key is checked against the lab's known hosts (no_tty: no one to ask for anything)."""
        return "qemu+ssh://root@%s/system?keyfile=%s&no_tty=1" % (self.lan_address, SSH_KEY)


HOSTS = (
    LabHost("hv1", lan_address="198.18.0.11", link_address="198.18.1.1"),
    LabHost("hv2", lan_address="198.18.0.12", link_address="198.18.1.2"),
    LabHost("client", lan_address="198.18.0.100"),
)
HYPERVISORS = tuple(host for host in HOSTS if host.is_hypervisor)
# The LAN's router knowledge: the client routes the hypervisors' NAT (hv1) and host-only (hv2) subnets of
# playbooks/site.yml through their hosts, so that a host-only guest is unreachable because libvirt isolates it,
# not merely because no route leads there.
CLIENT_ROUTES = {"198.18.100.0/24": "198.18.0.11", "198.18.200.0/24": "198.18.0.12"}


def host(name):
    return next(candidate for candidate in HOSTS if candidate.name == name)
