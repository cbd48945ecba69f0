# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tunnel module's run: an IP tunnel to another site (vxlan, gre, ipip, ip6gre, ip6tnl), the routes that send
traffic into it, the policy rules that send replies back through it, and the iptables rules that keep what enters
it from being NATed and its TCP segments small enough for it.

What the module makes is marked, so that it finds its own again and leaves everything else alone:

- routes, in any table, carry the routing protocol number ``RTPROT_TUNNEL`` and leave through the tunnel;
- policy rules carry the same protocol number and look up a table that holds the tunnel's reply routes (or the
  ``reply_table`` asked for, when no other tunnel's reply routes are in it);
- iptables chains (nat and mangle, IPv4 and IPv6) are named after a hash of the tunnel's name, ``ATV_TUN_<hash>``.

Every option is checked first, against the host too; the change is then a list of steps that each say whether
they changed something, which check mode predicts instead of running.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import ipaddress
import os
import re
import socket
import struct
import time

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._iptables import Iptables, jumps_to, sync_chain, sync_jump
from ansible_collections.arctictern.virt.plugins.module_utils._netlink import (
    MAIN_TABLE, NetlinkError, _change, _dump, _failure, _kind, _link_msg, add_address, addresses, link_info,
    open_ipr, remove_address, remove_link, set_mtu, set_up,
)

KINDS = ("vxlan", "gre", "ipip", "ip6gre", "ip6tnl")
GRE_KINDS = ("gre", "ip6gre")
# The IP version of the underlay of each kind; vxlan runs over either.
UNDERLAY_VERSION = {"gre": 4, "ipip": 4, "ip6gre": 6, "ip6tnl": 6}
# Bytes each kind puts around an inner packet: the outer IP header and the encapsulation (for vxlan also the inner
# Ethernet header). A GRE key adds GRE_KEY_BYTES.
OVERHEAD = {("vxlan", 4): 50, ("vxlan", 6): 70, ("gre", 4): 24, ("ipip", 4): 20, ("ip6gre", 6): 44, ("ip6tnl", 6): 40}
GRE_KEY_BYTES = 4
# The GRE header flag that says a key follows (GRE_KEY of linux/if_tunnel.h, in network byte order on the wire).
GRE_KEY = 0x2000
# IP6_TNL_F_IGN_ENCAP_LIMIT: no encapsulation limit option in the outer IPv6 header, whose 8 bytes the inner
# packets would otherwise lose (the overheads above count without it).
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1
VNI_RANGE = (1, 2 ** 24 - 1)
KEY_RANGE = (0, 2 ** 32 - 1)
PORT_RANGE = (1, 65535)
TABLE_RANGE = (1, 2 ** 32 - 1)
# Tables the kernel fills itself (253 default, 255 local); main (254) would make the reply routes everyone's.
KERNEL_TABLES = {253: "default", 255: "local"}
# 0 is the rule of the local table, 32766 and 32767 those of main and default.
RULE_PRIORITY_RANGE = (1, 32765)
# The routing protocol number of the routes and rules the module makes (free in iproute2's rt_protos).
RTPROT_TUNNEL = 171
RTN_UNICAST, RTN_LOCAL = 1, 2
# Devices the kernel makes by itself when a tunnel driver loads; they can be neither made nor deleted.
FALLBACK_DEVICES = ("tunl0", "gre0", "gretap0", "erspan0", "ip6tnl0", "ip6gre0", "ip6gretap0", "sit0", "ip_vti0",
                    "ip6_vti0")
# The name ends up in iptables rules: '+' is a wildcard there, quotes and '!' change how a rule reads.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
IPTABLES_BINARIES = ("iptables", "ip6tables")
IPTABLES_TABLES = ("nat", "mangle")


# ---------------------------------------------------------------------------------------------------------
# Options


