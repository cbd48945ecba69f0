# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _domain, _facts, _libvirt, _netlink
from ansible_collections.arctictern.virt.plugins.module_utils._errors import NotFound, VirtError
from ansible_collections.arctictern.virt.tests.unit import fake_libvirt
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import libvirt_error
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._guest_data import place_guest, domain_xml, lease, lone_guest, old_daemon

MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"
# How a lease or ARP source fails: the guest's network vanished, libvirt 9.0's ARP reader on a newer kernel.
LEASE_FAILURE = libvirt_error("VIR_ERR_NO_NETWORK", "Network not found: no network with matching name 'default'", "VIR_FROM_NETWORK")
ARP_FAILURE = libvirt_error("VIR_ERR_INTERNAL_ERROR", "internal error: wrong nlmsg len")
NAT_NIC = {"type": "network", "mac": MAC1, "source": "default"}
BRIDGE_NIC = {"type": "bridge", "mac": MAC2, "source": "br-lan", "model": "e1000"}


def test_network_nic_with_dhcp_lease():
    domain = lone_guest(domain_xml("web1", [NAT_NIC], uuid_string="4dea22b3-1d52-d8f3-2516-782e98ab3fa0"),
                        addresses={"lease": lease("vnet0", MAC1, "192.168.122.10/24")})

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
    assert [call for call in domain.calls if call[0] == "XMLDesc"] == [("XMLDesc", 0)], "never ask for secrets"


def test_bridged_nic_falls_back_to_arp_when_lease_source_fails():
    domain = lone_guest(domain_xml("web1", [BRIDGE_NIC]), addresses={"lease": LEASE_FAILURE, "arp": lease("vnet0", MAC2, "198.18.0.30/24")})

    guest = _facts.describe_guest(domain)

    assert domain.asked_address_sources() == ["lease", "arp"]
    assert guest["nics"][0]["type"] == "bridge"
    assert guest["nics"][0]["source"] == "br-lan"
    assert guest["nics"][0]["model"] == "e1000"
    assert guest["addresses"] == ["198.18.0.30"]


def test_every_source_failing_leaves_no_address_and_no_error():
    domain = lone_guest(domain_xml("web1", [NAT_NIC, BRIDGE_NIC]), addresses={"lease": LEASE_FAILURE, "arp": ARP_FAILURE})  # no agent either

    guest = _facts.describe_guest(domain, ("lease", "arp", "agent"))

    assert domain.asked_address_sources() == ["lease", "arp", "agent"]
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
    domain = lone_guest(domain_xml("web1", [BRIDGE_NIC]), addresses={"arp": ARP_FAILURE}, uri=uri)
    monkeypatch.setattr(_facts._netlink, "neighbours", lambda ipr: [
        {"address": "198.18.0.21", "mac": MAC2, "ifindex": 4},
        {"address": "198.18.0.99", "mac": "52:54:00:ff:ff:ff", "ifindex": 4},
    ])

    guest = _facts.describe_guest(domain, ("arp",))

    assert guest["nics"][0]["addresses"] == expected


def test_metadata_address_known_before_any_arp_traffic():
    xml = domain_xml("db1", [NAT_NIC, BRIDGE_NIC], metadata=[(MAC2.upper(), "198.18.0.21/24")])
    domain = lone_guest(xml, addresses={"lease": lease("vnet0", MAC1, "192.168.122.11/24")})

    guest = _facts.describe_guest(domain)

    assert guest["nics"][0]["addresses"] == ["192.168.122.11/24"]
    assert guest["nics"][1]["addresses"] == ["198.18.0.21/24"]
    # NIC order decides the flat list, so the first NIC's address comes first.
    assert guest["addresses"] == ["192.168.122.11", "198.18.0.21"]


