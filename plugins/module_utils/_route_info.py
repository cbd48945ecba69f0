# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The route_info module's run: the host's default routes, each with the interface, source address and MTU it
implies."""

from __future__ import annotations

from ansible_collections.arctictern.virt.plugins.module_utils._netlink import addresses, default_routes, link_info, open_ipr


def default_route(ipr, family):
    """The facts of the lowest-metric default route of ``family`` in the main table, or None."""
    routes = default_routes(ipr, family)
    if not routes:
        return None
    route = routes[0]
    interface = route["ifname"]
    link = link_info(ipr, interface) if interface else None
    source = route["prefsrc"]
    if source is None and link is not None:
        own = addresses(ipr, interface, family, scope="global")
        source = own[0].split("/")[0] if own else None
    return {
        "gateway": route["gateway"],
        "interface": interface,
        "source": source,
        "mtu": route["mtu"] or (link["mtu"] if link is not None else None),
        "metric": route["metric"],
        "table": route["table"],
    }


def route_facts(ipr, family="both"):
    """``{ipv4: ..., ipv6: ...}`` for the requested families."""
    families = ("ipv4", "ipv6") if family == "both" else (family,)
    return {name: default_route(ipr, name) for name in families}


def default_route_facts(module):
    """The module's run: the facts of the asked families, as ``route_info`` and as a fact."""
    with open_ipr() as ipr:
        facts = route_facts(ipr, module.params["family"])
    return {"changed": False, "route_info": facts, "ansible_facts": {"arctictern_default_route": facts}}
