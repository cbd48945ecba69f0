# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ddns module against real BIND 9 servers (lab/dns.py): a primary of lab.test that takes signed updates and a
secondary that transfers the zone from it, both in a throwaway network namespace (atvtest-c-*) where their
loopback addresses live. The module runs in-process; the test enters the namespace around each run and checks
every outcome by asking the servers itself."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _ddns
from ansible_collections.arctictern.virt.plugins.module_utils import _netlink as nl
from ansible_collections.arctictern.virt.plugins.modules import ddns as ddns_module
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson, scratch_netns_name
from lab.dns import DnsServer
from lab.namespaces import CLONE_NEWNET, setns
from lab.netlink import create_netns, remove_netns

ZONE = "lab.test"
PORT = 5300
PRIMARY = "127.53.0.1"
SECONDARY = "127.53.0.2"
NOBODY = "127.53.0.9"        # on the namespace's loopback, but no server listens there


def fqdn(name):
    return "%s.%s." % (name, ZONE)


def shown(rdata):
    """A value as the test reads it from the server, independently of the module's own rendering."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode()
    if rdata.rdtype == dns.rdatatype.CNAME:
        return rdata.target.to_text()
    return rdata.address


class DnsLab:
    """The two servers, the namespace they answer in, and a client of its own."""

    def __init__(self, netns, primary, secondary):
        self.netns = netns
        self.primary = primary
        self.secondary = secondary
        key = primary.key
        self.key = dns.tsig.Key(key["name"], key["secret"], key["algorithm"])

    @contextlib.contextmanager
    def inside(self):
        """This thread in the servers' network namespace for the block."""
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            setns("/run/netns/%s" % self.netns, CLONE_NEWNET)
            try:
                yield
            finally:
                setns("/proc/self/fd/%d" % home, CLONE_NEWNET)
        finally:
            os.close(home)

    def answer(self, name, rdtype, address=PRIMARY):
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD
        with self.inside():
            response = dns.query.tcp(query, address, port=PORT, timeout=2)
        assert response.flags & dns.flags.AA
        return response

    def rrset(self, name, rdtype, address=PRIMARY):
        response = self.answer(fqdn(name), rdtype, address)
        return response.get_rrset(response.answer, dns.name.from_text(fqdn(name)), "IN", rdtype)

    def query(self, name, rdtype="A", address=PRIMARY):
        """(ttl, sorted values) of a set as ``address`` serves it, None when there is none."""
        rrset = self.rrset(name, rdtype, address)
        return (rrset.ttl, sorted(shown(rdata) for rdata in rrset)) if rrset else None

    def serial(self, address=PRIMARY):
        return self.answer(ZONE, "SOA", address).answer[0][0].serial

    def update(self, name, rdtype, values, ttl=3600):
        """Another client's change, signed with the key."""
        update = dns.update.UpdateMessage(ZONE, keyring=self.key)
        update.add(fqdn(name), ttl, rdtype, *values)
        with self.inside():
            assert dns.query.tcp(update, PRIMARY, port=PORT, timeout=2).rcode() == 0

    def args(self, **options):
        key = self.primary.key
        args = dict(server=PRIMARY, port=PORT, zone=ZONE, key_name=key["name"], key_secret=key["secret"],
                    key_algorithm=key["algorithm"], timeout=2, wait_timeout=10)
        args.update(options)
        return {option: value for option, value in args.items() if value is not None}


@pytest.fixture(scope="module")
def dns_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not shutil.which("named"):
        pytest.skip("BIND 9 (named) is not installed")
    netns = scratch_netns_name()
    create_netns(netns)
    try:
        with nl.open_ipr(netns) as ipr:
            nl.set_up(ipr, "lo")
            # named listens only on addresses an interface has.
            for address in (PRIMARY, SECONDARY, NOBODY):
                nl.add_address(ipr, "lo", "%s/32" % address)
        directory = tmp_path_factory.mktemp("ddns")
        enter = functools.partial(setns, "/run/netns/%s" % netns, CLONE_NEWNET)
        primary = DnsServer(directory / "primary", PRIMARY, ZONE, enter=enter, port=PORT, secondaries=[SECONDARY])
        secondary = DnsServer(directory / "secondary", SECONDARY, ZONE, enter=enter, port=PORT,
                              primary=(PRIMARY, PORT))
        try:
            for server in (primary, secondary):
                server.prepare()
                assert server.start() is True
            yield DnsLab(netns, primary, secondary)
        finally:
            secondary.stop()
            primary.stop()
    finally:
        remove_netns(netns)


