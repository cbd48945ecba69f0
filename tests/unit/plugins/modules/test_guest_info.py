# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt
from ansible_collections.arctictern.virt.plugins.module_utils._errors import ConnectionFailed
from ansible_collections.arctictern.virt.plugins.modules import guest_info
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._facts_fakes import FakeConnection, FakeDomain, domain_xml, lease

MAC = "52:54:00:00:00:01"
NIC = {"type": "network", "mac": MAC, "source": "default"}


@pytest.fixture(name="conn")
def fixture_conn(monkeypatch):
    conn = FakeConnection([
        FakeDomain(domain_xml("web1", [NIC]), addresses={"lease": lease("vnet0", MAC, "192.168.122.10/24"),
                                                         "agent": lease("eth0", MAC, "192.168.122.99/24")}),
        FakeDomain(domain_xml("db1", [NIC], metadata=[(MAC, "198.18.0.21/24")], running=False), state="shutoff"),
        FakeDomain(domain_xml("<odd & \"name\">"), state="paused"),
    ])
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
    assert result["guests"][0]["xml"] == conn.domains[1].xml
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
    assert conn.domains[0].asked == ["agent"]

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
