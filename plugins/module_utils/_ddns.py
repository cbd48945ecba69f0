# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ddns module's run: make one record set of a zone what the options say, by a dynamic update (RFC 2136)
signed with a TSIG key, then wait until the zone's name servers serve it.

Every option is checked before anything is sent. The current set is read from the primary server and the update
carries it as a prerequisite, so an update computed from a set that someone else changed meanwhile is refused
instead of undoing their change.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import time
from collections import namedtuple

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.resolver
    import dns.tsig
    import dns.update
    from dns.rdtypes.ANY.TXT import TXT
except ImportError as import_error:  # pragma: no cover - reported by the module base
    DNSPYTHON_IMPORT_ERROR = import_error
else:
    DNSPYTHON_IMPORT_ERROR = None

REQUIRED_LIBS = (("dnspython", DNSPYTHON_IMPORT_ERROR),)

RECORD_TYPES = ("A", "AAAA", "CNAME", "TXT")
STATES = ("present", "exact", "absent")
# The TSIG algorithms by the names tsig-keygen and named.conf use; dnspython names hmac-md5 the RFC 2845 way.
TSIG_ALGORITHMS = {
    "hmac-md5": "HMAC-MD5.SIG-ALG.REG.INT",
    "hmac-sha1": "hmac-sha1",
    "hmac-sha224": "hmac-sha224",
    "hmac-sha256": "hmac-sha256",
    "hmac-sha384": "hmac-sha384",
    "hmac-sha512": "hmac-sha512",
}
TTL_MAX = 2 ** 31 - 1   # RFC 2181, section 8
TXT_STRING_MAX = 255    # one character-string; longer text is split into several
RDATA_MAX = 65535
PORT_RANGE = (1, 65535)
# Owner names and key names are domain names, not host names: service labels (_acme-challenge) are common.
NAME_LABEL_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
WAIT_INTERVAL = 0.2
SERIAL_BITS = 32
# An update whose prerequisite fails says the set is no longer what was read.
PREREQUISITE_RCODES = ("YXDOMAIN", "YXRRSET", "NXDOMAIN", "NXRRSET")

# A record set as DNS has it: one TTL and a set of rdata; None stands for no set at all.
RecordSet = namedtuple("RecordSet", ["ttl", "rdatas"])
Request = namedtuple("Request", [
    "server", "port", "zone", "record", "rdtype", "values", "ttl", "state", "key", "key_algorithm", "timeout", "wait",
    "wait_timeout"])


def _domain_name(option, value, wildcard=False):
    """``value`` when it is a domain name (letters, digits, inner hyphens and underscores in each label; with
    ``wildcard``, ``*`` as the first label); a trailing dot is taken."""
    text = value[:-1] if value.endswith(".") else value
    labels = text.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    if not text or len(text) > _validate.DNS_NAME_MAX or not all(NAME_LABEL_RE.fullmatch(label) for label in labels):
        raise InvalidOption(option, "%r is not a domain name (dot-separated labels of letters, digits, underscores "
                                    "and inner hyphens)" % (value,))
    return text


def _host_name(option, value):
    """``value`` (a trailing dot is taken) as an absolute dns.name.Name when it is a DNS host name."""
    return dns.name.from_text(_validate.dns_name(option, value[:-1] if value.endswith(".") else value) + ".")


def _rdata(rdtype, option, value):
    """One value of ``option`` as rdata of ``rdtype``."""
    if rdtype in ("A", "AAAA"):
        address = _validate.ip_address(option, value, version=4 if rdtype == "A" else 6)
        return dns.rdata.from_text(dns.rdataclass.IN, rdtype, str(address))
    if rdtype == "CNAME":
        return dns.rdata.from_text(dns.rdataclass.IN, rdtype, _host_name(option, value).to_text())
    data = value.encode("utf-8")
    strings = [data[start:start + TXT_STRING_MAX] for start in range(0, len(data), TXT_STRING_MAX)] or [b""]
    if len(data) + len(strings) > RDATA_MAX:
        raise InvalidOption(option, "a TXT value takes at most %d bytes of UTF-8, not %d"
                            % (RDATA_MAX - len(strings), len(data)))
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)


