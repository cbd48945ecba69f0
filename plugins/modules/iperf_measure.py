#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure the throughput to an iperf3 server with one iperf3 client test."""

from __future__ import annotations

DOCUMENTATION = r"""
module: iperf_measure
short_description: Measure throughput, retransmits, RTT, jitter and loss to an iperf3 server
version_added: 0.2.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Runs one iperf3 client test (C(iperf3 --client ... --json)) on the host the module runs on against an
    iperf3 server (C(iperf3 -s)) and returns the figures of iperf3's JSON report as numbers a play can compare.
    For example to check a migrated guest's link before and after a WAN cutover.
  - TCP or UDP, for O(duration) seconds, with O(parallel) streams, from the client to the server or, with
    O(reverse=true), from the server to the client.
  - The whole run is bounded by O(timeout). A server that never answers or stops answering fails the task once it
    has passed, and iperf3 is stopped. A closed port, a server busy with another client's test (iperf3 serves one
    test at a time), a failed authentication and a name that does not resolve fail too, each with its RV(cause).
  - Changes nothing, so C(changed) is always V(false).
options:
  server:
    description:
      - The iperf3 server, as an IPv4 or IPv6 address or a DNS name (resolved on the host that runs the module).
    type: str
    required: true
  port:
    description:
      - The port the server listens on (C(iperf3 -s -p)).
    type: int
    default: 5201
  protocol:
    description:
      - V(tcp) measures throughput with retransmits and RTT; V(udp) sends at O(bitrate) and measures jitter and loss.
    type: str
    choices: [tcp, udp]
    default: tcp
  duration:
    description:
      - Seconds to measure (1 or more), after O(omit).
    type: int
    default: 5
  parallel:
    description:
      - Number of parallel streams, from 1 to 128.
    type: int
    default: 1
  reverse:
    description:
      - Whether the server sends and the client receives, instead of the reverse.
    type: bool
    default: false
  bitrate:
    description:
      - The target bit rate of each stream (iperf3's C(--bitrate)), in bits per second with an optional V(K),
        V(M), V(G) or V(T) (powers of 1000), like V(500K), V(100M), V(1G) or V(2500000). V(0) means no limit.
      - Without it, iperf3 sends TCP as fast as it can and UDP at 1 Mbit/s.
    type: str
  omit:
    description:
      - Seconds at the start left out of the figures (0 or more), while TCP's window opens. They add to the run's
        time.
    type: int
    default: 0
  bind:
    description:
      - The local IP address to send from (iperf3's C(--bind)).
    type: str
  connect_timeout:
    description:
      - Seconds the connection to the server may take to be set up; more than 0.
    type: float
    default: 5
  timeout:
    description:
      - Seconds the whole run may take, lookup of O(server) included; more than O(duration) + O(omit). When it
        passes, iperf3 is stopped and the task fails with RV(cause=timeout).
      - Defaults to O(duration) + O(omit) + O(connect_timeout) + 10.
    type: int
  username:
    description:
      - The user to authenticate as, for a server started with C(--rsa-private-key-path) and
        C(--authorized-users-path). Needs O(password) and O(rsa_public_key).
    type: str
  password:
    description:
      - The password of O(username). It is passed to iperf3 in the C(IPERF3_PASSWORD) environment variable, never
        on its command line.
    type: str
  rsa_public_key:
    description:
      - The server's RSA public key in PEM (C(-----BEGIN PUBLIC KEY-----)), as C(openssl rsa -pubout) writes it;
        iperf3 encrypts the credentials with it. It is written to a file only the module's user can read, for
        the time of the test.
    type: str
attributes:
  check_mode:
    description: Runs nothing; returns the command it would run and the options, with the figures V(null).
    support: full
  diff_mode:
    description: Changes nothing, so there is nothing to diff.
    support: N/A
notes:
  - Needs the C(iperf3) program (3.12 or later, for C(--connect-timeout)) on the host that runs the module.
  - With O(reverse=true), RV(rtt_ms) and RV(rtt_max_ms) come from the server's own report, which iperf3 passes on
    only when the server runs with C(--json) (C(iperf3 -s -J)); otherwise they are V(null).
  - Run the module on the client side of the path to measure, with C(delegate_to) if needed; the server must
    already run (C(iperf3 -s), or its packaged service).
requirements:
  - iperf3 3.12 or later on the host that runs the module
"""

EXAMPLES = r"""
- name: Measure TCP throughput to the new site for 10 seconds with 4 streams
  arctictern.virt.iperf_measure:
    server: 198.51.100.20
    duration: 10
    parallel: 4
    omit: 2
  register: tcp

- name: Fail when the link is slower than 500 Mbit/s or retransmits a lot
  ansible.builtin.assert:
    that:
      - tcp.received_bps >= 500e6
      - tcp.retransmits < 1000
    fail_msg: "{{ tcp.received_bps / 1e6 }} Mbit/s, {{ tcp.retransmits }} retransmits, RTT {{ tcp.rtt_ms }} ms"

- name: Jitter and loss of 50 Mbit/s UDP from the server to this host
  arctictern.virt.iperf_measure:
    server: iperf.example.net
    protocol: udp
    bitrate: 50M
    reverse: true
  register: udp

- name: Measure against a server that authenticates its clients, retrying while it is busy
  arctictern.virt.iperf_measure:
    server: 198.51.100.20
    username: ansible
    password: "{{ iperf_password }}"
    rsa_public_key: "{{ lookup('ansible.builtin.file', 'iperf-public.pem') }}"
  register: measured
  until: measured is success or measured.cause != 'busy'
  retries: 5
  delay: 10
"""

