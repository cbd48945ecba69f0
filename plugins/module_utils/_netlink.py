# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netlink layer of the modules: links, bridges, addresses, default routes and neighbours, in this network
namespace or a named one. What only the lab needs (creating namespaces, veth pairs, other routes) is lab/netlink.py.

Everything goes through pyroute2, never through ``ip`` subprocesses. Functions take an open IPRoute (see
``open_ipr``) so that one socket serves a whole task and the same code works in any network namespace.
Functions that change something return True when they did and False when the state already was as asked;
a NetlinkError becomes a VirtError (NotFound for a missing interface) whose message names the interface.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket

from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, NotFound, VirtError

try:
    from pyroute2 import IPRoute, NetlinkError, NetNS
    from pyroute2 import netns as pyroute2_netns
except ImportError as import_error:  # pragma: no cover - reported by the module base
    IPRoute = NetNS = pyroute2_netns = None
    # A stand-in so that the except clauses below stay valid when pyroute2 is missing.
    NetlinkError = OSError
    PYROUTE2_IMPORT_ERROR = import_error
else:
    PYROUTE2_IMPORT_ERROR = None

REQUIRED_LIBS = (("pyroute2", PYROUTE2_IMPORT_ERROR),)

FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
FAMILY_NAMES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254}

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
MAIN_TABLE = 254
RTN_UNICAST = 1
# The kernel keeps bridge timers in USER_HZ ticks (centiseconds), like `ip link ... forward_delay`.
USER_HZ = 100
# Limits the kernel enforces (by clamping) on the forward delay while STP runs.
STP_FORWARD_DELAY = (2, 30)
# Neighbour states whose link-layer address is current (REACHABLE, PROBE, STALE, DELAY, PERMANENT).
NUD_VALID = 0x02 | 0x10 | 0x04 | 0x08 | 0x80


# ---------------------------------------------------------------------------------------------------------
# Errors


def _failure(what, error):
    """A VirtError for a failed netlink request; NotFound where the kernel says the device is missing."""
    code = getattr(error, "code", None) or getattr(error, "errno", None) or 0
    reason = os.strerror(code) if code else str(error)
    cls = NotFound if code == errno.ENODEV else VirtError
    return cls("%s: %s" % (what, reason), errno=code)


def _dump(what, method, *args, **kwargs):
    """The messages of a netlink query, as a list."""
    try:
        return list(method(*args, **kwargs))
    except (NetlinkError, OSError) as error:
        raise _failure(what, error) from None


def _change(what, method, *args, ignore=(), **kwargs):
    """Send a netlink request: True when done, False when the kernel answered one of the ``ignore`` errnos."""
    try:
        method(*args, **kwargs)
    except (NetlinkError, OSError) as error:
        if getattr(error, "code", None) in ignore:
            return False
        raise _failure(what, error) from None
    return True


def _family(family):
    """AF_INET/AF_INET6 from 'ipv4'/'ipv6' or an AF_* constant; None stays None (both)."""
    if family is None or family in FAMILY_NAMES:
        return family
    if family in FAMILIES:
        return FAMILIES[family]
    raise VirtError("unknown address family %r (expected ipv4 or ipv6)" % (family,))


# ---------------------------------------------------------------------------------------------------------
# Namespaces


def _check_netns_name(name):
    if not name or "/" in name or name in (".", ".."):
        raise VirtError("invalid network namespace name %r" % (name,))


def netns_names():
    """The names of the named network namespaces (those under /run/netns), sorted."""
    return sorted(pyroute2_netns.listnetns())


@contextlib.contextmanager
def open_ipr(netns=None):
    """``with open_ipr() as ipr:`` an IPRoute for this namespace, or for the named one; always closed.

    A missing namespace is NotFound: pyroute2 would otherwise create it on the fly.
    """
    if netns is not None:
        _check_netns_name(netns)
        if netns not in netns_names():
            raise NotFound("network namespace '%s' does not exist" % netns)
    try:
        ipr = IPRoute() if netns is None else NetNS(netns, flags=0)
    except OSError as error:
        where = "" if netns is None else " in network namespace '%s'" % netns
        raise _failure("opening a netlink socket" + where, error) from None
    try:
        yield ipr
    finally:
        ipr.close()


# ---------------------------------------------------------------------------------------------------------
# Links


def _link_msg(ipr, name=None, index=None):
    """The kernel's message for one link, by name or index, or None when there is no such link."""
    query = {"ifname": name} if index is None else {"index": index}
    try:
        return ipr.link("get", **query)[0]
    except NetlinkError as error:
        if error.code == errno.ENODEV:
            return None
        raise _failure("looking up interface '%s'" % (name or index), error) from None


def _kind(msg):
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    return linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None


