# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network definitions as libvirt stores them, and the option changes to try on each.

The network module must change only what an option models (forward mode, bridge name, the first IPv4 address
with its first DHCP range and its leases, domain, MTU) and keep the rest: IPv6, DNS records, routes, bandwidth,
port groups, NAT ranges, forward devices, bootp/tftp, further addresses, metadata, attributes it does not set.
The unit tests (fake libvirt, and libvirt's own parser in the test driver) and the integration tests (the lab's
real daemon) both define each entry, change one option at a time through the module, and compare the XML before
and after as canonical trees (xml_compare).

Addresses are documentation ranges only (198.18.0.0/15, 2001:db8::/32); each entry has its own /23 whose upper
half is free, so that widening the prefix to /23 keeps the range and the leases.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import xml.etree.ElementTree as ET

from ansible_collections.arctictern.virt.tests.unit.xml_compare import canonical

DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"
# Modes whose bridge libvirt creates (isolated: no <forward>).
ROUTED = ("isolated", "nat", "route", "open")

# Placeholders: {name} the network, {bridge} its bridge (a bridge libvirt creates, or for mode bridge the host
# bridge, which need not exist while the network is not started).
ENTRIES = {
    # NAT with IPv6 (and DHCPv6), DNS forwarder, TXT, SRV and host records, static routes for both families, a
    # domain served locally only, a DHCP lease time and a host with its own lease time.
    "nat-ipv6-dns": """<network>
  <name>{name}</name>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mac address='52:54:00:4a:00:01'/>
  <domain name='keep.example' localOnly='yes'/>
  <dns>
    <forwarder domain='corp.example' addr='198.18.40.53'/>
    <txt name='example' value='v=keep'/>
    <srv service='ldap' protocol='tcp' domain='keep.example' target='ldap.keep.example' port='389' priority='10' weight='10'/>
    <host ip='198.18.40.9'>
      <hostname>printer</hostname>
      <hostname>printer.keep.example</hostname>
    </host>
  </dns>
  <ip address='198.18.40.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='198.18.40.100' end='198.18.40.199'>
        <lease expiry='1' unit='hours'/>
      </range>
      <host mac='52:54:00:4a:00:0a' name='web1' ip='198.18.40.10'>
        <lease expiry='2' unit='hours'/>
      </host>
      <host mac='52:54:00:4a:00:0b' name='web2' ip='198.18.40.11'/>
    </dhcp>
  </ip>
  <ip family='ipv6' address='2001:db8:40::1' prefix='64'>
    <dhcp>
      <range start='2001:db8:40::100' end='2001:db8:40::1ff'/>
    </dhcp>
  </ip>
  <route address='198.51.100.0' prefix='24' gateway='198.18.40.2'/>
  <route family='ipv6' address='2001:db8:140::' prefix='64' gateway='2001:db8:40::2'/>
</network>""",
    # NAT through one device with a NAT address and port range, bridge settings of its own, network-wide
    # bandwidth, two DHCP ranges and two port groups with bandwidth of their own.
    "nat-ports-bandwidth": """<network>
  <name>{name}</name>
  <forward dev='eth0' mode='nat'>
    <nat>
      <address start='198.18.0.100' end='198.18.0.110'/>
      <port start='20000' end='29999'/>
    </nat>
    <interface dev='eth0'/>
  </forward>
  <bridge name='{bridge}' stp='off' delay='2' macTableManager='libvirt'/>
  <mac address='52:54:00:4a:01:01'/>
  <bandwidth>
    <inbound average='10000' peak='20000' burst='1024'/>
    <outbound average='5000'/>
  </bandwidth>
  <ip address='198.18.42.1' prefix='24'>
    <dhcp>
      <range start='198.18.42.100' end='198.18.42.139'/>
      <range start='198.18.42.200' end='198.18.42.229'/>
    </dhcp>
  </ip>
  <portgroup name='gold' default='yes'>
    <bandwidth>
      <inbound average='8000'/>
    </bandwidth>
  </portgroup>
  <portgroup name='bronze'>
    <bandwidth>
      <inbound average='1000'/>
      <outbound average='1000'/>
    </bandwidth>
  </portgroup>
</network>""",
    # Isolated, guest-to-guest IPv6 allowed, PXE boot (tftp and bootp) on the first address and a second IPv4
    # address without DHCP.
    "isolated-bootp-two-ips": """<network ipv6='yes'>
  <name>{name}</name>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mac address='52:54:00:4a:02:01'/>
  <ip address='198.18.44.1' netmask='255.255.255.0'>
    <tftp root='/srv/tftp'/>
    <dhcp>
      <range start='198.18.44.100' end='198.18.44.150'/>
      <host mac='52:54:00:4a:02:0a' name='pxe1' ip='198.18.44.10'/>
      <bootp file='pxelinux.0' server='198.18.44.1'/>
    </dhcp>
  </ip>
  <ip address='198.18.47.1' prefix='24'>
  </ip>
</network>""",
    # Guests on a host bridge, with bandwidth and port groups (no virtualport).
    "bridge-portgroups": """<network>
  <name>{name}</name>
  <forward mode='bridge'/>
  <bridge name='{bridge}' macTableManager='kernel'/>
  <bandwidth>
    <inbound average='50000'/>
  </bandwidth>
  <portgroup name='web' default='yes'>
    <bandwidth>
      <outbound average='1000'/>
    </bandwidth>
  </portgroup>
  <portgroup name='db'>
  </portgroup>
</network>""",
    # A routed network (a mode the module does not model: edited in place, mode kept) through one device.
    "route": """<network>
  <name>{name}</name>
  <forward dev='eth0' mode='route'>
    <interface dev='eth0'/>
  </forward>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mac address='52:54:00:4a:03:01'/>
  <ip address='198.18.48.1' prefix='24'>
    <dhcp>
      <range start='198.18.48.100' end='198.18.48.199'/>
    </dhcp>
  </ip>
  <route address='198.51.100.0' prefix='24' gateway='198.18.48.2'/>
</network>""",
    # An open network (no firewall rules of libvirt's; not modelled either), a lease without a name.
    "open": """<network>
  <name>{name}</name>
  <forward mode='open'/>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mac address='52:54:00:4a:04:01'/>
  <domain name='open.example'/>
  <ip address='198.18.50.1' prefix='24'>
    <dhcp>
      <host mac='52:54:00:4a:04:0a' ip='198.18.50.10'/>
    </dhcp>
  </ip>
</network>""",
    # NAT with metadata of another tool, in its own namespace.
    "metadata": """<network>
  <name>{name}</name>
  <metadata>
    <app:owner xmlns:app="http://example.org/app/1.0">
      <app:team>platform</app:team>
      <app:ticket id="OPS-42"/>
    </app:owner>
  </metadata>
  <forward mode='nat'/>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mac address='52:54:00:4a:05:01'/>
  <ip address='198.18.52.1' prefix='24'>
    <dhcp>
      <range start='198.18.52.100' end='198.18.52.199'/>
      <host mac='52:54:00:4a:05:0a' name='meta1' ip='198.18.52.10'/>
    </dhcp>
  </ip>
</network>""",
    # Isolated with jumbo frames and a domain that is also resolved upstream.
    "mtu": """<network>
  <name>{name}</name>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mtu size='9000'/>
  <mac address='52:54:00:4a:06:01'/>
  <domain name='jumbo.example' localOnly='no'/>
  <ip address='198.18.54.1' prefix='24'>
  </ip>
</network>""",
    # NAT whose DNS server is switched off.
    "dns-disabled": """<network>
  <name>{name}</name>
  <forward mode='nat'/>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mac address='52:54:00:4a:07:01'/>
  <dns enable='no'/>
  <ip address='198.18.56.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='198.18.56.100' end='198.18.56.199'/>
      <host mac='52:54:00:4a:07:0a' ip='198.18.56.10'/>
    </dhcp>
  </ip>
</network>""",
    # NAT whose IPv6 address comes first; the IPv4 one says its family.
    "ipv6-first": """<network>
  <name>{name}</name>
  <forward mode='nat'/>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mac address='52:54:00:4a:08:01'/>
  <ip family='ipv6' address='2001:db8:58::1' prefix='64'>
  </ip>
  <ip family='ipv4' address='198.18.58.1' prefix='24'>
    <dhcp>
      <range start='198.18.58.100' end='198.18.58.199'/>
    </dhcp>
  </ip>
</network>""",
    # NAT with dnsmasq options of libvirt's own XML namespace (kept by the bridge driver).
    "dnsmasq-options": """<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>{name}</name>
  <forward mode='nat'/>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <mac address='52:54:00:4a:09:01'/>
  <ip address='198.18.60.1' prefix='24'>
    <dhcp>
      <range start='198.18.60.100' end='198.18.60.199'/>
    </dhcp>
  </ip>
  <dnsmasq:options>
    <dnsmasq:option value='dhcp-authoritative'/>
  </dnsmasq:options>
</network>""",
}