def test_metadata_address_first_and_not_repeated_by_arp():
    xml = domain_xml("db1", [BRIDGE_NIC], metadata=[(MAC2, "198.18.0.21/24")])
    domain = lone_guest(xml, addresses={"arp": lease("vnet0", MAC2, "198.18.0.99/24", "198.18.0.21/24")})

    guest = _facts.describe_guest(domain)

    assert guest["nics"][0]["addresses"] == ["198.18.0.21/24", "198.18.0.99/24"]
    assert guest["addresses"] == ["198.18.0.21", "198.18.0.99"]


def test_metadata_ignores_unknown_nics_garbage_and_foreign_namespaces():
    xml = domain_xml("db1", [BRIDGE_NIC], metadata=[("52:54:00:ff:ff:ff", "198.18.0.5/24"), (MAC2, "not-an-address")])
    # Another tool's metadata with the same element names must not count.
    xml = xml.replace("<metadata>", "<metadata><other:guest xmlns:other='https://example.com/x'>"
                      "<other:address nic='%s'>10.9.9.9/24</other:address></other:guest>" % MAC2)
    guest = _facts.describe_guest(lone_guest(xml, state="shutoff"))

    assert guest["addresses"] == []


def test_metadata_source_can_be_left_out():
    xml = domain_xml("db1", [BRIDGE_NIC], metadata=[(MAC2, "198.18.0.21/24")])

    assert _facts.describe_guest(lone_guest(xml), ("lease", "arp"))["addresses"] == []


def test_metadata_namespace_is_the_documented_one():
    assert _domain.METADATA_NS == "https://arctictern.dev/virt/1"


def test_agent_asked_only_when_requested_and_filtered():
    agent = {}
    agent.update(lease("lo", "00:00:00:00:00:00", "127.0.0.1/8", "::1/128"))
    agent.update(lease("eth0", MAC1.upper(), "192.168.122.12/24", "fe80::5054:ff:fe00:1/64", "2001:db8::12/64"))
    domain = lone_guest(domain_xml("app1", [NAT_NIC]), addresses={"agent": agent})

    assert _facts.describe_guest(domain)["addresses"] == []
    assert "agent" not in domain.asked_address_sources()

    guest = _facts.describe_guest(domain, ("agent",))

    assert guest["nics"][0]["addresses"] == ["192.168.122.12/24", "2001:db8::12/64"]
    assert guest["addresses"] == ["192.168.122.12", "2001:db8::12"]


def test_source_answer_matched_by_target_when_it_has_no_mac():
    domain = lone_guest(domain_xml("app1", [NAT_NIC]), addresses={"lease": lease("vnet0", None, "192.168.122.13/24")})

    assert _facts.describe_guest(domain)["addresses"] == ["192.168.122.13"]


def test_shutoff_guest_is_not_asked_for_live_addresses():
    xml = domain_xml("cold1", [NAT_NIC], metadata=[(MAC1, "192.168.122.50/24")], running=False)
    domain = lone_guest(xml, state="shutoff", autostart=False)

    guest = _facts.describe_guest(domain, ("metadata", "lease", "arp", "agent"))

    assert domain.asked_address_sources() == []
    assert guest["state"] == "shutoff"
    assert guest["autostart"] is False
    assert guest["nics"][0]["target"] is None
    assert guest["addresses"] == ["192.168.122.50"]


def test_running_migration_is_reported_as_the_guest_job():
    stats = {"type": 2, "operation": 5, "time_elapsed": 4200, "data_total": 1000, "data_processed": 900,
             "data_remaining": 250, "memory_iteration": 3, "memory_dirty_rate": 1200, "downtime": 300}
    guest = _facts.describe_guest(lone_guest(domain_xml("mig1", [NAT_NIC]), job=stats), ("metadata",))
    assert guest["job"] == {"operation": "migration_out", "elapsed_ms": 4200, "percent": 75.0, "data_total": 1000,
                            "data_processed": 900, "data_remaining": 250, "memory_iteration": 3, "memory_dirty_rate": 1200}
    # No job, a job without figures (an incoming migration's first moment), and a guest that is off.
    assert _facts.describe_guest(lone_guest(domain_xml("idle1", [NAT_NIC])), ("metadata",))["job"] is None
    early = _facts.job_progress({"type": 2, "operation": 4})
    assert early["operation"] == "migration_in" and early["percent"] is None and early["data_total"] is None
    cold = lone_guest(domain_xml("cold1", [NAT_NIC], running=False), state="shutoff", job=stats)
    assert _facts.describe_guest(cold, ("metadata",))["job"] is None


