# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where guests can go: which hypervisors can run a guest, and a plan that spreads guests by free memory.

Guests are guest_info guest entries (plain dicts); hosts are guest_info host facts, or only their free memory.
Every reason is a short English phrase naming what is missing, so that a report can join them per host.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.arctictern.virt.plugins.module_utils._errors import VirtError

# A host dict with this key is guest_info host facts (this collection's guest_info since placement checks them):
# every check applies to it. Other hosts are known by their free memory only.
FACTS_MARKER = "arches"


class Host:
    """A candidate hypervisor: its name, free memory in MiB, and guest_info host facts (None: memory only)."""

    def __init__(self, name, free_mib, facts=None):
        self.name = name
        self.free_mib = free_mib
        self.facts = facts


def _number(value, what):
    if isinstance(value, bool):
        raise VirtError("%s is not a number (%r)" % (what, value))
    try:
        return int(value)
    except (TypeError, ValueError):
        raise VirtError("%s is not a number (%r)" % (what, value)) from None


def _host(name, value):
    if isinstance(value, Mapping):
        if "free_memory_mib" not in value:
            raise VirtError("every host needs free_memory_mib (%s has none)" % name)
        facts = value if FACTS_MARKER in value else None
        return Host(str(name), _number(value["free_memory_mib"], "free memory of host %s" % name), facts)
    return Host(str(name), _number(value, "free memory of host %s" % name))


def hosts_from(hosts):
    """[Host] in the given order, from a dict by host name (of free MiB or of guest_info host facts) or a list of
    dicts with name and free_memory_mib (and host facts, if they carry them)."""
    if isinstance(hosts, Mapping):
        return [_host(name, value) for name, value in hosts.items()]
    if isinstance(hosts, (list, tuple)):
        found = []
        for host in hosts:
            if not isinstance(host, Mapping) or "name" not in host or "free_memory_mib" not in host:
                raise VirtError("every host needs name and free_memory_mib (got %r)" % (host,))
            found.append(_host(host["name"], host))
        return found
    raise VirtError("hosts must be a list of dicts or a dict of free MiB or host facts by host name")


# ---------------------------------------------------------------------------------------------------------------
# What a host must offer


def _unique(values):
    return list(dict.fromkeys(value for value in values if value))


def needed_networks(guest):
    """The libvirt networks the guest's NICs use, in NIC order."""
    return _unique(nic.get("source") for nic in guest.get("nics") or () if nic.get("type") == "network")


def needed_bridges(guest):
    """The host bridges the guest's bridge NICs use, in NIC order."""
    return _unique(nic.get("source") for nic in guest.get("nics") or () if nic.get("type") == "bridge")


def _network_problems(guest, facts):
    networks = needed_networks(guest)
    if not networks:
        return []
    active, inactive = facts.get("networks"), facts.get("inactive_networks") or []
    if active is None:
        return ["its libvirt networks are unknown (needs %s)" % ", ".join("'%s'" % name for name in networks)]
    problems = []
    for name in networks:
        if name in inactive:
            problems.append("libvirt network '%s' is not active" % name)
        elif name not in active:
            problems.append("no libvirt network '%s'" % name)
    return problems


def _bridge_problems(guest, facts):
    bridges = needed_bridges(guest)
    if not bridges:
        return []
    present = facts.get("bridges")
    if present is None:
        return ["its host bridges are unknown (needs %s)" % ", ".join("'%s'" % name for name in bridges)]
    return ["no host bridge '%s'" % name for name in bridges if name not in present]


def sees_host_cpu(mode, virt_type):
    """Whether a guest with this CPU mode sees its host's CPU: host-passthrough, and maximum with hardware
    acceleration (under TCG, maximum is QEMU's emulated CPU, whatever the host)."""
    return mode == "host-passthrough" or (mode == "maximum" and virt_type != "qemu")


def _cpu_problems(guest, facts, offer):
    """What keeps the guest's CPU from running under ``offer`` (the host's arches[arch].virt_types[type])."""
    cpu = guest.get("cpu") or {}
    mode, virt_type = cpu.get("mode"), guest.get("virt_type")
    if not mode:
        return []  # no <cpu>: the hypervisor's default CPU, which any host of that virt type has
    modes = offer.get("cpu_modes")
    if modes is None:
        return ["its CPU modes for %s guests are unknown" % virt_type]
    if mode not in modes:
        return ["no %s CPU mode for %s guests" % (mode, virt_type)]
    if mode == "custom" and cpu.get("model"):
        models = offer.get("cpu_models")
        if models is None:
            return ["its usable CPU models for %s guests are unknown (needs '%s')" % (virt_type, cpu["model"])]
        if cpu["model"] not in models:
            return ["CPU model '%s' is not usable for %s guests" % (cpu["model"], virt_type)]
    if sees_host_cpu(mode, virt_type):
        # The guest sees its host's CPU: it only moves to a host whose CPU libvirt names the same.
        source, here = cpu.get("host_cpu_model"), facts.get("cpu_model")
        if not source or not here:
            return ["%s CPU needs the same host CPU, and a host CPU model is unknown" % mode]
        if source != here:
            return ["%s CPU needs host CPU '%s', this host has '%s'" % (mode, source, here)]
    return []


