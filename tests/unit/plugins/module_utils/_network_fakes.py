# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fakes for the tests of _network, _firewall and the network module: iptables and libvirt networks."""

from __future__ import annotations

import itertools
import uuid
import xml.etree.ElementTree as ET

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt

libvirt = _libvirt.libvirt

BUILTIN_CHAINS = {
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}


def libvirt_error(code_name, message):
    """A libvirtError carrying the named code, as libvirt raises it."""
    error = libvirt.libvirtError(message)
    error.err = (getattr(libvirt, code_name), 0, message, 2, None, None, None, -1, -1)
    return error


class FakeIptables:
    """iptables semantics for -S, -N, -X, -F, -A, -I, -D over {table: {chain: [rule tokens]}}.

    ``run`` is shaped like AnsibleModule.run_command; every argv is kept in ``calls``.
    """

    def __init__(self):
        self.tables = {table: {chain: [] for chain in chains} for table, chains in BUILTIN_CHAINS.items()}
        self.calls = []

    def writes(self):
        """The calls that changed something (all but -S)."""
        return [argv for argv in self.calls if "-S" not in argv]

    def run(self, argv, **_kwargs):
        assert isinstance(argv, list), "iptables must be run with an argv list, never a shell string"
        self.calls.append(list(argv))
        assert argv[1] == "-w" and argv[2] == "-t"
        chains = self.tables[argv[3]]
        operation, args = argv[4], argv[5:]
        if operation == "-S":
            lines = ["-P %s ACCEPT" % chain for chain in BUILTIN_CHAINS[argv[3]]]
            lines += ["-N %s" % chain for chain in chains if chain not in BUILTIN_CHAINS[argv[3]]]
            lines += ["-A %s %s" % (chain, " ".join(rule)) for chain, rules in chains.items() for rule in rules]
            return 0, "\n".join(lines) + "\n", ""
        chain = args[0]
        if operation == "-N":
            if chain in chains:
                return 1, "", "iptables: Chain already exists."
            chains[chain] = []
            return 0, "", ""
        if chain not in chains:
            return 1, "", "iptables: No chain/target/match by that name."
        if operation == "-X":
            referenced = any(chain in rule for rules in chains.values() for rule in rules)
            if chains[chain] or referenced:
                return 1, "", "iptables: Directory not empty."
            del chains[chain]
        elif operation == "-F":
            chains[chain] = []
        elif operation == "-A":
            chains[chain].append(args[1:])
        elif operation == "-I":
            chains[chain].insert(int(args[1]) - 1, args[2:])
        elif operation == "-D":
            if args[1:] not in chains[chain]:
                return 1, "", "iptables: Bad rule (does a matching rule exist in that chain?)."
            chains[chain].remove(args[1:])
        else:
            raise AssertionError("unexpected iptables call %r" % argv)
        return 0, "", ""


class FakeNetwork:
    """A libvirt network: a persistent definition and, while active, the running configuration."""

    def __init__(self, conn, config, persistent=True):
        self.conn = conn
        self.config = config
        self.live = None
        self.persistent = persistent
        self.autostart_flag = False
        self.gone = False

    def _exists(self):
        if self.gone:
            raise libvirt_error("VIR_ERR_NO_NETWORK", "Network not found: no network with matching uuid")

    def name(self):
        return ET.fromstring(self.config).findtext("name")

    def XMLDesc(self, flags=0):  # pylint: disable=invalid-name  # libvirt's name
        self._exists()
        if flags & 1 and self.persistent:
            return self.config
        return self.live if self.live is not None else self.config

    def isActive(self):  # pylint: disable=invalid-name
        self._exists()
        return int(self.live is not None)

    def isPersistent(self):  # pylint: disable=invalid-name
        self._exists()
        return int(self.persistent)

    def autostart(self):
        return int(self.autostart_flag)

    def setAutostart(self, flag):  # pylint: disable=invalid-name
        self.conn.log.append(("autostart", self.name(), flag))
        self.autostart_flag = bool(flag)
        return 0

    def create(self):
        if self.live is not None:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "network is already active")
        if self.conn.fail_create:
            raise libvirt_error("VIR_ERR_INTERNAL_ERROR", self.conn.fail_create)
        self.conn.log.append(("create", self.name()))
        self.live = self.config
        return 0

    def destroy(self):
        if self.live is None:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "network is not active")
        self.conn.log.append(("destroy", self.name()))
        self.live = None
        if not self.persistent:
            del self.conn.networks[self.name()]
            self.gone = True
        return 0

    def undefine(self):
        self._exists()
        self.conn.log.append(("undefine", self.name()))
        if self.live is None:
            del self.conn.networks[self.name()]
            self.gone = True
        else:
            self.persistent = False
        return 0


class FakeConnection:
    """A libvirt connection with networks only; like the bridge driver, defining fills in UUID, bridge and MAC."""

    def __init__(self):
        self.networks = {}
        self.log = []
        self.closed = False
        self.fail_create = None
        self.bridges = itertools.count(1)

    def networkLookupByName(self, name):  # pylint: disable=invalid-name
        if name not in self.networks:
            raise libvirt_error("VIR_ERR_NO_NETWORK", "Network not found: no network with matching name '%s'" % name)
        return self.networks[name]

    def networkDefineXML(self, xml):  # pylint: disable=invalid-name
        root = ET.fromstring(xml)
        name = root.findtext("name")
        self.log.append(("define", name, xml))
        existing = self.networks.get(name)
        given_uuid = root.findtext("uuid")
        if existing is not None:
            old_uuid = ET.fromstring(existing.config).findtext("uuid")
            if given_uuid is None:
                ET.SubElement(root, "uuid").text = old_uuid
            elif given_uuid != old_uuid:
                raise libvirt_error("VIR_ERR_OPERATION_FAILED", "network '%s' already exists with uuid %s" % (name, old_uuid))
        elif given_uuid is None:
            ET.SubElement(root, "uuid").text = str(uuid.uuid4())
        forward = root.find("forward")
        if forward is None or forward.get("mode") != "bridge":
            bridge = root.find("bridge")
            if bridge is None:
                bridge = ET.SubElement(root, "bridge")
            if not bridge.get("name"):
                bridge.set("name", "virbr%d" % next(self.bridges))
            if root.find("mac") is None:
                ET.SubElement(root, "mac", address="52:54:00:aa:bb:%02x" % len(self.networks))
        config = ET.tostring(root, encoding="unicode")
        if existing is None:
            existing = self.networks[name] = FakeNetwork(self, config)
        else:
            existing.config = config
            existing.persistent = True
        return existing

    def add(self, xml, active=False, persistent=True, autostart=False):
        """A network that exists before the test's module run."""
        network = self.networkDefineXML(xml)
        network.persistent = persistent
        network.autostart_flag = autostart
        if active:
            network.live = network.config
        self.log.clear()
        return network

    def changes(self):
        """The log entries of calls that changed something."""
        return [entry[:2] for entry in self.log]

    def close(self):
        self.closed = True
        return 0