# Parts of an entry that libvirt's test driver (no bridge driver) does not keep; the real daemon does.
TEST_DRIVER_DROPS = ["{%s}options" % DNSMASQ_NS]


def definition(entry, name, bridge, uuid=None):
    """The XML of catalogue ``entry`` for network ``name`` on ``bridge`` (with ``uuid``, else libvirt picks one)."""
    xml = ENTRIES[entry].format(name=name, bridge=bridge)
    if uuid:
        xml = xml.replace("</name>\n", "</name>\n  <uuid>%s</uuid>\n" % uuid, 1)
    return xml


@dataclasses.dataclass
class Change:
    """One option changed on one defined network: the module options (besides name, uri and state), the option
    names the module must report, the parts of the XML allowed to differ (xml_compare paths), and a check of the
    new value (``check(before_root, after_root)`` returns a list of problems)."""

    label: str
    options: dict
    reports: list
    without: list
    check: object


def _mode(root):
    forward = root.find("forward")
    return "isolated" if forward is None else forward.get("mode", "nat")


def _first_ipv4_path(root):
    for index, element in enumerate(root.findall("ip")):
        if element.get("family", "ipv4") == "ipv4" and element.get("address"):
            return "ip[%d]" % (index + 1)
    return None


def _attributes(root, path):
    element = root.find(path)
    return None if element is None else dict(element.attrib)