def _int_in(option, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(option, "must be an integer from %d to %d, not %r" % (low, high, value))
    return value


def _table(option, value):
    _int_in(option, value, *TABLE_RANGE)
    if value in KERNEL_TABLES:
        raise InvalidOption(option, "table %d is the kernel's %s table" % (value, KERNEL_TABLES[value]))
    return value


def _prefix(option, value):
    """A network from 'address/prefix' or a bare address (one host), without host bits."""
    try:
        return ipaddress.ip_network(str(value))
    except ValueError as error:
        raise InvalidOption(option, "%r is not an address or a network address/prefix: %s" % (value, error)) from None


def _sorted_addresses(items):
    """IPv4 before IPv6, then in address order: how the module lists interfaces and networks."""
    return sorted(items, key=lambda item: (item.version, item))


def validate_options(params):
    """The options checked on their own (nothing of the host is read yet); returns the wanted tunnel as a dict.

    Keys: name, kind, version (of the underlay), local, remote, vni, key, port, underlay, mtu, addresses
    (interfaces), peer, routes and reply_from (networks), route_table, reply_table, rule_priority, mss_clamp.
    """
    name = _validate.interface_name("name", params["name"])
    if not NAME_RE.fullmatch(name):
        raise InvalidOption("name", "%r must be made of letters, digits, '.', '-' and '_' (it is used in iptables "
                                    "rules), starting with a letter or digit" % name)
    if name in FALLBACK_DEVICES:
        raise InvalidOption("name", "'%s' is the kernel's own fallback tunnel device" % name)
    if params["underlay"] is not None:
        _validate.interface_name("underlay", params["underlay"])
        if params["underlay"] == name:
            raise InvalidOption("underlay", "must not be the tunnel itself ('%s')" % name)
    if params["state"] == "absent":
        return {"name": name}
    kind = params["kind"]
    local = _validate.ip_address("local", params["local"], version=UNDERLAY_VERSION.get(kind))
    remote = _validate.ip_address("remote", params["remote"], version=local.version)
    if remote == local:
        raise InvalidOption("remote", "must not be the local address %s" % local)
    want = {"name": name, "kind": kind, "version": local.version, "local": str(local), "remote": str(remote),
            "vni": None, "key": None, "port": None, "underlay": params["underlay"], "mtu": params["mtu"],
            "route_table": _table("route_table", params["route_table"]),
            "reply_table": _table("reply_table", params["reply_table"]),
            "rule_priority": _int_in("rule_priority", params["rule_priority"], *RULE_PRIORITY_RANGE),
            "mss_clamp": params["mss_clamp"]}
    if want["reply_table"] == MAIN_TABLE:
        raise InvalidOption("reply_table", "must not be the main table (254): the reply routes would send "
                                           "everything into the tunnel")
    if kind == "vxlan":
        if params["vni"] is None:
            raise InvalidOption("vni", "is required with kind=vxlan")
        want["vni"] = _int_in("vni", params["vni"], *VNI_RANGE)
        want["port"] = _int_in("port", params["port"], *PORT_RANGE)
    elif kind in GRE_KINDS and params["key"] is not None:
        want["key"] = _int_in("key", params["key"], *KEY_RANGE)
    if params["mtu"] is not None:
        _int_in("mtu", params["mtu"], _validate.MTU_RANGE[0], _validate.MTU_RANGE[1])
    want["addresses"] = _sorted_addresses(
        {_validate.ip_interface("address", value) for value in params["address"] or ()})
    want["routes"] = _sorted_addresses({_prefix("routes", value) for value in params["routes"] or ()})
    want["reply_from"] = _sorted_addresses({_prefix("reply_from", value) for value in params["reply_from"] or ()})
    want["peer"] = None if params["peer"] is None else _validate.ip_address("peer", params["peer"])
    _check_peer(want)
    for network in want["routes"]:
        if remote in network:
            raise InvalidOption("routes", "%s holds the remote %s: the tunnel's own packets would go into the "
                                          "tunnel" % (network, remote))
    return want


def _check_peer(want):
    peer, addrs = want["peer"], want["addresses"]
    if peer is not None:
        if peer in {interface.ip for interface in addrs}:
            raise InvalidOption("peer", "%s is an address of the tunnel itself" % peer)
        if not any(peer in interface.network for interface in addrs if interface.version == peer.version):
            raise InvalidOption("peer", "%s is not inside the subnet of any address of the tunnel (%s), so it is no "
                                        "next hop through it" % (peer, ", ".join(map(str, addrs)) or "none given"))
    if want["kind"] != "vxlan":
        return
    # vxlan carries Ethernet frames: a next hop must be an address that answers ARP or NDP across the tunnel.
    for option in ("routes", "reply_from"):
        for network in want[option]:
            if peer is None or peer.version != network.version:
                raise InvalidOption("peer", "kind=vxlan needs the far end's inner IPv%d address as next hop for %s "
                                            "%s" % (network.version, option, network))


def _gateway(want, version):
    """The next hop of routes of IP ``version`` through the tunnel: the peer, or None (the device only)."""
    peer = want["peer"]
    return str(peer) if peer is not None and peer.version == version else None


def wanted_routes(want):
    """{(table, destination, gateway)} of the routes the tunnel must have, the reply routes included."""
    routes = {(want["route_table"], str(network), _gateway(want, network.version)) for network in want["routes"]}
    for version in {network.version for network in want["reply_from"]}:
        default = "0.0.0.0/0" if version == 4 else "::/0"
        routes.add((want["reply_table"], default, _gateway(want, version)))
    return routes


def wanted_rules(want):
    """{(source, table, priority)} of the policy rules the tunnel must have."""
    return {(str(network), want["reply_table"], want["rule_priority"]) for network in want["reply_from"]}


# ---------------------------------------------------------------------------------------------------------
# Netlink: the tunnel, routes and rules


def _info_data(msg):
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    data = linkinfo.get_attr("IFLA_INFO_DATA") if linkinfo is not None else None
    return data.get_attr if data is not None and hasattr(data, "get_attr") else (lambda _name: None)


def _text(address):
    return str(ipaddress.ip_address(address)) if address else None


def tunnel_identity(ipr, msg):
    """What a tunnel is (kind, local, remote, vni, key, port, underlay): what cannot change without a new device."""
    kind = _kind(msg)
    get = _info_data(msg)
    vni = key = port = None
    if kind == "vxlan":
        local = get("IFLA_VXLAN_LOCAL") or get("IFLA_VXLAN_LOCAL6")
        remote = get("IFLA_VXLAN_GROUP") or get("IFLA_VXLAN_GROUP6")
        vni, port, link = get("IFLA_VXLAN_ID"), get("IFLA_VXLAN_PORT"), get("IFLA_VXLAN_LINK")
    else:
        prefix = {"gre": "IFLA_GRE_", "ip6gre": "IFLA_IP6GRE_", "ipip": "IFLA_IPIP_", "ip6tnl": "IFLA_IP6TNL_"}[kind]
        local, remote, link = get(prefix + "LOCAL"), get(prefix + "REMOTE"), get(prefix + "LINK")
        if kind in GRE_KINDS:
            flags = get(prefix + "IFLAGS") or 0
            # pyroute2 reads gre's flags in network byte order and ip6gre's in host order.
            if kind == "ip6gre":
                flags = socket.ntohs(flags)
            key = get(prefix + "IKEY") if flags & GRE_KEY else None
    underlay = _link_msg(ipr, index=link) if link else None
    return {"kind": kind, "local": _text(local), "remote": _text(remote), "vni": vni, "key": key, "port": port,
            "underlay": underlay.get_attr("IFLA_IFNAME") if underlay is not None else None}


def _link_spec(want, underlay_index):
    """The pyroute2 keywords that create the wanted tunnel."""
    kind, six = want["kind"], want["version"] == 6
    spec = {"ifname": want["name"], "kind": kind, "mtu": want["mtu"]}
    if kind == "vxlan":
        spec.update(vxlan_id=want["vni"], vxlan_port=want["port"], vxlan_link=underlay_index)
        spec["vxlan_local6" if six else "vxlan_local"] = want["local"]
        spec["vxlan_group6" if six else "vxlan_group"] = want["remote"]
        return spec
    prefix = kind + "_"
    spec.update({prefix + "local": want["local"], prefix + "remote": want["remote"], prefix + "link": underlay_index})
    if kind in GRE_KINDS and want["key"] is not None:
        # pyroute2 writes gre's flags in network byte order and ip6gre's in host order.
        flags = GRE_KEY if kind == "gre" else socket.htons(GRE_KEY)
        for direction in ("i", "o"):
            spec.update({prefix + direction + "key": want["key"], prefix + direction + "flags": flags})
    if kind in ("ip6gre", "ip6tnl"):
        spec[prefix + "flags"] = IP6_TNL_F_IGN_ENCAP_LIMIT
    if kind == "ip6tnl":
        # Protocol 0: IPv4 and IPv6 inside (the kernel's "any"), not only IPv6.
        spec["ip6tnl_proto"] = 0
    return spec


def create_tunnel(ipr, want):
    """Create the wanted tunnel device (down; ``set_up`` brings it up)."""
    underlay = _link_msg(ipr, want["underlay"])
    if underlay is None:
        raise InvalidOption("underlay", "interface '%s' does not exist" % want["underlay"])
    try:
        ipr.link("add", **_link_spec(want, underlay["index"]))
    except NetlinkError as error:
        if error.code == errno.EOPNOTSUPP:
            raise InvalidOption("kind", "this kernel has no support for %s tunnels (%s: Unknown device type)"
                                % (want["kind"], os.strerror(error.code)), errno=error.code) from None
        raise _failure("creating %s tunnel '%s'" % (want["kind"], want["name"]), error) from None
    return True


def _network_of(msg, attr, length):
    address = msg.get_attr(attr) or ("::" if msg["family"] == socket.AF_INET6 else "0.0.0.0")
    return str(ipaddress.ip_network("%s/%d" % (address, length), strict=False))


def read_routes(ipr):
    """Every unicast route of every table, both families: dicts with table, dst, gateway, oif, proto, metric."""
    routes = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for msg in _dump("listing routes", ipr.get_routes, family=family):
            if msg["family"] != family or msg["type"] != RTN_UNICAST:
                continue
            routes.append({"table": msg.get_attr("RTA_TABLE") or msg["table"],
                           "dst": _network_of(msg, "RTA_DST", msg["dst_len"]),
                           "gateway": _text(msg.get_attr("RTA_GATEWAY")), "oif": msg.get_attr("RTA_OIF"),
                           "proto": msg["proto"], "metric": msg.get_attr("RTA_PRIORITY") or 0})
    return routes


def read_rules(ipr):
    """The policy rules the module made on any tunnel (its protocol number): dicts with src, table, priority."""
    rules = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for msg in _dump("listing policy rules", ipr.get_rules, family=family):
            if msg["family"] != family or msg.get_attr("FRA_PROTOCOL") != RTPROT_TUNNEL:
                continue
            rules.append({"src": _network_of(msg, "FRA_SRC", msg["src_len"]),
                          "table": msg.get_attr("FRA_TABLE") or msg["table"],
                          "priority": msg.get_attr("FRA_PRIORITY") or 0})
    return rules


def _default_metric(version):
    # IPv6 stores metric 0 as 1024 (IP6_RT_PRIO_USER).
    return 1024 if version == 6 else 0


def add_route(ipr, name, route):
    """Add route ``(table, dst, gateway)`` out of tunnel ``name``, marked as the module's."""
    table, dst, gateway = route
    network = ipaddress.ip_network(dst)
    spec = {"dst_len": network.prefixlen, "table": table, "proto": RTPROT_TUNNEL,
            "family": socket.AF_INET6 if network.version == 6 else socket.AF_INET,
            "oif": _link_msg(ipr, name)["index"], "priority": _default_metric(network.version)}
    if network.prefixlen:
        spec["dst"] = str(network.network_address)
    if gateway is not None:
        spec["gateway"] = gateway
    return _change("adding route %s%s dev '%s' table %d" % (dst, " via %s" % gateway if gateway else "", name, table),
                   ipr.route, "add", **spec)


def remove_route(ipr, route):
    """Remove one of the module's routes (a dict of ``read_routes``); False when it is gone."""
    network = ipaddress.ip_network(route["dst"])
    spec = {"dst_len": network.prefixlen, "table": route["table"], "proto": RTPROT_TUNNEL, "oif": route["oif"],
            "family": socket.AF_INET6 if network.version == 6 else socket.AF_INET, "priority": route["metric"]}
    if network.prefixlen:
        spec["dst"] = str(network.network_address)
    if route["gateway"] is not None:
        spec["gateway"] = route["gateway"]
    return _change("removing route %s table %d" % (route["dst"], route["table"]), ipr.route, "del",
                   ignore=(errno.ESRCH, errno.ENODEV), **spec)


def _rule_spec(rule):
    network = ipaddress.ip_network(rule["src"])
    return {"family": socket.AF_INET6 if network.version == 6 else socket.AF_INET, "src": str(network.network_address),
            "src_len": network.prefixlen, "table": rule["table"], "priority": rule["priority"],
            "protocol": RTPROT_TUNNEL}


def add_rule(ipr, rule):
    """Add policy rule ``from src lookup table priority p``, marked as the module's."""
    return _change("adding rule from %s lookup %d priority %d" % (rule["src"], rule["table"], rule["priority"]),
                   ipr.rule, "add", ignore=(errno.EEXIST,), **_rule_spec(rule))


def remove_rule(ipr, rule):
    """Remove one of the module's policy rules; False when it is gone."""
    return _change("removing rule from %s lookup %d priority %d" % (rule["src"], rule["table"], rule["priority"]),
                   ipr.rule, "del", ignore=(errno.ENOENT,), **_rule_spec(rule))


def _rule_key(rule):
    return (rule["src"], rule["table"], rule["priority"])


def _route_key(route):
    return (route["table"], route["dst"], route["gateway"])


def _is_local_address(ipr, address):
    for msg in _dump("listing addresses", ipr.get_addr):
        own = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if own and ipaddress.ip_address(own) == address:
            return True
    return False


def _route_to(ipr, remote, underlay_index):
    """(interface index, route type) of the route the kernel picks to ``remote``; InvalidOption(remote) without."""
    query = {"dst": str(remote)}
    if underlay_index is not None:
        query["oif"] = underlay_index
    try:
        msg = ipr.route("get", **query)[0]
    except NetlinkError as error:
        raise InvalidOption("remote", "no route to %s%s: %s" % (
            remote, "" if underlay_index is None else " through the underlay", os.strerror(error.code))) from None
    return msg.get_attr("RTA_OIF"), msg["type"]


# ---------------------------------------------------------------------------------------------------------
# iptables


def chain_name(name):
    """The name of the tunnel's own chains (in nat and mangle): a hash, never the user's string."""
    return "ATV_TUN_" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]


