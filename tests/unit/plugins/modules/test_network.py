# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible.module_utils import basic

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt, _network_task
from ansible_collections.arctictern.virt.plugins.module_utils._errors import ConnectionFailed
from ansible_collections.arctictern.virt.plugins.module_utils._firewall import chain_names
from ansible_collections.arctictern.virt.plugins.modules import network
from ansible_collections.arctictern.virt.tests.unit import utils
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import FakeConnection
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._iptables_fake import FakeIptables

IPTABLES = "/usr/sbin/iptables"
DNAT, ACCEPT = chain_names("lab")
LAB = dict(
    name="lab",
    mode="nat",
    address="198.18.100.1/24",
    dhcp=dict(start="198.18.100.100", end="198.18.100.199"),
    static_leases=[dict(mac="52:54:00:00:64:0a", ip="198.18.100.10", name="web1")],
    port_forwards=[dict(host_port=2210, guest_ip="198.18.100.10", guest_port=22)],
)
SSH_FORWARD = {"proto": "tcp", "host_port": 2210, "guest_ip": "198.18.100.10", "guest_port": 22, "host_address": None}
ISOLATED_XML = "<network><name>store</name><bridge name='virbr7'/><ip address='10.0.0.1' prefix='24'/></network>"


class Host:
    """The fakes one module run sees: a libvirt connection, the host's iptables, root or not."""

    def __init__(self, monkeypatch):
        self.conn = FakeConnection()
        self.iptables = FakeIptables()
        self.euid = 0
        self.iptables_binary = IPTABLES
        self.uris = []
        monkeypatch.setattr(_libvirt, "connect", self.connect)
        monkeypatch.setattr(_network_task.os, "geteuid", lambda: self.euid)
        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda _module, name, *_args, **_kwargs: self.iptables_binary)
        monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda _module, argv, **kwargs: self.iptables.run(argv, **kwargs))
        monkeypatch.setattr(basic.AnsibleModule, "exit_json", utils.exit_json)
        monkeypatch.setattr(basic.AnsibleModule, "fail_json", utils.fail_json)

    def connect(self, uri, timeout=10.0):
        self.uris.append((uri, timeout))
        return self.conn

    def network_changes(self):
        """The network changes made through the connection, without the XML defined."""
        return [entry[:2] for entry in self.conn.network_log]

    def run(self, args, check_mode=False, diff=False):
        return utils.run_module(network.main, args, check_mode=check_mode, diff=diff)

    def fail(self, args, check_mode=False):
        with pytest.raises(utils.AnsibleFailJson) as caught:
            self.run(args, check_mode=check_mode)
        return caught.value.result

    def nat_rules(self):
        return self.iptables.tables["nat"].get(DNAT)

    def forward_chain(self):
        return self.iptables.tables["filter"]["FORWARD"]


@pytest.fixture(name="host")
def fixture_host(monkeypatch):
    return Host(monkeypatch)


def test_creates_starts_and_forwards(host):
    result = host.run(LAB)

    assert result["changed"] is True
    assert host.network_changes() == [("define", "lab"), ("create", "lab")]
    net = host.conn.networks["lab"]
    assert net.isActive() and net.isPersistent()
    stored = ET.fromstring(net.xml)
    assert stored.find("mac").get("address").startswith("52:54:00:")  # libvirt's MAC for the bridge it made
    assert result["network"] == {
        "name": "lab", "uuid": stored.findtext("uuid"), "mode": "nat", "bridge": "virbr0", "mac": stored.find("mac").get("address"),
        "address": "198.18.100.1/24", "dhcp": {"start": "198.18.100.100", "end": "198.18.100.199"},
        "static_leases": [{"mac": "52:54:00:00:64:0a", "ip": "198.18.100.10", "name": "web1"}], "domain": None, "mtu": None,
        "active": True, "autostart": False, "port_forwards": [SSH_FORWARD],
    }
    assert result["xml"] == net.xml
    assert result["restart_needed"] is False
    assert host.nat_rules() == [["-p", "tcp", "-m", "tcp", "--dport", "2210", "-j", "DNAT", "--to-destination", "198.18.100.10:22"]]
    assert host.forward_chain()[0] == ["-j", ACCEPT]
    assert result["firewall_commands"] == host.iptables.writes()
    assert all(argv[:2] == [IPTABLES, "-w"] for argv in result["firewall_commands"])
    assert host.uris == [("qemu:///system", 10.0)] and host.conn.closed


def test_second_run_changes_nothing(host):
    host.run(LAB)
    host.conn.network_log.clear()
    writes = len(host.iptables.writes())

    result = host.run(LAB)

    assert result["changed"] is False
    assert host.network_changes() == []
    assert len(host.iptables.writes()) == writes
    assert result["firewall_commands"] == []
    assert result["network"]["bridge"] == "virbr0"  # libvirt's choice is kept, not redefined away


