# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The address_map module's run: a guest that moved to this host and kept its old address (OLD) becomes reachable
at a new address of this host's own subnet (NEW), one to one, with nothing to change inside the guest.

state=present makes, in this order (state=absent takes it away in the reverse order):

1. the guest's old gateway as a /32 on the bridge, so that the guest's default route still works;
2. a route ``OLD/32 dev <bridge> scope link src <gateway>``, so that this host reaches the guest by its old
   address; its prefsrc also records which gateway the mapping uses, so that a gateway shared by several moved
   guests stays until the last of them goes;
3. a policy rule ``from OLD fwmark M/M lookup main``: the guest's replies to connections made to NEW leave by the
   main table, ahead of the tunnel module's ``from OLD`` rule (priority 1000) that sends everything else from OLD
   back to the old site. The mark is needed because a reply's source only becomes NEW again in POSTROUTING, after
   the routing decision, which still sees OLD;
4. iptables chains of their own, named after a hash of OLD and NEW: nat DNAT NEW -> OLD (from PREROUTING and
   OUTPUT), nat SNAT OLD -> NEW (appended to POSTROUTING, so the tunnel's exemption inserted first still wins),
   mangle CONNMARK: connections that came in to NEW get the mark, packets from OLD get it back from their
   connection;
5. NEW as a /32 on the interface whose subnet holds it, so that this host answers ARP for NEW. A proxy
   neighbour entry would not do: the kernel only answers for proxy entries routed out of another interface
   than the one the request came in by, and NEW lies in that very interface's subnet.

Routes and rules made here carry the routing protocol number ROUTE_PROTO, which is how a later run tells them from
anyone else's. A run then announces the gateway on the bridge and NEW on its interface by gratuitous ARP, so that
the guest and the LAN drop the MACs they cached at once.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import shlex
import socket
import struct
import time
from dataclasses import dataclass
from typing import Optional

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._iptables import Iptables, jumps_to
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import (
    IFF_UP, MAIN_TABLE, _change, _dump, add_address, link_index, open_ipr, remove_address,
)

# The routing protocol number (rtnetlink's rtm_protocol, FRA_PROTOCOL for rules) of this module's routes and rules;
# /etc/iproute2/rt_protos names none of the numbers from 100 to 185.
ROUTE_PROTO = 164
RT_SCOPE_LINK = 253
MARK_RANGE = (1, 0xFFFFFFFF)
# Priority 0 is the rule of the local table; 32766 and 32767 those of the main and default tables.
RULE_PRIORITY_RANGE = (1, 32765)
TABLES = ("nat", "mangle")
CHAIN_PREFIXES = {"dnat": "ATV_AMDNAT_", "snat": "ATV_AMSNAT_", "mark": "ATV_AMMARK_"}
# (table, parent chain, our chain) of every jump: DNAT is only allowed in PREROUTING and OUTPUT, SNAT in POSTROUTING.
JUMPS = (("nat", "PREROUTING", "dnat"), ("nat", "OUTPUT", "dnat"), ("nat", "POSTROUTING", "snat"),
         ("mangle", "PREROUTING", "mark"))
FORWARDING_SYSCTL = "/proc/sys/net/ipv4/ip_forward"
INTERFACE_FORWARDING_SYSCTL = "/proc/sys/net/ipv4/conf/%s/forwarding"

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ARPHRD_ETHER = 1
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST_MAC = b"\xff" * 6
# Ethernet frames are at least 60 bytes before the FCS; an ARP packet needs padding.
ETH_MIN_FRAME = 60
ANNOUNCE_ROUNDS = 3
ANNOUNCE_INTERVAL = 0.1


@dataclass(frozen=True)
class Mapping:
    """The validated options: NEW (``address``) mapped one to one onto OLD (``guest_address``)."""

    address: str
    guest_address: str
    bridge: str
    gateway: Optional[str]
    mark: int
    rule_priority: int

    def chains(self):
        """Our chain names by role (dnat, snat, mark): a hash, since chain names are at most 28 characters and
        the user's text must never reach a rule."""
        digest = hashlib.sha256(("%s>%s" % (self.guest_address, self.address)).encode("ascii")).hexdigest()[:12]
        return {role: prefix + digest for role, prefix in CHAIN_PREFIXES.items()}


# ---------------------------------------------------------------------------------------------------------
# Options


def _ipv4_unicast(option, value):
    address = _validate.ip_address(option, value)
    if address.version == 6:
        raise InvalidOption(option, "%s is an IPv6 address; IPv6 is not supported yet" % address)
    if address.is_multicast or address.is_unspecified or address.is_loopback or address == ipaddress.IPv4Address(
            "255.255.255.255"):
        raise InvalidOption(option, "%s is not a unicast address" % address)
    return str(address)


def _int_in(option, value, bounds, show=str):
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(option, "must be an integer from %s to %s, not %r" % (show(low), show(high), value))
    return value


def mapping_from_params(params):
    """The options as a Mapping, checked without looking at the host."""
    address = _ipv4_unicast("address", params["address"])
    guest_address = _ipv4_unicast("guest_address", params["guest_address"])
    if address == guest_address:
        raise InvalidOption("address", "%s is the guest_address itself; the new address must be another one" % address)
    gateway = None
    if params["gateway"] is not None:
        gateway = _ipv4_unicast("gateway", params["gateway"])
        if gateway in (address, guest_address):
            raise InvalidOption("gateway", "%s is the %s, not the guest's gateway" % (
                gateway, "address" if gateway == address else "guest_address"))
    return Mapping(
        address=address,
        guest_address=guest_address,
        bridge=_validate.interface_name("bridge", params["bridge"]),
        gateway=gateway,
        mark=_int_in("mark", params["mark"], MARK_RANGE, show=hex),
        rule_priority=_int_in("rule_priority", params["rule_priority"], RULE_PRIORITY_RANGE),
    )


# ---------------------------------------------------------------------------------------------------------
# iptables


def wanted_chains(mapping):
    """[(table, chain, rules)] of a present mapping; rules are written as ``iptables -S`` prints them back."""
    chains = mapping.chains()
    new, old, mark = mapping.address, mapping.guest_address, "0x%x" % mapping.mark
    return [
        ("nat", chains["dnat"], (("-d", new + "/32", "-j", "DNAT", "--to-destination", old),)),
        ("nat", chains["snat"], (("-s", old + "/32", "-j", "SNAT", "--to-source", new),)),
        ("mangle", chains["mark"], (
            ("-d", new + "/32", "-j", "CONNMARK", "--set-xmark", "%s/%s" % (mark, mark)),
            ("-s", old + "/32", "-j", "CONNMARK", "--restore-mark", "--nfmask", mark, "--ctmask", mark),
        )),
    ]


def wanted_jumps(mapping):
    chains = mapping.chains()
    return sorted((table, parent, ("-j", chains[role])) for table, parent, role in JUMPS)


def current_iptables(tables, mapping):
    """(chains, jumps) of the mapping as they are: [(table, chain, rules)] of our chains that exist, in the order
    of ``wanted_chains``, and the sorted [(table, parent, rule)] jumping to them from anywhere else."""
    ours = [(table, chain) for table, chain, _rules in wanted_chains(mapping)]
    chains = [(table, chain, tuple(tuple(rule) for rule in tables[table][chain]))
              for table, chain in ours if chain in tables.get(table, {})]
    jumps = [(table, parent, tuple(rule))
             for table in TABLES for parent, rules in tables.get(table, {}).items() if (table, parent) not in ours
             for rule in rules if any(jumps_to(rule, chain) for owner, chain in ours if owner == table)]
    return chains, sorted(jumps)


def iptables_commands(current, desired):
    """The iptables argument lists that take the (chains, jumps) ``current`` to ``desired``: stray jumps go before
    the chains change, new jumps after, since a jump needs its chain and a chain in use cannot be deleted."""
    (have_chains, have_jumps), (want_chains, want_jumps) = current, desired
    commands = []
    missing_jumps = list(want_jumps)
    for table, parent, rule in have_jumps:
        if (table, parent, rule) in missing_jumps:
            missing_jumps.remove((table, parent, rule))
        else:  # not wanted, or a duplicate
            commands.append(["-t", table, "-D", parent] + list(rule))
    have = {(table, chain): rules for table, chain, rules in have_chains}
    for table, chain, rules in want_chains:
        if have.get((table, chain)) == rules:
            continue
        # Flushing and refilling keeps the rules in the order a fresh chain has.
        commands.append(["-t", table, "-F" if (table, chain) in have else "-N", chain])
        commands.extend(["-t", table, "-A", chain] + list(rule) for rule in rules)
    wanted = {(table, chain) for table, chain, _rules in want_chains}
    for table, chain, _rules in have_chains:
        if (table, chain) not in wanted:
            commands += [["-t", table, "-F", chain], ["-t", table, "-X", chain]]
    return commands + [["-t", table, "-A", parent] + list(rule) for table, parent, rule in missing_jumps]


def mapped_elsewhere(tables, mapping):
    """(option, other address) when another mapping of this module already maps NEW or OLD, else None."""
    chains = mapping.chains()
    # (option, chain prefix, the rule's start when it maps our address, the target option holding the other one)
    shapes = (("address", "dnat", ["-d", mapping.address + "/32"], "--to-destination"),
              ("guest_address", "snat", ["-s", mapping.guest_address + "/32"], "--to-source"))
    for chain, rules in tables.get("nat", {}).items():
        for option, role, start, target in shapes:
            if chain.startswith(CHAIN_PREFIXES[role]) and chain != chains[role]:
                for rule in rules:
                    if rule[:2] == start and rule[-2] == target:
                        return option, rule[-1]
    return None


# ---------------------------------------------------------------------------------------------------------
# The host


@dataclass
class Host:
    """What a run reads of the host before it decides anything."""

    links: dict  # name -> {up, mac} of every interface
    addresses: list  # [(ifname, IPv4Interface)] of every interface
    routes: list  # [{dst, ifname, prefsrc, proto}] of the IPv4 /32 routes of the main table
    rules: list  # [(priority, fwmark, fwmask)] of this module's rules from OLD
    tables: dict  # iptables -S of TABLES, parsed


def _ipv4_addresses(ipr, names):
    found = []
    for msg in _dump("listing IPv4 addresses", ipr.get_addr, family=socket.AF_INET):
        # IFA_LOCAL is the interface's own address on point-to-point links, where IFA_ADDRESS is the peer's.
        address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        found.append((names.get(msg["index"]), ipaddress.IPv4Interface("%s/%d" % (address, msg["prefixlen"]))))
    return found


def _host_routes(ipr, names):
    routes = []
    for msg in _dump("listing IPv4 routes", ipr.get_routes, family=socket.AF_INET, table=MAIN_TABLE):
        if msg["dst_len"] != 32 or (msg.get_attr("RTA_TABLE") or msg["table"]) != MAIN_TABLE:
            continue
        routes.append({"dst": msg.get_attr("RTA_DST"), "ifname": names.get(msg.get_attr("RTA_OIF")),
                       "prefsrc": msg.get_attr("RTA_PREFSRC"), "proto": msg["proto"]})
    return routes


def _mapping_rules(ipr, guest_address):
    rules = []
    for msg in _dump("listing IPv4 policy rules", ipr.get_rules, family=socket.AF_INET):
        if (msg.get_attr("FRA_PROTOCOL") == ROUTE_PROTO and msg["src_len"] == 32
                and msg.get_attr("FRA_SRC") == guest_address):
            rules.append((msg.get_attr("FRA_PRIORITY") or 0, msg.get_attr("FRA_FWMARK") or 0,
                          msg.get_attr("FRA_FWMASK") or 0))
    return sorted(rules)


def read_host(ipr, iptables, mapping):
    links = _dump("listing interfaces", ipr.get_links)
    names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in links}
    return Host(
        links={msg.get_attr("IFLA_IFNAME"): {"up": bool(msg["flags"] & IFF_UP), "mac": msg.get_attr("IFLA_ADDRESS")}
               for msg in links},
        addresses=_ipv4_addresses(ipr, names),
        routes=_host_routes(ipr, names),
        rules=_mapping_rules(ipr, mapping.guest_address),
        tables=iptables.tables(),
    )