# Rules are written as `iptables -S` prints them back, so that comparing them is comparing lists.
def exempt_rule(name):
    """nat POSTROUTING: what leaves into the tunnel keeps its addresses (no SNAT or MASQUERADE after it).

    Only a connection's first packet (NEW, or RELATED) passes the nat table, so the state match changes nothing of
    what the rule matches; it makes the kernel track connections in this namespace, which it does only once some
    rule needs it, so that arctictern.virt.connections can count those that still go through the tunnel."""
    return ["-o", name, "-m", "conntrack", "--ctstate", "NEW,RELATED", "-j", "ACCEPT"]


def clamp_rule(name):
    """mangle FORWARD: SYNs into the tunnel announce an MSS that fits its MTU (the route's PMTU)."""
    return ["-o", name, "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS",
            "--clamp-mss-to-pmtu"]


def _firewall_parts(name):
    """(table, parent chain, rule in the tunnel's chain) of each part."""
    return (("nat", "POSTROUTING", exempt_rule(name)), ("mangle", "FORWARD", clamp_rule(name)))


def _remove_chain(tables, table, chain):
    commands = [["-t", table, "-D", parent] + rule for parent, rules in tables.get(table, {}).items()
                if parent != chain for rule in rules if jumps_to(rule, chain)]
    if chain in tables.get(table, {}):
        commands += [["-t", table, "-F", chain], ["-t", table, "-X", chain]]
    return commands