@pytest.fixture
def ddns(dns_lab, run_module):
    """``ddns(check_mode=False, diff=False, **options)``: the module's result; the lab's server, zone and key
    unless the options say otherwise (None leaves an option out)."""
    def run(check_mode=False, diff=False, **options):
        with dns_lab.inside():
            return run_module(ddns_module.main, dns_lab.args(**options), check_mode, diff)
    return run


@pytest.fixture
def ddns_fails(ddns):
    """Like ``ddns``, for a run that must fail: its result (msg, option)."""
    def run(**options):
        with pytest.raises(AnsibleFailJson) as failed:
            ddns(**options)
        return failed.value.result
    return run


# ---------------------------------------------------------------------------------------------------------------------
# Bad options: refused before anything is sent


@pytest.mark.parametrize("options, option, words", [
    (dict(type="AAAA", value=["192.0.2.1"]), "value", "not an IPv6 address"),
    (dict(type="A", value=["2001:db8::1"]), "value", "not an IPv4 address"),
    (dict(type="A", value=["10.0.0.300"]), "value", "not an IPv4 address"),
    (dict(type="CNAME", value=["one.example", "two.example"]), "value", "one value, not 2"),
    (dict(type="CNAME", value=["not a name"]), "value", "not a DNS name"),
    (dict(type="TXT", value=["x" * 70000]), "value", "at most"),
    (dict(value=None), "value", "needs at least one value"),
    (dict(state="exact", value=[]), "value", "state=absent removes a whole set"),
    (dict(ttl=-1), "ttl", "between 0 and 2147483647"),
    (dict(ttl=2 ** 31), "ttl", "between 0 and 2147483647"),
    (dict(record="bad name"), "record", "not a domain name"),
    (dict(record="@", zone=None), "record", "needs zone"),
    (dict(record="www.elsewhere.test."), "record", "not in zone lab.test."),
    (dict(zone="lab..test"), "zone", "not a DNS name"),
    (dict(server="no such server!"), "server", "not a DNS name"),
    (dict(port=0), "port", "between 1 and 65535"),
    (dict(timeout=0), "timeout", "positive"),
    (dict(key_secret="not base64!"), "key_secret", "not base64"),
])
def test_bad_options_fail_naming_the_option_before_anything_is_sent(run_module, monkeypatch, options, option, words):
    def no_network(*_args, **_kwargs):
        raise AssertionError("the module used the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    args = dict(server=PRIMARY, zone=ZONE, record="www", value=["192.0.2.1"], key_name="k",
                key_secret="c2VjcmV0c2VjcmV0c2VjcmV0")
    args.update(options)
    with pytest.raises(AnsibleFailJson) as failed:
        run_module(ddns_module.main, {key: value for key, value in args.items() if value is not None})
    result = failed.value.result
    assert result["option"] == option
    assert result["msg"].startswith("%s: " % option)
    assert words in result["msg"]
    assert "c2VjcmV0c2VjcmV0c2VjcmV0" not in result["msg"]


def test_key_name_without_key_secret_is_refused(run_module):
    with pytest.raises(AnsibleFailJson) as failed:
        run_module(ddns_module.main, dict(server=PRIMARY, record="www", value=["192.0.2.1"], key_name="k"))
    assert "key_name" in failed.value.result["msg"] and "key_secret" in failed.value.result["msg"]


# ---------------------------------------------------------------------------------------------------------------------
# The lab's server


def test_server_start_is_idempotent_and_prepare_keeps_key_and_zone(dns_lab):
    primary = dns_lab.primary
    pid = primary.pid()
    key, serial = primary.key, dns_lab.serial()
    primary.prepare()
    assert primary.start() is False
    assert primary.pid() == pid == int(primary.pid_file.read_text())
    assert primary.key == key and len(key["secret"]) == 44
    assert dns_lab.serial() == serial


def test_server_that_does_not_answer_is_stopped_and_its_log_shown(dns_lab, tmp_path):
    # An address no interface has: named runs, but listens nowhere.
    silent = DnsServer(tmp_path, "127.53.0.77", ZONE, enter=functools.partial(
        setns, "/run/netns/%s" % dns_lab.netns, CLONE_NEWNET), port=PORT)
    silent.prepare()
    with pytest.raises(RuntimeError) as failed:
        silent.start(timeout=1)
    assert "did not answer within 1 s" in str(failed.value) and "named.log" in str(failed.value)
    assert "notice: running" in str(failed.value)   # the end of its log
    assert silent.pid() is None
    assert silent.stop() is False