def _read_sysctl(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError as error:
        raise VirtError("reading %s: %s" % (path, error.strerror)) from None


def check_forwarding(interfaces):
    """VirtError unless IPv4 forwarding is on, on the host and on ``interfaces``: this module does not change
    sysctls, which belong to the host's configuration."""
    if _read_sysctl(FORWARDING_SYSCTL) != "1":
        raise VirtError("IPv4 forwarding is off on this host (net.ipv4.ip_forward = 0), and the mapped traffic "
                        "must be forwarded; turn it on first (for example with ansible.posix.sysctl)")
    for ifname in interfaces:
        if _read_sysctl(INTERFACE_FORWARDING_SYSCTL % ifname) != "1":
            raise VirtError("IPv4 forwarding is off on interface '%s' (net.ipv4.conf.%s.forwarding = 0); turn it "
                            "on first" % (ifname, ifname.replace(".", "/")))


def _our_route(host, mapping):
    return next((route for route in host.routes
                 if route["dst"] == mapping.guest_address and route["proto"] == ROUTE_PROTO), None)


def _where(host, address):
    return ["%s on '%s'" % (interface.with_prefixlen, ifname) for ifname, interface in host.addresses
            if str(interface.ip) == address]


def validate_present(host, mapping):
    """Check the mapping against the host; return the name of the interface whose subnet holds NEW."""
    bridge = host.links.get(mapping.bridge)
    if bridge is None:
        raise InvalidOption("bridge", "interface '%s' does not exist" % mapping.bridge)
    if not bridge["up"]:
        raise InvalidOption("bridge", "interface '%s' is down; the guest cannot be reached through it" % mapping.bridge)
    new = ipaddress.IPv4Address(mapping.address)
    # NEW as the /32 this module adds (on the same or another interface) is the mapping's own.
    taken = [where for where in _where(host, mapping.address) if not where.startswith(mapping.address + "/32 ")]
    if taken:
        raise InvalidOption("address", "%s is already an address of this host (%s)" % (new, ", ".join(taken)))
    subnets = [(ifname, interface) for ifname, interface in host.addresses
               if interface.network.prefixlen < 32 and new in interface.network]
    if not subnets:
        raise InvalidOption("address", "%s is in no subnet of this host's interfaces; the new address must be one of "
                                       "a subnet this host is on, so that its LAN can reach it" % new)
    lan, interface = subnets[0]
    if interface.network.prefixlen < 31 and new in (interface.network.network_address,
                                                    interface.network.broadcast_address):
        raise InvalidOption("address", "%s is the %s address of %s on '%s'" % (
            new, "network" if new == interface.network.network_address else "broadcast", interface.network, lan))
    taken = _where(host, mapping.guest_address)
    if taken:
        raise InvalidOption("guest_address", "%s is an address of this host (%s), not of a guest" % (
            mapping.guest_address, ", ".join(taken)))
    foreign = [route for route in host.routes
               if route["dst"] == mapping.guest_address and route["proto"] != ROUTE_PROTO]
    if foreign:
        raise InvalidOption("guest_address", "this host already routes %s/32 (dev %s), and not through this module; "
                                             "remove that route first" % (mapping.guest_address, foreign[0]["ifname"]))
    if mapping.gateway is not None:
        taken = [where for where in _where(host, mapping.gateway)
                 if where != "%s/32 on '%s'" % (mapping.gateway, mapping.bridge)]
        if taken:
            raise InvalidOption("gateway", "%s is already an address of this host (%s); it can only be added to "
                                           "'%s' as a /32" % (mapping.gateway, ", ".join(taken), mapping.bridge))
    other = mapped_elsewhere(host.tables, mapping)
    if other is not None:
        option, address = other
        raise InvalidOption(option, "%s is already mapped to %s by another address_map; remove that mapping first" % (
            getattr(mapping, option), address))
    check_forwarding(sorted({mapping.bridge, lan}))
    return lan


# ---------------------------------------------------------------------------------------------------------
# State: what the mapping consists of, as it is and as it should be


def current_state(host, mapping):
    """The mapping's part of the host: gateway_addresses and addresses as sorted [(address, ifname)] of /32s,
    route as (ifname, prefsrc) or None, rules as sorted [(priority, fwmark, fwmask)], iptables as (chains, jumps)."""
    slash32 = {(str(interface.ip), ifname) for ifname, interface in host.addresses if interface.network.prefixlen == 32}
    route = _our_route(host, mapping)
    gateways = {(mapping.gateway, mapping.bridge)} if mapping.gateway else set()
    if route is not None and route["prefsrc"]:
        # The gateway of an earlier run, when the option changed since.
        gateways.add((route["prefsrc"], route["ifname"]))
    return {
        "gateway_addresses": sorted(gateways & slash32),
        "route": (route["ifname"], route["prefsrc"]) if route is not None else None,
        "rules": list(host.rules),
        "iptables": current_iptables(host.tables, mapping),
        "addresses": sorted(pair for pair in slash32 if pair[0] == mapping.address),
    }


def _shared(host, mapping, gateway_address):
    """Whether another guest mapped onto the same interface uses ``gateway_address`` (the prefsrc of its route)."""
    address, ifname = gateway_address
    return any(route["proto"] == ROUTE_PROTO and route["dst"] != mapping.guest_address
               and (route["prefsrc"], route["ifname"]) == (address, ifname) for route in host.routes)


def desired_state(host, mapping, current, lan):
    """The state ``current`` must become: the mapping present when ``lan`` (the interface of NEW) is given,
    absent when it is None. A gateway another mapped guest still uses stays either way."""
    gateways = {pair for pair in current["gateway_addresses"] if _shared(host, mapping, pair)}
    if lan is None:
        return {"gateway_addresses": sorted(gateways), "route": None, "rules": [], "iptables": ([], []),
                "addresses": []}
    if mapping.gateway is not None:
        gateways.add((mapping.gateway, mapping.bridge))
    return {
        "gateway_addresses": sorted(gateways),
        "route": (mapping.bridge, mapping.gateway),
        "rules": [(mapping.rule_priority, mapping.mark, mapping.mark)],
        "iptables": (wanted_chains(mapping), wanted_jumps(mapping)),
        "addresses": [(mapping.address, lan)],
    }


def render(state, mapping):
    """A state as --diff shows it: each item the way ``ip`` and ``iptables -S`` write it."""
    route = state["route"]
    chains, jumps = state["iptables"]
    lines = []
    for table, chain, rules in chains:
        lines.append("-t %s -N %s" % (table, chain))
        lines.extend("-t %s -A %s %s" % (table, chain, shlex.join(rule)) for rule in rules)
    lines.extend("-t %s -A %s %s" % (table, parent, shlex.join(rule)) for table, parent, rule in jumps)
    return {
        "gateway_addresses": ["%s/32 dev %s" % pair for pair in state["gateway_addresses"]],
        "route": None if route is None else "%s/32 dev %s scope link%s" % (
            mapping.guest_address, route[0], " src %s" % route[1] if route[1] else ""),
        "rules": ["from %s fwmark 0x%x/0x%x lookup main priority %d" % (mapping.guest_address, fwmark, fwmask, priority)
                  for priority, fwmark, fwmask in state["rules"]],
        "iptables": lines,
        "addresses": ["%s/32 dev %s" % pair for pair in state["addresses"]],
    }


# ---------------------------------------------------------------------------------------------------------
# Changes


def _route_spec(ipr, mapping, ifname, prefsrc):
    spec = {"dst": mapping.guest_address, "dst_len": 32, "table": MAIN_TABLE, "proto": ROUTE_PROTO,
            "scope": RT_SCOPE_LINK, "family": socket.AF_INET, "oif": link_index(ipr, ifname)}
    if prefsrc:
        spec["prefsrc"] = prefsrc
    return spec


def set_route(ipr, mapping, route):
    """Create or overwrite the mapping's route to OLD/32 (``route``: (ifname, prefsrc))."""
    ifname, prefsrc = route
    return _change("setting route %s/32 dev '%s'" % (mapping.guest_address, ifname), ipr.route, "replace",
                   **_route_spec(ipr, mapping, ifname, prefsrc))


def remove_route(ipr, mapping):
    return _change("removing route %s/32" % mapping.guest_address, ipr.route, "del", dst=mapping.guest_address,
                   dst_len=32, table=MAIN_TABLE, proto=ROUTE_PROTO, scope=RT_SCOPE_LINK, family=socket.AF_INET)


def _rule_spec(mapping, rule):
    priority, fwmark, fwmask = rule
    return {"src": mapping.guest_address, "src_len": 32, "fwmark": fwmark, "fwmask": fwmask, "table": MAIN_TABLE,
            "priority": priority, "protocol": ROUTE_PROTO, "family": socket.AF_INET}


def add_rule(ipr, mapping, rule):
    return _change("adding rule from %s priority %d" % (mapping.guest_address, rule[0]), ipr.rule, "add",
                   **_rule_spec(mapping, rule))


def remove_rule(ipr, mapping, rule):
    return _change("removing rule from %s priority %d" % (mapping.guest_address, rule[0]), ipr.rule, "del",
                   **_rule_spec(mapping, rule))


def _address_steps(change, pairs, unless):
    """``change`` (add_address or remove_address) of each /32 of ``pairs`` that is not in ``unless``."""
    return [functools.partial(change, ifname=ifname, address=address + "/32")
            for address, ifname in pairs if (address, ifname) not in unless]


def plan(current, desired, mapping, iptables):
    """The steps (callables taking the IPRoute) from ``current`` to ``desired``, in an order that keeps every step
    valid: a route's prefsrc must be an address, a jump needs its chain; NEW comes last and goes first, so that it
    never takes connections for this host itself."""
    steps = _address_steps(add_address, desired["gateway_addresses"], current["gateway_addresses"])
    steps += _address_steps(remove_address, current["addresses"], desired["addresses"])
    if desired["route"] is None and current["route"] is not None:
        steps.append(functools.partial(remove_route, mapping=mapping))
    elif desired["route"] != current["route"]:
        steps.append(functools.partial(set_route, mapping=mapping, route=desired["route"]))
    steps += [functools.partial(remove_rule, mapping=mapping, rule=rule)
              for rule in current["rules"] if rule not in desired["rules"]]
    steps += [functools.partial(add_rule, mapping=mapping, rule=rule)
              for rule in desired["rules"] if rule not in current["rules"]]
    commands = iptables_commands(current["iptables"], desired["iptables"])
    if commands:
        steps.append(lambda _ipr: iptables.apply(commands))
    steps += _address_steps(add_address, desired["addresses"], current["addresses"])
    steps += _address_steps(remove_address, current["gateway_addresses"], desired["gateway_addresses"])
    return steps


# ---------------------------------------------------------------------------------------------------------
# Gratuitous ARP


def _mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def arp_frame(mac, address, operation):
    """An Ethernet frame announcing that ``address`` is at ``mac``: a gratuitous ARP request (target MAC zero, as
    RFC 5227 has it) or reply (target MAC broadcast, which Linux needs to take a reply as gratuitous)."""
    sender = _mac_bytes(mac)
    ip = ipaddress.IPv4Address(address).packed
    target_mac = BROADCAST_MAC if operation == ARP_REPLY else b"\x00" * 6
    frame = BROADCAST_MAC + sender + struct.pack("!H", ETH_P_ARP)
    frame += struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, operation) + sender + ip + target_mac + ip
    return frame.ljust(ETH_MIN_FRAME, b"\x00")


