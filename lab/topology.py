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
MIGRATION_SWITCH = "miglink"    # the namespace whose bridge joins every hypervisor's migration link (mig0)
MIGRATION_BRIDGE = "mig"
LINK_PREFIX = 24
# Hypervisor generations: the machine's own packages (Debian 12: libvirt 9, QEMU 7.2), and the next one, whose
# daemon and QEMU run from the Debian 13 root that lab.hypervisor_root builds (libvirt 11, QEMU 10).
DEBIAN12 = "debian12"
DEBIAN13 = "debian13"
# The key the lab's hypervisors log in to each other with (root, over SSH on the LAN), and where each hypervisor
# finds its own ssh configuration: its private directory is bind-mounted over /etc/ssh inside its mount namespace.
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
ETC_SSH = "/etc/ssh"


@dataclass(frozen=True)
class LabHost:
    name: str
    lan_address: str
    link_address: str | None = None   # the migration link; hypervisors only
    generation: str = DEBIAN12

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
        return ssh_uri(self.lan_address)


def ssh_uri(address):
    """qemu+ssh to a hypervisor's ``address`` with the lab's key; the host key is checked against the lab's known hosts
    (no_tty: no one to ask for anything)."""
    return "qemu+ssh://root@%s/system?keyfile=%s&no_tty=1" % (address, SSH_KEY)


# hv3 and hv4 are the next generation: hv1 <-> hv3 is the rolling-upgrade path, hv3 <-> hv4 migrations within the
# new generation (what its health study compares with hv1 <-> hv2). They are in none of the playbooks'
# groups (inventories/lab: next_generation, not hypervisors).
HOSTS = (
    LabHost("hv1", lan_address="198.18.0.11", link_address="198.18.1.1"),
    LabHost("hv2", lan_address="198.18.0.12", link_address="198.18.1.2"),
    LabHost("hv3", lan_address="198.18.0.13", link_address="198.18.1.3", generation=DEBIAN13),
    LabHost("hv4", lan_address="198.18.0.14", link_address="198.18.1.4", generation=DEBIAN13),
    LabHost("client", lan_address="198.18.0.100"),
)
HYPERVISORS = tuple(host for host in HOSTS if host.is_hypervisor)


def host(name):
    return next(candidate for candidate in HOSTS if candidate.name == name)


# The lab's HTTP server, on the client: the apt repository the Debian guests install from (they have no internet),
# and the web server that requests through a guest's proxy fetch.
LAB_WEB_HOST = host("client")
LAB_WEB_PORT = 8080
LAB_WEB_URL = "http://%s:%d/" % (LAB_WEB_HOST.lan_address, LAB_WEB_PORT)
# The LAN's router knowledge: the client routes the hypervisors' NAT (hv1) and host-only (hv2) subnets of
# playbooks/site.yml through their hosts, so that a host-only guest is unreachable because libvirt isolates it,
# not merely because no route leads there.
CLIENT_ROUTES = {"198.18.100.0/24": "198.18.0.11", "198.18.200.0/24": "198.18.0.12"}

# The WAN layout (issue #8): two sites in different subnets, each routed by its hypervisor, joined through a router
# namespace (the "WAN"); a DNS server and a remote client sit outside both sites, each on a subnet of its own behind
# the router. 198.19.0.0/16 is the other half of RFC 2544's benchmarking range. The LAN layout above stays as it is.
ROUTER = "wan"
SITE_BRIDGE = "site0"       # every site's guest bridge has this name, so a guest's definition fits both sites
# Every site's gateway answers with the same MAC (VRRP's first virtual router MAC, as sites with an anycast gateway
# have): a guest that moves keeps a valid neighbour entry for its gateway in both directions, so a move back after
# a failed cutover needs no announcement at the old site either.
SITE_GATEWAY_MAC = "00:00:5e:00:01:01"
WAN_PREFIX = 30
WAN_SUPERNET = "198.19.0.0/16"
DNS_ZONE = "lab.test"


@dataclass(frozen=True)
class Site:
    name: str
    hypervisor: str
    subnet: str             # the site's guest subnet, on the hypervisor's SITE_BRIDGE
    gateway: str            # the hypervisor's address on that bridge: the guests' default gateway
    wan_address: str        # the hypervisor's end of its WAN link
    router_address: str     # the router's end

    @property
    def prefix(self):
        return int(self.subnet.split("/")[1])


@dataclass(frozen=True)
class OutsideHost:
    """A host outside both sites, on a /24 of its own behind the router."""

    name: str
    address: str
    router_address: str
    prefix = 24
    lan_address = None
    link_address = None
    is_hypervisor = False

    @property
    def netns(self):
        return NETNS_PREFIX + self.name

    @property
    def state_dir(self):
        return STATE_DIR / "hosts" / self.name


SITES = (
    Site("a", "hv1", subnet="198.19.1.0/24", gateway="198.19.1.1", wan_address="198.19.0.2", router_address="198.19.0.1"),
    Site("b", "hv2", subnet="198.19.2.0/24", gateway="198.19.2.1", wan_address="198.19.0.6", router_address="198.19.0.5"),
)
DNS_SERVER = OutsideHost("dns", address="198.19.4.53", router_address="198.19.4.1")
REMOTE_CLIENT = OutsideHost("remote", address="198.19.3.10", router_address="198.19.3.1")
OUTSIDE_HOSTS = (DNS_SERVER, REMOTE_CLIENT)


def site_of(hypervisor):
    return next(site for site in SITES if site.hypervisor == hypervisor)
