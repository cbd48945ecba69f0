# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: placement
short_description: Choose a hypervisor that can run each guest and has the most free memory
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Plans where guests go when they leave a hypervisor, for example to drain it before maintenance.
  - A host can take a guest only when it has every libvirt network the guest's V(network) NICs use, active; every
    host bridge its V(bridge) NICs use; the guest's domain type (V(kvm), V(qemu), V(xen)) for the guest's
    architecture; the guest's machine type (the versioned name libvirt stores, or an alias standing for it);
    its CPU (a V(custom) model the host finds usable, a CPU mode the host supports, and for V(host-passthrough),
    or V(maximum) with hardware acceleration, a host CPU of the same model as the guest's host); and enough free
    memory, keeping O(reserve_mib).
  - Guests are placed largest first. Each goes to the host that can take it with the most free memory left after
    the guests placed before it in this plan, which spreads the load. Ties go to the host listed first.
  - >-
    A guest that fits nowhere gets no target and a reason that says, for each host, what it lacks, for example
    "hv2: no libvirt network 'nat'; hv3: 300 MiB free, needs 768 (256 + 512 reserved)". The caller leaves it
    where it is.
  - Hosts given only by their free memory (a number, or a dict without C(arches)) are checked for memory only.
  - What the host facts cannot tell (a libvirt network list, host bridges or CPU models that
    M(arctictern.virt.guest_info) reported as null) makes the host unfit, with a reason saying it is unknown.
  - Storage is not checked (the migration fails cleanly when the destination lacks a disk the guest needs), nor
    are V(direct) (macvtap) NICs' host devices.
positional: _input, hosts
options:
  _input:
    description:
      - The guests to place, as M(arctictern.virt.guest_info) returns them (its C(guests)). Each needs C(name) and
        C(memory_mib); C(nics), C(arch), C(virt_type), C(machine) and C(cpu) are checked against hosts described
        by their facts. A key a guest entry lacks is not checked.
    type: list
    elements: dict
    required: true
  hosts:
    description:
      - The candidate hosts, in order of preference for ties.
      - A dict that maps host names to what M(arctictern.virt.guest_info) returns as C(host) for each; every
        check applies.
      - Or, for memory only, a dict that maps host names to free memory in MiB, or a list of dicts with C(name)
        and C(free_memory_mib) (a list entry that also carries C(host) facts of guest_info is checked in full).
    type: raw
    required: true
  reserve_mib:
    description:
      - Memory in MiB to keep free on every host after placement (for the hypervisor itself and migration buffers).
    type: int
    default: 0
notes:
  - The checks are those libvirt makes when a migration starts; a guest placed here can still fail to move for
    other reasons (storage, a link, a timeout), and the migration then leaves it running where it was.
seealso:
  - module: arctictern.virt.guest_info
  - module: arctictern.virt.migrate
"""

EXAMPLES = r"""
- name: Describe every hypervisor and its running guests
  arctictern.virt.guest_info:
    state: [running, paused]
  register: info

- name: Plan where the guests of hv1 go, among the other hypervisors that can run them
  ansible.builtin.set_fact:
    plan: "{{ hostvars['hv1'].info.guests | arctictern.virt.placement(others, reserve_mib=1024) }}"
  vars:
    others: "{{ dict(['hv2', 'hv3'] | zip(['hv2', 'hv3'] | map('extract', hostvars, ['info', 'host']))) }}"
  run_once: true
  # plan: [{"name": "web1", "target": "hv3", ...}, {"name": "web-nat", "target": null,
  #         "reason": "hv2: no libvirt network 'nat'; hv3: no libvirt network 'nat'", ...}]

- name: Plan by free memory alone
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
      description: The host chosen for the guest, or null when none can take it.
      type: str
    free_after_mib:
      description: Free memory in MiB left on RV(_value[].target) once this guest and the ones placed before it are there.
      type: int
    reason:
      description:
        - Why the guest goes there (naming the hosts that could not take it), or, for each host, why it cannot go
          there.
      type: str
    unfit:
      description:
        - The hosts that cannot take the guest, each with what it lacks (one phrase per missing thing).
      type: dict
      sample: {"hv2": ["no libvirt network 'nat'"], "hv3": ["300 MiB free, needs 768 (256 + 512 reserved)"]}
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.arctictern.virt.plugins.module_utils import _placement
from ansible_collections.arctictern.virt.plugins.module_utils._errors import VirtError


def placement(guests, hosts, reserve_mib=0):
    """Place ``guests`` on the ``hosts`` that can run them, by memory; see DOCUMENTATION."""
    try:
        return _placement.plan(guests, hosts, reserve_mib)
    except VirtError as error:
        raise AnsibleFilterError("placement: %s" % error.msg) from None


class FilterModule:
    """Placement of guests on hypervisors."""

    def filters(self):
        return {"placement": placement}
