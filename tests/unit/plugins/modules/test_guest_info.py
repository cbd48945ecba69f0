# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.arctictern.virt.plugins.module_utils import _facts, _libvirt
from ansible_collections.arctictern.virt.plugins.module_utils._errors import ConnectionFailed
from ansible_collections.arctictern.virt.plugins.filter.placement import placement
from ansible_collections.arctictern.virt.plugins.modules import guest_info
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import QEMU_CAPABILITIES
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._guest_data import domain_xml, lease, old_daemon, place_guest

MAC = "52:54:00:00:00:01"
NIC = {"type": "network", "mac": MAC, "source": "default"}


@pytest.fixture(name="conn")
def fixture_conn(monkeypatch):
    conn = old_daemon(uri="qemu:///system")
    place_guest(conn, domain_xml("web1", [NIC]), addresses={"lease": lease("vnet0", MAC, "192.168.122.10/24"),
                                                            "agent": lease("eth0", MAC, "192.168.122.99/24")})
    place_guest(conn, domain_xml("db1", [NIC], metadata=[(MAC, "198.18.0.21/24")], running=False), state="shutoff")
    place_guest(conn, domain_xml("<odd & \"name\">"), state="paused")
    # The daemon is local: its guests' neighbours would be this machine's; the fake hypervisor has none.
    monkeypatch.setattr(_facts._netlink, "neighbours", lambda ipr: [])
    opened = []

    def fake_connect(uri, timeout=10.0):
        opened.append((uri, timeout))
        return conn

    monkeypatch.setattr(_libvirt, "connect", fake_connect)
    conn.opened = opened
    return conn


def run(capsys, **args):
    """Run the module with ``args``; return (failed, result)."""
    with patch_module_args(args), pytest.raises(SystemExit) as caught:
        guest_info.main()
    result = json.loads(capsys.readouterr().out)
    assert (caught.value.code != 0) == bool(result.get("failed"))
    return bool(result.get("failed")), result


def test_lists_every_guest_and_the_host(conn, capsys):
    failed, result = run(capsys)

    assert not failed
    assert result["changed"] is False
    assert [guest["name"] for guest in result["guests"]] == ["<odd & \"name\">", "db1", "web1"]
    assert result["host"]["hostname"] == "hv1"
    assert result["host"]["virt_types"] == ["kvm", "qemu"]
    assert conn.opened == [("qemu:///system", 10.0)]
    assert conn.closed
    web1 = result["guests"][2]
    assert web1["addresses"] == ["192.168.122.10"]
    assert "xml" not in web1


def test_one_guest_by_name_with_its_xml(conn, capsys):
    failed, result = run(capsys, name="db1", include_xml=True, uri="qemu+ssh://root@hv2/system", connect_timeout=3)

    assert not failed
    assert [guest["name"] for guest in result["guests"]] == ["db1"]
    assert result["guests"][0]["addresses"] == ["198.18.0.21"]
    assert result["guests"][0]["xml"] == conn.domains["db1"].xml
    assert conn.opened == [("qemu+ssh://root@hv2/system", 3.0)]


def test_unknown_name_fails_naming_the_option(conn, capsys):
    failed, result = run(capsys, name="nosuch")

    assert failed
    assert result["msg"] == "name: no guest named 'nosuch' on qemu:///system"
    assert conn.closed


def test_state_filter(conn, capsys):
    _failed, result = run(capsys, state=["running", "paused"])
    assert [guest["name"] for guest in result["guests"]] == ["<odd & \"name\">", "web1"]

    _failed, result = run(capsys, name="web1", state=["shutoff"])
    assert result["guests"] == []


def test_bad_state_choice_fails_naming_the_option(conn, capsys):
    failed, result = run(capsys, state=["on"])

    assert failed
    assert "state" in result["msg"] and "on" in result["msg"]
    assert conn.opened == []


def test_address_sources_decide_which_sources_are_asked(conn, capsys):
    _failed, result = run(capsys, name="web1", address_sources=["agent"])
    assert result["guests"][0]["addresses"] == ["192.168.122.99"]
    assert conn.domains["web1"].asked_address_sources() == ["agent"]

    _failed, result = run(capsys, name="db1", address_sources=["lease", "arp"])
    assert result["guests"][0]["addresses"] == []


def test_bad_address_source_fails_naming_the_option(conn, capsys):
    failed, result = run(capsys, address_sources=["dhcp"])

    assert failed
    assert "address_sources" in result["msg"]
    assert conn.opened == []


def test_check_mode_returns_the_same(conn, capsys):
    _failed, normal = run(capsys, name="web1")
    failed, checked = run(capsys, name="web1", _ansible_check_mode=True)

    assert not failed
    assert checked["guests"] == normal["guests"]
    assert checked["changed"] is False


def test_unreachable_uri_fails_cleanly(monkeypatch, capsys):
    def refuse(uri, timeout=10.0):
        raise ConnectionFailed("uri: cannot connect to libvirt at '%s': refused" % uri, uri=uri)

    monkeypatch.setattr(_libvirt, "connect", refuse)
    failed, result = run(capsys, uri="qemu+ssh://root@down/system")

    assert failed
    assert result["msg"] == "uri: cannot connect to libvirt at 'qemu+ssh://root@down/system': refused"
    assert "exception" not in result


# ---------------------------------------------------------------------------------------------------------------
# Through the fake libvirt (tests/unit/fake_libvirt.py): what placement needs, and placement fed with it