def _children(element, skip=()):
    """Canonical trees of an element's children, leaving out those whose tag is in ``skip``."""
    return [canonical(child) for child in element if child.tag not in skip] if element is not None else []


def _expect(what, found, wanted):
    return [] if found == wanted else ["%s: %r, expected %r" % (what, found, wanted)]


def _host_set(root, path):
    return sorted(((host.get("mac") or "").lower(), host.get("ip"), host.get("name")) for host in root.findall(path + "/dhcp/host")
                  if host.get("ip"))


def _routed_changes(root, bridge, host_bridge):
    octets = root.find(_first_ipv4_path(root)).get("address").rsplit(".", 1)[0]
    ip = _first_ipv4_path(root)
    dhcp, hosts = ip + "/dhcp", ip + "/dhcp/host"
    mode = _mode(root)
    dhcp_before = root.find(dhcp)
    has_range = root.find(dhcp + "/range") is not None
    defined_hosts = [host for host in root.findall(hosts) if host.get("ip")]
    changes = []

    def bridge_check(before, after):
        return _expect("bridge", _attributes(after, "bridge"), dict(before.find("bridge").attrib, name=bridge + "n"))
    changes.append(Change("bridge", {"bridge": bridge + "n"}, ["bridge"], ["bridge"], bridge_check))

    new_address = octets + ".250"

    def address_check(before, after):
        wanted = dict(before.find(ip).attrib, address=new_address)
        wanted.update({"prefix": "23"} if "prefix" in wanted else {"netmask": "255.255.254.0"})
        return _expect("ip", _attributes(after, ip), wanted) + _expect("ip children", _children(after.find(ip)), _children(before.find(ip)))
    changes.append(Change("address", {"address": new_address + "/23"}, ["address"], [ip], address_check))

    new_range = dict(start=octets + ".150", end=octets + ".160")

    def range_check(before, after):
        ranges = after.findall(dhcp + "/range")
        old = before.find(dhcp + "/range")
        problems = _expect("first range", dict(ranges[0].attrib) if ranges else None, dict(old.attrib if old is not None else {}, **new_range))
        problems += _expect("first range children", _children(ranges[0] if ranges else None), _children(old))
        return problems + _expect("rest of dhcp", _children(after.find(dhcp))[1:] if has_range else _children(after.find(dhcp), ("range",)),
                                  _children(before.find(dhcp))[1:] if has_range else _children(before.find(dhcp)))
    changes.append(Change("dhcp", {"dhcp": new_range}, ["dhcp"], [dhcp], range_check))

    def emptied(tag):
        def check(before, after):
            rest = _children(before.find(dhcp), (tag,)) if tag != "host" else [
                canonical(child) for child in before.find(dhcp) if not (child.tag == "host" and child.get("ip"))]
            if not rest:
                return _expect("dhcp", after.find(dhcp) is None, True)
            found = _children(after.find(dhcp), (tag,)) if tag != "host" else [
                canonical(child) for child in after.find(dhcp) if not (child.tag == "host" and child.get("ip"))]
            return _expect("dhcp without %ss" % tag, found, rest) + _expect("%ss left" % tag, len(after.findall(dhcp + "/" + tag)), 0)
        return check
    if has_range:
        changes.append(Change("dhcp removed", {"dhcp": {}}, ["dhcp"], [dhcp], emptied("range")))

    kept = defined_hosts[0] if defined_hosts else None
    leases = [dict(mac="52:54:00:ee:00:77", ip=octets + ".77", name="added")]
    if kept is not None:
        leases.insert(0, dict(mac=kept.get("mac"), ip=kept.get("ip"), name="kept"))

    def leases_check(before, after):
        problems = _expect("leases", _host_set(after, ip), sorted((lease["mac"].lower(), lease["ip"], lease["name"]) for lease in leases))
        if kept is not None:
            # The kept host keeps its other attributes and its children (a <lease> time).
            again = [host for host in after.findall(hosts) if host.get("ip") == kept.get("ip")]
            problems += _expect("kept host", [dict(host.attrib) for host in again], [dict(kept.attrib, name="kept")])
            problems += _expect("kept host children", [_children(host) for host in again], [_children(kept)])
        rest_before = [canonical(child) for child in (dhcp_before if dhcp_before is not None else []) if child.tag != "host"]
        rest_after = [canonical(child) for child in after.find(dhcp) if child.tag != "host"]
        return problems + _expect("rest of dhcp", rest_after, rest_before)
    changes.append(Change("static_leases", {"static_leases": leases}, ["static_leases"], [dhcp], leases_check))
    if defined_hosts:
        changes.append(Change("static_leases removed", {"static_leases": []}, ["static_leases"], [dhcp], emptied("host")))

    def domain_check(before, after):
        return _expect("domain", _attributes(after, "domain"), dict(_attributes(before, "domain") or {}, name="changed.example"))
    changes.append(Change("domain", {"domain": "changed.example"}, ["domain"], ["domain"], domain_check))
    if root.find("domain") is not None:
        changes.append(Change("domain removed", {"domain": ""}, ["domain"], ["domain"],
                              lambda before, after: _expect("domain", _attributes(after, "domain"), None)))

    changes.append(Change("mtu", {"mtu": 1400}, ["mtu"], ["mtu"],
                          lambda before, after: _expect("mtu", _attributes(after, "mtu"), {"size": "1400"})))
    if root.find("mtu") is not None:
        changes.append(Change("mtu removed", {"mtu": 0}, ["mtu"], ["mtu"],
                              lambda before, after: _expect("mtu", _attributes(after, "mtu"), None)))

    if mode == "nat":
        changes.append(Change("mode isolated", {"mode": "isolated"}, ["mode"], ["forward"],
                              lambda before, after: _expect("forward", after.find("forward") is None, True)))
    else:
        def nat_check(before, after):
            forward = before.find("forward")
            if mode == "route":  # dev and <interface> hold for nat too
                wanted = (dict(forward.attrib, mode="nat"), _children(forward))
            else:
                wanted = ({"mode": "nat"}, [])
            return _expect("forward", (_attributes(after, "forward"), _children(after.find("forward"))), wanted)
        changes.append(Change("mode nat", {"mode": "nat"}, ["mode"], ["forward"], nat_check))

    # Onto a host bridge: libvirt refuses addresses, DNS, routes, domain, MTU, MAC and STP/delay there.
    gone = ("mac", "ip", "route", "dns", "domain", "mtu")
    reports = ["mode", "bridge", "address"] + [option for option, present in (
        ("dhcp", has_range), ("static_leases", bool(defined_hosts)), ("domain", root.find("domain") is not None),
        ("mtu", root.find("mtu") is not None)) if present]

    def onto_bridge(before, after):
        problems = _expect("forward", (_attributes(after, "forward"), _children(after.find("forward"))), ({"mode": "bridge"}, []))
        bridge_attributes = {key: value for key, value in before.find("bridge").attrib.items() if key not in ("stp", "delay", "zone")}
        problems += _expect("bridge", _attributes(after, "bridge"), dict(bridge_attributes, name=host_bridge))
        return problems + _expect("left over", [tag for tag in gone if after.find(tag) is not None], [])
    changes.append(Change("mode bridge", {"mode": "bridge", "bridge": host_bridge}, reports, ["forward", "bridge"] + list(gone), onto_bridge))
    return changes