def value_text(rdata):
    """How the module shows one value: an address, an absolute name, or the text (its strings joined)."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "backslashreplace")
    if rdata.rdtype == dns.rdatatype.CNAME:
        return rdata.target.to_text()
    return rdata.address


def _sorted_values(rdatas):
    texts = [value_text(rdata) for rdata in rdatas]
    if all(rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rdata in rdatas):
        return sorted(texts, key=ipaddress.ip_address)
    return sorted(texts)


def _server(value):
    if not value:
        raise InvalidOption("server", "must be an IP address or a host name")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return _validate.dns_name("server", value[:-1] if value.endswith(".") else value)


def _key(params):
    if params["key_name"] is None:
        return None
    name = _domain_name("key_name", params["key_name"])
    try:
        base64.b64decode(params["key_secret"], validate=True)
    except (binascii.Error, ValueError):
        # The secret itself stays out of the message.
        raise InvalidOption("key_secret", "is not base64 text (the secret of a TSIG key, as tsig-keygen writes it)") from None
    return dns.tsig.Key(name + ".", params["key_secret"], TSIG_ALGORITHMS[params["key_algorithm"]])


def _values(params):
    """The values as a set of rdata (duplicates merged), or None when ``value`` is not given."""
    if params["value"] is None:
        if params["state"] != "absent":
            raise InvalidOption("value", "state=%s needs at least one value" % params["state"])
        return None
    rdatas = []
    for value in params["value"]:
        rdata = _rdata(params["type"], "value", value)
        if rdata not in rdatas:
            rdatas.append(rdata)
    if not rdatas and params["state"] != "absent":
        raise InvalidOption("value", "state=%s needs at least one value; state=absent removes a whole set"
                            % params["state"])
    if params["type"] == "CNAME" and len(rdatas) > 1:
        raise InvalidOption("value", "a CNAME set has one value, not %d (%s)" % (
            len(rdatas), ", ".join(value_text(rdata) for rdata in rdatas)))
    return frozenset(rdatas)


def validate(params):
    """Every option checked, nothing sent yet: the Request."""
    if not PORT_RANGE[0] <= params["port"] <= PORT_RANGE[1]:
        raise InvalidOption("port", "must be between %d and %d, not %d" % (PORT_RANGE + (params["port"],)))
    if not 0 <= params["ttl"] <= TTL_MAX:
        raise InvalidOption("ttl", "must be between 0 and %d seconds, not %d" % (TTL_MAX, params["ttl"]))
    for option in ("timeout", "wait_timeout"):
        if not params[option] > 0:
            raise InvalidOption(option, "must be a positive number of seconds, not %r" % (params[option],))
    zone = _host_name("zone", params["zone"]) if params["zone"] is not None else None
    record = params["record"]
    if record == "@":
        if zone is None:
            raise InvalidOption("record", "'@' (the zone's own name) needs zone")
        name = zone
    else:
        text = _domain_name("record", record, wildcard=True)
        absolute = record.endswith(".") or zone is None
        try:
            name = dns.name.from_text(text + "." if absolute else text, origin=None if absolute else zone)
        except dns.exception.DNSException as error:
            raise InvalidOption("record", "%r in zone %s: %s" % (record, zone, error)) from None
    if zone is not None and not name.is_subdomain(zone):
        raise InvalidOption("record", "%s is not in zone %s" % (name.to_text(), zone.to_text()))
    return Request(
        server=_server(params["server"]), port=params["port"], zone=zone, record=name, rdtype=params["type"],
        values=_values(params), ttl=params["ttl"], state=params["state"], key=_key(params),
        key_algorithm=params["key_algorithm"], timeout=params["timeout"], wait=params["wait"],
        wait_timeout=params["wait_timeout"])


def _resolve(server, port):
    """The address to send to: ``server`` itself or the first address its name resolves to."""
    try:
        ipaddress.ip_address(server)
        return server
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(server, port, proto=socket.IPPROTO_TCP)[0][4][0]
    except (OSError, UnicodeError) as error:
        raise InvalidOption("server", "cannot resolve %r: %s" % (server, error)) from None


class Primary:
    """The server the update goes to, reached at one address; its queries are signed with the key, if any, so a
    wrong key shows before anything is sent."""

    def __init__(self, request):
        self.request = request
        self.address = _resolve(request.server, request.port)
        self.where = "%s port %d" % (self.address, request.port)

    def ask(self, qname, rdtype):
        """The authoritative answer of the server to one query (no recursion), UDP with TCP when truncated."""
        return self._exchange(lambda timeout: ask(self.address, self.request.port, qname, rdtype, timeout,
                                                  self.request.key))

    def send(self, update):
        return self._exchange(lambda timeout: dns.query.tcp(update, self.address, timeout=timeout,
                                                            port=self.request.port))

    def _exchange(self, exchange):
        key_name = self.request.key.name.to_text(omit_final_dot=True) if self.request.key else None
        try:
            return exchange(self.request.timeout)
        except dns.exception.Timeout:
            raise InvalidOption("server", "%s did not answer within %g s" % (self.where, self.request.timeout)) from None
        except OSError as error:
            raise InvalidOption("server", "cannot reach %s: %s" % (self.where, error.strerror or error)) from None
        except EOFError:
            raise InvalidOption("server", "%s closed the connection without an answer" % self.where) from None
        except dns.tsig.PeerBadKey:
            raise InvalidOption("key_name", "TSIG: %s does not know key %s with algorithm %s (BADKEY); check key_name "
                                            "and key_algorithm" % (self.where, key_name, self.request.key_algorithm)) from None
        except (dns.tsig.PeerBadSignature, dns.tsig.BadSignature):
            raise InvalidOption("key_secret", "TSIG: %s rejected the signature made with key %s (BADSIG): "
                                              "key_secret is not the secret the server has for this key"
                                % (self.where, key_name)) from None
        except (dns.tsig.PeerBadTime, dns.tsig.BadTime):
            raise VirtError("TSIG: %s and this host disagree on the time by more than the key's fudge (BADTIME); "
                            "signed messages need clocks within 5 minutes of each other" % self.where) from None
        except dns.exception.DNSException as error:
            raise InvalidOption("server", "bad answer from %s: %s" % (self.where, error)) from None


def ask(address, port, qname, rdtype, timeout, key=None):
    query = dns.message.make_query(qname, rdtype)
    # Authoritative data only: a recursive answer could come from a cache.
    query.flags &= ~dns.flags.RD
    if key is not None:
        query.use_tsig(key)
    return dns.query.udp_with_fallback(query, address, timeout=timeout, port=port)[0]


def _soa(response):
    """The SOA rrset of an authoritative answer (in the answer, or in the authority section of a negative one)."""
    if not response.flags & dns.flags.AA:
        return None
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset
    return None


def _rcode(response):
    """The answer's rcode as text, saying when a NOERROR answer comes without authority."""
    rcode = dns.rcode.to_text(response.rcode())
    if response.rcode() == dns.rcode.NOERROR and not response.flags & dns.flags.AA:
        return "%s without authority" % rcode
    return rcode


