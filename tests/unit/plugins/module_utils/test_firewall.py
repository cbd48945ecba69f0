# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import uuid

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _firewall
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._firewall import Forward, Iptables, chain_names, plan
from ansible_collections.arctictern.virt.plugins.module_utils._iptables import parse_rules
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._iptables_fake import FakeIptables

SUBNET = ipaddress.ip_interface("198.18.100.1/24")
NAME = "lab"
DNAT, ACCEPT = chain_names(NAME)
SSH = Forward("tcp", 2210, "198.18.100.10", 22)
DNS = Forward("udp", 5353, "198.18.100.10", 53, "192.0.2.10")

# What libvirt 9.0 programs for a running NAT network (iptables -S), trimmed to the parts that matter here.
LIBVIRT_FILTER = """-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N LIBVIRT_FWI
-N LIBVIRT_FWO
-N LIBVIRT_FWX
-N LIBVIRT_INP
-N LIBVIRT_OUT
-A INPUT -j LIBVIRT_INP
-A FORWARD -j LIBVIRT_FWX
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_FWO
-A OUTPUT -j LIBVIRT_OUT
-A LIBVIRT_FWI -d 198.18.100.0/24 -o virbr1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LIBVIRT_FWI -o virbr1 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWO -s 198.18.100.0/24 -i virbr1 -j ACCEPT
-A LIBVIRT_FWO -i virbr1 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWX -i virbr1 -o virbr1 -j ACCEPT
"""
LIBVIRT_NAT = """-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N LIBVIRT_PRT
-A POSTROUTING -j LIBVIRT_PRT
-A LIBVIRT_PRT -s 198.18.100.0/24 ! -d 198.18.100.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535
"""


def libvirt_tables():
    return {"nat": parse_rules(LIBVIRT_NAT), "filter": parse_rules(LIBVIRT_FILTER)}


def apply(tables, commands):
    """``commands`` applied to a copy of ``tables`` by the fake iptables; the resulting tables."""
    fake = FakeIptables()
    fake.tables = {table: {chain: [list(rule) for rule in rules] for chain, rules in chains.items()} for table, chains in tables.items()}
    iptables = Iptables("iptables", fake.run)
    iptables.apply(commands)
    return iptables.tables()


# forwards_from_options


def test_forwards_are_validated_defaulted_and_sorted():
    forwards = _firewall.forwards_from_options([
        {"proto": "udp", "host_port": 5353, "guest_ip": "198.18.100.10", "guest_port": 53, "host_address": "192.0.2.10"},
        {"host_port": 8080, "guest_ip": "198.18.100.11"},
        {"proto": "tcp", "host_port": 2210, "guest_ip": "198.18.100.10", "guest_port": 22},
    ], SUBNET)

    assert forwards == (
        Forward("tcp", 2210, "198.18.100.10", 22),
        Forward("tcp", 8080, "198.18.100.11", 8080),  # guest_port defaults to host_port, proto to tcp
        Forward("udp", 5353, "198.18.100.10", 53, "192.0.2.10"),
    )
    assert forwards[0].to_dict() == {"proto": "tcp", "host_port": 2210, "guest_ip": "198.18.100.10", "guest_port": 22, "host_address": None}
    assert _firewall.forwards_from_options(None, SUBNET) == ()


def test_the_same_port_on_other_protocols_or_addresses_is_allowed():
    forwards = _firewall.forwards_from_options([
        {"proto": "tcp", "host_port": 53, "guest_ip": "198.18.100.10", "host_address": "192.0.2.10"},
        {"proto": "tcp", "host_port": 53, "guest_ip": "198.18.100.11", "host_address": "192.0.2.11"},
        {"proto": "udp", "host_port": 53, "guest_ip": "198.18.100.10"},
    ], SUBNET)

    assert len(forwards) == 3