def firewall_commands(tables, name, exempt, clamp):
    """The iptables argument lists that give one family's ``tables`` (``{table: parse_rules(...)}``) the NAT exemption
    and the MSS clamp of tunnel ``name`` as asked (False: removed); empty when they already are."""
    chain = chain_name(name)
    commands = []
    for (table, parent, rule), wanted in zip(_firewall_parts(name), (exempt, clamp)):
        if wanted:
            commands += sync_chain(tables, table, chain, [rule])
            # First: ahead of SNAT rules (NAT) and of other rules that end the table's processing (mangle).
            commands += sync_jump(tables, table, parent, ["-j", chain], True)
        else:
            commands += _remove_chain(tables, table, chain)
    return commands


def firewall_state(tables, name):
    """(exempt, clamp): whether one family's tables hold each part, jump included."""
    chain = chain_name(name)
    return tuple(rule in tables.get(table, {}).get(chain, ()) and ["-j", chain] in tables.get(table, {}).get(parent, ())
                 for table, parent, rule in _firewall_parts(name))


def iptables_of(module):
    """Iptables for IPv4 and IPv6 on the host that runs the module."""
    found = []
    for binary in IPTABLES_BINARIES:
        path = module.get_bin_path(binary)
        if path is None:
            raise VirtError("%s is not installed on the host that runs the module; the tunnel needs it for its NAT "
                            "exemption and MSS clamp" % binary)
        found.append(Iptables(path, module.run_command, IPTABLES_TABLES))
    return found


