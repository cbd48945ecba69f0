# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: placement
short_description: Choose a hypervisor with enough free memory for each guest
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Plans where guests go when they leave a hypervisor, for example to drain it before maintenance.
  - Guests are placed largest first. Each goes to the host that has the most free memory left after the guests
    placed before it in this plan, which spreads the load. Ties go to the host listed first.
  - A guest that fits nowhere gets no target and a reason; the caller leaves it where it is.
  - Only memory is considered. CPU, storage and networks must be checked elsewhere (the migration fails
    cleanly when the destination lacks a network or a disk the guest needs).
positional: _input, hosts
options:
  _input:
    description:
      - The guests to place, as M(arctictern.virt.guest_info) returns them. Each needs C(name) and C(memory_mib);
        other keys are ignored.
    type: list
    elements: dict
    required: true
  hosts:
    description:
      - The candidate hosts. Either a list of dicts with C(name) and C(free_memory_mib), or a dict that maps
        host names to free memory in MiB.
    type: raw
    required: true
  reserve_mib:
    description:
      - Memory in MiB to keep free on every host after placement (for the hypervisor itself and migration buffers).
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Plan where the guests of hv1 go
  ansible.builtin.set_fact:
    plan: "{{ hv1_guests | arctictern.virt.placement(free, reserve_mib=1024) }}"
  vars:
    hv1_guests: [{"name": "web1", "memory_mib": 2048}, {"name": "db1", "memory_mib": 8192}]
    free: {"hv2": 6000, "hv3": 12000}
  # plan: [{"name": "web1", "memory_mib": 2048, "target": "hv3", ...}, {"name": "db1", "memory_mib": 8192, "target": "hv3", ...}]

- name: Show what cannot move
  ansible.builtin.debug:
    msg: "{{ item.name }} stays: {{ item.reason }}"
  loop: "{{ plan | rejectattr('target') }}"
"""

RETURN = r"""
_value:
  description:
    - One entry per guest, in the order of the input.
  type: list
  elements: dict
  contains:
    name:
      description: Name of the guest.
      type: str
    memory_mib:
      description: Memory of the guest in MiB.
      type: int
    target:
      description: The host chosen for the guest, or null when none has room.
      type: str
    free_after_mib:
      description: Free memory in MiB left on O(target) once this guest and the ones placed before it are there.
      type: int
    reason:
      description: Why the guest goes there, or why it cannot go anywhere.
      type: str
"""

from ansible.errors import AnsibleFilterError


def _hosts(hosts):
    """[(name, free MiB)] in the given order."""
    if isinstance(hosts, dict):
        pairs = list(hosts.items())
    elif isinstance(hosts, (list, tuple)):
        try:
            pairs = [(host["name"], host["free_memory_mib"]) for host in hosts]
        except (KeyError, TypeError) as error:
            raise AnsibleFilterError("placement: every host needs name and free_memory_mib (%s)" % error) from None
    else:
        raise AnsibleFilterError("placement: hosts must be a list of dicts or a dict of free MiB by host name")
    try:
        return [(str(name), int(free)) for name, free in pairs]
    except (TypeError, ValueError) as error:
        raise AnsibleFilterError("placement: free memory of a host is not a number (%s)" % error) from None


def placement(guests, hosts, reserve_mib=0):
    """Place ``guests`` on ``hosts`` by memory; see DOCUMENTATION."""
    if not isinstance(guests, (list, tuple)):
        raise AnsibleFilterError("placement: the input must be a list of guests")
    free = dict(_hosts(hosts))
    order = list(free)
    plan = []
    for guest in guests:
        try:
            plan.append({"name": guest["name"], "memory_mib": int(guest["memory_mib"]), "target": None, "free_after_mib": None, "reason": ""})
        except (KeyError, TypeError, ValueError) as error:
            raise AnsibleFilterError("placement: every guest needs name and memory_mib (%s)" % error) from None
    # Largest first; sorted() is stable, so equal guests keep their input order.
    for entry in sorted(plan, key=lambda item: -item["memory_mib"]):
        need = entry["memory_mib"] + int(reserve_mib)
        if not order:
            entry["reason"] = "no other host to move to"
            continue
        best = max(order, key=lambda name: (free[name], -order.index(name)))
        if free[best] < need:
            entry["reason"] = "no host has %d MiB free (%d for the guest, %d reserved); the most is %d on %s" % (
                need, entry["memory_mib"], int(reserve_mib), free[best], best)
            continue
        free[best] -= entry["memory_mib"]
        entry.update(target=best, free_after_mib=free[best],
                     reason="most free memory: %d MiB left on %s after placing it" % (free[best], best))
    return plan


class FilterModule:
    """Placement of guests on hypervisors."""

    def filters(self):
        return {"placement": placement}