def announce(targets, rounds=ANNOUNCE_ROUNDS, interval=ANNOUNCE_INTERVAL):
    """Send a gratuitous ARP request and reply for each (ifname, mac, address) of ``targets``, ``rounds`` times:
    a neighbour that already has an entry for the address takes the new MAC at once (one that has none is not
    bothered: it asks when it needs to)."""
    for ifname, mac, address in targets:
        frames = [arp_frame(mac, address, operation) for operation in (ARP_REQUEST, ARP_REPLY)]
        try:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
                sock.bind((ifname, 0))
                for number in range(rounds):
                    if number:
                        time.sleep(interval)
                    for frame in frames:
                        sock.send(frame)
        except OSError as error:
            raise VirtError("announcing %s on '%s' by gratuitous ARP: %s" % (
                address, ifname, error.strerror or error)) from None


def announcements(host, mapping, lan):
    """(ifname, mac, address) to announce: the gateway on the bridge and NEW on its interface, where these have a
    MAC (ARP is only spoken on Ethernet-like links)."""
    wanted = [(mapping.bridge, mapping.gateway), (lan, mapping.address)]
    targets = []
    for ifname, address in wanted:
        mac = (host.links.get(ifname) or {}).get("mac")
        if address is not None and mac and len(_mac_bytes(mac)) == 6:
            targets.append((ifname, mac, address))
    return targets