RETURN = r"""
server:
  description: O(server) as given (an address in its short form).
  returned: always
  type: str
  sample: 198.51.100.20
port:
  description: O(port).
  returned: always
  type: int
  sample: 5201
protocol:
  description: O(protocol).
  returned: always
  type: str
  sample: tcp
duration:
  description: Seconds actually measured, as iperf3 reports them; O(duration) in check mode.
  returned: always
  type: float
  sample: 5.000213
parallel:
  description: O(parallel).
  returned: always
  type: int
  sample: 1
reverse:
  description: O(reverse).
  returned: always
  type: bool
  sample: false
bitrate:
  description: O(bitrate), V(null) when not given.
  returned: always
  type: str
  sample: 100M
omit:
  description: O(omit).
  returned: always
  type: int
  sample: 0
bind:
  description: O(bind), V(null) when not given.
  returned: always
  type: str
  sample: null
connect_timeout:
  description: O(connect_timeout).
  returned: always
  type: float
  sample: 5.0
timeout:
  description: The bound on the whole run, in seconds (O(timeout) or its default).
  returned: always
  type: float
  sample: 20.0
sent_bps:
  description:
    - Bits per second the sending side sent (the client, or the server with O(reverse=true)); V(null) in check
      mode.
  returned: always
  type: float
  sample: 941237011.2
received_bps:
  description: Bits per second the receiving side received; V(null) in check mode.
  returned: always
  type: float
  sample: 939866210.7
retransmits:
  description: TCP segments the sending side sent again; V(null) for UDP and in check mode.
  returned: always
  type: int
  sample: 12
rtt_ms:
  description:
    - Mean round-trip time in milliseconds of the sending side's streams, as its kernel measured it (the mean of
      each stream's mean); TCP only, V(null) when iperf3 gives none (see the notes on O(reverse)).
  returned: always
  type: float
  sample: 21.4
rtt_max_ms:
  description: The largest round-trip time in milliseconds of any of those streams; V(null) like RV(rtt_ms).
  returned: always
  type: float
  sample: 34.9
cpu:
  description: CPU use during the test; V(null) in check mode.
  returned: always
  type: dict
  contains:
    local_percent:
      description: Percent of one CPU the client used (user and system).
      type: float
      sample: 12.5
    remote_percent:
      description: Percent of one CPU the server used.
      type: float
      sample: 30.1
jitter_ms:
  description: Jitter in milliseconds the receiving side measured; UDP only, else V(null).
  returned: always
  type: float
  sample: 0.042
lost_packets:
  description: UDP packets that did not arrive; UDP only, else V(null).
  returned: always
  type: int
  sample: 3
packets:
  description: UDP packets sent; UDP only, else V(null).
  returned: always
  type: int
  sample: 42810
lost_percent:
  description: RV(lost_packets) in percent of RV(packets); UDP only, else V(null).
  returned: always
  type: float
  sample: 0.007
command:
  description:
    - The iperf3 command line as run (as it would run, in check mode), without the password. In check mode the
      key file shows as V(<rsa_public_key file>).
  returned: always
  type: list
  elements: str
  sample: [/usr/bin/iperf3, --client, 198.51.100.20, --port, "5201", --json, --time, "5", --parallel, "1", --omit,
           "0", --connect-timeout, "5000"]
cause:
  description:
    - Why the task failed. V(refused) nothing listens on the port; V(busy) the server runs another test;
      V(timeout) no answer within O(connect_timeout), or no result within O(timeout); V(auth) the server refused
      the credentials (or wants some); V(unresolved) O(server) does not resolve; V(iperf3_missing) iperf3 is not
      installed; V(error) anything else, with iperf3's message in RV(iperf3_error).
  returned: failure
  type: str
  sample: busy
errno:
  description: The name of the errno iperf3 appended to its message, when it did.
  returned: failure
  type: str
  sample: ECONNREFUSED
iperf3_error:
  description: iperf3's own error message, when iperf3 gave one.
  returned: failure
  type: str
  sample: "the server is busy running a test. try again later"
"""

from ansible_collections.arctictern.virt.plugins.module_utils._iperf import DEFAULT_PORT, PROTOCOLS, measure
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule

ARGUMENT_SPEC = dict(
    server=dict(type="str", required=True),
    port=dict(type="int", default=DEFAULT_PORT),
    protocol=dict(type="str", default="tcp", choices=list(PROTOCOLS)),
    duration=dict(type="int", default=5),
    parallel=dict(type="int", default=1),
    reverse=dict(type="bool", default=False),
    bitrate=dict(type="str"),
    omit=dict(type="int", default=0),
    bind=dict(type="str"),
    connect_timeout=dict(type="float", default=5.0),
    timeout=dict(type="int"),
    username=dict(type="str"),
    password=dict(type="str", no_log=True),
    rsa_public_key=dict(type="str"),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, supports_check_mode=True,
                              required_together=[("username", "password", "rsa_public_key")])
    module.run(measure)


if __name__ == "__main__":
    main()
