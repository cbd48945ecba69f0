# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import threading
import time

import libvirt
import pytest
import yaml

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import add_fragments

from ansible_collections.arctictern.virt.plugins.inventory import libvirt as libvirt_inventory
from ansible_collections.arctictern.virt.plugins.module_utils import _facts, _libvirt
from ansible_collections.arctictern.virt.plugins.module_utils._errors import ConnectionFailed
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import libvirt_error
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._guest_data import domain_xml, lease, old_daemon, place_guest

NAME = "arctictern.virt.libvirt"
MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"


def nic(mac, kind, source):
    return {"type": kind, "mac": mac, "source": source}


@pytest.fixture(name="hypervisors")
def fixture_hypervisors(monkeypatch):
    """Two reachable fake hypervisors sharing the guest name web1, and one that refuses connections."""
    conns = {uri: old_daemon(uri) for uri in ("qemu+ssh://root@hv1.example.com/system", "qemu+unix:///system?socket=/run/hv2/sock")}
    hv1, hv2 = conns.values()
    place_guest(hv1, domain_xml("web1", [nic(MAC1, "network", "default")], uuid_string="4dea22b3-1d52-d8f3-2516-782e98ab3fa0"),
                addresses={"lease": lease("vnet0", MAC1, "192.168.122.10/24")})
    place_guest(hv1, domain_xml("db1", [nic(MAC1, "network", "default"), nic(MAC2, "bridge", "br-lan.10")],
                                metadata=[(MAC2, "198.18.0.21/24")], running=False), state="shutoff")
    place_guest(hv2, domain_xml("web1", [nic(MAC2, "bridge", "br-lan.10")]), state="paused")
    place_guest(hv2, domain_xml("{{ lookup('pipe', 'id') }}"))
    # hv2's daemon is local: its guests' neighbours would be this machine's; the fake hypervisor has none.
    monkeypatch.setattr(_facts._netlink, "neighbours", lambda ipr: [])
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


# Fleets: the fake libvirt of conftest (libvirt.open patched), so the plugin goes through the real connection layer.

def guest_xml(name, network="default"):
    return ("<domain type='kvm'><name>%s</name><memory>131072</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
            "<devices><interface type='network'><source network='%s'/><model type='virtio'/></interface></devices>"
            "</domain>" % (name, network))


def fleet(fake_libvirt, count, guests=3, shared="app"):
    """``count`` fake hypervisors hv0..hvN (remote URIs, so nothing reads this machine's neighbour table), each with
    ``guests`` guests, one of them called ``shared`` everywhere (so host names get the hypervisor suffix)."""
    uris = []
    for index in range(count):
        uri = "qemu+ssh://root@hv%d.example.com/system" % index
        conn = fake_libvirt.add(uri, hostname="hv%d" % index)
        conn.add_domain(guest_xml(shared), state="running")
        for number in range(1, guests):
            conn.add_domain(guest_xml("g%d-%d" % (index, number), network="net%d" % (number % 2)),
                            state="running" if number % 2 else "shutoff")
        uris.append(uri)
    return uris


def snapshot(inventory):
    """Everything the order of hosts, groups and variables shows, in the order the inventory holds them."""
    return {
        "hosts": [(name, dict(host.vars)) for name, host in inventory.hosts.items()],
        "groups": [(name, [host.name for host in group.hosts], [child.name for child in group.child_groups])
                   for name, group in inventory.groups.items()],
    }


@pytest.fixture(name="slow_opens")
def fixture_slow_opens(fake_libvirt, monkeypatch):
    """``libvirt.open`` that takes longer for the hypervisors listed first (so that in parallel they finish
    last) and records how many connections are open at once."""
    state = {"open": 0, "most": 0, "delays": {}}
    real_open = fake_libvirt.open
    lock = threading.Lock()

    def count(step):
        with lock:
            state["open"] += step
            state["most"] = max(state["most"], state["open"])

    def close_counting(conn):
        def close():
            count(-1)
            return type(conn).close(conn)
        return close

    def open_slowly(uri=None):
        count(1)
        try:
            conn = real_open(uri)
        except Exception:
            count(-1)
            raise
        time.sleep(state["delays"].get(uri, 0.1))
        conn.close = close_counting(conn)
        return conn

    monkeypatch.setattr(libvirt, "open", open_slowly)
    return state


def test_guest_gone_before_it_is_read_is_left_out(tmp_path, fake_libvirt, warnings):
    uris = fleet(fake_libvirt, 2)
    gone = fake_libvirt.connections[uris[0]].domains["g0-1"]
    gone.fail_on["XMLDesc"] = libvirt_error("VIR_ERR_NO_DOMAIN", "Domain not found: no domain with matching uuid")

    inventory = parse(tmp_path, {"uris": uris})

    assert sorted(inventory.hosts) == ["app@hv0.example.com", "app@hv1.example.com", "g0-2", "g1-1", "g1-2"]
    assert warnings == []


@pytest.mark.parametrize("method", ["state", "autostart", "isPersistent"])
def test_guest_gone_halfway_through_its_reading_is_left_out(tmp_path, fake_libvirt, warnings, method):
    # Listed and its XML read, then undefined or migrated away: every later call says VIR_ERR_NO_DOMAIN.
    uris = fleet(fake_libvirt, 2)
    gone = fake_libvirt.connections[uris[1]].domains["g1-1"]
    gone.fail_on[method] = libvirt_error("VIR_ERR_NO_DOMAIN", "Domain not found: no domain with matching uuid")

    inventory = parse(tmp_path, {"uris": uris})

    assert "g1-1" not in inventory.hosts
    assert members(inventory, "hypervisor_hv1_example_com") == ["app@hv1.example.com", "g1-2"]
    assert members(inventory, "hypervisor_hv0_example_com") == ["app@hv0.example.com", "g0-1", "g0-2"]
    assert gone.called("XMLDesc") == 1
    assert warnings == []