def test_check_mode_reports_without_touching_anything(host):
    result = host.run(LAB, check_mode=True, diff=True)

    assert result["changed"] is True
    assert host.conn.networks == {} and host.conn.network_log == []
    assert host.iptables.writes() == []
    assert [argv[3:6] for argv in result["firewall_commands"]][:2] == [["nat", "-N", DNAT], ["nat", "-A", DNAT]]
    assert ET.fromstring(result["xml"]).findtext("name") == "lab"
    assert result["network"]["active"] is True and result["network"]["uuid"] is None
    assert result["changes"] == ["mode", "address", "dhcp", "static_leases"]
    definition, run_state = result["diff"]
    assert definition["before"] == "" and definition["after"] == result["xml"]
    assert run_state["before"] == {}
    assert run_state["after"] == {"active": True, "autostart": False, "port_forwards": [SSH_FORWARD]}


def test_check_mode_on_a_converged_network_reports_no_change(host):
    host.run(LAB)
    host.conn.network_log.clear()

    result = host.run(LAB, check_mode=True)

    assert result["changed"] is False and result["firewall_commands"] == []


def test_diff_shows_the_changed_parts(host):
    host.run(LAB)

    result = host.run(dict(LAB, dhcp=dict(start="198.18.100.150", end="198.18.100.199"), port_forwards=[]), diff=True)

    definition, run_state = result["diff"]
    before, after = definition["before"].splitlines(), definition["after"].splitlines()
    assert len(before) == len(after)
    assert [(old.strip(), new.strip()) for old, new in zip(before, after) if old != new] == [
        ('<range start="198.18.100.100" end="198.18.100.199" />', '<range start="198.18.100.150" end="198.18.100.199" />')]
    assert result["changes"] == ["dhcp"]
    assert run_state["before"]["port_forwards"] == [SSH_FORWARD] and run_state["after"]["port_forwards"] == []
    assert {key for key in run_state["before"] if run_state["before"][key] != run_state["after"][key]} == {"port_forwards"}


def test_changing_an_active_network_redefines_it_and_asks_for_a_restart(host):
    host.run(LAB)
    host.conn.network_log.clear()
    changed = dict(LAB, dhcp=dict(start="198.18.100.150", end="198.18.100.199"))

    first = host.run(changed)
    again = host.run(changed)

    assert first["changed"] is True and first["restart_needed"] is True
    assert [entry[:2] for entry in host.conn.network_log] == [("define", "lab")]
    assert "198.18.100.150" in host.conn.networks["lab"].xml
    assert "198.18.100.150" not in host.conn.networks["lab"].live_xml  # still running the old configuration
    assert again["changed"] is False and again["restart_needed"] is True
    assert again["network"]["dhcp"]["start"] == "198.18.100.150"


def test_restart_true_restarts_a_stale_network_and_fixes_the_forward_jump(host):
    host.run(LAB)
    changed = dict(LAB, dhcp=dict(start="198.18.100.150", end="198.18.100.199"))
    host.run(changed)
    host.conn.network_log.clear()
    original_create = host.conn.networks["lab"].create

    def create_like_libvirt():
        original_create()
        host.forward_chain().insert(0, ["-j", "LIBVIRT_FWI"])  # libvirt's jumps go on top when a network starts

    host.conn.networks["lab"].create = create_like_libvirt

    result = host.run(dict(changed, restart=True))

    assert result["changed"] is True and result["restart_needed"] is False
    assert host.network_changes() == [("destroy", "lab"), ("create", "lab")]
    assert "198.18.100.150" in host.conn.networks["lab"].live_xml
    assert host.forward_chain() == [["-j", ACCEPT], ["-j", "LIBVIRT_FWI"]]
    assert host.run(dict(changed, restart=True))["changed"] is False


def test_a_forward_jump_pushed_down_by_libvirt_is_put_back_on_top(host):
    host.run(LAB)
    host.forward_chain().insert(0, ["-j", "LIBVIRT_FWX"])

    result = host.run(LAB)

    assert result["changed"] is True
    assert [argv[3:] for argv in result["firewall_commands"]] == [
        ["filter", "-D", "FORWARD", "-j", ACCEPT], ["filter", "-I", "FORWARD", "1", "-j", ACCEPT]]
    assert host.forward_chain()[0] == ["-j", ACCEPT]