def link_index(ipr, name):
    """The index of interface ``name``; NotFound when there is none."""
    msg = _link_msg(ipr, name)
    if msg is None:
        raise NotFound("interface '%s' does not exist" % name)
    return msg["index"]


def link_info(ipr, name):
    """A dict describing interface ``name``, or None when there is none.

    Keys: name, index, kind (bridge, veth, ... or None for a plain device), master (name or None), mtu,
    up (administratively), operstate (lower case), mac, loopback.
    """
    msg = _link_msg(ipr, name)
    if msg is None:
        return None
    master = msg.get_attr("IFLA_MASTER")
    master_msg = _link_msg(ipr, index=master) if master else None
    return {
        "name": msg.get_attr("IFLA_IFNAME"),
        "index": msg["index"],
        "kind": _kind(msg),
        "master": master_msg.get_attr("IFLA_IFNAME") if master_msg is not None else None,
        "mtu": msg.get_attr("IFLA_MTU"),
        "up": bool(msg["flags"] & IFF_UP),
        "operstate": (msg.get_attr("IFLA_OPERSTATE") or "unknown").lower(),
        "mac": msg.get_attr("IFLA_ADDRESS"),
        "loopback": bool(msg["flags"] & IFF_LOOPBACK),
    }


def _require(ipr, name):
    msg = _link_msg(ipr, name)
    if msg is None:
        raise NotFound("interface '%s' does not exist" % name)
    return msg


def set_up(ipr, name):
    """Bring interface ``name`` up; False when it already is."""
    msg = _require(ipr, name)
    if msg["flags"] & IFF_UP:
        return False
    return _change("bringing up interface '%s'" % name, ipr.link, "set", index=msg["index"], state="up")


def set_mtu(ipr, name, mtu):
    """Set the MTU of interface ``name``; False when it already has that MTU."""
    msg = _require(ipr, name)
    if msg.get_attr("IFLA_MTU") == mtu:
        return False
    return _change("setting MTU %s on interface '%s'" % (mtu, name), ipr.link, "set", index=msg["index"], mtu=mtu)


def set_master(ipr, ifname, bridge):
    """Make ``ifname`` a port of ``bridge``, or release it from its master when ``bridge`` is None.

    False when it already is where asked.
    """
    msg = _require(ipr, ifname)
    current = msg.get_attr("IFLA_MASTER") or 0
    target = 0 if bridge is None else link_index(ipr, bridge)
    if current == target:
        return False
    what = "releasing interface '%s' from its master" % ifname if bridge is None else (
        "adding interface '%s' to bridge '%s'" % (ifname, bridge))
    return _change(what, ipr.link, "set", index=msg["index"], master=target)


def remove_link(ipr, name):
    """Delete interface ``name`` (a veth takes its peer with it); False when there is none."""
    msg = _link_msg(ipr, name)
    if msg is None:
        return False
    return _change("removing interface '%s'" % name, ipr.link, "del", index=msg["index"], ignore=(errno.ENODEV,))


# ---------------------------------------------------------------------------------------------------------
# Bridges


def check_forward_delay(stp, forward_delay):
    """Raise InvalidOption(forward_delay) for a delay the kernel would not keep as given.

    With STP on, the kernel silently clamps the delay to 2..30 seconds, which would make every run differ.
    """
    low, high = STP_FORWARD_DELAY if stp else (0, STP_FORWARD_DELAY[1])
    if not low <= forward_delay <= high:
        raise InvalidOption("forward_delay", "must be between %d and %d seconds%s, not %s" % (
            low, high, " with STP on" if stp else "", forward_delay))


def _bridge_settings(msg):
    data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    return bool(data.get_attr("IFLA_BR_STP_STATE")), data.get_attr("IFLA_BR_FORWARD_DELAY") // USER_HZ


def create_bridge(ipr, name, stp=False, forward_delay=0):
    """Create bridge ``name``, or bring an existing one to the given STP state and forward delay (seconds).

    False when the bridge already is as asked; VirtError when ``name`` exists and is no bridge.
    """
    check_forward_delay(stp, forward_delay)
    settings = {"br_stp_state": int(stp), "br_forward_delay": forward_delay * USER_HZ}
    msg = _link_msg(ipr, name)
    if msg is None:
        return _change("creating bridge '%s'" % name, ipr.link, "add", ifname=name, kind="bridge", **settings)
    if _kind(msg) != "bridge":
        raise VirtError("interface '%s' exists and is not a bridge (kind: %s)" % (name, _kind(msg)))
    if _bridge_settings(msg) == (stp, forward_delay):
        return False
    return _change("configuring bridge '%s'" % name, ipr.link, "set", index=msg["index"], kind="bridge", **settings)


def bridge_ports(ipr, bridge):
    """The names of the ports of ``bridge``, sorted."""
    index = link_index(ipr, bridge)
    links = _dump("listing interfaces", ipr.get_links)
    return sorted(msg.get_attr("IFLA_IFNAME") for msg in links if msg.get_attr("IFLA_MASTER") == index)