@pytest.mark.parametrize("name", ["<web&\"1'>", "]]><x/>", "{{ lookup('pipe', 'id') }}", "wéb 1"])
def test_hostile_names_round_trip_verbatim(name):
    guest = _facts.describe_guest(lone_guest(domain_xml(name, [NAT_NIC])))

    assert guest["name"] == name


def test_current_vcpus_and_xml_on_request():
    xml = domain_xml("app1", vcpu=("8", "2"), domain_type="xen")

    guest = _facts.describe_guest(lone_guest(xml, persistent=False), include_xml=True)

    assert guest["vcpus"] == 2
    assert guest["virt_type"] == "xen"
    assert guest["persistent"] is False
    assert guest["nics"] == []
    assert guest["xml"] == xml


def test_vanished_guest_raises_not_found_and_other_errors_virt_error():
    gone = lone_guest(domain_xml("gone"))
    gone.destroy()
    gone.undefine()
    with pytest.raises(NotFound):
        _facts.describe_guest(gone)

    domain = lone_guest(domain_xml("broken"))
    domain.fail_on["XMLDesc"] = libvirt_error("VIR_ERR_INTERNAL_ERROR", "boom")
    with pytest.raises(VirtError, match="^reading definition of guest 'broken': boom$") as caught:
        _facts.describe_guest(domain)
    assert not isinstance(caught.value, NotFound)


def test_describe_guests_sorted_skipping_vanished_ones():
    conn = old_daemon()
    place_guest(conn, domain_xml("zeta"))
    gone = place_guest(conn, domain_xml("gone"))
    place_guest(conn, domain_xml("alpha"), state="shutoff")
    # Listed, then gone (undefined or migrated away) before it is read.
    gone.fail_on["XMLDesc"] = libvirt_error("VIR_ERR_NO_DOMAIN", "Domain not found: no domain with matching uuid")

    assert [guest["name"] for guest in _facts.describe_guests(conn)] == ["alpha", "zeta"]
    assert [guest["name"] for guest in _facts.describe_guests(conn, active_only=True)] == ["zeta"]
    list_flags = [call[1] for call in conn.calls if call[0] == "listAllDomains"]
    assert list_flags[0] == 0 and list_flags[1] != 0


def test_repeated_source_is_asked_once():
    domain = lone_guest(domain_xml("app1", [NAT_NIC]), addresses={"arp": lease("vnet0", MAC1, "192.168.122.14/24")})

    guest = _facts.describe_guest(domain, ("arp", "lease", "arp"))

    assert domain.asked_address_sources() == ["arp", "lease"]
    assert guest["addresses"] == ["192.168.122.14"]


def test_describe_host():
    host = _facts.describe_host(old_daemon(uri="qemu+ssh://root@hv1/system"))

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
        # An old daemon (_guest_data.old_daemon): no <model> in its capabilities and no domain capabilities:
        # unknown, not an error; nor an interface driver for the remote URI's bridges.
        "cpu_model": None,
        "cpu_vendor": None,
        "arches": {
            "i686": {"os_types": ["hvm"], "virt_types": {
                "kvm": {"machines": [], "cpu_modes": None, "cpu_models": None},
                "qemu": {"machines": [], "cpu_modes": None, "cpu_models": None}}},
            "x86_64": {"os_types": ["hvm"], "virt_types": {
                "kvm": {"machines": [], "cpu_modes": None, "cpu_models": None},
                "qemu": {"machines": [], "cpu_modes": None, "cpu_models": None}}},
        },
        "networks": ["default"],
        "inactive_networks": [],
        "bridges": None,
    }


