# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connections module's run: the tracked connections (netfilter conntrack) to or from one address in this
network namespace, and a wait until few enough are left.

The table is read over ctnetlink with pyroute2's NFCTSocket, never with the ``conntrack`` program. pyroute2
decodes a few thousand entries a second and a busy NAT host tracks tens of thousands, so each poll asks the
kernel for the entries that can involve the address (``QUERIES``) instead of the whole table, and then checks
each entry itself: a kernel without dump filters (before 5.8, or 5.15 for status bits) sends the whole table,
which that one answer then covers.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import time
from dataclasses import dataclass

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError

try:
    from pyroute2 import NetlinkError, NFCTSocket
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
except ImportError as import_error:  # pragma: no cover - reported by the module base
    NFCTSocket = NFCTAttrTuple = None
    # A stand-in so that the except clauses below stay valid when pyroute2 is missing.
    NetlinkError = OSError
    PYROUTE2_IMPORT_ERROR = import_error
else:
    PYROUTE2_IMPORT_ERROR = None

REQUIRED_LIBS = (("pyroute2", PYROUTE2_IMPORT_ERROR),)

# Conntrack's TCP states by number (include/uapi/linux/netfilter/nf_conntrack_tcp.h); 9 is a simultaneous open.
TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT",
              "CLOSE", "SYN_SENT2")
# TIME_WAIT and CLOSE only wait out stray packets of a connection that has ended.
LIVE_TCP_STATES = ("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "SYN_SENT2")
PROTOCOL_NAMES = {socket.IPPROTO_ICMP: "icmp", socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp",
                  socket.IPPROTO_ICMPV6: "icmpv6", 33: "dccp", 47: "gre", 132: "sctp", 136: "udplite"}
# What each value of the protocol option takes; icmp is ICMP or ICMPv6, after the address's family.
PROTOCOL_CHOICES = {"tcp": ("tcp",), "udp": ("udp",), "icmp": ("icmp", "icmpv6"), "any": None}
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}

# Status bits (include/uapi/linux/netfilter/nf_conntrack_common.h): seen in both directions (a UDP "stream" then
# keeps the longer timeout); NATed (the reply tuple is not the reverse of the original one).
IPS_ASSURED = 1 << 2
IPS_SRC_NAT = 1 << 4
IPS_DST_NAT = 1 << 5

SYSCTL_DIR = "/proc/sys/net/netfilter"
ACCT_SYSCTL = "nf_conntrack_acct"
TIMESTAMP_SYSCTL = "nf_conntrack_timestamp"
COUNT_SYSCTL = "nf_conntrack_count"


@dataclass
class Entry:
    """One conntrack entry: its id and status bits, and the connection as the module returns it."""

    ct_id: int
    status: int
    connection: dict


# ---------------------------------------------------------------------------------------------------------
# Options


def validate(params):
    """The options checked, before the table is read: (address as text, its IP version)."""
    address = _validate.ip_address("address", params["address"])
    if getattr(address, "scope_id", None):
        # Conntrack tuples hold no zone: the zone would never match.
        raise InvalidOption("address", "%r has a zone; give the address without '%%%s'" % (
            params["address"], address.scope_id))
    port = params["port"]
    if port is not None and not 1 <= port <= 65535:
        raise InvalidOption("port", "must be between 1 and 65535, not %d" % port)
    if not params["states"]:
        raise InvalidOption("states", "must name at least one TCP state")
    if params["wait_until"] is not None and params["wait_until"] < 0:
        raise InvalidOption("wait_until", "must be 0 or more, not %d" % params["wait_until"])
    if params["timeout"] < 0:
        raise InvalidOption("timeout", "must be 0 or more seconds, not %s" % params["timeout"])
    if params["interval"] <= 0:
        raise InvalidOption("interval", "must be more than 0 seconds, not %s" % params["interval"])
    return str(address), address.version


# ---------------------------------------------------------------------------------------------------------
# Reading the table