def find_zone(primary, request):
    """The zone of the record at the primary and its SOA serial: the given zone, checked, or the one whose SOA
    the server names when asked for the record's, walking up the name while the server refuses it or answers
    with other data (a CNAME)."""
    if request.zone is not None:
        response = primary.ask(request.zone, dns.rdatatype.SOA)
        soa = _soa(response)
        if soa is None:
            raise InvalidOption("zone", "%s is not authoritative for zone %s (it answers %s)" % (
                primary.where, request.zone.to_text(), _rcode(response)))
        if soa.name != request.zone:
            raise InvalidOption("zone", "%s is not a zone at %s but a name in zone %s" % (
                request.zone.to_text(), primary.where, soa.name.to_text()))
        return request.zone, soa[0].serial
    name = request.record
    while True:
        response = primary.ask(name, dns.rdatatype.SOA)
        soa = _soa(response)
        if soa is not None:
            return soa.name, soa[0].serial
        walk_up = response.rcode() in (dns.rcode.REFUSED, dns.rcode.NOTAUTH) or response.flags & dns.flags.AA
        if not walk_up or name == dns.name.root:
            break
        name = name.parent()
    delegated = [rdata.target.to_text() for rrset in response.authority if rrset.rdtype == dns.rdatatype.NS
                 for rdata in rrset]
    raise InvalidOption("zone", "%s serves no zone that holds %s (asked for the SOA of %s, it answers %s%s); set "
                                "zone, or send the update to the zone's primary server" % (
                                    primary.where, request.record.to_text(), name.to_text(), _rcode(response),
                                    " and refers to %s" % ", ".join(delegated) if delegated else ""))


def read_set(primary, name, rdtype):
    """The record set ``name``/``rdtype`` as the primary serves it, or None when there is none."""
    response = primary.ask(name, rdtype)
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not response.flags & dns.flags.AA:
        raise InvalidOption("zone", "%s gives no authoritative answer for %s %s (%s)" % (
            primary.where, name.to_text(), rdtype, _rcode(response)))
    return _record_set(response, name, rdtype)


def _record_set(response, name, rdtype):
    rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
    return RecordSet(rrset.ttl, frozenset(rrset)) if rrset else None


