# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _domain, _facts
from ansible_collections.arctictern.virt.plugins.module_utils._errors import NotFound, VirtError
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._facts_fakes import (
    FakeConnection,
    FakeDomain,
    domain_xml,
    failing,
    lease,
    libvirt_error,
)

MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"
NAT_NIC = {"type": "network", "mac": MAC1, "source": "default"}
BRIDGE_NIC = {"type": "bridge", "mac": MAC2, "source": "br-lan", "model": "e1000"}


def test_network_nic_with_dhcp_lease():
    domain = FakeDomain(domain_xml("web1", [NAT_NIC]), addresses={"lease": lease("vnet0", MAC1, "192.168.122.10/24")})

    guest = _facts.describe_guest(domain)

    assert guest["nics"] == [
        {"mac": MAC1, "type": "network", "source": "default", "model": "virtio", "target": "vnet0", "addresses": ["192.168.122.10/24"]}
    ]
    assert guest["addresses"] == ["192.168.122.10"]
    assert {key: guest[key] for key in ("name", "state", "memory_mib", "max_memory_mib", "vcpus", "virt_type", "autostart", "persistent")} == {
        "name": "web1", "state": "running", "memory_mib": 1024, "max_memory_mib": 2048, "vcpus": 2, "virt_type": "kvm",
        "autostart": True, "persistent": True,
    }
    assert guest["uuid"] == "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
    assert "xml" not in guest


def test_bridged_nic_falls_back_to_arp_when_lease_source_fails():
    domain = FakeDomain(domain_xml("web1", [BRIDGE_NIC]), addresses={"arp": lease("vnet0", MAC2, "198.18.0.30/24")})

    guest = _facts.describe_guest(domain)

    assert domain.asked == ["lease", "arp"]
    assert guest["nics"][0]["type"] == "bridge"
    assert guest["nics"][0]["source"] == "br-lan"
    assert guest["nics"][0]["model"] == "e1000"
    assert guest["addresses"] == ["198.18.0.30"]


def test_every_source_failing_leaves_no_address_and_no_error():
    domain = FakeDomain(domain_xml("web1", [NAT_NIC, BRIDGE_NIC]))

    guest = _facts.describe_guest(domain, ("lease", "arp", "agent"))

    assert domain.asked == ["lease", "arp", "agent"]
    assert guest["addresses"] == []
    assert [nic["addresses"] for nic in guest["nics"]] == [[], []]


@pytest.mark.parametrize("uri, expected", [
    ("qemu:///system", ["198.18.0.21/32"]),
    ("qemu+unix:///system?socket=/run/hv1/libvirt-sock", ["198.18.0.21/32"]),
    ("qemu+ssh://hv2.example.com/system", []),
])
def test_arp_falls_back_to_the_neighbour_table_of_a_local_daemon(monkeypatch, uri, expected):
    """libvirt 9.0's ARP source fails on newer kernels ("wrong nlmsg len"); this host's table answers instead,
    but only for a daemon on this host."""
    domain = FakeDomain(domain_xml("web1", [BRIDGE_NIC]), uri=uri)
    monkeypatch.setattr(_facts._netlink, "neighbours", lambda ipr: [
        {"address": "198.18.0.21", "mac": MAC2, "ifindex": 4},
        {"address": "198.18.0.99", "mac": "52:54:00:ff:ff:ff", "ifindex": 4},
    ])

    guest = _facts.describe_guest(domain, ("arp",))

    assert guest["nics"][0]["addresses"] == expected


def test_metadata_address_known_before_any_arp_traffic():
    xml = domain_xml("db1", [NAT_NIC, BRIDGE_NIC], metadata=[(MAC2.upper(), "198.18.0.21/24")])
    domain = FakeDomain(xml, addresses={"lease": lease("vnet0", MAC1, "192.168.122.11/24")})

    guest = _facts.describe_guest(domain)

    assert guest["nics"][0]["addresses"] == ["192.168.122.11/24"]
    assert guest["nics"][1]["addresses"] == ["198.18.0.21/24"]
    # NIC order decides the flat list, so the first NIC's address comes first.
    assert guest["addresses"] == ["192.168.122.11", "198.18.0.21"]