GUEST_XML = """<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='KiB'>{kib}</memory>
  <vcpu>1</vcpu>
  <os><type machine='pc'>hvm</type></os>
  {cpu}
  <devices><interface type='{nic_type}'><source {nic_type}='{source}'/><model type='virtio'/></interface></devices>
</domain>"""


def add_guest(conn, name, nic_type, source, cpu="<cpu mode='custom' match='exact'><model>qemu64</model></cpu>",
              virt_type="kvm", mib=128):
    return conn.add_domain(GUEST_XML.format(name=name, nic_type=nic_type, source=source, cpu=cpu, virt_type=virt_type,
                                            kib=mib * 1024), state="running")


@pytest.fixture(name="hypervisors")
def fixture_hypervisors(fake_libvirt):
    """hv1 (KVM) runs web-nat on network nat and web-br on bridge br0; hv2 (KVM) has br0 but no nat; hv3 has nat
    and br0 but no KVM."""
    hv1 = fake_libvirt.add("qemu+ssh://root@hv1/system", hostname="hv1")
    hv2 = fake_libvirt.add("qemu+ssh://root@hv2/system", hostname="hv2")
    hv3 = fake_libvirt.add("qemu+ssh://root@hv3/system", capabilities=QEMU_CAPABILITIES, hostname="hv3")
    for conn in (hv1, hv2, hv3):
        conn.add_network("lan", bridge="br0")
        conn.interfaces = {"eth0": "ethernet", "br0": "bridge"}
    for conn in (hv1, hv3):
        conn.add_network("nat", bridge="virbr1")
        conn.interfaces["virbr1"] = "bridge"
    add_guest(hv1, "web-nat", "network", "nat", mib=256)
    add_guest(hv1, "web-br", "bridge", "br0")
    return {"hv1": hv1, "hv2": hv2, "hv3": hv3}


def describe(run_module, host):
    return run_module(guest_info.main, {"uri": "qemu+ssh://root@%s/system" % host, "address_sources": ["metadata"]})


def test_reports_platform_networks_bridges_and_cpu_offer(hypervisors, run_module):
    result = describe(run_module, "hv1")

    guests = {guest["name"]: guest for guest in result["guests"]}
    # libvirt stored the versioned machine for the alias 'pc', and the host's arch.
    assert (guests["web-nat"]["arch"], guests["web-nat"]["machine"]) == ("x86_64", "pc-i440fx-7.2")
    assert guests["web-nat"]["cpu"] == {"mode": "custom", "model": "qemu64", "host_cpu_model": None}
    assert [(nic["type"], nic["source"]) for nic in guests["web-nat"]["nics"]] == [("network", "nat")]
    host = result["host"]
    assert (host["networks"], host["bridges"], host["cpu_model"]) == (["lan", "nat"], ["br0", "virbr1"], "Skylake-Client-IBRS")
    assert "qemu64" in host["arches"]["x86_64"]["virt_types"]["kvm"]["cpu_models"]
    assert result["changed"] is False


def test_host_passthrough_guest_carries_its_host_cpu(hypervisors, run_module):
    add_guest(hypervisors["hv1"], "fast", "bridge", "br0", cpu="<cpu mode='host-passthrough'/>")
    result = run_module(guest_info.main, {"uri": "qemu+ssh://root@hv1/system", "name": "fast", "address_sources": ["metadata"]})
    assert result["guests"][0]["cpu"] == {"mode": "host-passthrough", "model": None, "host_cpu_model": "Skylake-Client-IBRS"}


def test_domain_capabilities_failure_does_not_fail_the_module(hypervisors, run_module):
    hypervisors["hv1"].fail_on["getDomainCapabilities"] = "internal error: QEMU probing failed"
    result = describe(run_module, "hv1")
    assert not result.get("failed")
    assert result["host"]["arches"]["x86_64"]["virt_types"]["kvm"]["cpu_models"] is None


def test_guest_info_results_place_guests_only_where_they_can_run(hypervisors, run_module):
    facts = {name: describe(run_module, name) for name in hypervisors}
    others = {name: facts[name]["host"] for name in ("hv2", "hv3")}

    plan = {entry["name"]: entry for entry in placement(facts["hv1"]["guests"], others, reserve_mib=512)}

    assert plan["web-nat"]["target"] is None
    assert plan["web-nat"]["reason"] == "hv2: no libvirt network 'nat'; hv3: does not run kvm guests on x86_64 (only qemu)"
    assert plan["web-br"]["target"] == "hv2"
    assert plan["web-br"]["unfit"] == {"hv3": ["does not run kvm guests on x86_64 (only qemu)"]}


def test_says_which_guests_have_the_agent_channel(conn, capsys):
    channel = ("<channel type='unix'><source mode='bind' path='/run/libvirt/qemu/channel/1-agent.sock'/>"
               "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
               "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>")
    place_guest(conn, domain_xml("agent1", [NIC]).replace("</devices>", channel + "</devices>"))
    place_guest(conn, domain_xml("spice1", [NIC]).replace("</devices>", channel.split("</channel>", 1)[1] + "</devices>"))
    _failed, result = run(capsys)
    found = {guest["name"]: guest["guest_agent"] for guest in result["guests"]}
    assert found == {"<odd & \"name\">": False, "agent1": True, "db1": False, "spice1": False, "web1": False}