def _rdatas(response, name, rdtype):
    record_set = _record_set(response, name, rdtype)
    return record_set.rdatas if record_set else frozenset()


def plan(request, current):
    """The set the options ask for, given the current one (None: no set)."""
    have = current.rdatas if current else frozenset()
    if request.state == "exact":
        wanted = request.values
    elif request.state == "present":
        wanted = have | request.values
    else:
        wanted = have - request.values if request.values is not None else frozenset()
    if not wanted:
        return None
    # DNS has one TTL per set: absent keeps the set's, present and exact apply ttl to all of it.
    return RecordSet(current.ttl if request.state == "absent" else request.ttl, wanted)


def update_message(request, zone, current, wanted):
    """The update that turns ``current`` into ``wanted``, applied only while the set still is ``current``."""
    update = dns.update.UpdateMessage(zone, keyring=request.key)
    name, rdtype = request.record, request.rdtype
    if current:
        # Value-dependent: the whole set must be exactly what was read.
        update.present(name, *current.rdatas)
    else:
        update.absent(name, rdtype)
    if wanted:
        update.replace(name, wanted.ttl, *wanted.rdatas)
    else:
        update.delete(name, rdtype)
    return update


def send_update(primary, request, zone, update):
    response = primary.send(update)
    rcode = _rcode(response)
    subject = "%s %s" % (request.record.to_text(), request.rdtype)
    if response.rcode() == dns.rcode.NOERROR:
        return
    if rcode in PREREQUISITE_RCODES:
        raise VirtError("record: %s changed at %s while this task ran (the update's prerequisite failed: %s); "
                        "nothing was changed, run the task again" % (subject, primary.where, rcode))
    if response.rcode() == dns.rcode.NOTZONE:
        raise InvalidOption("record", "%s is outside zone %s (NOTZONE)" % (subject, zone.to_text()))
    if response.rcode() in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
        if request.key is None:
            raise InvalidOption("key_name", "%s refused the update of zone %s (%s): updates need a TSIG key the "
                                            "server allows (key_name, key_secret)" % (primary.where, zone.to_text(), rcode))
        raise InvalidOption("key_name", "%s refused the update of zone %s signed with TSIG key %s (%s): the key "
                                        "may not update this zone or name" % (
                                            primary.where, zone.to_text(),
                                            request.key.name.to_text(omit_final_dot=True), rcode))
    raise VirtError("%s failed the update of %s in zone %s: %s" % (primary.where, subject, zone.to_text(), rcode))


def serial_at_least(serial, reference):
    """Whether SOA ``serial`` is ``reference`` or later in serial number arithmetic (RFC 1982)."""
    return (serial - reference) % 2 ** SERIAL_BITS < 2 ** (SERIAL_BITS - 1)


def _addresses_of(primary, response, target):
    """The addresses of name server ``target``: from the glue of the NS answer, the primary itself, or this host's
    resolver (for a server named outside the zones the primary serves)."""
    found = [rdata.address for rrset in response.additional if rrset.name == target
             and rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rdata in rrset]
    for rdtype in ("A", "AAAA"):
        if not found:
            answer = primary.ask(target, rdtype)
            if answer.flags & dns.flags.AA:
                found = [rdata.address for rdata in _rdatas(answer, target, rdtype)]
    found = found or _resolver_addresses(target, primary.request.timeout)
    if not found:
        raise InvalidOption("wait", "cannot find an address of %s, a name server of the zone (neither %s nor this "
                                    "host's resolver knows one); set wait=false to skip the wait"
                            % (target.to_text(), primary.where))
    return found


def _resolver_addresses(name, timeout):
    """The addresses of ``name`` from this host's resolver; none when it has no answer (or no configuration)."""
    found = []
    try:
        resolver = dns.resolver.Resolver()
    except dns.exception.DNSException:
        return found
    resolver.lifetime = timeout
    for rdtype in ("A", "AAAA"):
        try:
            found.extend(rdata.address for rdata in resolver.resolve(name, rdtype))
        except dns.exception.DNSException:
            continue
    return found


def name_servers(primary, zone):
    """The servers to check, each as the list of its addresses: the primary first, then those of the zone's NS set
    (the primary's own NS name among them only once)."""
    response = primary.ask(zone, dns.rdatatype.NS)
    servers = [[primary.address]]
    for rdata in sorted(_rdatas(response, zone, "NS"), key=lambda rdata: rdata.target):
        addresses = _addresses_of(primary, response, rdata.target)
        if primary.address not in addresses and addresses not in servers:
            servers.append(addresses)
    return servers