# ---------------------------------------------------------------------------------------------------------
# The host's state


class HostState:
    """What the host has of one tunnel: the device, its addresses, the module's routes and rules, iptables."""

    def __init__(self, ipr, iptables, name, reply_table):
        self.name = name
        msg = _link_msg(ipr, name)
        self.kind = _kind(msg) if msg is not None else None
        self.link = link_info(ipr, name) if msg is not None else None
        if self.link is not None and self.kind not in KINDS:
            raise InvalidOption("name", "interface '%s' exists and is a %s, not a tunnel of a kind this module "
                                        "manages (%s)" % (name, self.kind or "plain device", ", ".join(KINDS)))
        self.identity = tunnel_identity(ipr, msg) if self.link is not None else None
        self.addresses = addresses(ipr, name) if self.link is not None else []
        index = self.link["index"] if self.link is not None else None
        self.all_routes = read_routes(ipr)
        self.routes = [route for route in self.all_routes
                       if route["proto"] == RTPROT_TUNNEL and index is not None and route["oif"] == index]
        self.rules = [rule for rule in read_rules(ipr) if rule["table"] in self._rule_tables(reply_table)]
        self.tables = [iptables.tables() for iptables in iptables]

    def _rule_tables(self, reply_table):
        """The tables whose module-made rules belong to this tunnel: those of its routes, and the reply table
        when no other tunnel has routes there."""
        tables = {route["table"] for route in self.routes}
        others = [route for route in self.all_routes if route["table"] == reply_table
                  and route["proto"] == RTPROT_TUNNEL and route not in self.routes]
        if reply_table is not None and not others:
            tables.add(reply_table)
        return tables

    def firewall(self):
        """(exempt, clamp) for both families together."""
        states = [firewall_state(tables, self.name) for tables in self.tables]
        return tuple(all(state[part] for state in states) for part in (0, 1))

    def conflicts(self, routes):
        """Routes not made by the module that hold a wanted (table, dst) at the metric the module adds it with."""
        keys = {(table, dst) for table, dst, _gateway in routes}
        return [route for route in self.all_routes if (route["table"], route["dst"]) in keys
                and route["metric"] == _default_metric(ipaddress.ip_network(route["dst"]).version)
                and route not in self.routes]