@pytest.mark.parametrize("entry, problem", [
    ({"host_port": 0, "guest_ip": "198.18.100.10"}, "host_port 0 is out of the range 1..65535"),
    ({"host_port": 65536, "guest_ip": "198.18.100.10"}, "host_port 65536 is out of the range 1..65535"),
    ({"host_port": "http", "guest_ip": "198.18.100.10"}, "host_port must be a port number"),
    ({"host_port": True, "guest_ip": "198.18.100.10"}, "host_port must be a port number"),
    ({"guest_ip": "198.18.100.10"}, "host_port must be a port number"),
    ({"host_port": 80, "guest_ip": "198.18.100.10", "guest_port": 70000}, "guest_port 70000 is out of the range"),
    ({"host_port": 80, "guest_ip": "198.18.101.10"}, "guest_ip 198.18.101.10 is not a guest address of the network's subnet 198.18.100.0/24"),
    ({"host_port": 80, "guest_ip": "198.18.100.0"}, "is not a guest address"),
    ({"host_port": 80, "guest_ip": "198.18.100.255"}, "is not a guest address"),
    ({"host_port": 80, "guest_ip": "198.18.100.1"}, "is the host's own address"),
    ({"host_port": 80, "guest_ip": "fd00::10"}, "is not an IPv4 address"),
    ({"host_port": 80, "guest_ip": "web1"}, "is not an IPv4 address"),
    ({"host_port": 80, "guest_ip": None}, "is not an IPv4 address"),
    ({"host_port": 80, "guest_ip": "198.18.100.10", "host_address": "192.0.2.300"}, "host_address '192.0.2.300' is not an IPv4 address"),
    ({"proto": "sctp", "host_port": 80, "guest_ip": "198.18.100.10"}, "proto must be one of tcp, udp"),
    ("80:198.18.100.10", "must be a dict"),
])
def test_bad_forwards_are_rejected_naming_the_option(entry, problem):
    with pytest.raises(InvalidOption) as caught:
        _firewall.forwards_from_options([{"host_port": 22, "guest_ip": "198.18.100.5"}, entry], SUBNET)

    assert caught.value.option == "port_forwards"
    assert caught.value.msg.startswith("port_forwards: entry 2")
    assert problem in caught.value.msg


@pytest.mark.parametrize("first, second", [
    ({"host_port": 80, "guest_ip": "198.18.100.10"}, {"host_port": 80, "guest_ip": "198.18.100.11"}),
    ({"host_port": 80, "guest_ip": "198.18.100.10", "host_address": "192.0.2.1"},
     {"host_port": 80, "guest_ip": "198.18.100.11", "host_address": "192.0.2.1"}),
    # One on every address and one on a single address would shadow each other.
    ({"host_port": 80, "guest_ip": "198.18.100.10"}, {"host_port": 80, "guest_ip": "198.18.100.11", "host_address": "192.0.2.1"}),
])
def test_a_port_forwarded_twice_is_rejected(first, second):
    with pytest.raises(InvalidOption, match="port_forwards: entry 2: tcp port 80 is forwarded twice"):
        _firewall.forwards_from_options([first, second], SUBNET)


# chain names and rules


def test_chain_names_are_short_hashes_that_never_carry_the_name():
    hostile = "x" * 200 + "'; rm -rf / <&>"
    names = chain_names(hostile)

    assert all(len(name) <= 28 for name in names)
    assert names[0].startswith("ATV_DNAT_") and names[1].startswith("ATV_FWD_")
    assert names[0][len("ATV_DNAT_"):] == names[1][len("ATV_FWD_"):]
    assert all(name.replace("_", "").isalnum() for name in names)
    assert chain_names(hostile) == names
    assert chain_names("lab2") != chain_names("lab")


def test_rules_are_written_as_iptables_prints_them():
    assert _firewall.dnat_rule(DNS) == ["-d", "192.0.2.10/32", "-p", "udp", "-m", "udp", "--dport", "5353",
                                        "-j", "DNAT", "--to-destination", "198.18.100.10:53"]
    assert _firewall.accept_rule(SSH) == ["-d", "198.18.100.10/32", "-p", "tcp", "-m", "tcp", "--dport", "22",
                                          "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"]


