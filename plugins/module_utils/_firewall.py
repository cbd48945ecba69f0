# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Port forwards into a libvirt NAT network, as iptables rules.

libvirt has no port forwarding of its own, and the LIBVIRT_FWI chain it hooks into FORWARD rejects new
connections into a NAT subnet. Each network with forwards therefore gets two chains of its own, named after a
hash of the network name (iptables chain names are short, and the user's name must never reach a rule):

- nat ``ATV_DNAT_<hash>``, jumped to from PREROUTING and OUTPUT for local destinations, holding one DNAT rule
  per forward;
- filter ``ATV_FWD_<hash>``, jumped to from the first rule of FORWARD (ahead of libvirt's jumps), accepting the
  DNATed connections.

Everything here is pure except ``Iptables``, the runner of _iptables.py set to the nat and filter tables, which
runs iptables through a ``run(argv)`` callable shaped like ``AnsibleModule.run_command`` (argv lists, never a shell).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Optional

from ansible_collections.arctictern.virt.plugins.module_utils import _iptables, _validate
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption
from ansible_collections.arctictern.virt.plugins.module_utils._iptables import jumps_to, sync_chain, sync_jump

OPTION = "port_forwards"
PROTOCOLS = ("tcp", "udp")
TABLES = ("nat", "filter")


@dataclass(frozen=True)
class Forward:
    """One port forward: ``host_port`` on the host (optionally only on ``host_address``) to a guest."""

    proto: str
    host_port: int
    guest_ip: str
    guest_port: int
    host_address: Optional[str] = None

    def to_dict(self):
        return asdict(self)

    def sort_key(self):
        return (self.proto, self.host_port, self.host_address or "", self.guest_ip, self.guest_port)


def _port(value, what):
    if isinstance(value, bool):
        value = None  # int(True) == 1 would pass for a port
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InvalidOption(OPTION, "%s must be a port number, not %r" % (what, value)) from None
    if not 1 <= port <= 65535:
        raise InvalidOption(OPTION, "%s %d is out of the range 1..65535" % (what, port))
    return port


def forwards_from_options(value, interface):
    """Validated forwards from the ``port_forwards`` option, sorted; ``interface`` is the network's host address
    as an ``ipaddress.IPv4Interface`` (guests must be inside its subnet)."""
    forwards = []
    for index, item in enumerate(value or ()):
        where = "entry %d" % (index + 1)
        if not isinstance(item, dict):
            raise InvalidOption(OPTION, "%s must be a dict with host_port and guest_ip" % where)
        proto = item.get("proto") or "tcp"
        if proto not in PROTOCOLS:
            raise InvalidOption(OPTION, "%s: proto must be one of %s, not %r" % (where, ", ".join(PROTOCOLS), proto))
        host_port = _port(item.get("host_port"), "%s: host_port" % where)
        guest_port = host_port if item.get("guest_port") is None else _port(item["guest_port"], "%s: guest_port" % where)
        guest_ip = _validate.ip_address(OPTION, item.get("guest_ip"), version=4, what="%s: guest_ip" % where)
        network = interface.network
        if guest_ip not in network or guest_ip in (network.network_address, network.broadcast_address):
            raise InvalidOption(OPTION, "%s: guest_ip %s is not a guest address of the network's subnet %s" % (where, guest_ip, network))
        if guest_ip == interface.ip:
            raise InvalidOption(OPTION, "%s: guest_ip %s is the host's own address on the network" % (where, guest_ip))
        host_address = item.get("host_address")
        if host_address is not None:
            host_address = str(_validate.ip_address(OPTION, host_address, version=4, what="%s: host_address" % where))
        forward = Forward(proto, host_port, str(guest_ip), guest_port, host_address)
        for other in forwards:
            # The same port on all addresses and on one of them would be ambiguous: the first rule would win.
            same_port = (other.proto, other.host_port) == (proto, host_port)
            if same_port and (other.host_address == host_address or None in (other.host_address, host_address)):
                raise InvalidOption(OPTION, "%s: %s port %d is forwarded twice" % (where, proto, host_port))
        forwards.append(forward)
    return tuple(sorted(forwards, key=Forward.sort_key))


def chain_names(network):
    """The (nat, filter) chain names of a network: a hash, since chain names are at most 28 characters."""
    digest = hashlib.sha256(network.encode("utf-8")).hexdigest()[:12]
    return "ATV_DNAT_" + digest, "ATV_FWD_" + digest


# Rules are written exactly as `iptables -S` prints them back, so that comparing them is comparing lists.
def dnat_rule(forward):
    rule = ["-d", forward.host_address + "/32"] if forward.host_address else []
    return rule + ["-p", forward.proto, "-m", forward.proto, "--dport", str(forward.host_port),
                   "-j", "DNAT", "--to-destination", "%s:%d" % (forward.guest_ip, forward.guest_port)]


def accept_rule(forward):
    return ["-d", forward.guest_ip + "/32", "-p", forward.proto, "-m", forward.proto, "--dport", str(forward.guest_port),
            "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"]


def jump_rules(network):
    """(table, parent chain, rule, must be first) of the jumps into a network's chains."""
    dnat, accept = chain_names(network)
    return (
        ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", dnat], False),
        # Connections to 127.0.0.1 would leave with a loopback source, which the bridge drops as martian.
        ("nat", "OUTPUT", ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", dnat], False),
        # libvirt puts its own jumps (LIBVIRT_FWI rejects new connections) on top of FORWARD when a network starts.
        ("filter", "FORWARD", ["-j", accept], True),
    )


def _forward_from_rule(rule):
    """The Forward a DNAT rule of ours stands for, or None for a rule of another shape."""
    values = {}
    flags = ("-d", "-p", "-m", "--dport", "-j", "--to-destination")
    if len(rule) % 2:
        return None
    for flag, value in zip(rule[::2], rule[1::2]):
        if flag not in flags:
            return None
        values[flag] = value
    guest_ip, _sep, guest_port = values.get("--to-destination", "").rpartition(":")
    if values.get("-j") != "DNAT" or values.get("-p") not in PROTOCOLS or not guest_ip:
        return None
    try:
        return Forward(values["-p"], int(values["--dport"]), guest_ip, int(guest_port),
                       values["-d"].split("/")[0] if "-d" in values else None)
    except (KeyError, ValueError):
        return None


def current_forwards(tables, network):
    """The forwards a network has now, read back from its DNAT chain."""
    dnat, _accept = chain_names(network)
    forwards = (_forward_from_rule(rule) for rule in tables.get("nat", {}).get(dnat, ()))
    return tuple(sorted({forward for forward in forwards if forward}, key=Forward.sort_key))


def _unique(rules):
    unique = []
    for rule in rules:
        if rule not in unique:
            unique.append(rule)
    return unique


def plan(tables, network, forwards):
    """The iptables argument lists (without the binary) that take ``tables`` (``Iptables.tables()``) to exactly
    ``forwards`` for ``network``; empty when nothing is to change. No forwards removes the chains and jumps."""
    dnat, accept = chain_names(network)
    if not forwards:
        commands = []
        for table in TABLES:
            for parent, rules in tables.get(table, {}).items():
                commands += [["-t", table, "-D", parent] + rule for rule in rules
                             if parent not in (dnat, accept) and (jumps_to(rule, dnat) or jumps_to(rule, accept))]
        for table, chain in (("nat", dnat), ("filter", accept)):
            if chain in tables.get(table, {}):
                commands += [["-t", table, "-F", chain], ["-t", table, "-X", chain]]
        return commands
    commands = sync_chain(tables, "nat", dnat, _unique(dnat_rule(forward) for forward in forwards))
    commands += sync_chain(tables, "filter", accept, _unique(accept_rule(forward) for forward in forwards))
    for table, parent, rule, first in jump_rules(network):
        commands += sync_jump(tables, table, parent, rule, first)
    return commands


class Iptables(_iptables.Iptables):
    """The host's nat and filter tables, through ``run(argv) -> (rc, stdout, stderr)``; failures name the option."""

    def __init__(self, binary, run):
        super().__init__(binary, run, TABLES, OPTION)