def _bridged_changes(root, bridge, free_subnet):
    changes = []

    def bridge_check(before, after):
        return _expect("bridge", _attributes(after, "bridge"), dict(before.find("bridge").attrib, name=bridge + "n"))
    changes.append(Change("bridge", {"bridge": bridge + "n"}, ["bridge"], ["bridge"], bridge_check))

    def own_bridge(before, after, forward=None):
        # libvirt names the bridge it now creates and gives it a MAC address; the bridge's other settings stay.
        found = after.find("bridge")
        problems = _expect("forward", _attributes(after, "forward"), forward)
        problems += _expect("new bridge name", found.get("name") not in (None, bridge), True)
        problems += _expect("bridge", {key: value for key, value in found.attrib.items() if key != "name"},
                            dict({key: value for key, value in before.find("bridge").attrib.items() if key != "name"}, stp="on", delay="0"))
        return problems + _expect("mac", after.find("mac") is not None, True)
    changes.append(Change("mode isolated", {"mode": "isolated"}, ["mode", "bridge"], ["forward", "bridge", "mac"], own_bridge))

    def nat_check(before, after):
        problems = own_bridge(before, after, forward={"mode": "nat"})
        return problems + _expect("ip", [dict(element.attrib) for element in after.findall("ip")],
                                  [{"address": free_subnet + ".1", "netmask": "255.255.255.0"}])
    changes.append(Change("mode nat", {"mode": "nat", "address": free_subnet + ".1/24"}, ["mode", "bridge", "address"],
                          ["forward", "bridge", "mac", "ip"], nat_check))
    # What a host bridge does not have, there is nothing to remove of.
    changes.append(Change("removals", {"domain": "", "mtu": 0, "dhcp": {}, "static_leases": []}, [], [], lambda before, after: []))
    return changes