def test_describe_host_error_names_what_failed():
    conn = old_daemon()
    conn.fail_on["getFreeMemory"] = libvirt_error("VIR_ERR_NO_SUPPORT", "not supported")

    with pytest.raises(VirtError, match="^reading free memory: not supported"):
        _facts.describe_host(conn)


# ---------------------------------------------------------------------------------------------------------------
# What placement needs: the guest's platform and the host's offer (hosts from tests/unit/fake_libvirt.py)


def platform_xml(name="web1", cpu="<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>",
                 domain_type="kvm"):
    """A running guest's live XML with <os> and ``cpu`` (raw XML, or '' for none)."""
    xml = domain_xml(name, [NAT_NIC, BRIDGE_NIC], domain_type=domain_type)
    os_element = "<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>"
    return xml.replace("<devices>", os_element + cpu + "<devices>", 1)


def test_guest_platform_custom_cpu():
    guest = _facts.describe_guest(lone_guest(platform_xml()), ("metadata",), host_cpu_model="Skylake-Client-IBRS")

    assert (guest["arch"], guest["machine"], guest["virt_type"]) == ("x86_64", "pc-i440fx-7.2", "kvm")
    # The host's CPU does not matter to a guest with a named model.
    assert guest["cpu"] == {"mode": "custom", "model": "qemu64", "host_cpu_model": None}
    assert [(nic["type"], nic["source"]) for nic in guest["nics"]] == [("network", "default"), ("bridge", "br-lan")]


@pytest.mark.parametrize("cpu, domain_type, expected", [
    ("<cpu mode='host-passthrough' check='none' migratable='on'/>", "kvm",
     {"mode": "host-passthrough", "model": None, "host_cpu_model": "Skylake-Client-IBRS"}),
    ("<cpu mode='host-model' check='partial'/>", "kvm", {"mode": "host-model", "model": None, "host_cpu_model": None}),
    ("<cpu mode='maximum'/>", "kvm", {"mode": "maximum", "model": None, "host_cpu_model": "Skylake-Client-IBRS"}),
    # Under TCG the maximum CPU is QEMU's, not the host's.
    ("<cpu mode='maximum'/>", "qemu", {"mode": "maximum", "model": None, "host_cpu_model": None}),
    # libvirt's default mode is custom; a <cpu> with a topology only names no model.
    ("<cpu><model>Nehalem</model></cpu>", "kvm", {"mode": "custom", "model": "Nehalem", "host_cpu_model": None}),
    ("<cpu><topology sockets='1' cores='2' threads='1'/></cpu>", "kvm", {"mode": "custom", "model": None, "host_cpu_model": None}),
    ("", "kvm", {"mode": None, "model": None, "host_cpu_model": None}),
])
def test_guest_cpu_modes(cpu, domain_type, expected):
    guest = _facts.describe_guest(lone_guest(platform_xml(cpu=cpu, domain_type=domain_type)), ("metadata",),
                                  host_cpu_model="Skylake-Client-IBRS")
    assert guest["cpu"] == expected


def test_guest_without_os_element_has_no_platform():
    guest = _facts.describe_guest(lone_guest(domain_xml("bare")), ("metadata",))
    assert (guest["arch"], guest["machine"]) == (None, None)


def test_describe_guests_hands_the_host_cpu_on():
    conn = old_daemon()
    place_guest(conn, platform_xml(cpu="<cpu mode='host-passthrough'/>"))
    (guest,) = _facts.describe_guests(conn, ("metadata",), host_cpu_model="EPYC-Rome")
    assert guest["cpu"]["host_cpu_model"] == "EPYC-Rome"


@pytest.fixture
def kvm_host():
    """A remote KVM host (fake_libvirt) with networks lan (active), nat (defined, stopped), bridges br0 and virbr1."""
    conn = fake_libvirt.FakeConnection(uri="qemu+ssh://root@hv2/system", hostname="hv2")
    conn.add_network("lan", bridge="br0")
    conn.add_network("nat", bridge="virbr1", active=False)
    conn.interfaces = {"eth0": "ethernet", "br0": "bridge", "virbr1": "bridge", "lo": "ethernet"}
    return conn