def test_other_guest_error_still_skips_its_hypervisor(tmp_path, fake_libvirt, warnings):
    uris = fleet(fake_libvirt, 2)
    fake_libvirt.connections[uris[1]].domains["g1-1"].fail_on["state"] = libvirt_error("VIR_ERR_INTERNAL_ERROR", "internal error: monitor hung up")

    inventory = parse(tmp_path, {"uris": uris})

    assert len(warnings) == 1
    assert "hv1.example.com" in warnings[0] and "reading state of guest 'g1-1': internal error: monitor hung up" in warnings[0]
    assert sorted(inventory.hosts) == ["app", "g0-1", "g0-2"]


def test_parallel_inventory_is_the_sequential_one(tmp_path, fake_libvirt, slow_opens, warnings):
    uris = fleet(fake_libvirt, 6)
    # The first hypervisors answer last; one in the middle and the last one are down.
    slow_opens["delays"] = {uri: 0.02 * (len(uris) - index) for index, uri in enumerate(uris)}
    uris.insert(3, {"uri": "qemu+ssh://root@down.example.com/system", "name": "down"})
    uris.append("qemu+ssh://root@gone.example.com/system")
    config = {"uris": uris, "keyed_groups": [{"key": "libvirt_state", "prefix": "status"}], "groups": {"odd": "libvirt_name.endswith('1')"}}

    sequential = parse(tmp_path, dict(config, max_workers=1))
    sequential_warnings = list(warnings)
    warnings.clear()
    parallel = parse(tmp_path, dict(config, max_workers=8))

    assert snapshot(parallel) == snapshot(sequential)
    assert warnings == sequential_warnings
    assert ["down.example.com" in warning for warning in warnings] == [True, False]
    assert "hypervisor_hv5_example_com" in parallel.groups and len(parallel.hosts) == 18


@pytest.mark.parametrize("workers, expected", [(1, 1), (3, 3), (8, 5)])
def test_max_workers_bounds_the_open_connections(tmp_path, fake_libvirt, slow_opens, workers, expected):
    uris = fleet(fake_libvirt, 5, guests=1)

    inventory = parse(tmp_path, {"uris": uris, "max_workers": workers})

    # At most max_workers (and never more than there are hypervisors) at once, and the pool is used up to it.
    assert slow_opens["most"] == expected
    assert slow_opens["open"] == 0  # every connection closed
    assert len(inventory.hosts) == 5


def test_default_max_workers_is_8(tmp_path, fake_libvirt, slow_opens):
    uris = fleet(fake_libvirt, 12, guests=1)

    parse(tmp_path, {"uris": uris})

    assert slow_opens["most"] == 8


def test_strict_in_parallel_fails_on_the_first_listed(tmp_path, fake_libvirt, slow_opens, warnings):
    uris = fleet(fake_libvirt, 8, guests=1)
    # The first hypervisor fails last, the fourth first: the error names the first, as when read one by one.
    slow_opens["delays"] = {uris[0]: 0.3}
    fake_libvirt.connections[uris[0]].fail_on["listAllDomains"] = "cannot recv data: Connection reset by peer"
    fake_libvirt.connections[uris[3]].fail_on["listAllDomains"] = "internal error: client socket is closed"

    with pytest.raises(AnsibleParserError, match=r"^hypervisor hv0\.example\.com .*Connection reset by peer"):
        parse(tmp_path, {"uris": uris, "strict": True})
    assert slow_opens["open"] == 0
    assert warnings == []


def test_strict_in_parallel_stops_reading_at_the_error(tmp_path, fake_libvirt, slow_opens):
    uris = fleet(fake_libvirt, 8, guests=1)
    slow_opens["delays"] = {uri: 0.2 for uri in uris[1:]}
    fake_libvirt.connections[uris[0]].fail_on["listAllDomains"] = "cannot recv data: Connection reset by peer"

    with pytest.raises(AnsibleParserError, match=r"^hypervisor hv0\.example\.com "):
        parse(tmp_path, {"uris": uris, "strict": True, "max_workers": 2})
    # The reads running when the error came end (connections closed); those still queued were never started. How
    # many had started depends on how soon this thread saw the error (3 on an idle machine, more under load); 8 at
    # 0.2 s each over two workers would take 0.8 s.
    assert len(fake_libvirt.opened) < len(uris)
    assert slow_opens["open"] == 0


@pytest.mark.parametrize("value, message", [
    (0, "max_workers: must be a whole number of at least 1, got 0"),
    (-2, "max_workers: must be a whole number of at least 1, got -2"),
    ("many", "'max_workers'.*invalid value"),
    (2.5, "'max_workers'.*invalid value"),
])
def test_bad_max_workers_fails_naming_the_option(tmp_path, fake_libvirt, value, message):
    uris = fleet(fake_libvirt, 2)

    with pytest.raises(AnsibleError, match=message):
        parse(tmp_path, {"uris": uris, "max_workers": value})
    assert fake_libvirt.opened == []