def _is_auto_address(text):
    """IPv6 link-local addresses, which the kernel gives interfaces by itself."""
    interface = ipaddress.ip_interface(text)
    return interface.version == 6 and interface.ip.is_link_local


def _address_texts(state, want):
    listed = {str(interface) for interface in want.get("addresses", ())}
    return [text for text in state.addresses if text in listed or not _is_auto_address(text)]


def snapshot(state, want=None):
    """The tunnel as the module returns and diffs it: read from ``state``; the settings the kernel does not keep
    in one place (peer, tables, rule priority) from ``want`` when given, else from what the module made."""
    if state.link is None:
        return {"name": state.name, "state": "absent"}
    reply_tables = {rule["table"] for rule in state.rules}
    routes = [route for route in state.routes
              if not (route["table"] in reply_tables and ipaddress.ip_network(route["dst"]).prefixlen == 0)]
    exempt, clamp = state.firewall()
    view = {"name": state.name, "state": "present"}
    view.update(state.identity)
    view.update(mtu=state.link["mtu"], up=state.link["up"],
                addresses=[str(i) for i in _sorted_addresses(ipaddress.ip_interface(a)
                                                             for a in _address_texts(state, want or {}))],
                routes=[str(n) for n in _sorted_addresses({ipaddress.ip_network(r["dst"]) for r in routes})],
                reply_from=[str(n) for n in _sorted_addresses({ipaddress.ip_network(r["src"]) for r in state.rules})],
                mss_clamp=clamp, nat_exempt=exempt)
    if want is not None:
        view.update(peer=None if want["peer"] is None else str(want["peer"]), route_table=want["route_table"],
                    reply_table=want["reply_table"], rule_priority=want["rule_priority"])
    else:
        gateways = [route["gateway"] for route in state.routes if route["gateway"]]
        view.update(peer=gateways[0] if gateways else None,
                    route_table=routes[0]["table"] if routes else None,
                    reply_table=state.rules[0]["table"] if state.rules else None,
                    rule_priority=state.rules[0]["priority"] if state.rules else None)
    return view


def predict(want):
    """The snapshot a run with ``want`` leaves, for check mode."""
    return {"name": want["name"], "state": "present", "kind": want["kind"], "local": want["local"],
            "remote": want["remote"], "vni": want["vni"], "key": want["key"], "port": want["port"],
            "underlay": want["underlay"], "mtu": want["mtu"], "up": True,
            "addresses": [str(interface) for interface in want["addresses"]],
            "routes": [str(network) for network in want["routes"]],
            "reply_from": [str(network) for network in want["reply_from"]],
            "mss_clamp": want["mss_clamp"], "nat_exempt": True,
            "peer": None if want["peer"] is None else str(want["peer"]), "route_table": want["route_table"],
            "reply_table": want["reply_table"], "rule_priority": want["rule_priority"]}


# ---------------------------------------------------------------------------------------------------------
# The run


