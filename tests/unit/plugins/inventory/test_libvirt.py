# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
import yaml

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import add_fragments

from ansible_collections.arctictern.virt.plugins.inventory import libvirt as libvirt_inventory
from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt
from ansible_collections.arctictern.virt.plugins.module_utils._errors import ConnectionFailed
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._facts_fakes import FakeConnection, FakeDomain, domain_xml, lease

NAME = "arctictern.virt.libvirt"
MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"


def nic(mac, kind, source):
    return {"type": kind, "mac": mac, "source": source}


@pytest.fixture(name="hypervisors")
def fixture_hypervisors(monkeypatch):
    """Two reachable fake hypervisors sharing the guest name web1, and one that refuses connections."""
    conns = {
        "qemu+ssh://root@hv1.example.com/system": FakeConnection([
            FakeDomain(domain_xml("web1", [nic(MAC1, "network", "default")]),
                       addresses={"lease": lease("vnet0", MAC1, "192.168.122.10/24")}),
            FakeDomain(domain_xml("db1", [nic(MAC1, "network", "default"), nic(MAC2, "bridge", "br-lan.10")],
                                  metadata=[(MAC2, "198.18.0.21/24")], running=False), state="shutoff"),
        ]),
        "qemu+unix:///system?socket=/run/hv2/sock": FakeConnection([
            FakeDomain(domain_xml("web1", [nic(MAC2, "bridge", "br-lan.10")]), state="paused"),
            FakeDomain(domain_xml("{{ lookup('pipe', 'id') }}")),
        ]),
    }
    opened = []

    def fake_connect(uri, timeout=10.0):
        opened.append((uri, timeout))
        if uri not in conns:
            raise ConnectionFailed("uri: cannot connect to libvirt at '%s': Connection refused" % uri, uri=uri)
        return conns[uri]

    monkeypatch.setattr(_libvirt, "connect", fake_connect)
    return opened


@pytest.fixture(name="warnings")
def fixture_warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(libvirt_inventory.display, "warning", seen.append)
    return seen


def make_plugin():
    # What ansible's plugin loader does: register the documented options, then name the plugin.
    if not C.config.has_configuration_definition("inventory", NAME):
        doc = yaml.safe_load(libvirt_inventory.DOCUMENTATION)
        add_fragments(doc, libvirt_inventory.__file__, fragment_loader=fragment_loader)
        C.config.initialize_plugin_configuration_definitions("inventory", NAME, doc["options"])
    plugin = libvirt_inventory.InventoryModule()
    plugin._load_name = plugin.ansible_name = NAME  # pylint: disable=protected-access
    return plugin


def parse(tmp_path, config, name="fleet.libvirt.yml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(dict({"plugin": NAME}, **config)))
    plugin = make_plugin()
    assert plugin.verify_file(str(path))
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(path), cache=False)
    return inventory


def members(inventory, group):
    return sorted(host.name for host in inventory.groups[group].get_hosts())


FLEET = {"uris": ["qemu+ssh://root@hv1.example.com/system", {"uri": "qemu+unix:///system?socket=/run/hv2/sock", "name": "hv2"}]}


def test_verify_file_wants_the_suffix(tmp_path):
    plugin = make_plugin()
    for name, wanted in (("a.libvirt.yml", True), ("a.libvirt.yaml", True), ("a.yml", False), ("libvirt.yml", False)):
        (tmp_path / name).write_text("plugin: %s\n" % NAME)
        assert plugin.verify_file(str(tmp_path / name)) is wanted, name
    assert not plugin.verify_file(str(tmp_path / "missing.libvirt.yml"))


def test_hosts_groups_and_duplicate_names(tmp_path, hypervisors, warnings):
    inventory = parse(tmp_path, dict(FLEET, connect_timeout=4))

    assert sorted(inventory.hosts) == ["db1", "web1@hv1.example.com", "web1@hv2", "{{ lookup('pipe', 'id') }}"]
    assert members(inventory, "hypervisor_hv1_example_com") == ["db1", "web1@hv1.example.com"]
    assert members(inventory, "hypervisor_hv2") == ["web1@hv2", "{{ lookup('pipe', 'id') }}"]
    assert members(inventory, "state_running") == ["web1@hv1.example.com", "{{ lookup('pipe', 'id') }}"]
    assert members(inventory, "state_shutoff") == ["db1"]
    assert members(inventory, "state_paused") == ["web1@hv2"]
    assert members(inventory, "network_default") == ["db1", "web1@hv1.example.com"]
    assert members(inventory, "network_br_lan_10") == ["db1", "web1@hv2"]
    assert [uri for uri, _timeout in hypervisors] == [uri if isinstance(uri, str) else uri["uri"] for uri in FLEET["uris"]]
    assert {timeout for _uri, timeout in hypervisors} == {4.0}
    assert warnings == []


def test_host_vars(tmp_path, hypervisors):
    inventory = parse(tmp_path, FLEET)

    web1 = inventory.get_host("web1@hv1.example.com").vars
    assert web1["libvirt_name"] == "web1"
    assert web1["libvirt_uri"] == "qemu+ssh://root@hv1.example.com/system"
    assert web1["libvirt_hypervisor"] == "hv1.example.com"
    assert web1["libvirt_uuid"] == "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
    assert web1["libvirt_state"] == "running"
    assert web1["libvirt_addresses"] == ["192.168.122.10"]
    assert web1["libvirt_nics"][0]["addresses"] == ["192.168.122.10/24"]
    assert web1["ansible_host"] == "192.168.122.10"
    db1 = inventory.get_host("db1").vars
    assert db1["ansible_host"] == "198.18.0.21"
    assert "ansible_host" not in inventory.get_host("web1@hv2").vars
    assert inventory.get_host("{{ lookup('pipe', 'id') }}").vars["libvirt_name"] == "{{ lookup('pipe', 'id') }}"


