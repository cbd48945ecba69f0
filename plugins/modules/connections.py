#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connections the kernel tracks to or from an address, and a wait until they drain."""

from __future__ import annotations

DOCUMENTATION = r"""
module: connections
short_description: List the tracked connections to or from an address and wait until they drain
version_added: 0.2.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Reads the kernel's connection tracking table (netfilter conntrack) of the network namespace the module runs
    in, over netlink (through pyroute2's C(NFCTSocket)), and reports the connections to or from O(address).
    The C(conntrack) program is not used.
  - A connection is reported when O(address) is the source or the destination of its original tuple (as the
    first packet went) or of its reply tuple (as answers go). So it covers connections to the address and from
    it, and NATed ones whose reply tuple alone holds it, as after a DNAT port forward to a guest.
  - With O(wait_until), the module polls the table every O(interval) seconds until at most O(wait_until)
    connections are left or O(timeout) seconds have passed. This is how a guest's old address is drained, on the
    host that still forwards its traffic, before that path is removed.
  - The kernel tracks connections only while a firewall or NAT rule uses conntrack, as libvirt's NAT networks
    and stateful firewalls do. In a network namespace where nothing uses it, the table stays empty; RV(notes)
    then says so.
  - Only reads. Check mode runs the same, wait included.
options:
  address:
    description:
      - The IPv4 or IPv6 address whose connections to count, without a zone (V(%eth0)).
    type: str
    required: true
  port:
    description:
      - Only connections with this port (1 to 65535) on the side of O(address) in the original or the reply tuple.
        Connections without ports, such as ICMP, are then left out.
    type: int
  protocol:
    description:
      - Only connections of this protocol. V(icmp) takes ICMP for an IPv4 O(address) and ICMPv6 for an IPv6 one.
        V(any) takes every protocol, including those not named here (SCTP, GRE, ...).
    type: str
    choices: [tcp, udp, icmp, any]
    default: any
  states:
    description:
      - The conntrack TCP states of the TCP connections to count. The default are the live states, in which data
        can still flow. V(TIME_WAIT) and V(CLOSE) are the states of ended connections, whose entries only wait
        out stray packets. V(SYN_SENT2) is a simultaneous open.
      - Entries of other protocols have no state and always count until they time out (UDP after 30 to 120
        seconds without packets, ICMP after 30).
    type: list
    elements: str
    choices: [SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2]
    default: [SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, SYN_SENT2]
  wait_until:
    description:
      - Wait until at most this many (0 or more) connections are left, or until O(timeout).
      - Without it, the module reads the table once.
    type: int
  timeout:
    description:
      - How long to wait, in seconds, with O(wait_until). The table is read a last time at the deadline.
    type: float
    default: 300
  interval:
    description:
      - Seconds between two reads of the table while waiting; more than 0.
    type: float
    default: 1.0
  fail_on_timeout:
    description:
      - Whether the task fails when more than O(wait_until) connections are left at the deadline. The failure
        carries the same values as a result does.
      - When V(false), the result says RV(drained=false) and lists the connections left.
    type: bool
    default: false
  idle_timeout:
    description:
      - Connections without a packet for longer than this many seconds do not count. A connection whose client
        went away without closing it stays ESTABLISHED in the table for days (the kernel's
        C(net.netfilter.nf_conntrack_tcp_timeout_established), 5 days by default), and would keep a wait from ever
        draining; an idle connection that is still alive is not counted either.
      - A connection's idle time is the timeout of its state less what is left of it (RV(connections[].idle)). Where
        that cannot tell (a TCP entry with data unacknowledged gets a shorter timeout), a connection whose packet
        count has not moved for longer than this during the wait does not count either.
    type: float
attributes:
  check_mode:
    description: Only reads; runs the same in check mode, including the wait.
    support: full
  diff_mode:
    description: Changes nothing, so there is nothing to diff.
    support: N/A
notes:
  - Needs root (CAP_NET_ADMIN) on the host; the kernel refuses to list conntrack entries to others.
  - RV(connections[].bytes) and RV(connections[].packets) need the sysctl C(net.netfilter.nf_conntrack_acct=1),
    and RV(connections[].age) needs C(net.netfilter.nf_conntrack_timestamp=1), both set in the network namespace
    before the connection was tracked. The module does not change them; RV(notes) says when they are off.
  - Each read asks the kernel only for the entries that can hold the address (Linux 5.8 and later filter dumps
    by tuple, 5.15 and later by NAT status). Older kernels send the whole table, which takes longer to read.
requirements:
  - pyroute2 on the host that runs the module
"""