def test_metadata_address_first_and_not_repeated_by_arp():
    xml = domain_xml("db1", [BRIDGE_NIC], metadata=[(MAC2, "198.18.0.21/24")])
    domain = FakeDomain(xml, addresses={"arp": lease("vnet0", MAC2, "198.18.0.99/24", "198.18.0.21/24")})

    guest = _facts.describe_guest(domain)

    assert guest["nics"][0]["addresses"] == ["198.18.0.21/24", "198.18.0.99/24"]
    assert guest["addresses"] == ["198.18.0.21", "198.18.0.99"]


def test_metadata_ignores_unknown_nics_garbage_and_foreign_namespaces():
    xml = domain_xml("db1", [BRIDGE_NIC], metadata=[("52:54:00:ff:ff:ff", "198.18.0.5/24"), (MAC2, "not-an-address")])
    # Another tool's metadata with the same element names must not count.
    xml = xml.replace("<metadata>", "<metadata><other:guest xmlns:other='https://example.com/x'>"
                      "<other:address nic='%s'>10.9.9.9/24</other:address></other:guest>" % MAC2)
    guest = _facts.describe_guest(FakeDomain(xml, state="shutoff"))

    assert guest["addresses"] == []


def test_metadata_source_can_be_left_out():
    xml = domain_xml("db1", [BRIDGE_NIC], metadata=[(MAC2, "198.18.0.21/24")])

    assert _facts.describe_guest(FakeDomain(xml), ("lease", "arp"))["addresses"] == []


def test_metadata_namespace_is_the_documented_one():
    assert _domain.METADATA_NS == "https://arctictern.dev/virt/1"


def test_agent_asked_only_when_requested_and_filtered():
    agent = {}
    agent.update(lease("lo", "00:00:00:00:00:00", "127.0.0.1/8", "::1/128"))
    agent.update(lease("eth0", MAC1.upper(), "192.168.122.12/24", "fe80::5054:ff:fe00:1/64", "2001:db8::12/64"))
    domain = FakeDomain(domain_xml("app1", [NAT_NIC]), addresses={"agent": agent})

    assert _facts.describe_guest(domain)["addresses"] == []
    assert "agent" not in domain.asked

    guest = _facts.describe_guest(domain, ("agent",))

    assert guest["nics"][0]["addresses"] == ["192.168.122.12/24", "2001:db8::12/64"]
    assert guest["addresses"] == ["192.168.122.12", "2001:db8::12"]


def test_source_answer_matched_by_target_when_it_has_no_mac():
    domain = FakeDomain(domain_xml("app1", [NAT_NIC]), addresses={"lease": lease("vnet0", None, "192.168.122.13/24")})

    assert _facts.describe_guest(domain)["addresses"] == ["192.168.122.13"]


def test_shutoff_guest_is_not_asked_for_live_addresses():
    xml = domain_xml("cold1", [NAT_NIC], metadata=[(MAC1, "192.168.122.50/24")], running=False)
    domain = FakeDomain(xml, state="shutoff", autostart=False)

    guest = _facts.describe_guest(domain, ("metadata", "lease", "arp", "agent"))

    assert domain.asked == []
    assert guest["state"] == "shutoff"
    assert guest["autostart"] is False
    assert guest["nics"][0]["target"] is None
    assert guest["addresses"] == ["192.168.122.50"]