def bridge_names(ipr):
    """The names of the Linux bridges of the socket's network namespace, sorted.

    Asked over netlink, so it is right inside a network namespace whose /sys still shows another namespace's
    devices (sysfs shows the namespace that mounted it, as in the lab's hypervisors)."""
    links = _dump("listing interfaces", ipr.get_links)
    return sorted(msg.get_attr("IFLA_IFNAME") for msg in links if _kind(msg) == "bridge")


def bridge_info(ipr, name):
    """A dict describing bridge ``name`` or None when there is no such interface.

    Keys: name, state ('present'), ports, addresses (global scope), mtu, up, stp, forward_delay (seconds).
    """
    msg = _link_msg(ipr, name)
    if msg is None:
        return None
    if _kind(msg) != "bridge":
        raise VirtError("interface '%s' exists and is not a bridge (kind: %s)" % (name, _kind(msg)))
    stp, forward_delay = _bridge_settings(msg)
    return {
        "name": name,
        "state": "present",
        "ports": bridge_ports(ipr, name),
        "addresses": addresses(ipr, name, scope="global"),
        "mtu": msg.get_attr("IFLA_MTU"),
        "up": bool(msg["flags"] & IFF_UP),
        "stp": stp,
        "forward_delay": forward_delay,
    }


# ---------------------------------------------------------------------------------------------------------
# Addresses


def _interface(address):
    """An ipaddress interface from 'addr/prefix' (a bare address is a host address)."""
    try:
        return ipaddress.ip_interface(address)
    except ValueError:
        raise VirtError("invalid IP address %r (expected address/prefix)" % (address,)) from None


def addresses(ipr, ifname, family=None, scope=None):
    """The addresses of ``ifname`` as 'addr/prefix' strings, primary first, in the kernel's order.

    ``family``: 'ipv4', 'ipv6' or None for both; ``scope``: 'global', 'site', 'link', 'host' or None for all.
    """
    index = link_index(ipr, ifname)
    family = _family(family)
    wanted_scope = SCOPES[scope] if scope is not None else None
    found = []
    for msg in _dump("listing addresses of '%s'" % ifname, ipr.get_addr):
        if msg["index"] != index or msg["family"] not in FAMILY_NAMES:
            continue
        if family is not None and msg["family"] != family:
            continue
        if wanted_scope is not None and msg["scope"] != wanted_scope:
            continue
        # IFA_LOCAL is the interface's own address on point-to-point links, where IFA_ADDRESS is the peer's.
        address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        found.append("%s/%s" % (address, msg["prefixlen"]))
    return found


def add_address(ipr, ifname, address):
    """Add 'addr/prefix' to ``ifname``; False when the interface already has it."""
    interface = _interface(address)
    index = link_index(ipr, ifname)
    spec = {"index": index, "address": str(interface.ip), "prefixlen": interface.network.prefixlen,
            "family": FAMILIES["ipv%d" % interface.version]}
    if interface.version == 4 and interface.network.prefixlen < 31:
        spec["broadcast"] = str(interface.network.broadcast_address)
    return _change("adding address %s to '%s'" % (interface, ifname), ipr.addr, "add", ignore=(errno.EEXIST,), **spec)


def remove_address(ipr, ifname, address):
    """Remove 'addr/prefix' from ``ifname``; False when the interface does not have it."""
    interface = _interface(address)
    index = link_index(ipr, ifname)
    return _change("removing address %s from '%s'" % (interface, ifname), ipr.addr, "del", index=index,
                   address=str(interface.ip), prefixlen=interface.network.prefixlen,
                   family=FAMILIES["ipv%d" % interface.version], ignore=(errno.EADDRNOTAVAIL,))


# ---------------------------------------------------------------------------------------------------------
# Routes


def _route_table(msg):
    return msg.get_attr("RTA_TABLE") or msg["table"]