def validate_host(ipr, want, state):
    """Check the options against the host: underlay, local, remote, MTU, routes in the way. Completes ``want``
    with the underlay and MTU to use."""
    underlay_index = None
    if want["underlay"] is not None:
        underlay = link_info(ipr, want["underlay"])
        if underlay is None:
            raise InvalidOption("underlay", "interface '%s' does not exist" % want["underlay"])
        underlay_index = underlay["index"]
    local, remote = ipaddress.ip_address(want["local"]), ipaddress.ip_address(want["remote"])
    if not _is_local_address(ipr, local):
        raise InvalidOption("local", "%s is not an address of this host" % local)
    index, route_type = _route_to(ipr, remote, underlay_index)
    if route_type == RTN_LOCAL:
        raise InvalidOption("remote", "%s is an address of this host" % remote)
    if route_type != RTN_UNICAST or not index:
        raise InvalidOption("remote", "no route to %s leads out of an interface" % remote)
    if state.link is not None and index == state.link["index"]:
        raise InvalidOption("remote", "the route to %s goes through the tunnel itself" % remote)
    if want["underlay"] is None:
        want["underlay"] = _link_msg(ipr, index=index).get_attr("IFLA_IFNAME")
    underlay = link_info(ipr, want["underlay"])
    overhead = OVERHEAD[(want["kind"], want["version"])] + (GRE_KEY_BYTES if want["key"] is not None else 0)
    most = underlay["mtu"] - overhead
    if want["mtu"] is not None and want["mtu"] > most:
        raise InvalidOption("mtu", "%d is more than the underlay '%s' (MTU %d) carries with the %d bytes of %s "
                                   "encapsulation: at most %d" % (want["mtu"], want["underlay"], underlay["mtu"],
                                                                  overhead, want["kind"], most))
    ipv6_inside = any(item.version == 6 for option in ("addresses", "routes", "reply_from") for item in want[option])
    want["mtu"] = _validate.mtu("mtu", most if want["mtu"] is None else want["mtu"], ipv6=ipv6_inside)
    listed = {(want["route_table"], str(network)) for network in want["routes"]}
    for route in state.conflicts(wanted_routes(want)):
        option = "routes" if (route["table"], route["dst"]) in listed else "reply_table"
        raise InvalidOption(option, "table %d already has a route to %s that this module did not make through '%s'"
                            % (route["table"], route["dst"], want["name"]))


def apply_firewall(_ipr, iptables, commands):
    """A step that runs ``commands`` with ``iptables`` (the IPRoute every step takes is not needed)."""
    return iptables.apply(commands)


def plan_present(want, state, firewall):
    """(steps, recreated): the steps (callables taking the IPRoute) that bring the host to ``want``, in order."""
    name = want["name"]
    # The NAT exemption goes first: a connection NATed before it would stay NATed.
    steps = [functools.partial(apply_firewall, iptables=iptables, commands=commands)
             for iptables, commands in firewall if commands]
    wanted_identity = {key: want[key] for key in ("kind", "local", "remote", "vni", "key", "port", "underlay")}
    recreated = state.identity is not None and state.identity != wanted_identity
    have_addresses, have_routes = state.addresses, state.routes
    if recreated:
        steps.append(functools.partial(remove_link, name=name))
        # The device takes its addresses and routes with it.
        have_addresses, have_routes = [], []
    if state.link is None or recreated:
        steps += [functools.partial(create_tunnel, want=want), functools.partial(set_up, name=name)]
    else:
        if state.link["mtu"] != want["mtu"]:
            steps.append(functools.partial(set_mtu, name=name, mtu=want["mtu"]))
        if not state.link["up"]:
            steps.append(functools.partial(set_up, name=name))
    listed = [str(interface) for interface in want["addresses"]]
    # Removed first: removing a primary IPv4 address removes its secondaries too.
    steps += [functools.partial(remove_address, ifname=name, address=address) for address in have_addresses
              if address not in listed and not _is_auto_address(address)]
    steps += [functools.partial(add_address, ifname=name, address=address) for address in listed
              if address not in have_addresses]
    routes = wanted_routes(want)
    steps += [functools.partial(remove_route, route=route) for route in have_routes if _route_key(route) not in routes]
    have = {_route_key(route) for route in have_routes}
    steps += [functools.partial(add_route, name=name, route=route) for route in sorted(routes, key=str)
              if route not in have]
    rules = wanted_rules(want)
    steps += [functools.partial(remove_rule, rule=rule) for rule in state.rules if _rule_key(rule) not in rules]
    have = {_rule_key(rule) for rule in state.rules}
    steps += [functools.partial(add_rule, rule=dict(zip(("src", "table", "priority"), rule)))
              for rule in sorted(rules) if rule not in have]
    return steps, recreated