def test_host_offer_from_capabilities_and_domain_capabilities(kvm_host):
    host = _facts.describe_host(kvm_host)

    assert (host["cpu_model"], host["cpu_vendor"]) == ("Skylake-Client-IBRS", None)
    assert (host["networks"], host["inactive_networks"]) == (["lan"], ["nat"])
    assert host["bridges"] == ["br0", "virbr1"]
    assert host["free_memory_mib"] == 31000 and host["memory_mib"] == 64000
    x86 = host["arches"]["x86_64"]
    assert x86["os_types"] == ["hvm"] and sorted(x86["virt_types"]) == ["kvm", "qemu"]
    kvm, tcg = x86["virt_types"]["kvm"], x86["virt_types"]["qemu"]
    # Versioned machines and their aliases.
    assert kvm["machines"] == ["pc", "pc-i440fx-7.2", "pc-q35-7.2", "q35"] == tcg["machines"]
    assert kvm["cpu_modes"] == ["custom", "host-model", "host-passthrough", "maximum"]
    assert tcg["cpu_modes"] == ["custom", "host-model", "maximum"]
    # Only the models libvirt found usable; TCG cannot emulate the host's Skylake.
    assert kvm["cpu_models"] == ["Skylake-Client-IBRS", "qemu64"]
    assert tcg["cpu_models"] == ["qemu64"]
    # An alias whose versioned machine the arch does not list itself still counts through its canonical name.
    assert host["arches"]["i686"]["virt_types"]["kvm"]["machines"] == ["pc", "pc-i440fx-7.2"]


def test_domain_capabilities_asked_once_per_arch_and_virt_type_as_offered(kvm_host):
    _facts.describe_host(kvm_host)
    asked = [call[1:] for call in kvm_host.calls if call[0] == "getDomainCapabilities"]
    assert sorted(asked) == [(None, "i686", None, "kvm", 0), (None, "i686", None, "qemu", 0),
                             (None, "x86_64", None, "kvm", 0), (None, "x86_64", None, "qemu", 0)]


def test_host_without_kvm_offers_and_asks_only_tcg_for_its_arch():
    conn = fake_libvirt.FakeConnection(uri="qemu+ssh://root@hv2/system", capabilities=fake_libvirt.QEMU_CAPABILITIES)
    host = _facts.describe_host(conn)
    assert list(host["arches"]["x86_64"]["virt_types"]) == ["qemu"]
    assert (None, "x86_64", None, "kvm", 0) not in [call[1:] for call in conn.calls if call[0] == "getDomainCapabilities"]


def test_xen_host_machines_of_both_guest_kinds():
    conn = fake_libvirt.FakeConnection(uri="xen+ssh://root@dom0/system", capabilities=fake_libvirt.XEN_CAPABILITIES)
    host = _facts.describe_host(conn)
    x86 = host["arches"]["x86_64"]
    assert x86["os_types"] == ["hvm", "xen"]
    assert x86["virt_types"]["xen"]["machines"] == ["xenfv", "xenpv"]
    assert x86["virt_types"]["xen"]["cpu_modes"] == ["custom", "host-passthrough"]
    assert host["cpu_model"] is None


def test_domain_capabilities_failure_is_unknown_not_an_error(kvm_host):
    kvm_host.fail_on["getDomainCapabilities"] = "cannot execute binary /usr/bin/qemu-system-x86_64: Permission denied"
    host = _facts.describe_host(kvm_host)
    kvm = host["arches"]["x86_64"]["virt_types"]["kvm"]
    assert (kvm["cpu_modes"], kvm["cpu_models"]) == (None, None)
    # What the capabilities document says is still there.
    assert "pc-i440fx-7.2" in kvm["machines"] and host["networks"] == ["lan"]


