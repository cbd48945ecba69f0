# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest module's run: read the guest, change its definition (an edit of what libvirt has), autostart and
power state in that order, predicting each in check mode; a guest this run created and could not start is removed
again."""

from __future__ import annotations

from ansible_collections.arctictern.virt.plugins.module_utils import _domain as domains
from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes
from ansible_collections.arctictern.virt.plugins.module_utils._domain_model import ADDRESSES_CHANGE
from ansible_collections.arctictern.virt.plugins.module_utils._domain_xml import spec_from_xml
from ansible_collections.arctictern.virt.plugins.module_utils._xml import pretty
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption, VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import (
    call, connection, domain_state, lookup_domain, lookup_network,
)


def _check_networks(conn, params, spec):
    """Fail before changing anything when a NIC names a network the host does not have."""
    if params["nics"] is None:
        return
    for index, nic in enumerate(spec.nics):
        if nic.source_type == "network" and lookup_network(conn, nic.source) is None:
            raise InvalidOption("nics[%d].network" % index, "there is no libvirt network '%s' at %s" % (nic.source, params["uri"]))


def _ensure_definition(module, changes, conn, domain, defined_xml, was_active):
    """Define or update the guest when the task describes it (``was_active``: it runs, which defining keeps).

    ``defined_xml`` is the guest's inactive XML (None: not defined); it is edited, never written anew.
    Returns (domain, the DefinitionChange or None, desired spec or None, overlay files this run created)."""
    params = module.params
    if domain is not None and not domains.definition_requested(params):
        return domain, None, None, []
    current = spec_from_xml(defined_xml) if defined_xml is not None else None
    caps = domains.host_capabilities(conn)
    virt_type = domains.resolve_virt_type(conn, caps, params["hypervisor"], current)
    desired = domains.complete_from_host(domains.spec_from_options(params, virt_type, current), caps)
    _check_networks(conn, params, desired)
    overlays = domains.missing_overlays(desired)
    plan = domains.plan_definition(defined_xml, desired)
    created = []
    if overlays:
        created = changes.act(domains.create_overlays, module, overlays) or []
    if not plan.changed:
        return domain, plan, desired, created
    changes.record(*plan.changes)
    changes.diff(plan.before, plan.after, "guest %s (defined)" % desired.name, "guest %s (wanted)" % desired.name)
    try:
        # None in check mode: the guest stays as it was, None when it is new.
        domain = changes.act(domains.define, conn, desired.name, plan.after) or domain
    except Exception:
        domains.remove_files(created)
        raise
    if ADDRESSES_CHANGE in plan.changes and was_active:
        changes.act(domains.record_live_addresses, domain, desired)
    return domain, plan, desired, created


def _ensure_autostart(module, changes, domain):
    wanted = module.params["autostart"]
    current = bool(call("reading autostart", domain.autostart)) if domain is not None else False
    if wanted is None or wanted == current:
        return current
    changes.act(domains.set_autostart, domain, wanted)
    return wanted


def _ensure_power(module, changes, domain, state):
    """Bring the guest to ``state``; returns the resulting power state (predicted in check mode)."""
    now = domain_state(domain) if domain is not None else "shutoff"
    active = domains.is_active(domain) if domain is not None else False
    if state == "present":
        return now
    if state == "paused" and now == "paused":
        return now
    if state in ("running", "paused"):
        if now in ("paused", "pmsuspended") or not active:
            changes.act(domains.start, domain)
            now = "running"
        if state == "paused" and now != "paused":
            changes.act(domains.pause, domain)
            now = "paused"
        return now
    if not active:
        return now
    if state == "destroyed":
        changes.act(domains.destroy, domain)
    elif changes.act(domains.shutdown, domain, module.params["shutdown_timeout"], module.params["force"]) == "destroyed":
        module.warn("guest '%s' did not shut down within %s seconds and was powered off (force: true)"
                    % (domain.name(), module.params["shutdown_timeout"]))
    return "shutoff" if changes.check_mode else domain_state(domain)


def _remove(changes, domain, name):
    if domain is not None:
        persistent = bool(call("reading guest '%s'" % name, domain.isPersistent))
        if persistent:
            changes.diff(pretty(domains.inactive_xml(domain), "guest definition"), "",
                         "guest %s (defined)" % name, "guest %s (removed)" % name)
        changes.act(domains.destroy, domain)
        # A transient guest is gone once it is off.
        if persistent:
            changes.act(domains.undefine, domain)
    return changes.result(dict(guest=dict(name=name, state="absent")))


def ensure_guest(module):
    params = module.params
    name = domains.check_name(params["name"])
    state = params["state"]
    if params["shutdown_timeout"] < 0:
        raise InvalidOption("shutdown_timeout", "must be 0 or more seconds")
    changes = Changes(module, definition=True)
    with connection(params["uri"], params["connect_timeout"]) as conn:
        domain = lookup_domain(conn, name)
        if state == "absent":
            return _remove(changes, domain, name)
        if domain is None and not domains.definition_requested(params):
            domains.require_guest(domain, name, state)
        defined_xml = domains.inactive_xml(domain) if domain is not None else None
        was_active = domains.is_active(domain) if domain is not None else False
        is_new = domain is None
        domain, plan, desired, created = _ensure_definition(module, changes, conn, domain, defined_xml, was_active)
        autostart = _ensure_autostart(module, changes, domain)
        try:
            power = _ensure_power(module, changes, domain, state)
        except VirtError as error:
            # Some problems only show when the guest starts (a missing bridge or disk file): a guest this task
            # created is removed again rather than left half-made.
            if is_new and domain is not None and not changes.check_mode:
                domains.undefine(domain)
                domains.remove_files(created)
                raise VirtError("%s (the new guest was not kept)" % error.msg, **error.details) from None
            raise
        needs_boot = [option for option in changes.options if option != ADDRESSES_CHANGE]
        changes.restart_needed = bool(needs_boot) and was_active and power not in ("shutoff", "crashed")
        result = {}
        if domain is not None and not (changes.check_mode and changes.options):
            result["xml"] = domains.inactive_xml(domain)
            final = spec_from_xml(result["xml"])
        else:
            result["xml"] = plan.after
            final = desired
        result["guest"] = domains.describe(final, power, autostart)
    return changes.result(result)