def default_routes(ipr, family, table=MAIN_TABLE):
    """The unicast default routes of ``family`` ('ipv4' or 'ipv6'), lowest metric first.

    ``table``: a routing table id, or None for every table. Each route is a dict: family, gateway, ifname,
    prefsrc, metric, table, mtu (route MTU metric or None), proto (kernel protocol number) and multipath
    (True when the route has several next hops; gateway and ifname are then those of the first one).
    """
    af = _family(family)
    if af is None:
        raise VirtError("default_routes needs one address family, ipv4 or ipv6")
    names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in _dump("listing interfaces", ipr.get_links)}
    routes = []
    for msg in _dump("listing %s routes" % FAMILY_NAMES[af], ipr.get_routes, family=af):
        if msg["family"] != af or msg["dst_len"] != 0 or msg["type"] != RTN_UNICAST:
            continue
        if table is not None and _route_table(msg) != table:
            continue
        gateway, oif = msg.get_attr("RTA_GATEWAY"), msg.get_attr("RTA_OIF")
        hops = msg.get_attr("RTA_MULTIPATH")
        if hops:
            gateway, oif = hops[0].get_attr("RTA_GATEWAY"), hops[0]["oif"]
        metrics = msg.get_attr("RTA_METRICS")
        routes.append({
            "family": FAMILY_NAMES[af],
            "gateway": gateway,
            "ifname": names.get(oif),
            "prefsrc": msg.get_attr("RTA_PREFSRC"),
            "metric": msg.get_attr("RTA_PRIORITY") or 0,
            "table": _route_table(msg),
            "mtu": metrics.get_attr("RTAX_MTU") if metrics is not None else None,
            "proto": msg["proto"],
            "multipath": bool(hops),
        })
    return sorted(routes, key=lambda route: route["metric"])


def _route_spec(ipr, dst, gateway, ifname, family, metric, table, mtu=None, prefsrc=None, proto=None):
    """The pyroute2 keywords for a route to ``dst`` ('default' or a network)."""
    if gateway is None and ifname is None:
        raise VirtError("a route needs a gateway, an interface or both")
    spec = {}
    versions = set()
    if dst != "default":
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            raise VirtError("invalid route destination %r" % (dst,)) from None
        spec.update(dst=str(network.network_address), dst_len=network.prefixlen)
        versions.add(network.version)
    else:
        spec["dst_len"] = 0
    if gateway is not None:
        try:
            versions.add(ipaddress.ip_address(gateway).version)
        except ValueError:
            raise VirtError("invalid gateway address %r" % (gateway,)) from None
        spec["gateway"] = gateway
    if len(versions) > 1:
        raise VirtError("route to %s via %s mixes IPv4 and IPv6" % (dst, gateway))
    af = FAMILIES["ipv%d" % versions.pop()] if versions else (_family(family) or socket.AF_INET)
    spec["family"] = af
    if ifname is not None:
        spec["oif"] = link_index(ipr, ifname)
    # IPv6 stores metric 0 as 1024 (IP6_RT_PRIO_USER); ask for that explicitly so lookups match.
    spec["priority"] = metric if metric else (1024 if af == socket.AF_INET6 else 0)
    spec["table"] = table if table is not None else MAIN_TABLE
    for key, value in (("prefsrc", prefsrc), ("proto", proto)):
        if value is not None:
            spec[key] = value
    if mtu:
        spec["metrics"] = {"mtu": mtu}
    return spec


def _describe(dst, gateway, ifname):
    via = " via %s" % gateway if gateway else ""
    dev = " dev '%s'" % ifname if ifname else ""
    return "route %s%s%s" % (dst, via, dev)


def add_default_route(ipr, gateway=None, ifname=None, family=None, metric=None, table=None, mtu=None,
                      prefsrc=None, proto=None):
    """Add a default route via ``gateway`` and/or out of ``ifname``; False when that very route exists.

    The family follows the gateway; without one it is ``family`` (default ipv4). A different default route
    with the same metric already in the table is a VirtError (the kernel allows one per metric).
    """
    spec = _route_spec(ipr, "default", gateway, ifname, family, metric, table, mtu, prefsrc, proto)
    what = "adding %s" % _describe("default", gateway, ifname)
    if _change(what, ipr.route, "add", ignore=(errno.EEXIST,), **spec):
        return True
    for route in default_routes(ipr, FAMILY_NAMES[spec["family"]], table=spec["table"]):
        same_hop = (gateway is None or route["gateway"] == gateway) and (ifname is None or route["ifname"] == ifname)
        if route["metric"] == spec["priority"] and same_hop:
            return False
    raise VirtError("%s: another default route with metric %s exists" % (what, spec["priority"]))


def remove_default_route(ipr, route):
    """Remove a default route described like the dicts of ``default_routes``; False when it is gone."""
    spec = _route_spec(ipr, "default", route.get("gateway"), route.get("ifname"), route.get("family"),
                       route.get("metric"), route.get("table"))
    what = "removing %s" % _describe("default", route.get("gateway"), route.get("ifname"))
    return _change(what, ipr.route, "del", ignore=(errno.ESRCH,), **spec)


# ---------------------------------------------------------------------------------------------------------
# Neighbours


def neighbours(ipr):
    """Resolved entries of the neighbour (ARP and NDP) table: ``[{"address", "mac", "ifindex"}, ...]``."""
    found = []
    for msg in _dump("reading the neighbour table", ipr.get_neighbours):
        address, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
        if address and mac and msg["state"] & NUD_VALID:
            found.append({"address": address, "mac": mac.lower(), "ifindex": msg["ifindex"]})
    return found