@pytest.mark.parametrize("args, message", [
    ((None, "x86_64", None, "hvm"), "unknown virttype: hvm"),
    ((None, "x86-64", None, "kvm"), "unknown architecture: x86-64"),
    ((None, "aarch64", None, "qemu"), "unable to find any emulator to serve 'aarch64' architecture"),
    ((None, "x86_64", "pc-i440fx-9.2", "kvm"), "the machine 'pc-i440fx-9.2' is not supported by emulator"),
    ((None, "x86_64", None, "xen"), "virttype 'xen' is not supported"),
])
def test_the_fake_refuses_domain_capabilities_libvirt_refuses(kvm_host, args, message):
    with pytest.raises(_libvirt.libvirt.libvirtError, match=message) as caught:
        kvm_host.getDomainCapabilities(*args)
    assert caught.value.get_error_code() == _libvirt.libvirt.VIR_ERR_INVALID_ARG


def test_the_fake_refuses_kvm_where_the_host_has_none():
    conn = fake_libvirt.FakeConnection(capabilities=fake_libvirt.QEMU_CAPABILITIES)
    with pytest.raises(_libvirt.libvirt.libvirtError, match="KVM is not supported by '/usr/bin/qemu-system-x86_64'"):
        conn.getDomainCapabilities(None, "x86_64", None, "kvm")
    # An alias is a machine the emulator knows; the answer names the versioned one.
    assert "<machine>pc-q35-7.2</machine>" in conn.getDomainCapabilities(None, "x86_64", "q35", "qemu")


def test_host_networks_unknown_when_libvirt_cannot_list_them(kvm_host):
    kvm_host.fail_on["listNetworks"] = libvirt_error("VIR_ERR_NO_SUPPORT", "no network driver")
    host = _facts.describe_host(kvm_host)
    assert (host["networks"], host["inactive_networks"]) == (None, None)


def test_remote_host_bridges_unknown_without_interface_driver(kvm_host):
    kvm_host.fail_on["listAllInterfaces"] = libvirt_error("VIR_ERR_NO_SUPPORT", "no interface driver")
    assert _facts.describe_host(kvm_host)["bridges"] is None


def test_local_host_bridges_come_from_netlink_not_the_interface_driver(monkeypatch):
    asked = []

    @contextlib.contextmanager
    def open_ipr(netns=None):
        asked.append(netns)
        yield "ipr"

    monkeypatch.setattr(_facts._netlink, "open_ipr", open_ipr)
    monkeypatch.setattr(_facts._netlink, "bridge_names", lambda ipr: ["br0", "virbr1"] if ipr == "ipr" else [])
    conn = fake_libvirt.FakeConnection(uri="qemu:///system")
    conn.interfaces = {"docker0": "bridge"}  # what udev (that is /sys) would say inside a lab hypervisor
    assert _facts.describe_host(conn)["bridges"] == ["br0", "virbr1"]
    assert asked == [None], "this process's own network namespace"
    assert conn.called("listAllInterfaces") == 0


def test_local_host_bridges_unknown_when_netlink_fails(monkeypatch):
    def broken(ipr):
        raise VirtError("listing interfaces: Operation not permitted")

    monkeypatch.setattr(_facts._netlink, "bridge_names", broken)
    assert _facts.host_bridges(None, "qemu:///system") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_local_host_bridges_are_those_of_the_network_namespace_it_runs_in(scratch_netns):
    """As inside a lab hypervisor: a process in a network namespace whose /sys is still the root namespace's."""
    netns = scratch_netns()
    with _netlink.open_ipr(netns) as ipr:
        _netlink.create_bridge(ipr, "atvbr7")
    code = ("import json, os; from ansible_collections.arctictern.virt.plugins.module_utils import _facts; "
            "print(json.dumps([_facts.host_bridges(None, 'qemu:///system'), os.path.exists('/sys/class/net/atvbr7')]))")
    proc = subprocess.run(["nsenter", "--net=/run/netns/%s" % netns, "--", sys.executable, "-c", code],
                          capture_output=True, text=True, check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stderr
    bridges, in_sys = json.loads(proc.stdout)
    assert bridges == ["atvbr7"]
    assert not in_sys, "/sys shows the root namespace here: reading it would have missed the bridge"