# ---------------------------------------------------------------------------------------------------------------------
# Changes, idempotence, check mode and diff


def test_a_present_adds_exact_replaces_absent_removes(ddns, dns_lab):
    added = ddns(record="web", value=["192.0.2.10"])
    assert added["changed"] is True
    assert (added["record"], added["type"], added["zone"]) == ("web.lab.test.", "A", "lab.test.")
    assert (added["values"], added["ttl"], added["previous"]) == (["192.0.2.10"], 3600, {"ttl": None, "values": []})
    assert dns_lab.query("web") == (3600, ["192.0.2.10"])
    assert ddns(record="web", value=["192.0.2.10"])["changed"] is False

    # present: the other values stay; the set is sorted by address, not as text.
    more = ddns(record="web", value=["192.0.2.9", "192.0.2.10"])
    assert more["changed"] is True and more["values"] == ["192.0.2.9", "192.0.2.10"]
    assert dns_lab.query("web") == (3600, ["192.0.2.10", "192.0.2.9"])

    exact = ddns(record="web", value=["198.51.100.10"], state="exact", ttl=60)
    assert exact["changed"] is True
    assert exact["previous"] == {"ttl": 3600, "values": ["192.0.2.9", "192.0.2.10"]}
    assert dns_lab.query("web") == (60, ["198.51.100.10"])
    assert ddns(record="web", value=["198.51.100.10"], state="exact", ttl=60)["changed"] is False

    gone = ddns(record="web", value=["198.51.100.10"], state="absent")
    assert gone["changed"] is True and (gone["values"], gone["ttl"]) == ([], None)
    assert dns_lab.query("web") is None
    assert ddns(record="web", value=["198.51.100.10"], state="absent")["changed"] is False


def test_absent_with_values_removes_only_them_and_keeps_the_ttl(ddns, dns_lab):
    ddns(record="pair", value=["192.0.2.1", "192.0.2.2"], ttl=120)
    result = ddns(record="pair", value=["192.0.2.1", "192.0.2.99"], state="absent", ttl=999)
    assert result["changed"] is True and (result["values"], result["ttl"]) == (["192.0.2.2"], 120)
    assert dns_lab.query("pair") == (120, ["192.0.2.2"])


def test_a_ttl_change_alone_is_a_change(ddns, dns_lab):
    ddns(record="ttl", value=["192.0.2.5"], ttl=3600)
    for state in ("present", "exact"):
        ttl = 300 if state == "present" else 30
        result = ddns(record="ttl", value=["192.0.2.5"], ttl=ttl, state=state, diff=True)
        assert result["changed"] is True
        assert result["diff"]["after"] == {"type": "A", "ttl": ttl, "values": ["192.0.2.5"]}
        assert dns_lab.query("ttl") == (ttl, ["192.0.2.5"])
        assert ddns(record="ttl", value=["192.0.2.5"], ttl=ttl, state=state)["changed"] is False


@pytest.mark.parametrize("rdtype, values, expected, replacement", [
    ("AAAA", ["2001:DB8::1", "2001:db8::1", "2001:db8:0::2"], ["2001:db8::1", "2001:db8::2"], ["2001:db8::3"]),
    ("CNAME", ["target.example"], ["target.example."], ["other.example."]),
    ("TXT", ["v=spf1 -all", "ünïcödé"], ["v=spf1 -all", "ünïcödé"], ["x" * 300]),
])
def test_each_type_present_exact_absent(ddns, dns_lab, rdtype, values, expected, replacement):
    name = "type-%s" % rdtype.lower()
    added = ddns(record=name, type=rdtype, value=values)
    assert added["changed"] is True and added["values"] == expected
    assert dns_lab.query(name, rdtype) == (3600, expected)
    assert ddns(record=name, type=rdtype, value=values)["changed"] is False

    replaced = ddns(record=name, type=rdtype, value=replacement, state="exact")
    assert replaced["changed"] is True and replaced["values"] == replacement
    assert dns_lab.query(name, rdtype) == (3600, replacement)
    if rdtype == "TXT":
        # Longer text goes as several strings of at most 255 bytes.
        assert [len(string) for string in dns_lab.rrset(name, rdtype)[0].strings] == [255, 45]
    assert ddns(record=name, type=rdtype, value=replacement, state="exact")["changed"] is False

    # absent without value: the whole set.
    removed = ddns(record=name, type=rdtype, state="absent")
    assert removed["changed"] is True and removed["previous"] == {"ttl": 3600, "values": replacement}
    assert dns_lab.query(name, rdtype) is None
    assert ddns(record=name, type=rdtype, state="absent")["changed"] is False