def _failure(error):
    """A VirtError for a failed ctnetlink request, saying what the user can do about it."""
    code = getattr(error, "code", None) or getattr(error, "errno", None) or 0
    reason = os.strerror(code) if code else str(error)
    if code in (errno.EPERM, errno.EACCES):
        hint = "reading it needs CAP_NET_ADMIN: run the task as root (become: true)"
    elif code in (errno.EPROTONOSUPPORT, errno.EINVAL, errno.ENOENT, errno.EOPNOTSUPP):
        # No nfnetlink: the socket cannot be opened; no ctnetlink subsystem: the kernel refuses the request.
        hint = "connection tracking is not available: the nf_conntrack and nf_conntrack_netlink kernel modules must be loaded"
    else:
        hint = "the kernel refused the request"
    return VirtError("cannot read the connection tracking table: %s; %s" % (reason, hint), errno=code)


def open_conntrack(version):
    """An NFCTSocket for the entries of IP ``version`` (4 or 6) in this network namespace."""
    try:
        return NFCTSocket(nfgen_family=FAMILIES[version])
    except (NetlinkError, OSError) as error:
        raise _failure(error) from None


def _address(ip_nla, direction):
    value = ip_nla.get_attr("CTA_IP_V4_%s" % direction) or ip_nla.get_attr("CTA_IP_V6_%s" % direction)
    return str(ipaddress.ip_address(value))


def _tuple(tuple_nla):
    """(protocol number, source, destination, source port, destination port) of a CTA_TUPLE_* attribute; ports
    are None for protocols without ports (ICMP)."""
    ip_nla, proto_nla = tuple_nla.get_attr("CTA_TUPLE_IP"), tuple_nla.get_attr("CTA_TUPLE_PROTO")
    return (proto_nla.get_attr("CTA_PROTO_NUM"), _address(ip_nla, "SRC"), _address(ip_nla, "DST"),
            proto_nla.get_attr("CTA_PROTO_SRC_PORT"), proto_nla.get_attr("CTA_PROTO_DST_PORT"))


def _counters(msg):
    """(bytes, packets) of both directions together; (None, None) when the entry has no counters (accounting
    was off when it was tracked)."""
    totals = [0, 0]
    for direction in ("CTA_COUNTERS_ORIG", "CTA_COUNTERS_REPLY"):
        counters = msg.get_attr(direction)
        if counters is None:
            return None, None
        for index, name in enumerate(("BYTES", "PACKETS")):
            # Old kernels send 32-bit counters under their own attribute.
            value = counters.get_attr("CTA_COUNTERS_%s" % name)
            totals[index] += value if value is not None else counters.get_attr("CTA_COUNTERS32_%s" % name) or 0
    return totals[0], totals[1]


def _tcp_state(msg):
    protoinfo = msg.get_attr("CTA_PROTOINFO")
    tcp = protoinfo.get_attr("CTA_PROTOINFO_TCP") if protoinfo is not None else None
    if tcp is None:
        return None
    number = tcp.get_attr("CTA_PROTOINFO_TCP_STATE")
    return TCP_STATES[number] if number < len(TCP_STATES) else "UNKNOWN_%d" % number


def _age(msg, now):
    """Seconds since the entry was tracked; None without a start time (timestamps were off then)."""
    stamps = msg.get_attr("CTA_TIMESTAMP")
    start = stamps.get_attr("CTA_TIMESTAMP_START") if stamps is not None else None
    if not start:
        return None
    # The start is CLOCK_REALTIME in nanoseconds.
    return round(max(now - start / 1e9, 0.0), 3)


def parse_entry(msg, now):
    """The Entry of one ctnetlink message; ``now`` is time.time() when the table was read."""
    proto, source, destination, source_port, destination_port = _tuple(msg.get_attr("CTA_TUPLE_ORIG"))
    _proto, reply_source, reply_destination, reply_source_port, reply_destination_port = _tuple(
        msg.get_attr("CTA_TUPLE_REPLY"))
    total_bytes, packets = _counters(msg)
    connection = {
        "protocol": PROTOCOL_NAMES.get(proto, str(proto)),
        "source": source,
        "destination": destination,
        "source_port": source_port,
        "destination_port": destination_port,
        "reply_source": reply_source,
        "reply_destination": reply_destination,
        "reply_source_port": reply_source_port,
        "reply_destination_port": reply_destination_port,
        "state": _tcp_state(msg) if proto == socket.IPPROTO_TCP else None,
        "bytes": total_bytes,
        "packets": packets,
        "age": _age(msg, now),
        "expires_in": msg.get_attr("CTA_TIMEOUT"),
        "mark": msg.get_attr("CTA_MARK"),
    }
    status = msg.get_attr("CTA_STATUS") or 0
    connection["idle"] = _idle(connection, status)
    return Entry(msg.get_attr("CTA_ID"), status, connection)