def test_include_inactive_false_lists_running_guests_only(tmp_path, hypervisors):
    inventory = parse(tmp_path, dict(FLEET, include_inactive=False))

    assert "db1" not in inventory.hosts
    # web1 is still on both hypervisors (running and paused), so both keep their suffix.
    assert "web1@hv2" in inventory.hosts and "web1@hv1.example.com" in inventory.hosts


def test_address_sources_option(tmp_path, hypervisors):
    inventory = parse(tmp_path, dict(FLEET, address_sources=["arp"]))

    assert inventory.get_host("db1").vars["libvirt_addresses"] == []
    assert inventory.get_host("web1@hv1.example.com").vars["libvirt_addresses"] == []


def test_unreachable_uri_warns_and_others_still_count(tmp_path, hypervisors, warnings):
    config = {"uris": [{"uri": "qemu+ssh://root@down.example.com/system", "name": "down"}, "qemu+ssh://root@hv1.example.com/system"]}

    inventory = parse(tmp_path, config)

    assert len(warnings) == 1
    assert "qemu+ssh://root@down.example.com/system" in warnings[0] and "Connection refused" in warnings[0]
    # With hv2 unread, web1 is unique again.
    assert sorted(inventory.hosts) == ["db1", "web1"]
    assert "hypervisor_down" not in inventory.groups


def test_unreachable_uri_is_fatal_when_strict(tmp_path, hypervisors, warnings):
    config = {"uris": ["qemu+ssh://root@down.example.com/system", "qemu+ssh://root@hv1.example.com/system"], "strict": True}

    with pytest.raises(AnsibleParserError, match="down.example.com"):
        parse(tmp_path, config)
    assert warnings == []


def test_constructed_options(tmp_path, hypervisors):
    config = dict(FLEET, compose={"guest_ram": "'web' if libvirt_name.startswith('web') else 'other'"},
                  groups={"webservers": "libvirt_name == 'web1'"},
                  keyed_groups=[{"key": "libvirt_state", "prefix": "status"}])

    inventory = parse(tmp_path, config)

    assert inventory.get_host("web1@hv2").vars["guest_ram"] == "web"
    assert inventory.get_host("db1").vars["guest_ram"] == "other"
    assert members(inventory, "webservers") == ["web1@hv1.example.com", "web1@hv2"]
    assert members(inventory, "status_paused") == ["web1@hv2"]


@pytest.mark.parametrize("uris, problem", [
    ([{"uri": "qemu:///system", "alias": "x"}], "each entry must be"),
    ([{"name": "hv1"}], "each entry must be"),
    ([42], "each entry must be"),
    (["qemu:///system", "qemu+unix:///system?socket=/run/hv2/sock"], "alias localhost is used by more than one URI"),
])
def test_bad_uris_fail_naming_the_option(tmp_path, hypervisors, uris, problem):
    with pytest.raises(AnsibleParserError, match="^uris: .*%s" % problem):
        parse(tmp_path, {"uris": uris})
    assert hypervisors == []


def test_bad_address_source_fails_naming_the_option(tmp_path, hypervisors):
    with pytest.raises(AnsibleError, match="'address_sources'"):
        parse(tmp_path, dict(FLEET, address_sources=["dhcp"]))
    assert hypervisors == []


def test_wrong_plugin_name_is_refused(tmp_path, hypervisors):
    path = tmp_path / "other.libvirt.yml"
    path.write_text("plugin: community.libvirt.libvirt\n")

    with pytest.raises(AnsibleParserError, match="Incorrect plugin name"):
        make_plugin().parse(InventoryData(), DataLoader(), str(path), cache=False)
    assert hypervisors == []


def test_cache_is_used_and_not_written_when_incomplete(tmp_path, hypervisors, warnings):
    path = tmp_path / "cached.libvirt.yml"
    config = {"plugin": NAME, "cache": True, "cache_plugin": "jsonfile", "cache_connection": str(tmp_path / "cache"),
              "uris": ["qemu+ssh://root@hv1.example.com/system", "qemu+ssh://root@down/system"]}

    def parse_cached():
        inventory = InventoryData()
        path.write_text(yaml.safe_dump(config))
        plugin = make_plugin()
        plugin.parse(inventory, DataLoader(), str(path), cache=True)
        plugin.update_cache_if_changed()  # as ansible's inventory manager does after each source
        return inventory, plugin.get_cache_key(str(path))

    _inventory, key = parse_cached()
    # One hypervisor was down: nothing cached, so the next run asks libvirt again.
    assert not any(tmp_path.joinpath("cache").glob("*%s*" % key))
    assert len(hypervisors) == 2 and len(warnings) == 1

    config["uris"] = config["uris"][:1]
    parse_cached()
    assert len(hypervisors) == 3
    assert len(list(tmp_path.joinpath("cache").glob("*%s*" % key))) == 1

    inventory, _key = parse_cached()
    assert len(hypervisors) == 3  # served from the cache
    assert sorted(inventory.hosts) == ["db1", "web1"]
    assert inventory.get_host("db1").vars["ansible_host"] == "198.18.0.21"
