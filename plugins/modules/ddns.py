#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Set a DNS record set by dynamic update (RFC 2136), signed with a TSIG key."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ddns
short_description: Set a DNS record set by dynamic update (RFC 2136) and wait until the zone's servers serve it
version_added: 0.2.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Adds values to, sets or removes one record set (a name and a type) of a zone on its primary name server with a
    DNS UPDATE message (RFC 2136) signed with a TSIG key, as BIND's C(nsupdate) does; for example to point a
    guest's name at its new address once it moved to another site.
  - Reads the current set from O(server) first and sends an update only when the set (its values or its TTL)
    differs. The update carries what was read as its prerequisite, so a set that someone else changed in the
    meantime is left alone and the task fails; running it again works from the new set.
  - With O(wait=true), then waits until every name server of the zone (the primary and the servers of the zone's
    NS set) serves the zone at the new SOA serial, or a later one, with the new set.
options:
  server:
    description:
      - The primary name server of the zone, which takes the update, as an IPv4 or IPv6 address or a host name
        (resolved on the managed host).
    type: str
    required: true
  port:
    description:
      - The port O(server) and, with O(wait=true), the other name servers of the zone answer on.
    type: int
    default: 53
  zone:
    description:
      - The zone the record belongs to, like V(example.com) (a trailing dot is taken).
      - When left out, the zone is the one whose SOA record O(server) names when asked for the SOA of O(record);
        O(record) is then a full name.
    type: str
  record:
    description:
      - The record's name. With O(zone), a name without a trailing dot is relative to the zone (V(www) is
        V(www.example.com.)) and V(@) is the zone's own name; a name with a trailing dot is absolute.
      - Without O(zone), the full name, with or without the trailing dot.
      - Labels of letters, digits, inner hyphens and underscores (V(_acme-challenge)); the first label may be the
        wildcard V(*).
    type: str
    required: true
  type:
    description:
      - The type of the record set.
    type: str
    choices: [A, AAAA, CNAME, TXT]
    default: A
  value:
    description:
      - The values of the set, each checked for O(type) before anything is sent. V(A) takes IPv4 addresses,
        V(AAAA) IPv6 addresses, V(CNAME) one host name (absolute, with or without the trailing dot), V(TXT) any
        text, which is sent as strings of at most 255 bytes of UTF-8 each.
      - Needed with O(state=present) and O(state=exact). With O(state=absent), the values to remove; when left
        out, the whole set of O(type) goes.
      - Values equal as DNS data (V(2001:DB8::1) and V(2001:db8::1)) count once.
    type: list
    elements: str
  ttl:
    description:
      - Time to live of the set in seconds, from 0 to 2147483647.
      - DNS has one TTL per set, so O(state=present) and O(state=exact) apply it to the whole set and a set whose
        values are already there but whose TTL differs is changed. O(state=absent) keeps the remaining values'
        TTL.
    type: int
    default: 3600
  state:
    description:
      - V(present) adds the O(value) to the set; values already there stay.
      - V(exact) makes the set exactly the O(value).
      - V(absent) removes the O(value) from the set, or the whole set when O(value) is left out.
    type: str
    choices: [present, exact, absent]
    default: present
  key_name:
    description:
      - Name of the TSIG key that signs the update (and the queries to O(server)), as the server knows it.
      - Servers refuse unsigned updates unless configured otherwise.
    type: str
  key_secret:
    description:
      - The key's secret in base64, as C(tsig-keygen) writes it.
    type: str
  key_algorithm:
    description:
      - The key's algorithm.
    type: str
    choices: [hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512]
    default: hmac-sha256
  timeout:
    description:
      - Seconds to wait for each answer of a name server.
    type: float
    default: 10
  wait:
    description:
      - Whether to wait, after the update (or when there is nothing to change), until every name server of the
        zone serves the zone at the SOA serial O(server) has, or a later one, with the set as it now is.
      - The name servers are O(server) and the servers of the zone's NS set, whose addresses come from the NS
        answer, from O(server) itself or, for servers named outside the zones O(server) serves, from the managed
        host's resolver.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds O(wait) waits at most for all name servers to serve the change; the task fails after that (the
        update stays made).
    type: float
    default: 60
attributes:
  check_mode:
    description: Reads the set from O(server) and reports what would change; sends no update and does not wait.
    support: full
  diff_mode:
    description: Shows the record set (type, TTL, values) before and after.
    support: full
notes:
  - Queries to O(server) are signed with the key when one is given, so check mode finds a wrong key too; the other
    name servers are asked without it, since they need not know it.
  - A name that has a CNAME record cannot have records of other types, and the reverse; the server ignores such
    an update (RFC 2136) and the module fails, naming O(record).
  - Resolvers keep the previous values until their TTL runs out; RV(previous.ttl) says how long.