def _timeout_sysctl(connection, status):
    """The net.netfilter sysctl that holds the timeout the kernel resets an entry to on each of its packets."""
    if connection["protocol"] == "tcp" and connection["state"]:
        return "nf_conntrack_tcp_timeout_%s" % connection["state"].lower()
    if connection["protocol"] == "udp":
        return "nf_conntrack_udp_timeout_stream" if status & IPS_ASSURED else "nf_conntrack_udp_timeout"
    if connection["protocol"] in ("icmp", "icmpv6"):
        return "nf_conntrack_%s_timeout" % connection["protocol"]
    return None


# A TCP entry with data in flight unacknowledged or retransmitted gets the shorter of its state's timeout and these.
TCP_SHORT_TIMEOUTS = ("nf_conntrack_tcp_timeout_unacknowledged", "nf_conntrack_tcp_timeout_max_retrans")


def _idle(connection, status):
    """Seconds since the entry's last packet: each packet resets its timer to the timeout of its state, so the
    time gone is that timeout less what is left. None when either is unknown, or when the entry may have been
    reset to one of the shorter TCP timeouts (what is left is then no longer than those)."""
    name = _timeout_sysctl(connection, status)
    timeout = _sysctl(name) if name else None
    left = connection["expires_in"]
    if timeout is None or left is None:
        return None
    if connection["protocol"] == "tcp":
        shorter = [value for value in (_sysctl(short) for short in TCP_SHORT_TIMEOUTS) if value is not None]
        if len(shorter) < len(TCP_SHORT_TIMEOUTS):
            return None
        if left <= max(shorter) < timeout:
            return None
    return max(timeout - left, 0)


def queries(version, address):
    """The dumps that together hold every entry involving ``address``, each as (filters for NFCTSocket.dump,
    whether an entry passes them). Without NAT the reply tuple is the original one reversed, so the original
    tuple tells; a NATed entry can hold the address in its reply tuple only, and the status bits find those.
    (Reply tuple filters are not used: kernels from 5.8 until a fix in late 2021 answered them with nothing.)"""
    family = FAMILIES[version]
    return (
        (dict(tuple_orig=NFCTAttrTuple(family=family, saddr=address)),
         lambda entry: entry.connection["source"] == address),
        (dict(tuple_orig=NFCTAttrTuple(family=family, daddr=address)),
         lambda entry: entry.connection["destination"] == address),
        (dict(status=IPS_SRC_NAT, status_mask=IPS_SRC_NAT), lambda entry: bool(entry.status & IPS_SRC_NAT)),
        (dict(status=IPS_DST_NAT, status_mask=IPS_DST_NAT), lambda entry: bool(entry.status & IPS_DST_NAT)),
    )


def collect(dump, dump_queries):
    """The entries the ``dump_queries`` return, each once. ``dump(filters)`` yields the Entries of one dump.

    An entry that fails its query's filter shows that the kernel ignored the filter and sent the whole table
    of the family; the further queries are then skipped.
    """
    found = {}
    for filters, passes in dump_queries:
        whole_table = False
        for entry in dump(filters):
            whole_table = whole_table or not passes(entry)
            found[entry.ct_id] = entry
        if whole_table:
            break
    return list(found.values())


def involves(connection, address, port=None):
    """Whether ``address`` (with ``port`` on its side, when given) is an end of either tuple of ``connection``."""
    ends = (("source", "source_port"), ("destination", "destination_port"),
            ("reply_source", "reply_source_port"), ("reply_destination", "reply_destination_port"))
    return any(connection[end] == address and (port is None or connection[end_port] == port)
               for end, end_port in ends)


def counts(connection, protocols, states, idle_timeout=None):
    """Whether ``connection`` counts: its protocol is one of ``protocols`` (None: any), for TCP its state is one of
    ``states`` (other protocols have no states; their entries count until they time out), and it has not been idle
    for longer than ``idle_timeout`` seconds (when given and its idle time is known)."""
    if protocols is not None and connection["protocol"] not in protocols:
        return False
    if idle_timeout is not None and connection["idle"] is not None and connection["idle"] > idle_timeout:
        return False
    return connection["protocol"] != "tcp" or connection["state"] in states


