# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The placement filter: where guests go when a hypervisor is drained."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.arctictern.virt.plugins.filter.placement import FilterModule, placement


def guests(*sizes):
    return [{"name": "g%d" % index, "memory_mib": size, "state": "running"} for index, size in enumerate(sizes)]


def targets(plan):
    return {entry["name"]: entry["target"] for entry in plan}


# ---------------------------------------------------------------------------------------------------------------
# Hosts known by their free memory only


def test_largest_first_onto_the_host_with_most_room_counting_earlier_placements():
    plan = placement(guests(512, 2048, 1024), {"hv2": 3000, "hv3": 2500})
    # g1 (2048) -> hv2 (3000 -> 952); g2 (1024) -> hv3 (2500 -> 1476); g0 (512) -> hv3 (1476 -> 964).
    assert targets(plan) == {"g0": "hv3", "g1": "hv2", "g2": "hv3"}
    assert [entry["name"] for entry in plan] == ["g0", "g1", "g2"], "the input order is kept"
    assert [entry["free_after_mib"] for entry in plan] == [964, 952, 1476]
    assert plan[1]["reason"] == "most free memory: 952 MiB left on hv2 after placing it"
    # g2 came after g1, which left hv2 too little room: the reason says so.
    assert [entry["unfit"] for entry in plan] == [{}, {}, {"hv2": ["952 MiB free, needs 1024"]}]
    assert plan[2]["reason"] == "most free memory: 1476 MiB left on hv3 after placing it (not hv2: 952 MiB free, needs 1024)"


def test_a_guest_that_fits_nowhere_stays_with_a_reason_per_host():
    plan = placement(guests(4096, 256), [{"name": "hv2", "free_memory_mib": 3000}, {"name": "hv3", "free_memory_mib": 1000}],
                     reserve_mib=512)
    assert targets(plan) == {"g0": None, "g1": "hv2"}
    assert plan[0]["reason"] == "hv2: 3000 MiB free, needs 4608 (4096 + 512 reserved); hv3: 1000 MiB free, needs 4608 (4096 + 512 reserved)"
    assert plan[0]["unfit"] == {"hv2": ["3000 MiB free, needs 4608 (4096 + 512 reserved)"],
                                "hv3": ["1000 MiB free, needs 4608 (4096 + 512 reserved)"]}
    assert plan[0]["free_after_mib"] is None


def test_reserve_keeps_room_on_each_host():
    assert targets(placement(guests(1000, 1000), {"hv2": 2100}, reserve_mib=100)) == {"g0": "hv2", "g1": "hv2"}
    plan = placement(guests(1000, 1000), {"hv2": 2099}, reserve_mib=100)
    assert targets(plan) == {"g0": "hv2", "g1": None}
    # The free memory in the reason counts the guest placed before.
    assert plan[1]["reason"] == "hv2: 1099 MiB free, needs 1100 (1000 + 100 reserved)"


def test_no_reserve_says_only_the_guest_size():
    assert placement(guests(300), {"hv2": 200})[0]["reason"] == "hv2: 200 MiB free, needs 300"


def test_ties_go_to_the_host_listed_first():
    assert targets(placement(guests(100), {"hvb": 1000, "hva": 1000})) == {"g0": "hvb"}


def test_no_other_host():
    plan = placement(guests(100), {})
    assert plan[0]["target"] is None and plan[0]["reason"] == "no other host to move to"


def test_memory_only_hosts_check_nothing_else():
    """Free memory alone cannot tell networks or CPUs: a guest that needs them still goes there (documented)."""
    guest = dict(GUEST, nics=[{"type": "network", "source": "nat"}], virt_type="xen")
    assert targets(placement([guest], {"hv2": 4000})) == {"web-nat": "hv2"}
    assert targets(placement([guest], [{"name": "hv2", "free_memory_mib": 4000}])) == {"web-nat": "hv2"}


@pytest.mark.parametrize("guest_list, hosts, words", [
    ("web1", {}, "the input must be a list"),
    ([{"name": "web1"}], {}, "every guest needs name and memory_mib"),
    ([{"name": "web1", "memory_mib": "big"}], {}, "memory_mib of guest web1 is not a number"),
    (guests(1), [{"name": "hv2"}], "every host needs name and free_memory_mib"),
    (guests(1), {"hv2": "lots"}, "not a number"),
    (guests(1), {"hv2": {"arches": {}}}, "every host needs free_memory_mib"),
    (guests(1), "hv2", "hosts must be a list of dicts or a dict"),
])
def test_bad_input_is_a_filter_error(guest_list, hosts, words):
    with pytest.raises(AnsibleFilterError, match="^placement: .*" + words):
        placement(guest_list, hosts)


def test_the_filter_is_registered():
    assert FilterModule().filters() == {"placement": placement}


# ---------------------------------------------------------------------------------------------------------------
# Hosts described by guest_info: every check