EXAMPLES = r"""
- name: How many connections does the guest's old address still have?
  arctictern.virt.connections:
    address: 192.0.2.50
  register: old_address

- name: Show them
  ansible.builtin.debug:
    msg: "{{ old_address.count }} left: {{ old_address.connections | map(attribute='source') | list }}"

- name: Wait up to 30 minutes for the HTTPS clients of the old address to leave, then tear the tunnel down
  arctictern.virt.connections:
    address: 192.0.2.50
    port: 443
    protocol: tcp
    wait_until: 0
    timeout: 1800
    interval: 5
  register: drain

- name: Report what is cut off
  ansible.builtin.debug:
    msg: "{{ drain.count }} connections left after {{ drain.waited }} s"
  when: not drain.drained

- name: Count closing connections too, and fail when they do not end within 5 minutes
  arctictern.virt.connections:
    address: "2001:db8::50"
    states: [SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT]
    wait_until: 0
    fail_on_timeout: true
"""

RETURN = r"""
connections:
  description:
    - The connections that count, at the end of the task (after the wait), sorted by protocol and original
      tuple.
  returned: always
  type: list
  elements: dict
  contains:
    protocol:
      description: V(tcp), V(udp), V(icmp), V(icmpv6), V(sctp), V(dccp), V(gre), V(udplite), or the IP protocol number.
      type: str
      sample: tcp
    source:
      description: Source address of the original direction (the side that opened the connection).
      type: str
      sample: 198.51.100.7
    destination:
      description: Destination address of the original direction.
      type: str
      sample: 192.0.2.50
    source_port:
      description: Source port of the original direction; V(null) for protocols without ports.
      type: int
      sample: 51234
    destination_port:
      description: Destination port of the original direction; V(null) for protocols without ports.
      type: int
      sample: 443
    reply_source:
      description: Source address of the reply direction; differs from RV(connections[].destination) after DNAT.
      type: str
      sample: 192.0.2.50
    reply_destination:
      description: Destination address of the reply direction; differs from RV(connections[].source) after SNAT.
      type: str
      sample: 198.51.100.7
    reply_source_port:
      description: Source port of the reply direction; V(null) for protocols without ports.
      type: int
      sample: 443
    reply_destination_port:
      description: Destination port of the reply direction; V(null) for protocols without ports.
      type: int
      sample: 51234
    state:
      description: Conntrack TCP state (see O(states)); V(null) for other protocols.
      type: str
      sample: ESTABLISHED
    bytes:
      description:
        - Bytes of both directions together, IP headers included; V(null) without accounting (see RV(notes)).
      type: int
      sample: 48213
    packets:
      description: Packets of both directions together; V(null) without accounting.
      type: int
      sample: 61
    age:
      description: Seconds since the connection was tracked; V(null) without timestamps (see RV(notes)).
      type: float
      sample: 312.504
    expires_in:
      description: Seconds until the entry times out unless more packets come.
      type: int
      sample: 431999
    idle:
      description:
        - Seconds since the connection's last packet (the timeout of its state less RV(connections[].expires_in));
          V(null) when the kernel's timeout for its state cannot be read.
      type: int
      sample: 1
    mark:
      description: The connection's mark (C(CONNMARK)); V(null) when the kernel has no conntrack marks.
      type: int
      sample: 0
count:
  description: Number of RV(connections).
  returned: always
  type: int
  sample: 1
count_at_start:
  description: Number of connections that counted at the first read of the table.
  returned: always
  type: int
  sample: 14
waited:
  description: Seconds from the first to the last read of the table; V(0) without O(wait_until).
  returned: always
  type: float
  sample: 42.117
drained:
  description: Whether at most O(wait_until) connections were left at the end.
  returned: when O(wait_until) is set
  type: bool
  sample: true
notes:
  description:
    - Why RV(connections[].bytes), RV(connections[].packets) or RV(connections[].age) are V(null), naming the
      sysctl, and a warning when the table was empty, which may mean that the kernel tracks nothing.
  returned: always
  type: list
  elements: str
  sample:
    - "age is null: the kernel keeps no start times while net.netfilter.nf_conntrack_timestamp is not 1 in this
      network namespace"
"""

from ansible_collections.arctictern.virt.plugins.module_utils._conntrack import (
    LIVE_TCP_STATES,
    REQUIRED_LIBS,
    TCP_STATES,
    connection_report,
)
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule

ARGUMENT_SPEC = dict(
    address=dict(type="str", required=True),
    port=dict(type="int"),
    protocol=dict(type="str", default="any", choices=["tcp", "udp", "icmp", "any"]),
    states=dict(type="list", elements="str", choices=list(TCP_STATES[1:]), default=list(LIVE_TCP_STATES)),
    wait_until=dict(type="int"),
    timeout=dict(type="float", default=300.0),
    interval=dict(type="float", default=1.0),
    fail_on_timeout=dict(type="bool", default=False),
    idle_timeout=dict(type="float"),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, required_libs=REQUIRED_LIBS, supports_check_mode=True)
    module.run(connection_report)


if __name__ == "__main__":
    main()