def plan_absent(state, firewall):
    """The steps that remove the tunnel's rules, routes, device and iptables chains."""
    steps = [functools.partial(remove_rule, rule=rule) for rule in state.rules]
    steps += [functools.partial(remove_route, route=route) for route in state.routes]
    if state.link is not None:
        steps.append(functools.partial(remove_link, name=state.name))
    steps += [functools.partial(apply_firewall, iptables=iptables, commands=commands)
              for iptables, commands in firewall if commands]
    return steps


def ensure(ipr, iptables, params, want, changes):
    """Bring the host to ``want`` (``validate_options(params)``; in check mode: predict it), recording it in
    ``changes``; returns (snapshot after, recreated)."""
    present = params["state"] == "present"
    state = HostState(ipr, iptables, want["name"], want["reply_table"] if present else params["reply_table"])
    if present:
        validate_host(ipr, want, state)
    before = snapshot(state)
    firewall = [(runner, firewall_commands(tables, want["name"], present, present and want["mss_clamp"]))
                for runner, tables in zip(iptables, state.tables)]
    recreated = False
    if present:
        steps, recreated = plan_present(want, state, firewall)
    else:
        steps = plan_absent(state, firewall)
    if changes.check_mode:
        if steps:
            changes.record()
        after = predict(want) if present else {"name": want["name"], "state": "absent"}
    else:
        # Each step says whether it changed something, and every step must run.
        for step in steps:
            if step(ipr):
                changes.record()
        after = snapshot(HostState(ipr, iptables, want["name"], want["reply_table"] if present else None),
                         want if present else None)
    changes.diff(before, after)
    return after, recreated


# ---------------------------------------------------------------------------------------------------------
# Around the change: waiting for a guest to leave, and checking that the far end answers


ICMP_ECHO = {4: (8, 0), 6: (128, 129)}   # (request, reply) types of ICMP and ICMPv6


def _icmp_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def peer_answers(ifname, peer, timeout):
    """Whether ``peer`` answers an ICMP echo sent out of ``ifname`` (so through the tunnel) within ``timeout`` s."""
    version = ipaddress.ip_address(peer).version
    family, proto = (socket.AF_INET, socket.IPPROTO_ICMP) if version == 4 else (socket.AF_INET6, socket.IPPROTO_ICMPV6)
    request, reply = ICMP_ECHO[version]
    ident = os.getpid() & 0xffff
    with socket.socket(family, socket.SOCK_RAW, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        seq = 0
        while time.monotonic() < deadline:
            seq += 1
            header = struct.pack("!BBHHH", request, 0, 0, ident, seq) + b"arctictern"
            # The kernel fills in ICMPv6 checksums itself.
            checksum = _icmp_checksum(header) if version == 4 else 0
            sock.sendto(header[:2] + struct.pack("!H", checksum) + header[4:], (peer, 0))
            try:
                data, source = sock.recvfrom(512)
            except socket.timeout:
                continue
            icmp = data[(data[0] & 0x0f) * 4:] if version == 4 else data
            if source[0] == peer and icmp[0] == reply and struct.unpack("!H", icmp[4:6])[0] == ident:
                return True
    return False


def await_departure(params):
    """Wait (wait_for_departure) until the guest has left this host, so that the routes change the moment it does."""
    from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt  # pylint: disable=import-outside-toplevel
    if _libvirt.libvirt is None:
        raise InvalidOption("wait_for_departure", "needs libvirt-python on the host that runs the module")
    still_here = _libvirt.wait_for_departure(params["departure_uri"], params["wait_for_departure"],
                                             params["departure_timeout"])
    if still_here:
        raise InvalidOption("wait_for_departure", "guest '%s' did not leave: %s; the tunnel was not changed"
                            % (params["wait_for_departure"], still_here))


def ensure_tunnel(module):
    """The module's run: the result dict (tunnel, recreated, changed, diff)."""
    params = module.params
    changes = Changes(module)
    want = validate_options(params)
    present = params["state"] == "present"
    if params["verify"] and (not present or not want["peer"]):
        raise InvalidOption("verify", "needs state=present and a peer to ask")
    iptables = iptables_of(module)
    if params["wait_for_departure"] and not module.check_mode:
        await_departure(params)
    with open_ipr() as ipr:
        after, recreated = ensure(ipr, iptables, params, want, changes)
    if params["verify"] and not module.check_mode and not peer_answers(want["name"], str(want["peer"]), params["verify_timeout"]):
        raise InvalidOption("remote", "the far end (%s, peer %s) does not answer through the tunnel within %g s"
                            % (want["remote"], want["peer"], params["verify_timeout"]))
    return changes.result({"tunnel": after, "recreated": recreated})