def _sort_key(connection):
    return (connection["protocol"], connection["source"], connection["source_port"] or 0,
            connection["destination"], connection["destination_port"] or 0)


def read_connections(ct, version, address, params):
    """The connections that count, sorted by their original tuple."""
    def dump(filters):
        now = time.time()
        try:
            for msg in ct.dump(**filters):
                yield parse_entry(msg, now)
        except (NetlinkError, OSError) as error:
            raise _failure(error) from None

    protocols = PROTOCOL_CHOICES[params["protocol"]]
    found = [entry.connection for entry in collect(dump, queries(version, address))]
    return sorted((connection for connection in found
                   if involves(connection, address, params["port"])
                   and counts(connection, protocols, params["states"], params.get("idle_timeout"))),
                  key=_sort_key)


# ---------------------------------------------------------------------------------------------------------
# Notes


def _sysctl(name):
    """The integer value of net.netfilter.``name`` in this network namespace; None when it cannot be read."""
    try:
        with open(os.path.join(SYSCTL_DIR, name)) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None


def notes(connections, table_was_empty):
    """What the user must know to read the result: why bytes or ages are null, and that an empty table may mean
    that nothing is tracked."""
    found = []
    for sysctl, fields, what in ((ACCT_SYSCTL, ("bytes", "packets"), "byte and packet counters"),
                                 (TIMESTAMP_SYSCTL, ("age",), "start times")):
        subject = "%s %s null" % (" and ".join(fields), "are" if len(fields) > 1 else "is")
        if _sysctl(sysctl) != 1:
            found.append("%s: the kernel keeps no %s while net.netfilter.%s is not 1 in this network namespace"
                         % (subject, what, sysctl))
        elif any(connection[fields[0]] is None for connection in connections):
            found.append("%s for connections tracked before net.netfilter.%s was set to 1" % (subject, sysctl))
    if table_was_empty:
        found.append("the connection tracking table of this network namespace was empty: the kernel tracks "
                     "connections only while a firewall or NAT rule uses conntrack, so a count of 0 does not prove "
                     "that no connections pass")
    return found


# ---------------------------------------------------------------------------------------------------------
# The run


def wait_for_drain(poll, wait_until, timeout, interval):
    """Poll until at most ``wait_until`` connections are left or ``timeout`` seconds have passed (None: poll
    once). Returns (first connections, last connections, seconds waited, drained: None without a wait)."""
    start = time.monotonic()
    first = last = poll()
    if wait_until is None:
        return first, last, 0.0, None
    deadline = start + timeout
    while len(last) > wait_until:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
        last = poll()
    return first, last, round(time.monotonic() - start, 3), len(last) <= wait_until


def without_stalled(idle_timeout):
    """A filter for successive reads: it drops the connections whose packet count has not moved for more than
    ``idle_timeout`` seconds across the reads (those whose idle time the table alone cannot tell, say a dead
    connection the kernel keeps on the short retransmission timeout)."""
    seen = {}

    def keep(connections):
        now = time.monotonic()
        kept = []
        for connection in connections:
            key = _sort_key(connection)
            previous = seen.get(key)
            # Without packet counters (net.netfilter.nf_conntrack_acct=0) nothing can be seen to stall.
            if connection["packets"] is None or previous is None or previous[0] != connection["packets"]:
                seen[key] = (connection["packets"], now)
                kept.append(connection)
            elif idle_timeout is None or now - previous[1] <= idle_timeout:
                kept.append(connection)
        return kept

    return keep


def connection_report(module):
    """The module's run: the connections to or from the address, after the wait when one is asked."""
    params = module.params
    address, version = validate(params)
    table_was_empty = _sysctl(COUNT_SYSCTL) == 0
    active = without_stalled(params["idle_timeout"])
    with open_conntrack(version) as ct:
        first, last, waited, drained = wait_for_drain(
            lambda: active(read_connections(ct, version, address, params)),
            params["wait_until"], params["timeout"], params["interval"])
    result = {"connections": last, "count": len(last), "count_at_start": len(first), "waited": waited,
              "notes": notes(last, table_was_empty)}
    if drained is not None:
        result["drained"] = drained
        if not drained and params["fail_on_timeout"]:
            raise VirtError("%d connections to or from %s are left after %s seconds; wait_until is %d" % (
                len(last), address, params["timeout"], params["wait_until"]), **result)
    return result