def _lag(primary, request, address, serial, wanted, timeout):
    """Why ``address`` does not serve the zone at ``serial`` with ``wanted`` yet, or None when it does. Only the
    primary is asked with the key: the others need not know it.

    The set is compared at ``serial`` only: a later serial holds this change too, and maybe someone's next one.
    """
    key = request.key if address == primary.address else None
    try:
        response = ask(address, request.port, request.zone, "SOA", timeout, key)
        soa = _soa(response)
        if soa is None:
            return "no authoritative SOA (%s)" % _rcode(response)
        if soa[0].serial != serial:
            return None if serial_at_least(soa[0].serial, serial) else "serial %d, not yet %d" % (soa[0].serial, serial)
        response = ask(address, request.port, request.record, request.rdtype, timeout, key)
    except (dns.exception.DNSException, OSError, EOFError) as error:
        return str(error) or type(error).__name__
    have = _record_set(response, request.record, request.rdtype)
    if have != wanted:
        return "serves %s" % set_text(have)
    return None


def wait_for(primary, request, serial, wanted):
    """Wait until every name server of the zone serves ``serial`` (or later) and ``wanted`` at one of its
    addresses (a host may reach only the IPv4 or only the IPv6 ones); those addresses, the primary's first."""
    servers = [tuple(addresses) for addresses in name_servers(primary, request.zone)]
    deadline = time.monotonic() + request.wait_timeout
    pending = dict.fromkeys(servers, "not asked yet")
    served = {}
    while True:
        for addresses in list(pending):
            lags = []
            for address in addresses:
                timeout = max(WAIT_INTERVAL, min(request.timeout, deadline - time.monotonic()))
                lag = _lag(primary, request, address, serial, wanted, timeout)
                if lag is None:
                    served[addresses] = address
                    del pending[addresses]
                    break
                lags.append("%s port %d: %s" % (address, request.port, lag))
            else:
                pending[addresses] = "; ".join(lags)
        if not pending:
            return [served[addresses] for addresses in servers]
        if time.monotonic() >= deadline:
            raise InvalidOption("wait_timeout", "after %g s, %d of the %d name servers of zone %s do not serve "
                                                "serial %d with the set yet: %s" % (
                                                    request.wait_timeout, len(pending), len(servers),
                                                    request.zone.to_text(), serial, "; ".join(pending.values())))
        time.sleep(WAIT_INTERVAL)


def set_text(record_set):
    """A record set in a message: its values and TTL."""
    if not record_set:
        return "no set"
    return "%s (ttl %d)" % (", ".join(_sorted_values(record_set.rdatas)), record_set.ttl)


def view(request, record_set):
    """A record set as the diff and the result show it."""
    return {"type": request.rdtype, "ttl": record_set.ttl if record_set else None,
            "values": _sorted_values(record_set.rdatas) if record_set else []}


def ensure_ddns(module):
    """The module's run: the result dict (record, type, zone, values, ttl, previous, serial, servers, changed,
    diff)."""
    request = validate(module.params)
    changes = Changes(module)
    primary = Primary(request)
    zone, serial = find_zone(primary, request)
    request = request._replace(zone=zone)
    current = read_set(primary, request.record, request.rdtype)
    wanted = plan(request, current)
    after, servers = current, [primary.address]
    if wanted != current:
        changes.act(send_update, primary, request, zone, update_message(request, zone, current, wanted))
        after = wanted
        if not changes.check_mode:
            after = read_set(primary, request.record, request.rdtype)
            if after != wanted:
                # RFC 2136 has the server ignore, without an error, a CNAME where other data is, and the reverse.
                raise InvalidOption("record", "%s took the update but serves %s %s as %s, not %s: a CNAME cannot "
                                              "share its name with other records" % (
                                                  primary.where, request.record.to_text(), request.rdtype,
                                                  set_text(after), set_text(wanted)))
            serial = find_zone(primary, request)[1]
    if request.wait and not changes.check_mode:
        servers = wait_for(primary, request, serial, after)
    before_view, after_view = view(request, current), view(request, after)
    header = "%s %s" % (request.record.to_text(), request.rdtype)
    changes.diff(before_view, after_view, header, header)
    return changes.result(dict(
        record=request.record.to_text(), type=request.rdtype, zone=zone.to_text(), values=after_view["values"],
        ttl=after_view["ttl"], previous=dict(ttl=before_view["ttl"], values=before_view["values"]), serial=serial,
        servers=servers))
