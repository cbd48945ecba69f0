# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of the network module: read the network, validate the options, then change (unless check mode).

``run(module)`` is the whole task. The definition is edited (see _network.py), the run state, autostart and the
port forwards (_firewall.py) follow, and the result says what changed: ``changes`` (options whose defined value
changed), ``restart_needed`` and, in diff mode, the defined XML before and after plus the run state.
"""

from __future__ import annotations

import os

from ansible_collections.arctictern.virt.plugins.module_utils import _validate
from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption
from ansible_collections.arctictern.virt.plugins.module_utils._firewall import Iptables, current_forwards, plan
from ansible_collections.arctictern.virt.plugins.module_utils._libvirt import call, connection, lookup_network
from ansible_collections.arctictern.virt.plugins.module_utils._network import (
    XML_INACTIVE, definition_changes, describe, render_xml, spec_from_options, spec_from_xml,
)
from ansible_collections.arctictern.virt.plugins.module_utils._xml import pretty


def _iptables(module, forwards):
    """Iptables of this host, or None where forwards cannot be managed from here (and none are asked for)."""
    uri = module.params["uri"]
    binary = None
    if not _validate.is_local_uri(uri):
        why = "the rules are made on the host that runs the module, and uri %s is another host" % uri
    elif os.geteuid() != 0:
        why = "changing iptables rules needs root (become: true)"
    else:
        binary = module.get_bin_path("iptables")
        why = "iptables is not installed on the host that runs the module"
    if binary:
        return Iptables(binary, module.run_command)
    if forwards:
        raise InvalidOption("port_forwards", why)
    return None


def _run_state(active, autostart, forwards):
    """The second diff entry: what is not in the definition."""
    return dict(active=bool(active), autostart=bool(autostart), port_forwards=[forward.to_dict() for forward in forwards])


class NetworkTask:
    """One run of the module against one network: reads first, validates, then changes (unless check mode)."""

    def __init__(self, module, conn):
        self.module = module
        self.params = module.params
        self.conn = conn
        self.name = module.params["name"]
        self.changes = Changes(module, definition=True)

    def change(self, what, obj, method, *args):
        """Count a change; make it (``obj.method(*args)``) outside check mode, where ``obj`` may not exist yet."""
        return self.changes.act(lambda: call("%s network '%s'" % (what, self.name), getattr(obj, method), *args))

    def read(self, what, func, *args):
        return call("%s network '%s'" % (what, self.name), func, *args)

    def run(self):
        state = self.params["state"]
        net = lookup_network(self.conn, self.name)
        defined = self.read("reading", net.XMLDesc, XML_INACTIVE) if net else None
        current = spec_from_xml(defined) if net else None
        spec = None if state == "absent" else spec_from_options(self.params, current)
        iptables = _iptables(self.module, spec and spec.port_forwards)
        # Everything is read and validated above; changes start below.
        tables = iptables.tables() if iptables else {}
        was_active = bool(net) and bool(self.read("reading state of", net.isActive))
        autostart = bool(net) and bool(self.read("reading autostart of", net.autostart))
        persistent = bool(net) and bool(self.read("reading persistence of", net.isPersistent))
        before = _run_state(was_active, autostart, current_forwards(tables, self.name)) if net else {}
        if state == "absent":
            result, wanted_xml, run_state = self.remove(net, was_active, persistent, iptables, tables)
        else:
            result, wanted_xml, run_state = self.ensure(net, defined, current, spec, was_active, autostart, persistent,
                                                        iptables, tables)
        self.changes.diff(pretty(defined, "network definition") if persistent else "", wanted_xml,
                          "network %s (defined)" % self.name, "network %s (wanted)" % self.name)
        self.changes.diff(before, run_state, "network %s (state)" % self.name, "network %s (state)" % self.name)
        return self.changes.result(result)

    def remove(self, net, was_active, persistent, iptables, tables):
        """Stop and undefine the network; returns (result, wanted XML, run state), the last two for --diff."""
        # Persistence was asked first: a transient network is gone once stopped.
        if was_active:
            self.change("stopping", net, "destroy")
        if persistent:
            self.change("undefining", net, "undefine")
        commands = self.forwards(iptables, tables, ())
        return dict(network={}, firewall_commands=commands), "", {}

    def ensure(self, net, defined, current, spec, was_active, autostart, persistent, iptables, tables):
        """Define, start or stop and forward as asked; returns (result, wanted XML, run state), the last two for
        --diff."""
        state = self.params["state"]
        changed_options = definition_changes(current, spec)
        if changed_options:
            self.changes.record(*changed_options)
        # The defined XML edited where the options differ from it (a new network: the skeleton edited).
        xml = render_xml(spec, defined)
        # A transient network is defined as it runs, with the edits.
        define = bool(changed_options) or not persistent
        if define:
            net = self.change("defining", self.conn, "networkDefineXML", xml) or net

        wanted_autostart = self.params["autostart"]
        if wanted_autostart is not None and wanted_autostart != autostart:
            self.change("setting autostart of", net, "setAutostart", int(wanted_autostart))
            autostart = wanted_autostart

        stale = was_active and spec_from_xml(self.read("reading", net.XMLDesc, 0)) != spec
        started = False
        if state == "active" and not was_active:
            started = True
            self.change("starting", net, "create")
        elif state == "inactive" and was_active:
            self.change("stopping", net, "destroy")
        elif stale and self.params["restart"]:
            started = True
            self.change("stopping", net, "destroy")
            self.change("starting", net, "create")
        else:
            self.changes.restart_needed = stale
        active = state == "active" or (state == "present" and was_active)

        if iptables and started and not self.changes.check_mode:
            tables = iptables.tables()  # starting the network put libvirt's jumps on top of FORWARD
        if not active or spec.mode != "nat":
            wanted = ()
        elif spec.port_forwards is None:
            wanted = current_forwards(tables, self.name)
        else:
            wanted = spec.port_forwards
        commands = self.forwards(iptables, tables, wanted)

        final = spec
        if define and not self.changes.check_mode:
            result_xml = self.read("reading", net.XMLDesc, XML_INACTIVE)
            final = spec_from_xml(result_xml)  # with what libvirt filled in: UUID, bridge name, MAC
        elif define:
            result_xml = xml
        else:
            result_xml = defined
        forwards = wanted if iptables else ()
        result = dict(network=describe(final, active, autostart, forwards), xml=result_xml, firewall_commands=commands)
        return result, xml, _run_state(active, autostart, forwards)

    def forwards(self, iptables, tables, wanted):
        """Bring the network's iptables rules to ``wanted``; the argv lists run (or to run, in check mode)."""
        if not iptables:
            return []
        commands = plan(tables, self.name, wanted)
        if commands:
            self.changes.act(iptables.apply, commands)
        return [iptables.argv(command) for command in commands]


def run(module):
    """The network module's task: the result dict for exit_json."""
    with connection(module.params["uri"], module.params["connect_timeout"]) as conn:
        return NetworkTask(module, conn).run()