def changes_for(defined_xml, bridge, host_bridge, free_subnet="198.18.46"):
    """Every option change to try on the network ``defined_xml`` (libvirt's inactive XML) whose bridge is
    ``bridge``; ``host_bridge`` is the host bridge to move a routed network onto, ``free_subnet`` (three octets)
    one to give a bridged network that becomes a NAT network."""
    root = ET.fromstring(defined_xml)
    if _mode(root) in ROUTED:
        return _routed_changes(root, bridge, host_bridge)
    return _bridged_changes(root, bridge, free_subnet)


_TAG_RE = re.compile(r"^</?([A-Za-z_][\w.:-]*)")


def diff_problems(diff, change, before_root, after_root):
    """Problems with the module's --diff of the definition (``diff`` is its first entry): the lines that differ
    must all be lines of the parts the change may touch, and there must be some exactly when it reports a change."""
    allowed = set()
    for root in (before_root, after_root):
        for path in change.without:
            for element in root.iterfind(path):
                allowed.update(descendant.tag for descendant in element.iter())
    for path in change.without:
        # A parent emptied (or filled) by the change is written as <tag/> instead of <tag>...</tag> (or back).
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        sides = [root.find(parent) if parent else None for root in (before_root, after_root)]
        if all(side is not None for side in sides) and (len(sides[0]) == 0) != (len(sides[1]) == 0):
            allowed.add(sides[0].tag)
    # ElementTree writes a namespaced tag with a prefix: compare local names.
    allowed = {tag.rsplit("}", 1)[-1] for tag in allowed}
    changed = [line for line in difflib.ndiff(diff["before"].splitlines(), diff["after"].splitlines()) if line[:2] in ("- ", "+ ")]
    problems = []
    if bool(changed) != bool(change.reports):
        problems.append("diff has %d changed lines, reports %s" % (len(changed), change.reports))
    for line in changed:
        match = _TAG_RE.match(line[2:].strip())
        if not match or match.group(1).rsplit(":", 1)[-1] not in allowed:
            problems.append("diff line outside the change: %s" % line)
    return problems