def test_check_mode_predicts_the_change_and_makes_none(ddns, dns_lab):
    ddns(record="check", value=["192.0.2.20"], ttl=600)
    serial = dns_lab.serial()
    options = dict(record="check", value=["192.0.2.21"], state="exact", ttl=300)
    predicted = ddns(check_mode=True, diff=True, **options)
    assert predicted["changed"] is True
    assert (predicted["values"], predicted["ttl"]) == (["192.0.2.21"], 300)
    assert predicted["previous"] == {"ttl": 600, "values": ["192.0.2.20"]}
    assert predicted["diff"] == {
        "before": {"type": "A", "ttl": 600, "values": ["192.0.2.20"]},
        "after": {"type": "A", "ttl": 300, "values": ["192.0.2.21"]},
        "before_header": "check.lab.test. A", "after_header": "check.lab.test. A"}
    assert (predicted["serial"], predicted["servers"]) == (serial, [PRIMARY])
    assert dns_lab.query("check") == (600, ["192.0.2.20"])
    assert dns_lab.serial() == serial

    made = ddns(diff=True, **options)
    for key in ("changed", "record", "zone", "values", "ttl", "previous", "diff"):
        assert made[key] == predicted[key]
    assert made["serial"] == dns_lab.serial() > serial
    assert ddns(check_mode=True, **options)["changed"] is False


def test_check_mode_of_a_new_set_and_of_a_removal(ddns, dns_lab):
    new = ddns(check_mode=True, diff=True, record="never", type="TXT", value=["hello"])
    assert new["changed"] is True and new["diff"]["before"] == {"type": "TXT", "ttl": None, "values": []}
    assert dns_lab.query("never", "TXT") is None
    ddns(record="kept", value=["192.0.2.30"])
    removal = ddns(check_mode=True, diff=True, record="kept", state="absent")
    assert removal["changed"] is True and removal["diff"]["after"] == {"type": "A", "ttl": None, "values": []}
    assert dns_lab.query("kept") == (3600, ["192.0.2.30"])


def test_zone_is_found_from_the_soa(ddns, dns_lab):
    for record in ("found.lab.test", "found.lab.test."):
        result = ddns(record=record, zone=None, value=["192.0.2.40"])
        assert (result["record"], result["zone"]) == ("found.lab.test.", "lab.test.")
    assert dns_lab.query("found") == (3600, ["192.0.2.40"])
    # Below a CNAME's name (no SOA there) and at the apex.
    ddns(record="alias-below", type="CNAME", value=["target.example"])
    assert ddns(record="alias-below.lab.test", zone=None, type="CNAME", value=["target.example"])["zone"] == "lab.test."
    apex = ddns(record="lab.test.", zone=None, type="TXT", value=["apex"])
    assert (apex["record"], apex["zone"]) == ("lab.test.", "lab.test.")
    assert ddns(record="@", type="TXT", value=["apex"])["changed"] is False


def test_names_with_service_labels_and_wildcards(ddns, dns_lab):
    assert ddns(record="_acme-challenge", type="TXT", value=["token"])["record"] == "_acme-challenge.lab.test."
    assert dns_lab.query("_acme-challenge", "TXT") == (3600, ["token"])
    assert ddns(record="*.wild", value=["192.0.2.50"])["record"] == "*.wild.lab.test."
    assert dns_lab.query("anything.wild") == (3600, ["192.0.2.50"])


# ---------------------------------------------------------------------------------------------------------------------
# Failures: named after the option, zone unchanged


@pytest.mark.parametrize("options, option, words", [
    (dict(key_secret="c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmU="), "key_secret", "BADSIG"),
    (dict(key_name="unknown-key"), "key_name", "BADKEY"),
    (dict(key_algorithm="hmac-sha512"), "key_name", "BADKEY"),
])
def test_a_wrong_key_fails_naming_tsig_and_changes_nothing(ddns, ddns_fails, dns_lab, options, option, words):
    serial = dns_lab.serial()
    for check_mode in (True, False):
        failure = ddns_fails(record="wrong-key", value=["192.0.2.60"], check_mode=check_mode, **options)
        assert failure["option"] == option
        assert failure["msg"].startswith("%s: TSIG: " % option) and words in failure["msg"]
    assert dns_lab.query("wrong-key") is None
    assert dns_lab.serial() == serial