# A guest as guest_info returns it (the keys placement reads), and a host that can run it.
GUEST = {
    "name": "web-nat", "memory_mib": 256, "state": "running", "virt_type": "kvm", "arch": "x86_64",
    "machine": "pc-i440fx-7.2", "cpu": {"mode": "custom", "model": "qemu64", "host_cpu_model": None},
    "nics": [{"type": "network", "source": "nat", "mac": "52:54:00:a7:64:0a"},
             {"type": "bridge", "source": "br0", "mac": "52:54:00:a7:64:0b"},
             {"type": "direct", "source": "eth1", "mac": "52:54:00:a7:64:0c"}],
}
HOST = {
    "hostname": "hv2", "free_memory_mib": 4000, "cpu_model": "Skylake-Client-IBRS", "cpu_vendor": "Intel",
    "virt_types": ["kvm", "qemu"], "networks": ["lan", "nat"], "inactive_networks": [], "bridges": ["br0", "virbr1"],
    "arches": {"x86_64": {"os_types": ["hvm"], "virt_types": {
        "kvm": {"machines": ["pc", "pc-i440fx-7.2", "pc-q35-7.2", "q35"],
                "cpu_modes": ["custom", "host-model", "host-passthrough", "maximum"],
                "cpu_models": ["Skylake-Client-IBRS", "qemu64"]},
        "qemu": {"machines": ["pc", "pc-i440fx-7.2"], "cpu_modes": ["custom", "host-model", "maximum"],
                 "cpu_models": ["qemu64"]},
    }}},
}


def guest(**changes):
    entry = copy.deepcopy(GUEST)
    for key, value in changes.items():
        if key.startswith("cpu_"):
            entry["cpu"][key[4:]] = value
        else:
            entry[key] = value
    return entry


def host(change=None, **values):
    """HOST with ``values`` set and ``change(facts)`` applied."""
    facts = copy.deepcopy(HOST)
    facts.update(values)
    if change:
        change(facts)
    return facts


def kvm_offer(facts):
    return facts["arches"]["x86_64"]["virt_types"]["kvm"]


def test_a_host_that_offers_everything_takes_the_guest():
    (entry,) = placement([guest()], {"hv2": host()}, reserve_mib=512)
    assert (entry["target"], entry["free_after_mib"], entry["unfit"]) == ("hv2", 3744, {})


@pytest.mark.parametrize("the_guest, facts, reason", [
    (guest(), host(networks=["lan"]), "no libvirt network 'nat'"),
    (guest(), host(networks=["lan"], inactive_networks=["nat"]), "libvirt network 'nat' is not active"),
    (guest(), host(networks=None, inactive_networks=None), "its libvirt networks are unknown (needs 'nat')"),
    (guest(), host(bridges=["virbr1"]), "no host bridge 'br0'"),
    (guest(), host(bridges=None), "its host bridges are unknown (needs 'br0')"),
    (guest(), host(lambda facts: facts["arches"]["x86_64"]["virt_types"].pop("kvm")),
     "does not run kvm guests on x86_64 (only qemu)"),
    (guest(arch="aarch64"), host(), "does not run aarch64 guests"),
    (guest(machine="pc-i440fx-9.2"), host(), "no machine type 'pc-i440fx-9.2' for x86_64 kvm guests"),
    (guest(cpu_model="Cascadelake-Server"), host(), "CPU model 'Cascadelake-Server' is not usable for kvm guests"),
    (guest(), host(lambda facts: kvm_offer(facts).update(cpu_models=None)),
     "its usable CPU models for kvm guests are unknown (needs 'qemu64')"),
    (guest(), host(lambda facts: kvm_offer(facts).update(cpu_modes=None)), "its CPU modes for kvm guests are unknown"),
    (guest(cpu_mode="host-model", cpu_model=None), host(lambda facts: kvm_offer(facts)["cpu_modes"].remove("host-model")),
     "no host-model CPU mode for kvm guests"),
    (guest(cpu_mode="host-passthrough", cpu_model=None, cpu_host_cpu_model="Skylake-Client-IBRS"),
     host(cpu_model="EPYC-Rome"), "host-passthrough CPU needs host CPU 'Skylake-Client-IBRS', this host has 'EPYC-Rome'"),
    (guest(cpu_mode="host-passthrough", cpu_model=None, cpu_host_cpu_model=None), host(),
     "host-passthrough CPU needs the same host CPU, and a host CPU model is unknown"),
    (guest(cpu_mode="host-passthrough", cpu_model=None, cpu_host_cpu_model="Skylake-Client-IBRS"),
     host(lambda facts: kvm_offer(facts)["cpu_modes"].remove("host-passthrough")), "no host-passthrough CPU mode for kvm guests"),
    (guest(cpu_mode="maximum", cpu_model=None, cpu_host_cpu_model="Skylake-Client-IBRS"), host(cpu_model="EPYC-Rome"),
     "maximum CPU needs host CPU 'Skylake-Client-IBRS', this host has 'EPYC-Rome'"),
    (guest(memory_mib=3600), host(), "4000 MiB free, needs 4112 (3600 + 512 reserved)"),
])
def test_each_missing_thing_alone_makes_the_host_unfit_and_is_named(the_guest, facts, reason):
    (entry,) = placement([the_guest], {"hv2": facts}, reserve_mib=512)
    assert entry["target"] is None and entry["free_after_mib"] is None
    assert entry["unfit"] == {"hv2": [reason]}
    assert entry["reason"] == "hv2: " + reason