# ---------------------------------------------------------------------------------------------------------
# The run


def _iptables(module):
    if os.geteuid() != 0:
        raise VirtError("changing routes, addresses and iptables rules needs root (become: true)")
    binary = module.get_bin_path("iptables")
    if not binary:
        raise VirtError("iptables is not installed on the host that runs the module")
    return Iptables(binary, module.run_command, TABLES)


def ensure_address_map(module):
    """The module's run: the result dict (mapping, announced, changed, diff)."""
    params = module.params
    mapping = mapping_from_params(params)
    present = params["state"] == "present"
    iptables = _iptables(module)
    changes = Changes(module)
    announced = False
    with open_ipr() as ipr:
        host = read_host(ipr, iptables, mapping)
        lan = validate_present(host, mapping) if present else None
        before = current_state(host, mapping)
        desired = desired_state(host, mapping, before, lan)
        for step in plan(before, desired, mapping, iptables):
            changes.act(step, ipr)
        after = desired if changes.check_mode else current_state(read_host(ipr, iptables, mapping), mapping)
        if present and params["announce"] and not changes.check_mode:
            targets = announcements(host, mapping, lan)
            announce(targets)
            announced = bool(targets)
    changes.diff(render(before, mapping), render(after, mapping))
    result = {"address": mapping.address, "guest_address": mapping.guest_address, "bridge": mapping.bridge,
              "gateway": mapping.gateway, "mark": mapping.mark, "rule_priority": mapping.rule_priority,
              "state": params["state"]}
    return changes.result({"mapping": result, "announced": announced})