def test_running_migration_is_reported_as_the_guest_job():
    stats = {"type": 2, "operation": 5, "time_elapsed": 4200, "data_total": 1000, "data_processed": 900,
             "data_remaining": 250, "memory_iteration": 3, "memory_dirty_rate": 1200, "downtime": 300}
    guest = _facts.describe_guest(FakeDomain(domain_xml("mig1", [NAT_NIC]), job=stats), ("metadata",))
    assert guest["job"] == {"operation": "migration_out", "elapsed_ms": 4200, "percent": 75.0, "data_total": 1000,
                            "data_processed": 900, "data_remaining": 250, "memory_iteration": 3, "memory_dirty_rate": 1200}
    # No job, a job without figures (an incoming migration's first moment), and a guest that is off.
    assert _facts.describe_guest(FakeDomain(domain_xml("idle1", [NAT_NIC])), ("metadata",))["job"] is None
    early = _facts.job_progress({"type": 2, "operation": 4})
    assert early["operation"] == "migration_in" and early["percent"] is None and early["data_total"] is None
    cold = FakeDomain(domain_xml("cold1", [NAT_NIC], running=False), state="shutoff", job=stats)
    assert _facts.describe_guest(cold, ("metadata",))["job"] is None


@pytest.mark.parametrize("name", ["<web&\"1'>", "]]><x/>", "{{ lookup('pipe', 'id') }}", "wéb 1"])
def test_hostile_names_round_trip_verbatim(name):
    guest = _facts.describe_guest(FakeDomain(domain_xml(name, [NAT_NIC])))

    assert guest["name"] == name


def test_current_vcpus_and_xml_on_request():
    xml = domain_xml("app1", vcpu=("8", "2"), domain_type="xen")

    guest = _facts.describe_guest(FakeDomain(xml, persistent=False), include_xml=True)

    assert guest["vcpus"] == 2
    assert guest["virt_type"] == "xen"
    assert guest["persistent"] is False
    assert guest["nics"] == []
    assert guest["xml"] == xml


def test_vanished_guest_raises_not_found_and_other_errors_virt_error():
    with pytest.raises(NotFound):
        _facts.describe_guest(FakeDomain(domain_xml("gone"), gone=True))

    domain = FakeDomain(domain_xml("broken"))
    domain.XMLDesc = failing(libvirt_error("VIR_ERR_INTERNAL_ERROR", "boom"))
    with pytest.raises(VirtError, match="^reading definition of guest 'broken': boom$") as caught:
        _facts.describe_guest(domain)
    assert not isinstance(caught.value, NotFound)


def test_describe_guests_sorted_skipping_vanished_ones():
    conn = FakeConnection([
        FakeDomain(domain_xml("zeta")),
        FakeDomain(domain_xml("gone"), gone=True),
        FakeDomain(domain_xml("alpha"), state="shutoff"),
    ])

    assert [guest["name"] for guest in _facts.describe_guests(conn)] == ["alpha", "zeta"]
    assert [guest["name"] for guest in _facts.describe_guests(conn, active_only=True)] == ["zeta"]
    assert conn.list_flags[0] == 0 and conn.list_flags[1] != 0


def test_repeated_source_is_asked_once():
    domain = FakeDomain(domain_xml("app1", [NAT_NIC]), addresses={"arp": lease("vnet0", MAC1, "192.168.122.14/24")})

    guest = _facts.describe_guest(domain, ("arp", "lease", "arp"))

    assert domain.asked == ["arp", "lease"]
    assert guest["addresses"] == ["192.168.122.14"]


def test_describe_host():
    host = _facts.describe_host(FakeConnection(uri="qemu+ssh://root@hv1/system"))

    assert host == {
        "hostname": "hv1",
        "uri": "qemu+ssh://root@hv1/system",
        "hypervisor": "QEMU",
        "hypervisor_version": "7.2.0",
        "libvirt_version": "9.0.0",
        "arch": "x86_64",
        "cpus": 16,
        "memory_mib": 64000,
        "free_memory_mib": 31000,
        "virt_types": ["kvm", "qemu"],
        "os_types": ["hvm"],
    }


def test_describe_host_error_names_what_failed():
    conn = FakeConnection()
    conn.getFreeMemory = failing(libvirt_error("VIR_ERR_NO_SUPPORT", "not supported"))

    with pytest.raises(VirtError, match="^reading free memory: not supported"):
        _facts.describe_host(conn)