def test_parse_rules_keeps_chains_and_rule_tokens():
    tables = parse_rules(LIBVIRT_NAT + '-A POSTROUTING -m comment --comment "odd \' quote" -j RETURN\n')

    assert set(tables) == {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "LIBVIRT_PRT"}
    assert tables["PREROUTING"] == []
    assert tables["POSTROUTING"][0] == ["-j", "LIBVIRT_PRT"]
    assert tables["POSTROUTING"][1] == ["-m", "comment", "--comment", "odd ' quote", "-j", "RETURN"]
    assert tables["LIBVIRT_PRT"] == [["-s", "198.18.100.0/24", "!", "-d", "198.18.100.0/24", "-p", "tcp",
                                      "-j", "MASQUERADE", "--to-ports", "1024-65535"]]


# plan


def test_plan_from_nothing_makes_chains_rules_and_jumps():
    commands = plan(libvirt_tables(), NAME, (SSH, DNS))

    assert commands == [
        ["-t", "nat", "-N", DNAT],
        ["-t", "nat", "-A", DNAT] + _firewall.dnat_rule(SSH),
        ["-t", "nat", "-A", DNAT] + _firewall.dnat_rule(DNS),
        ["-t", "filter", "-N", ACCEPT],
        ["-t", "filter", "-A", ACCEPT] + _firewall.accept_rule(SSH),
        ["-t", "filter", "-A", ACCEPT] + _firewall.accept_rule(DNS),
        ["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT],
        ["-t", "nat", "-A", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT],
        ["-t", "filter", "-I", "FORWARD", "1", "-j", ACCEPT],
    ]
    after = apply(libvirt_tables(), commands)
    assert after["filter"]["FORWARD"][0] == ["-j", ACCEPT]
    assert after["filter"]["LIBVIRT_FWI"] == libvirt_tables()["filter"]["LIBVIRT_FWI"]  # libvirt's rules untouched
    assert plan(after, NAME, (SSH, DNS)) == []


def test_plan_changes_only_what_differs():
    web = Forward("tcp", 8080, "198.18.100.11", 80)
    tables = apply(libvirt_tables(), plan(libvirt_tables(), NAME, (SSH, DNS)))

    commands = plan(tables, NAME, (SSH, web))

    assert commands == [
        ["-t", "nat", "-D", DNAT] + _firewall.dnat_rule(DNS),
        ["-t", "nat", "-A", DNAT] + _firewall.dnat_rule(web),
        ["-t", "filter", "-D", ACCEPT] + _firewall.accept_rule(DNS),
        ["-t", "filter", "-A", ACCEPT] + _firewall.accept_rule(web),
    ]
    assert plan(apply(tables, commands), NAME, (SSH, web)) == []


def test_plan_puts_the_forward_jump_back_on_top_after_libvirt_restarted_the_network():
    tables = apply(libvirt_tables(), plan(libvirt_tables(), NAME, (SSH,)))
    # A network start makes libvirt insert its jumps at the top of FORWARD again.
    forward = tables["filter"]["FORWARD"]
    tables["filter"]["FORWARD"] = [rule for rule in forward if rule != ["-j", ACCEPT]][:3] + [["-j", ACCEPT]]

    commands = plan(tables, NAME, (SSH,))

    assert commands == [["-t", "filter", "-D", "FORWARD", "-j", ACCEPT], ["-t", "filter", "-I", "FORWARD", "1", "-j", ACCEPT]]
    assert apply(tables, commands)["filter"]["FORWARD"][0] == ["-j", ACCEPT]


def test_plan_removes_duplicate_rules_and_jumps():
    tables = apply(libvirt_tables(), plan(libvirt_tables(), NAME, (SSH,)))
    tables["nat"][DNAT].append(_firewall.dnat_rule(SSH))
    tables["nat"]["PREROUTING"].append(["-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT])

    commands = plan(tables, NAME, (SSH,))

    assert ["-t", "nat", "-D", DNAT] + _firewall.dnat_rule(SSH) in commands
    after = apply(tables, commands)
    assert after["nat"][DNAT] == [_firewall.dnat_rule(SSH)]
    assert after["nat"]["PREROUTING"] == [["-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT]]


def test_forwards_to_the_same_guest_port_share_one_accept_rule():
    other = Forward("tcp", 2222, "198.18.100.10", 22)
    tables = apply(libvirt_tables(), plan(libvirt_tables(), NAME, (SSH, other)))

    assert tables["filter"][ACCEPT] == [_firewall.accept_rule(SSH)]
    assert len(tables["nat"][DNAT]) == 2


def test_no_forwards_removes_chains_and_jumps_and_nothing_else():
    tables = apply(libvirt_tables(), plan(libvirt_tables(), NAME, (SSH, DNS)))
    other = apply(tables, plan(tables, "other", (Forward("tcp", 9000, "198.18.100.12", 9000),)))

    commands = plan(other, NAME, ())

    assert commands == [
        ["-t", "nat", "-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT],
        ["-t", "nat", "-D", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT],
        ["-t", "filter", "-D", "FORWARD", "-j", ACCEPT],
        ["-t", "nat", "-F", DNAT], ["-t", "nat", "-X", DNAT],
        ["-t", "filter", "-F", ACCEPT], ["-t", "filter", "-X", ACCEPT],
    ]
    after = apply(other, commands)
    assert DNAT not in after["nat"] and ACCEPT not in after["filter"]
    assert _firewall.current_forwards(after, "other") == (Forward("tcp", 9000, "198.18.100.12", 9000),)
    assert after["filter"]["LIBVIRT_FWI"] == libvirt_tables()["filter"]["LIBVIRT_FWI"]
    assert plan(after, NAME, ()) == []
    assert plan({}, NAME, ()) == []


def test_current_forwards_reads_back_our_rules_only():
    tables = apply(libvirt_tables(), plan(libvirt_tables(), NAME, (SSH, DNS)))
    tables["nat"][DNAT].append(["-p", "tcp", "-j", "RETURN"])
    tables["nat"][DNAT].append(["-p", "tcp", "-m", "tcp", "--dport", "1", "-j", "DNAT", "--to-destination", "198.18.100.9"])

    assert _firewall.current_forwards(tables, NAME) == (SSH, DNS)
    assert _firewall.current_forwards(tables, "other") == ()


# Iptables


def test_iptables_runs_argv_lists_with_the_lock_and_reports_failures():
    fake = FakeIptables()
    iptables = Iptables("/usr/sbin/iptables", fake.run)

    iptables.apply([["-t", "nat", "-N", DNAT]])
    tables = iptables.tables()

    assert fake.calls[0] == ["/usr/sbin/iptables", "-w", "-t", "nat", "-N", DNAT]
    assert fake.calls[1:] == [["/usr/sbin/iptables", "-w", "-t", "nat", "-S"], ["/usr/sbin/iptables", "-w", "-t", "filter", "-S"]]
    assert tables["nat"][DNAT] == [] and tables["filter"]["FORWARD"] == []
    with pytest.raises(VirtError) as caught:
        iptables.apply([["-t", "nat", "-N", DNAT]])
    assert caught.value.msg == "port_forwards: '/usr/sbin/iptables -w -t nat -N %s' failed: iptables: Chain already exists." % DNAT


# The real iptables, in a network namespace of this test's own.


@pytest.fixture(name="netns")
def fixture_netns():
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables"):
        pytest.skip("needs root, ip and iptables")
    name = "atvtest-b-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


@pytest.mark.lab
def test_real_iptables_takes_the_plan_and_prints_the_rules_back_the_same(netns):
    def run(argv):
        done = subprocess.run(["ip", "netns", "exec", netns] + argv, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    iptables = Iptables(shutil.which("iptables"), run)
    # libvirt's jump on top of FORWARD, as when it starts a network.
    iptables.apply([["-t", "filter", "-N", "LIBVIRT_FWI"], ["-t", "filter", "-A", "FORWARD", "-j", "LIBVIRT_FWI"]])

    iptables.apply(plan(iptables.tables(), NAME, (SSH, DNS)))
    tables = iptables.tables()

    assert plan(tables, NAME, (SSH, DNS)) == []  # idempotent against iptables' own spelling of the rules
    assert tables["filter"]["FORWARD"] == [["-j", ACCEPT], ["-j", "LIBVIRT_FWI"]]
    assert _firewall.current_forwards(tables, NAME) == (SSH, DNS)

    iptables.apply(plan(tables, NAME, ()))
    tables = iptables.tables()
    assert DNAT not in tables["nat"] and ACCEPT not in tables["filter"]
    assert tables["filter"]["FORWARD"] == [["-j", "LIBVIRT_FWI"]]