def test_an_unsigned_update_is_refused_and_says_a_key_is_needed(ddns_fails, dns_lab):
    serial = dns_lab.serial()
    failure = ddns_fails(record="unsigned", value=["192.0.2.61"], key_name=None, key_secret=None)
    assert failure["option"] == "key_name"
    assert "REFUSED" in failure["msg"] and "updates need a TSIG key" in failure["msg"]
    assert dns_lab.query("unsigned") is None
    assert dns_lab.serial() == serial


@pytest.mark.parametrize("options", [
    dict(zone="nope.test"),
    dict(zone=None, record="www.nope.test."),
    dict(zone="www.lab.test"),
])
def test_a_zone_the_server_does_not_serve_fails_naming_zone(ddns_fails, options):
    failure = ddns_fails(**dict(dict(record="www", value=["192.0.2.62"]), **options))
    assert failure["option"] == "zone" and failure["msg"].startswith("zone: ")
    assert "127.53.0.1 port 5300" in failure["msg"]


def test_an_unreachable_server_fails_naming_server(ddns_fails):
    failure = ddns_fails(server=NOBODY, record="www", value=["192.0.2.63"], timeout=0.3)
    assert failure["option"] == "server"
    assert failure["msg"] == "server: %s port %d did not answer within 0.3 s" % (NOBODY, PORT)


def test_a_cname_beside_other_data_fails_naming_record(ddns, ddns_fails, dns_lab):
    ddns(record="alias", type="CNAME", value=["target.example"])
    failure = ddns_fails(record="alias", value=["192.0.2.64"])
    assert failure["option"] == "record" and "a CNAME cannot share its name" in failure["msg"]
    assert dns_lab.query("alias", "CNAME") == (3600, ["target.example."])
    assert dns_lab.query("alias", "A") is None


def test_a_set_changed_by_someone_else_meanwhile_is_left_alone(ddns, ddns_fails, dns_lab, monkeypatch):
    ddns(record="race", value=["192.0.2.70"])
    make_update = _ddns.update_message

    def someone_else_first(*args):
        dns_lab.update("race", "A", ["192.0.2.79"])
        return make_update(*args)

    monkeypatch.setattr(_ddns, "update_message", someone_else_first)
    failure = ddns_fails(record="race", value=["192.0.2.71"], state="exact")
    assert failure["msg"].startswith("record: race.lab.test. A changed at ")
    assert "prerequisite failed: NXRRSET" in failure["msg"]
    assert dns_lab.query("race") == (3600, ["192.0.2.70", "192.0.2.79"])


# ---------------------------------------------------------------------------------------------------------------------
# Waiting for the zone's name servers


def test_the_wait_sees_every_name_server_serve_the_new_serial(ddns, dns_lab):
    result = ddns(record="spread", value=["192.0.2.80"])
    assert result["servers"] == [PRIMARY, SECONDARY]
    # Right after the task, without waiting here: the secondary already has it.
    assert dns_lab.serial(SECONDARY) == result["serial"] == dns_lab.serial()
    assert dns_lab.query("spread", address=SECONDARY) == (3600, ["192.0.2.80"])

    unchanged = ddns(record="spread", value=["192.0.2.80"])
    assert unchanged["changed"] is False and unchanged["servers"] == [PRIMARY, SECONDARY]
    assert ddns(record="spread", value=["192.0.2.81"], wait=False)["servers"] == [PRIMARY]


def test_a_name_server_that_does_not_catch_up_fails_naming_wait_timeout(ddns_fails, dns_lab):
    dns_lab.secondary.stop()
    try:
        failure = ddns_fails(record="late", value=["192.0.2.90"], wait_timeout=0.5, timeout=0.2)
        assert failure["option"] == "wait_timeout"
        assert failure["msg"].startswith("wait_timeout: after 0.5 s, 1 of the 2 name servers of zone lab.test. ")
        assert "%s port %d: " % (SECONDARY, PORT) in failure["msg"] and PRIMARY not in failure["msg"]
        # The update itself is made.
        assert dns_lab.query("late") == (3600, ["192.0.2.90"])
    finally:
        dns_lab.secondary.start()