def test_forwards_follow_the_list(host):
    host.run(LAB)
    host.conn.network_log.clear()
    web = dict(host_port=8080, guest_ip="198.18.100.11", guest_port=80)

    result = host.run(dict(LAB, port_forwards=[web]))

    assert result["changed"] is True and host.network_changes() == []
    assert host.nat_rules() == [["-p", "tcp", "-m", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "198.18.100.11:80"]]
    assert result["network"]["port_forwards"] == [dict(SSH_FORWARD, host_port=8080, guest_ip="198.18.100.11", guest_port=80)]
    # Left out, they stay as they are, also with mode given; [] removes them.
    kept = host.run({key: value for key, value in LAB.items() if key != "port_forwards"})
    assert kept["changed"] is False and kept["network"]["port_forwards"] == [result["network"]["port_forwards"][0]]
    host.run(dict(LAB, port_forwards=[]))
    assert host.nat_rules() is None and ACCEPT not in host.iptables.tables["filter"]
    assert ["-j", ACCEPT] not in host.forward_chain()


def test_without_mode_forwards_are_kept_and_state_is_managed(host):
    host.run(LAB)
    host.conn.network_log.clear()

    kept = host.run(dict(name="lab"))
    stopped = host.run(dict(name="lab", state="inactive"))

    assert kept["changed"] is False and kept["network"]["port_forwards"] == [SSH_FORWARD]
    assert stopped["changed"] is True and host.network_changes() == [("destroy", "lab")]
    assert host.nat_rules() is None, "a stopped network keeps no forwards"
    assert stopped["network"]["active"] is False and stopped["network"]["port_forwards"] == []


def test_without_mode_port_forwards_alone_can_be_changed(host):
    host.run(LAB)
    host.conn.network_log.clear()

    result = host.run(dict(name="lab", port_forwards=[dict(proto="udp", host_port=53, guest_ip="198.18.100.10")]))

    assert result["changed"] is True and host.network_changes() == []
    assert host.nat_rules() == [["-p", "udp", "-m", "udp", "--dport", "53", "-j", "DNAT", "--to-destination", "198.18.100.10:53"]]


def test_inactive_defines_without_starting_and_present_leaves_the_run_state(host):
    inactive = host.run(dict(LAB, state="inactive"))
    assert inactive["changed"] is True and inactive["network"]["active"] is False
    assert host.network_changes() == [("define", "lab")] and inactive["firewall_commands"] == []

    present = host.run(dict(LAB, state="present"))
    assert present["changed"] is False and present["network"]["active"] is False

    started = host.run(dict(LAB, state="active"))
    assert started["changed"] is True and started["network"]["active"] is True and host.nat_rules()

    still = host.run(dict(LAB, state="present"))
    assert still["changed"] is False and still["network"]["active"] is True
    assert still["network"]["port_forwards"] == [SSH_FORWARD]


def test_absent_stops_undefines_and_removes_forwards(host):
    host.run(LAB)
    host.conn.network_log.clear()

    result = host.run(dict(name="lab", state="absent"), diff=True)
    again = host.run(dict(name="lab", state="absent"))

    assert result["changed"] is True
    assert host.network_changes() == [("destroy", "lab"), ("undefine", "lab")]
    assert host.conn.networks == {}
    assert host.nat_rules() is None and ACCEPT not in host.iptables.tables["filter"]
    assert host.iptables.tables["nat"]["PREROUTING"] == [] and host.forward_chain() == []
    definition, run_state = result["diff"]
    assert result["network"] == {} and result["changes"] == []
    assert "<name>lab</name>" in definition["before"] and definition["after"] == ""
    assert run_state["before"]["active"] is True and run_state["after"] == {}
    assert again["changed"] is False and again["firewall_commands"] == []


def test_absent_stops_a_transient_network_which_is_then_gone(host):
    host.conn.add_network(xml=ISOLATED_XML, active=True, persistent=False)

    result = host.run(dict(name="store", state="absent"))

    assert result["changed"] is True
    assert host.network_changes() == [("destroy", "store")]
    assert host.conn.networks == {}


def test_absent_in_check_mode_changes_nothing(host):
    host.run(LAB)
    host.conn.network_log.clear()
    writes = len(host.iptables.writes())

    result = host.run(dict(name="lab", state="absent"), check_mode=True)

    assert result["changed"] is True and host.conn.network_log == [] and "lab" in host.conn.networks
    assert len(host.iptables.writes()) == writes
    assert len(result["firewall_commands"]) == 7


def test_a_transient_network_is_made_persistent_as_it_runs(host):
    net = host.conn.add_network(xml=ISOLATED_XML, active=True, persistent=False)

    result = host.run(dict(name="store", state="present"))

    assert result["changed"] is True and net.isPersistent()
    assert host.conn.network_log[0][:2] == ("define", "store") and "virbr7" in host.conn.network_log[0][2]
    assert host.run(dict(name="store", state="present"))["changed"] is False