def _platform_problems(guest, facts):
    """Virt type, machine type and CPU of the guest against the host's arches."""
    arch, virt_type, machine = guest.get("arch"), guest.get("virt_type"), guest.get("machine")
    arches = facts.get(FACTS_MARKER) or {}
    if not virt_type:
        return []
    if not arch:
        offered = {name for entry in arches.values() for name in (entry.get("virt_types") or {})}
        return [] if virt_type in offered else ["does not run %s guests" % virt_type]
    offers = (arches.get(arch) or {}).get("virt_types") or {}
    if not offers:
        return ["does not run %s guests" % arch]
    offer = offers.get(virt_type)
    if offer is None:
        return ["does not run %s guests on %s (only %s)" % (virt_type, arch, ", ".join(sorted(offers)))]
    problems = []
    if machine and machine not in (offer.get("machines") or ()):
        problems.append("no machine type '%s' for %s %s guests" % (machine, arch, virt_type))
    return problems + _cpu_problems(guest, facts, offer)


def problems(guest, host):
    """Why ``host`` (a Host) cannot run ``guest``, memory aside: [] when it can, or when only its memory is known."""
    if host.facts is None:
        return []
    return _network_problems(guest, host.facts) + _bridge_problems(guest, host.facts) + _platform_problems(guest, host.facts)


# ---------------------------------------------------------------------------------------------------------------
# The plan


def _memory_problem(need, memory_mib, reserve_mib, free):
    if free >= need:
        return None
    extra = " (%d + %d reserved)" % (memory_mib, reserve_mib) if reserve_mib else ""
    return "%d MiB free, needs %d%s" % (free, need, extra)


def _per_host(unfit):
    return "; ".join("%s: %s" % (name, ", ".join(reasons)) for name, reasons in unfit.items())


def plan(guests, hosts, reserve_mib=0):
    """Place ``guests`` on ``hosts`` (see hosts_from); one entry per guest, in the input order.

    Largest guest first, each on the host with the most free memory left once the guests placed before it are
    counted, among the hosts that can run it and keep ``reserve_mib`` free; ties go to the host listed first.
    An entry has name, memory_mib, target (None when no host fits), free_after_mib, reason and unfit (the reasons
    of every host that cannot take it, by host name).
    """
    if not isinstance(guests, (list, tuple)):
        raise VirtError("the input must be a list of guests")
    candidates = hosts_from(hosts)
    reserve_mib = _number(reserve_mib, "reserve_mib")
    free = {host.name: host.free_mib for host in candidates}
    entries = []
    for guest in guests:
        if not isinstance(guest, Mapping) or "name" not in guest or "memory_mib" not in guest:
            raise VirtError("every guest needs name and memory_mib (got %r)" % (guest,))
        entries.append(({"name": guest["name"], "memory_mib": _number(guest["memory_mib"], "memory_mib of guest %s" % guest["name"]),
                         "target": None, "free_after_mib": None, "reason": "", "unfit": {}}, guest))
    # Largest first; sorted() is stable, so equal guests keep their input order.
    for entry, guest in sorted(entries, key=lambda pair: -pair[0]["memory_mib"]):
        if not candidates:
            entry["reason"] = "no other host to move to"
            continue
        need = entry["memory_mib"] + reserve_mib
        fitting = []
        for host in candidates:
            reasons = problems(guest, host)
            memory = _memory_problem(need, entry["memory_mib"], reserve_mib, free[host.name])
            reasons += [memory] if memory else []
            if reasons:
                entry["unfit"][host.name] = reasons
            else:
                fitting.append(host.name)
        if not fitting:
            entry["reason"] = _per_host(entry["unfit"])
            continue
        best = max(fitting, key=lambda name: (free[name], -fitting.index(name)))
        free[best] -= entry["memory_mib"]
        entry.update(target=best, free_after_mib=free[best],
                     reason="most free memory: %d MiB left on %s after placing it" % (free[best], best))
        if entry["unfit"]:
            entry["reason"] += " (not %s)" % _per_host(entry["unfit"])
    return [entry for entry, _guest in entries]