@pytest.mark.parametrize("the_guest, facts", [
    # An alias standing for the guest's versioned machine counts (guest_info lists both names).
    (guest(machine="pc"), host()),
    (guest(cpu_mode="host-model", cpu_model=None), host()),
    (guest(cpu_mode="host-passthrough", cpu_model=None, cpu_host_cpu_model="Skylake-Client-IBRS"), host()),
    # QEMU's emulated maximum CPU does not depend on the host's.
    (guest(virt_type="qemu", cpu_mode="maximum", cpu_model=None), host(cpu_model="EPYC-Rome")),
    # No <cpu>: the hypervisor's default CPU.
    (guest(cpu_mode=None, cpu_model=None), host(lambda facts: kvm_offer(facts).update(cpu_models=None, cpu_modes=None))),
    # A guest without NICs needs no network nor bridge, whatever the host can tell.
    (guest(nics=[]), host(networks=None, inactive_networks=None, bridges=None)),
    # A hand-written guest entry is checked for what it says.
    ({"name": "web-nat", "memory_mib": 256}, host(networks=[], bridges=[], arches={})),
])
def test_hosts_that_can_run_the_guest(the_guest, facts):
    (entry,) = placement([the_guest], {"hv2": facts})
    assert (entry["target"], entry["unfit"]) == ("hv2", {})


def test_every_missing_thing_of_a_host_is_listed():
    (entry,) = placement([guest(memory_mib=3800)], {"hv2": host(networks=["lan"], bridges=[])}, reserve_mib=512)
    assert entry["reason"] == "hv2: no libvirt network 'nat', no host bridge 'br0', 4000 MiB free, needs 4312 (3800 + 512 reserved)"


def test_a_guest_that_fits_nowhere_gets_the_reason_of_each_host_and_stays():
    hosts = {"hv2": host(networks=["lan"]), "hv3": host(free_memory_mib=300)}
    (entry,) = placement([guest()], hosts, reserve_mib=512)
    assert entry["target"] is None
    assert entry["reason"] == "hv2: no libvirt network 'nat'; hv3: 300 MiB free, needs 768 (256 + 512 reserved)"
    assert entry["unfit"] == {"hv2": ["no libvirt network 'nat'"], "hv3": ["300 MiB free, needs 768 (256 + 512 reserved)"]}


def test_memory_balancing_among_the_hosts_that_fit():
    """The host with the most memory lacks the network; the others share the guests by free memory."""
    hosts = {"big": host(free_memory_mib=100000, networks=["lan"]), "hv2": host(free_memory_mib=3000),
             "hv3": host(free_memory_mib=2500)}
    plan = placement([guest(name="g0", memory_mib=512), guest(name="g1", memory_mib=2048), guest(name="g2", memory_mib=1024)], hosts)
    assert targets(plan) == {"g0": "hv3", "g1": "hv2", "g2": "hv3"}
    assert [entry["free_after_mib"] for entry in plan] == [964, 952, 1476]
    assert plan[1]["reason"] == "most free memory: 952 MiB left on hv2 after placing it (not big: no libvirt network 'nat')"
    assert [entry["unfit"] for entry in plan] == [{"big": ["no libvirt network 'nat'"]}] * 2 + [
        {"big": ["no libvirt network 'nat'"], "hv2": ["952 MiB free, needs 1024"]}]


def test_a_placed_guest_fills_a_host_for_the_next_one():
    hosts = {"hv2": host(free_memory_mib=1000), "hv3": host(free_memory_mib=900, networks=["lan"])}
    plan = placement([guest(name="a", memory_mib=600), guest(name="b", memory_mib=500)], hosts)
    assert targets(plan) == {"a": "hv2", "b": None}
    assert plan[1]["reason"] == "hv2: 400 MiB free, needs 500; hv3: no libvirt network 'nat'"


def test_hosts_as_a_list_with_facts_are_checked_and_memory_only_entries_are_not():
    hosts = [dict(host(networks=["lan"]), name="hv2"), {"name": "hv3", "free_memory_mib": 1000}]
    (entry,) = placement([guest()], hosts)
    assert (entry["target"], entry["unfit"]) == ("hv3", {"hv2": ["no libvirt network 'nat'"]})