def test_autostart_is_set_and_then_left_alone(host):
    host.conn.add_network(xml=ISOLATED_XML)

    first = host.run(dict(name="store", state="present", autostart=True))
    second = host.run(dict(name="store", state="present", autostart=True))
    unmanaged = host.run(dict(name="store", state="present"))

    assert first["changed"] is True and ("autostart", "store", 1) in host.conn.network_log
    assert first["network"]["autostart"] is True
    assert second["changed"] is False and unmanaged["changed"] is False and unmanaged["network"]["autostart"] is True


def test_bridge_mode_network(host):
    result = host.run(dict(name="lan", mode="bridge", bridge="br0", autostart=True))

    root = ET.fromstring(host.conn.networks["lan"].xml)
    assert root.find("forward").get("mode") == "bridge" and root.find("bridge").attrib == {"name": "br0"}
    assert root.find("ip") is None and root.find("mac") is None
    assert result["network"]["mode"] == "bridge" and result["network"]["active"] is True
    assert host.run(dict(name="lan", mode="bridge", bridge="br0", autostart=True))["changed"] is False


def test_hostile_names_go_through_as_text(host):
    name = "x' <uuid>&amp;\"<uuid>"

    result = host.run(dict(LAB, name=name))

    root = ET.fromstring(host.conn.networks[name].xml)
    assert root.findtext("name") == name and len(root.findall("uuid")) == 1
    assert result["network"]["name"] == name
    assert all(name not in " ".join(argv) for argv in host.iptables.calls)
    assert host.run(dict(LAB, name=name))["changed"] is False


@pytest.mark.parametrize("args, option", [
    (dict(LAB, port_forwards=[dict(host_port=80, guest_ip="198.18.99.10")]), "port_forwards"),
    (dict(LAB, port_forwards=[dict(host_port=80, guest_ip="198.18.100.10"), dict(host_port=80, guest_ip="198.18.100.11")]), "port_forwards"),
    (dict(LAB, dhcp=dict(start="198.18.100.199", end="198.18.100.100")), "dhcp"),
    (dict(LAB, static_leases=[dict(mac="nope", ip="198.18.100.10")]), "static_leases"),
    (dict(LAB, address="198.18.100.1"), "address"),
    (dict(name="lab"), "mode"),
    (dict(name="lab", address="198.18.100.1/24"), "mode"),
    (dict(LAB, dhcp=dict(end="198.18.100.100")), "dhcp"),
    (dict(name="lan", mode="bridge", bridge="br0", address="198.18.100.1/24"), "address"),
    (dict(name="lan", mode="bridge"), "bridge"),
    (dict(LAB, uri="qemu+ssh://root@hv2.example.com/system"), "port_forwards"),
])
def test_bad_input_fails_naming_the_option_before_any_change(host, args, option):
    result = host.fail(args)

    assert result["msg"].startswith(option + ": "), result["msg"]
    assert "Traceback" not in result["msg"]
    assert host.conn.network_log == [] and host.iptables.writes() == []


def test_port_forwards_need_root_and_iptables(host):
    host.euid = 1000
    assert host.fail(LAB)["msg"] == "port_forwards: changing iptables rules needs root (become: true)"
    host.euid = 0
    host.iptables_binary = None
    assert host.fail(LAB)["msg"] == "port_forwards: iptables is not installed on the host that runs the module"
    assert host.conn.network_log == []


def test_without_forwards_iptables_is_not_needed(host):
    host.iptables_binary = None

    result = host.run(dict(name="store", mode="isolated", address="10.0.0.1/24"))

    assert result["changed"] is True and result["firewall_commands"] == []
    assert host.iptables.calls == []


def test_remote_uri_without_forwards_leaves_local_iptables_alone(host):
    result = host.run(dict(name="store", mode="isolated", uri="qemu+ssh://root@hv2.example.com/system", connect_timeout=3))
    removed = host.run(dict(name="store", state="absent", uri="qemu+ssh://root@hv2.example.com/system"))

    assert result["changed"] is True and removed["changed"] is True
    assert host.iptables.calls == []
    assert host.uris[0] == ("qemu+ssh://root@hv2.example.com/system", 3.0)


def test_libvirt_errors_fail_cleanly(host):
    host.conn.network_fail_on["create"] = "Unable to create bridge virbr0: Operation not permitted"

    result = host.fail(dict(name="store", mode="isolated"))

    assert result["msg"] == "starting network 'store': Unable to create bridge virbr0: Operation not permitted"
    assert host.conn.closed


def test_a_connection_failure_names_the_uri(host, monkeypatch):
    def refuse(uri, timeout=10.0):
        raise ConnectionFailed("uri: cannot connect to libvirt at '%s': refused" % uri, uri=uri)

    monkeypatch.setattr(_libvirt, "connect", refuse)

    assert host.fail(LAB)["msg"] == "uri: cannot connect to libvirt at 'qemu:///system': refused"
