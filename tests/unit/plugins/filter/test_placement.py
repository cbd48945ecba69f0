# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The placement filter: where guests go when a hypervisor is drained."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.arctictern.virt.plugins.filter.placement import FilterModule, placement


def guests(*sizes):
    return [{"name": "g%d" % index, "memory_mib": size, "state": "running"} for index, size in enumerate(sizes)]


def targets(plan):
    return {entry["name"]: entry["target"] for entry in plan}


def test_largest_first_onto_the_host_with_most_room_counting_earlier_placements():
    plan = placement(guests(512, 2048, 1024), {"hv2": 3000, "hv3": 2500})
    # g1 (2048) -> hv2 (3000 -> 952); g2 (1024) -> hv3 (2500 -> 1476); g0 (512) -> hv3 (1476 -> 964).
    assert targets(plan) == {"g0": "hv3", "g1": "hv2", "g2": "hv3"}
    assert [entry["name"] for entry in plan] == ["g0", "g1", "g2"], "the input order is kept"
    assert [entry["free_after_mib"] for entry in plan] == [964, 952, 1476]
    assert plan[1]["reason"] == "most free memory: 952 MiB left on hv2 after placing it"


def test_a_guest_that_fits_nowhere_stays_with_a_reason():
    plan = placement(guests(4096, 256), [{"name": "hv2", "free_memory_mib": 3000}], reserve_mib=512)
    assert targets(plan) == {"g0": None, "g1": "hv2"}
    assert plan[0]["reason"] == "no host has 4608 MiB free (4096 for the guest, 512 reserved); the most is 3000 on hv2"


def test_reserve_keeps_room_on_each_host():
    assert targets(placement(guests(1000, 1000), {"hv2": 2100}, reserve_mib=100)) == {"g0": "hv2", "g1": "hv2"}
    assert targets(placement(guests(1000, 1000), {"hv2": 2099}, reserve_mib=100)) == {"g0": "hv2", "g1": None}


def test_ties_go_to_the_host_listed_first():
    assert targets(placement(guests(100), {"hvb": 1000, "hva": 1000})) == {"g0": "hvb"}


def test_no_other_host():
    plan = placement(guests(100), {})
    assert plan[0]["target"] is None and plan[0]["reason"] == "no other host to move to"


@pytest.mark.parametrize("guest_list, hosts, words", [
    ("web1", {}, "the input must be a list"),
    ([{"name": "web1"}], {}, "every guest needs name and memory_mib"),
    (guests(1), [{"name": "hv2"}], "every host needs name and free_memory_mib"),
    (guests(1), {"hv2": "lots"}, "not a number"),
    (guests(1), "hv2", "hosts must be a list of dicts or a dict"),
])
def test_bad_input_is_a_filter_error(guest_list, hosts, words):
    with pytest.raises(AnsibleFilterError, match=words):
        placement(guest_list, hosts)


def test_the_filter_is_registered():
    assert FilterModule().filters() == {"placement": placement}