requirements:
  - dnspython >= 2.4 on the host that runs the module
seealso:
  - name: RFC 2136
    description: Dynamic Updates in the Domain Name System (DNS UPDATE).
    link: https://www.rfc-editor.org/rfc/rfc2136
  - name: RFC 8945
    description: Secret Key Transaction Authentication for DNS (TSIG).
    link: https://www.rfc-editor.org/rfc/rfc8945
"""

EXAMPLES = r"""
- name: Point web.example.com at the guest's address at its new site
  arctictern.virt.ddns:
    server: 192.0.2.53
    zone: example.com
    record: web
    value: [198.51.100.20]
    state: exact
    ttl: 60
    key_name: ddns-key
    key_secret: "{{ vault_ddns_key_secret }}"
  register: dns_change

- name: Wait out the TTL of the old address before cutting the old site's tunnel
  ansible.builtin.pause:
    seconds: "{{ dns_change.previous.ttl or 0 }}"

- name: Add an IPv6 address next to the ones there, finding the zone from the SOA
  arctictern.virt.ddns:
    server: ns1.example.com
    record: web.example.com
    type: AAAA
    value: [2001:db8::20]
    key_name: ddns-key
    key_secret: "{{ vault_ddns_key_secret }}"

- name: A TXT record, without waiting for the secondaries
  arctictern.virt.ddns:
    server: 192.0.2.53
    zone: example.com
    record: _migration
    type: TXT
    value: ["moved to site b"]
    key_name: ddns-key
    key_secret: "{{ vault_ddns_key_secret }}"
    key_algorithm: hmac-sha512
    wait: false

- name: Remove every A record of old.example.com
  arctictern.virt.ddns:
    server: 192.0.2.53
    zone: example.com
    record: old
    state: absent
    key_name: ddns-key
    key_secret: "{{ vault_ddns_key_secret }}"
"""

RETURN = r"""
record:
  description: The record's full name, with the trailing dot.
  returned: always
  type: str
  sample: web.example.com.
type:
  description: The type of the record set.
  returned: always
  type: str
  sample: A
zone:
  description: The zone, given or found from the SOA, with the trailing dot.
  returned: always
  type: str
  sample: example.com.
values:
  description:
    - The values of the set after the task (as they would be, in check mode), sorted; empty when there is no set.
    - Addresses as text, CNAME targets as absolute names, TXT text with its strings joined.
  returned: always
  type: list
  elements: str
  sample: [198.51.100.20]
ttl:
  description: TTL of the set after the task, null when there is no set.
  returned: always
  type: int
  sample: 60
previous:
  description: The set before the task.
  returned: always
  type: dict
  contains:
    ttl:
      description: Its TTL, null when there was no set; how long resolvers may still hand out the old values.
      type: int
      sample: 3600
    values:
      description: Its values, sorted; empty when there was no set.
      type: list
      elements: str
      sample: [192.0.2.20]
serial:
  description: The zone's SOA serial at O(server) after the task (the current one in check mode).
  returned: always
  type: int
  sample: 2026010203
servers:
  description:
    - The addresses of the name servers whose answers were checked; O(server) first. With O(wait=true) (not in
      check mode), every name server of the zone, each of which serves the change.
  returned: always
  type: list
  elements: str
  sample: [192.0.2.53, 198.51.100.53]
"""

from ansible_collections.arctictern.virt.plugins.module_utils._ddns import (
    RECORD_TYPES, REQUIRED_LIBS, STATES, TSIG_ALGORITHMS, ensure_ddns,
)
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule

ARGUMENT_SPEC = dict(
    server=dict(type="str", required=True),
    port=dict(type="int", default=53),
    zone=dict(type="str"),
    record=dict(type="str", required=True),
    type=dict(type="str", default="A", choices=list(RECORD_TYPES)),
    value=dict(type="list", elements="str"),
    ttl=dict(type="int", default=3600),
    state=dict(type="str", default="present", choices=list(STATES)),
    key_name=dict(type="str"),
    key_secret=dict(type="str", no_log=True),
    key_algorithm=dict(type="str", default="hmac-sha256", choices=list(TSIG_ALGORITHMS)),
    timeout=dict(type="float", default=10.0),
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="float", default=60.0),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, required_libs=REQUIRED_LIBS, supports_check_mode=True,
                              required_together=[("key_name", "key_secret")])
    module.run(ensure_ddns)


if __name__ == "__main__":
    main()
