# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory fake of the libvirt API for unit tests (fixtures in conftest.py).

It keeps every object's XML and state and behaves like libvirtd where modules care: lookups raise libvirtError
with the real error codes, operations in the wrong state fail, defineXML fills in what libvirt fills in (UUID,
MACs, PCI addresses, versioned machine), and a running guest keeps its live XML while its persistent definition
changes. Tests import the classes and capability documents from here.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import json
import re
import uuid as uuidlib
import xml.etree.ElementTree as ET

import libvirt
import libvirt_qemu

KVM_CAPABILITIES = """<capabilities>
  <host>
    <uuid>6c1c6d4e-3f0a-4b8e-9a52-2f4c1a0d9b11</uuid>
    <cpu><arch>x86_64</arch><model>Skylake-Client-IBRS</model></cpu>
  </host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <wordsize>32</wordsize>
      <emulator>/usr/bin/qemu-system-i386</emulator>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
  </guest>
</capabilities>
"""

# A host without /dev/kvm: only TCG for x86_64 (the i686 entry offering kvm must not count).
QEMU_CAPABILITIES = KVM_CAPABILITIES.replace("      <domain type='kvm'/>\n    </arch>\n  </guest>\n  <guest>",
                                             "    </arch>\n  </guest>\n  <guest>", 1)

# A host of the next generation (QEMU 10.0, the host UUID of KVM_CAPABILITIES): the aliases stand for 10.0's machine
# types, and the versioned ones of earlier releases are still offered.
QEMU10_CAPABILITIES = KVM_CAPABILITIES.replace("""\
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
""", """\
      <machine maxCpus='255'>pc-i440fx-10.0</machine>
      <machine canonical='pc-i440fx-10.0' maxCpus='255'>pc</machine>
      <machine maxCpus='255'>pc-i440fx-9.2</machine>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine maxCpus='4096'>pc-q35-10.0</machine>
      <machine canonical='pc-q35-10.0' maxCpus='4096'>q35</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
""").replace("canonical='pc-i440fx-7.2'", "canonical='pc-i440fx-10.0'")

XEN_CAPABILITIES = """<capabilities>
  <host>
    <cpu><arch>x86_64</arch></cpu>
  </host>
  <guest>
    <os_type>xen</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/lib/xen-4.17/bin/qemu-system-i386</emulator>
      <machine>xenpv</machine>
      <domain type='xen'/>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/lib/xen-4.17/bin/qemu-system-i386</emulator>
      <loader>/usr/lib/xen-4.17/boot/hvmloader</loader>
      <machine>xenfv</machine>
      <domain type='xen'/>
    </arch>
  </guest>
</capabilities>
"""

# What getDomainCapabilities reports per virt type: the CPU modes libvirt supports, and the named models with
# their usability (TCG cannot emulate every model a KVM host runs). FakeConnection copies them: a test edits its own.
CPU_MODES = {
    "kvm": ("custom", "host-model", "host-passthrough", "maximum"),
    "qemu": ("custom", "host-model", "maximum"),
    "xen": ("custom", "host-passthrough"),
}
CPU_MODELS = {
    "kvm": {"qemu64": "yes", "Skylake-Client-IBRS": "yes", "Cascadelake-Server": "no"},
    "qemu": {"qemu64": "yes", "Skylake-Client-IBRS": "no", "Cascadelake-Server": "no"},
    "xen": {},
}
# libvirt's virDomainVirtType and the architectures it knows by name: getDomainCapabilities refuses other names.
VIRT_TYPE_NAMES = ("none", "qemu", "kqemu", "kvm", "xen", "lxc", "uml", "openvz", "test", "vmware", "hyperv", "vbox",
                   "phyp", "parallels", "bhyve", "vz", "hvf")
ARCH_NAMES = ("i686", "x86_64", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x", "riscv64", "mips64el")

STATE_CODES = {
    "nostate": libvirt.VIR_DOMAIN_NOSTATE,
    "running": libvirt.VIR_DOMAIN_RUNNING,
    "blocked": libvirt.VIR_DOMAIN_BLOCKED,
    "paused": libvirt.VIR_DOMAIN_PAUSED,
    "shutdown": libvirt.VIR_DOMAIN_SHUTDOWN,
    "shutoff": libvirt.VIR_DOMAIN_SHUTOFF,
    "crashed": libvirt.VIR_DOMAIN_CRASHED,
    "pmsuspended": libvirt.VIR_DOMAIN_PMSUSPENDED,
}
ACTIVE = ("running", "blocked", "paused", "shutdown", "pmsuspended")


def libvirt_error(code, message, domain="VIR_FROM_NONE", system_errno=-1):
    """A libvirtError as libvirt would raise it: ``code`` and ``domain`` are VIR_ERR_*/VIR_FROM_* values or their
    names; ``system_errno`` is what a VIR_ERR_SYSTEM_ERROR carries (int1, -1 for other errors)."""
    code, domain = (getattr(libvirt, value) if isinstance(value, str) else value for value in (code, domain))
    libvirt.virResetLastError()
    error = libvirt.libvirtError(message)
    error.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None, None, system_errno, -1)
    return error


class _Faulty:
    """``obj.fail_on["method"] = libvirt_error(...)`` (or a message) makes the next calls of that method raise."""

    def __init__(self):
        self.fail_on = {}
        self.calls = []

    def _enter(self, method, *args):
        self.calls.append((method,) + args)
        error = self._failure(method)
        if error is not None:
            raise error if isinstance(error, libvirt.libvirtError) else libvirt_error("VIR_ERR_INTERNAL_ERROR", error)

    def _failure(self, method):
        return self.fail_on.get(method)

    def called(self, method):
        """How often ``method`` was called."""
        return sum(1 for call in self.calls if call[0] == method)


def _disk_index(name):
    """libvirt's virDiskNameToIndex, for comparing disk names: vdz < vdaa."""
    index = 0
    for letter in re.match(r"^(?:xvd|vd|sd|hd|fd)([a-z]+)$", name).group(1):
        index = index * 26 + ord(letter) - ord("a") + 1
    return index


def _order_disks(devices):
    """Put the <disk> elements in the order libvirtd stores them (virDomainDiskInsert, run for each parsed disk):
    a disk goes after the last disk on its bus with a lower name, before a later one, else at the end."""
    if devices is None:
        return
    disks = devices.findall("disk")
    ordered = []
    for disk in disks:
        bus, index = disk.find("target").get("bus"), _disk_index(disk.find("target").get("dev"))
        insert_at = -1
        for position in range(len(ordered) - 1, -1, -1):
            other = ordered[position].find("target")
            if other.get("bus") == bus and _disk_index(other.get("dev")) > index:
                insert_at = position
            elif other.get("bus") == bus and insert_at == -1:
                insert_at = position + 1
        ordered.insert(len(ordered) if insert_at == -1 else insert_at, disk)
    first = list(devices).index(disks[0]) if disks else 0
    for disk in disks:
        devices.remove(disk)
    for offset, disk in enumerate(ordered):
        devices.insert(first + offset, disk)


ADDRESS_SOURCES = {
    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE: "lease",
    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT: "agent",
    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP: "arp",
}


class FakeAgent:
    """The QEMU guest agent inside a guest: it answers guest-ping from its ``answers_after`` + 1st command on (0: at
    once). ``silent`` agents (None answers_after: never) keep still, so libvirt waits the command's whole timeout,
    which ``clock`` (a FakeClock, optional) is moved by; other unanswered commands fail at once, as when the agent
    has not connected to its channel yet. ``commands`` are the commands seen, with their timeouts."""

    def __init__(self, answers_after=0, silent=False, clock=None):
        self.answers_after = answers_after
        self.silent = silent
        self.clock = clock
        self.commands = []

    def command(self, command, timeout):
        self.commands.append((json.loads(command)["execute"], timeout))
        if self.answers_after is not None and len(self.commands) > self.answers_after:
            return json.dumps({"return": {}})
        if not self.silent:
            raise libvirt_error("VIR_ERR_AGENT_UNRESPONSIVE", "Guest agent is not responding: QEMU guest agent is not connected", "VIR_FROM_QEMU")
        if self.clock is not None:
            self.clock.advance(timeout)
        raise libvirt_error("VIR_ERR_AGENT_UNRESPONSIVE", "Guest agent is not responding: Guest agent not available for now", "VIR_FROM_QEMU")


# libvirt_qemu's one function the collection calls, routed to the fake domain; tests patch it into libvirt_qemu.
def qemu_agent_command(domain, command, timeout, flags):
    return domain.qemuAgentCommand(command, timeout, flags)


class FakeDomain(_Faulty):
    """A guest. ``state`` is a word (running, shutoff, ...); ``shutdown_after`` says how many state polls an
    ACPI shutdown takes (0: at once, None: the guest ignores it).

    ``addresses`` maps an address source (lease, arp, agent) to what interfaceAddresses answers for it while the
    guest runs, or to a libvirtError it raises; a source left out knows nothing: no DHCP lease or neighbour entry
    (an empty answer), no guest agent (VIR_ERR_AGENT_UNRESPONSIVE). ``job`` is what jobStats() reports for the
    running job (None: no job). ``agent`` is the guest's QEMU guest agent (a FakeAgent; None: no agent runs in the
    guest); libvirt reaches it only through the agent channel of the guest's XML. Once the guest is gone from its
    host (undefined while off, or a transient guest stopped), every call on this handle fails with VIR_ERR_NO_DOMAIN, as on a stale libvirt handle."""

    def __init__(self, conn, xml, state="shutoff", persistent=True, autostart=False):
        super().__init__()
        self.conn = conn
        self.xml = xml
        self.live_xml = None
        self.persistent = persistent
        self._autostart = autostart
        self._state = "shutoff"
        self.reason = 0
        self.shutdown_after = 0
        self._shutdown_countdown = None
        self.id = -1
        self.undefined_with = None
        self.addresses = {}
        self.job = None
        self.agent = None
        self._set_state(state)

    def _enter(self, method, *args):
        super()._enter(method, *args)
        if self.conn.domains.get(self.name()) is not self:
            raise libvirt_error("VIR_ERR_NO_DOMAIN", "Domain not found: no domain with matching uuid '%s' (%s)" % (self.UUIDString(), self.name()),
                                "VIR_FROM_QEMU")

    # identity ---------------------------------------------------------------------------------------------
    def _root(self):
        return ET.fromstring(self.xml)

    def name(self):
        return self._root().findtext("name")

    def UUIDString(self):  # noqa: N802 - libvirt's name
        return self._root().findtext("uuid")

    def UUID(self):  # noqa: N802
        return uuidlib.UUID(self.UUIDString()).bytes

    def ID(self):  # noqa: N802
        return self.id

    def OSType(self):  # noqa: N802
        return self._root().findtext("os/type")

    # state ------------------------------------------------------------------------------------------------
    def _set_state(self, state):
        was_active = self._state in ACTIVE
        self._state = state
        if state in ACTIVE and not was_active:
            self.id = next(self.conn.ids)
            self.live_xml = self.xml
        elif state not in ACTIVE:
            self.id = -1
            self.live_xml = None
            self._shutdown_countdown = None
            if not self.persistent:
                self.conn.domains.pop(self.name(), None)

    def _poll(self):
        if self._shutdown_countdown is not None and self._state in ACTIVE:
            if self._shutdown_countdown <= 0:
                self._set_state("shutoff")
            else:
                self._shutdown_countdown -= 1

    def current_state(self):
        """The state word, after letting a pending shutdown progress."""
        self._poll()
        return self._state

    def state(self, flags=0):
        self._enter("state", flags)
        return [STATE_CODES[self.current_state()], self.reason]

    def info(self):
        self._enter("info")
        root = ET.fromstring(self.live_xml or self.xml)
        memory = int(root.findtext("memory"))
        return [STATE_CODES[self.current_state()], memory, memory, int(root.findtext("vcpu")), 0]

    def isActive(self):  # noqa: N802
        self._enter("isActive")
        return int(self.current_state() in ACTIVE)

    def isPersistent(self):  # noqa: N802
        self._enter("isPersistent")
        return int(self.persistent)

    def jobStats(self, flags=0):  # noqa: N802
        """The running job (``job``); with VIR_DOMAIN_JOB_STATS_COMPLETED the last completed one, of which the fake
        keeps none. libvirt refuses to tell for a guest that does not run."""
        self._enter("jobStats", flags)
        self._require(True, "domain is not running")
        if flags & libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED or self.job is None:
            return {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        return dict(self.job)

    def interfaceAddresses(self, source, flags=0):  # noqa: N802
        """What ``source`` knows of the running guest's interfaces (see ``addresses``)."""
        self._enter("interfaceAddresses", source, flags)
        if source not in ADDRESS_SOURCES:
            raise libvirt_error("VIR_ERR_INVALID_ARG", "Unknown IP address data source %d" % source)
        self._require(True, "domain is not running")
        name = ADDRESS_SOURCES[source]
        answer = self.addresses.get(name)
        if isinstance(answer, libvirt.libvirtError):
            raise answer
        if answer is None and name == "agent":
            raise libvirt_error("VIR_ERR_AGENT_UNRESPONSIVE", "Guest agent is not responding: QEMU guest agent is not connected", "VIR_FROM_QEMU")
        return dict(answer or {})

    def asked_address_sources(self):
        """The address sources (lease, arp, agent) interfaceAddresses was asked, in order."""
        return [ADDRESS_SOURCES.get(call[1], call[1]) for call in self.calls if call[0] == "interfaceAddresses"]

    def qemuAgentCommand(self, command, timeout, flags):  # noqa: N802 - what libvirt_qemu.qemuAgentCommand calls
        """A command to the guest agent, with libvirt's checks: a running guest, the agent channel in its XML."""
        self._enter("qemuAgentCommand", command, timeout, flags)
        if timeout < libvirt_qemu.VIR_DOMAIN_QEMU_AGENT_COMMAND_MIN or flags:
            raise libvirt_error("VIR_ERR_INVALID_ARG", "invalid argument: timeout %d or flags 0x%x" % (timeout, flags))
        self._require(True, "domain is not running")
        targets = ET.fromstring(self.live_xml).findall("devices/channel/target")
        if not any(target.get("name") == "org.qemu.guest_agent.0" for target in targets):
            raise libvirt_error("VIR_ERR_ARGUMENT_UNSUPPORTED", "argument unsupported: QEMU guest agent is not configured", "VIR_FROM_QEMU")
        if self.agent is None:
            raise libvirt_error("VIR_ERR_AGENT_UNRESPONSIVE", "Guest agent is not responding: QEMU guest agent is not connected", "VIR_FROM_QEMU")
        return self.agent.command(command, timeout)

    def connect(self):
        return self.conn

    def XMLDesc(self, flags=0):  # noqa: N802
        self._enter("XMLDesc", flags)
        if self.live_xml is not None and not flags & libvirt.VIR_DOMAIN_XML_INACTIVE:
            return self.live_xml
        return self.xml

    def setMetadata(self, kind, metadata, key, uri, flags=0):  # noqa: N802
        """Element metadata of the running guest, as libvirt sets it: every element of the fragment is put into
        ``uri``'s namespace, replacing what was there; None removes it."""
        self._enter("setMetadata", kind, metadata, key, uri, flags)
        if (kind, flags) != (libvirt.VIR_DOMAIN_METADATA_ELEMENT, libvirt.VIR_DOMAIN_AFFECT_LIVE):
            raise NotImplementedError("the fake only sets element metadata of a running guest")
        self._require(True, "domain is not running")
        root = ET.fromstring(self.live_xml)
        holder = root.find("metadata")
        if holder is None:
            holder = ET.SubElement(root, "metadata")
        for child in [child for child in holder if child.tag.startswith("{%s}" % uri)]:
            holder.remove(child)
        if metadata is not None:
            element = ET.fromstring(metadata)
            for node in element.iter():
                node.tag = "{%s}%s" % (uri, node.tag)
            holder.append(element)
        self.live_xml = ET.tostring(root, encoding="unicode")
        return 0

    def autostart(self):
        self._enter("autostart")
        return int(self._autostart)

    def setAutostart(self, flag):  # noqa: N802
        self._enter("setAutostart", flag)
        if not self.persistent:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "cannot set autostart for transient domain")
        self._autostart = bool(flag)
        return 0

    def _require(self, active, message):
        if (self.current_state() in ACTIVE) != active:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: %s" % message)

    def create(self):
        return self.createWithFlags(0)

    def createWithFlags(self, flags=0):  # noqa: N802
        self._enter("create", flags)
        self._require(False, "domain is already running")
        self._set_state("running")
        return 0

    def shutdown(self):
        return self.shutdownFlags(0)

    def shutdownFlags(self, flags=0):  # noqa: N802
        self._enter("shutdown", flags)
        self._require(True, "domain is not running")
        if self.shutdown_after is not None and self._shutdown_countdown is None:
            self._shutdown_countdown = self.shutdown_after
        self._poll()
        return 0

    def destroy(self):
        return self.destroyFlags(0)

    def destroyFlags(self, flags=0):  # noqa: N802
        self._enter("destroy", flags)
        self._require(True, "domain is not running")
        self._set_state("shutoff")
        return 0

    def suspend(self):
        self._enter("suspend")
        self._require(True, "domain is not running")
        if self._state == "paused":
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: domain is already paused")
        self._set_state("paused")
        return 0

    def resume(self):
        self._enter("resume")
        if self._state != "paused":
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: domain is not paused")
        self._set_state("running")
        return 0

    def pmWakeup(self, flags=0):  # noqa: N802
        self._enter("pmWakeup", flags)
        if self._state != "pmsuspended":
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: domain is not suspended")
        self._set_state("running")
        return 0

    def reboot(self, flags=0):
        self._enter("reboot", flags)
        self._require(True, "domain is not running")
        self.live_xml = self.xml
        return 0

    def undefine(self):
        return self.undefineFlags(0)

    def undefineFlags(self, flags=0):  # noqa: N802
        self._enter("undefine", flags)
        if flags & ~self.conn.undefine_flags:
            raise libvirt_error("VIR_ERR_INVALID_ARG", "unsupported flags (0x%x) in function undefineFlags" % (flags & ~self.conn.undefine_flags))
        if not self.persistent:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "cannot undefine transient domain")
        self.undefined_with = flags
        if self.current_state() in ACTIVE:
            self.persistent = False
        else:
            self.conn.domains.pop(self.name(), None)
        return 0


class FakeNetwork(_Faulty):
    """A libvirt network: ``xml`` is its persistent definition, ``live_xml`` the configuration it runs with (None
    while inactive). Once undefined while inactive, or stopped while transient, it is gone: every call on the stale
    handle fails with VIR_ERR_NO_NETWORK. What changes it is recorded in ``conn.network_log``."""

    def __init__(self, conn, xml, active=True, persistent=True, autostart=False):
        super().__init__()
        self.conn = conn
        self.xml = xml
        self.live_xml = xml if active else None
        self.persistent = persistent
        self._autostart = autostart
        self.gone = False

    @property
    def active(self):
        return self.live_xml is not None

    @active.setter
    def active(self, value):
        self.live_xml = (self.live_xml or self.xml) if value else None

    def _enter(self, method, *args):
        if self.gone:
            raise libvirt_error("VIR_ERR_NO_NETWORK", "Network not found: no network with matching uuid '%s'" % self.UUIDString(),
                                "VIR_FROM_NETWORK")
        super()._enter(method, *args)

    def _failure(self, method):
        return self.fail_on.get(method, self.conn.network_fail_on.get(method))

    def _remove(self):
        self.conn.networks.pop(self.name(), None)
        self.gone = True

    def name(self):
        return ET.fromstring(self.xml).findtext("name")

    def UUIDString(self):  # noqa: N802
        return ET.fromstring(self.xml).findtext("uuid")

    def bridgeName(self):  # noqa: N802
        self._enter("bridgeName")
        bridge = ET.fromstring(self.xml).find("bridge")
        if bridge is None or not bridge.get("name"):
            raise libvirt_error("VIR_ERR_INTERNAL_ERROR", "network '%s' does not have a bridge name." % self.name())
        return bridge.get("name")

    def XMLDesc(self, flags=0):  # noqa: N802
        """The running configuration, or with VIR_NETWORK_XML_INACTIVE the persistent definition."""
        self._enter("XMLDesc", flags)
        if self.live_xml is not None and not (flags & libvirt.VIR_NETWORK_XML_INACTIVE and self.persistent):
            return self.live_xml
        return self.xml

    def isActive(self):  # noqa: N802
        self._enter("isActive")
        return int(self.active)

    def isPersistent(self):  # noqa: N802
        self._enter("isPersistent")
        return int(self.persistent)

    def autostart(self):
        self._enter("autostart")
        return int(self._autostart)

    def setAutostart(self, flag):  # noqa: N802
        self._enter("setAutostart", flag)
        if not self.persistent:
            raise libvirt_error("VIR_ERR_INTERNAL_ERROR", "internal error: cannot set autostart for transient network", "VIR_FROM_NETWORK")
        self.conn.network_log.append(("autostart", self.name(), flag))
        self._autostart = bool(flag)
        return 0

    def create(self):
        self._enter("create")
        if self.active:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: network is already active")
        self.conn.network_log.append(("create", self.name()))
        self.live_xml = self.xml
        return 0

    def destroy(self):
        self._enter("destroy")
        if not self.active:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: network is not active")
        self.conn.network_log.append(("destroy", self.name()))
        self.live_xml = None
        if not self.persistent:
            self._remove()
        return 0

    def undefine(self):
        self._enter("undefine")
        if not self.persistent:
            raise libvirt_error("VIR_ERR_OPERATION_INVALID", "Requested operation is not valid: can't undefine transient network")
        self.conn.network_log.append(("undefine", self.name()))
        if self.active:
            self.persistent = False
        else:
            self._remove()
        return 0


class FakeConnection(_Faulty):
    """One hypervisor: its domains and networks by name. ``network_log`` records the network changes made through
    it; ``network_fail_on`` is a fail_on shared by all its networks, also those defined during the test."""

    def __init__(self, uri="qemu:///system", capabilities=KVM_CAPABILITIES, hostname="hv1"):
        super().__init__()
        self.uri = uri
        self.capabilities = capabilities
        self.hostname = hostname
        self.domains = {}
        self.networks = {}
        self.ids = itertools.count(1)
        self.closed = 0
        # Host facts: memory (MiB), what getDomainCapabilities reports, host interfaces (name -> libvirt type).
        self.memory_mib, self.free_memory_mib = 64000, 31000
        # The hypervisor's version as getVersion gives it: QEMU 7.2.0.
        self.hypervisor_version = 7002000
        self.cpu_modes = dict(CPU_MODES)
        self.cpu_models = {virt_type: dict(models) for virt_type, models in CPU_MODELS.items()}
        self.interfaces = {}
        # Network changes as ("define", name, xml), ("create", name), ("destroy", name), ("undefine", name),
        # ("autostart", name, flag).
        self.network_log = []
        self.network_fail_on = {}
        self._macs = (("52:54:00:%02x:%02x:%02x" % (0xf0, i // 256 % 256, i % 256)) for i in itertools.count(1))
        # Flags undefineFlags accepts; libxl takes MANAGED_SAVE only.
        self.undefine_flags = (
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            if uri.startswith("xen")
            else libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
            | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
        )

    # test helpers -----------------------------------------------------------------------------------------
    def add_domain(self, xml, state="shutoff", autostart=False, persistent=True):
        """Put a guest on the host as if defined earlier (``xml`` is normalized like defineXML does)."""
        domain = FakeDomain(self, self._normalize(xml), persistent=persistent, autostart=autostart)
        self.domains[domain.name()] = domain
        domain._set_state(state)
        return domain

    def add_network(self, name=None, bridge="virbr0", active=True, autostart=False, xml=None, persistent=True):
        """Put a network on the host as if made earlier: ``xml`` (its name wins over ``name``) is completed like
        networkDefineXML does, without being recorded in network_log."""
        if xml is not None:
            root = self._check_network(xml)
            self._complete_network(root, self.networks.get(root.findtext("name")))
            xml, name = ET.tostring(root, encoding="unicode"), root.findtext("name")
        else:
            root = ET.Element("network")
            ET.SubElement(root, "name").text = name
            ET.SubElement(root, "uuid").text = str(uuidlib.uuid4())
            ET.SubElement(root, "forward", mode="nat")
            ET.SubElement(root, "bridge", name=bridge)
            xml = ET.tostring(root, encoding="unicode")
        network = FakeNetwork(self, xml, active=active, persistent=persistent, autostart=autostart)
        self.networks[name] = network
        return network

    def _normalize(self, xml):
        """What libvirtd adds to a definition it stores."""
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as error:
            raise libvirt_error("VIR_ERR_XML_DETAIL", "(domain_definition):1: %s" % error, "VIR_FROM_DOMAIN") from None
        if root.tag != "domain":
            raise libvirt_error("VIR_ERR_XML_ERROR", "XML error: expecting root element of 'domain', not '%s'" % root.tag, "VIR_FROM_XML")
        if not root.findtext("name"):
            raise libvirt_error("VIR_ERR_NO_NAME", "missing name information", "VIR_FROM_DOMAIN")
        if root.find("uuid") is None:
            ET.SubElement(root, "uuid").text = str(uuidlib.uuid4())
        os_type = root.find("os/type")
        if os_type is not None:
            caps = ET.fromstring(self.capabilities)
            os_type.set("arch", caps.findtext("host/cpu/arch") or "x86_64")
            machines = {m.text: m.get("canonical") or m.text for m in caps.iter("machine")}
            default = next((m.get("canonical") for m in caps.iter("machine") if m.get("canonical")), None)
            machine = machines.get(os_type.get("machine"), os_type.get("machine")) or default
            if machine:
                os_type.set("machine", machine)
        _order_disks(root.find("devices"))
        slot = itertools.count(3)
        for device in root.findall("devices/disk") + root.findall("devices/interface"):
            if device.tag == "interface" and device.find("mac") is None:
                ET.SubElement(device, "mac", address=next(self._macs))
            if device.find("address") is None and root.get("type") != "xen":
                ET.SubElement(device, "address", type="pci", domain="0x0000", bus="0x00", slot="0x%02x" % next(slot), function="0x0")
        return ET.tostring(root, encoding="unicode")

    # libvirt API ------------------------------------------------------------------------------------------
    def getURI(self):  # noqa: N802
        self._enter("getURI")
        return self.uri

    def getType(self):  # noqa: N802
        return {"qemu": "QEMU", "xen": "Xen", "test": "TEST"}.get(self.uri.split(":")[0].split("+")[0], "QEMU")

    def getHostname(self):  # noqa: N802
        return self.hostname

    def getCapabilities(self):  # noqa: N802
        self._enter("getCapabilities")
        return self.capabilities

    def getLibVersion(self):  # noqa: N802
        return 9000000

    def getVersion(self):  # noqa: N802
        return self.hypervisor_version

    def getInfo(self):  # noqa: N802
        """[arch, memory MiB, CPUs, MHz, NUMA nodes, sockets, cores, threads], as the Python binding returns it."""
        self._enter("getInfo")
        return [ET.fromstring(self.capabilities).findtext("host/cpu/arch"), self.memory_mib, 16, 2400, 1, 1, 8, 2]

    def getFreeMemory(self):  # noqa: N802
        self._enter("getFreeMemory")
        return self.free_memory_mib * 1024 * 1024

    def getDomainCapabilities(self, emulatorbin=None, arch=None, machine=None, virttype=None, flags=0):  # noqa: N802
        """The domain capabilities of one arch, machine and virt type (defaults: the host's arch, kvm if offered,
        the arch's default machine), refusing with libvirtd's QEMU driver's errors what it refuses."""
        self._enter("getDomainCapabilities", emulatorbin, arch, machine, virttype, flags)
        if flags:
            raise libvirt_error("VIR_ERR_INVALID_ARG", "unsupported flags (0x%x) in function virConnectGetDomainCapabilities" % flags)
        if virttype is not None and virttype not in VIRT_TYPE_NAMES:
            raise libvirt_error("VIR_ERR_INVALID_ARG", "unknown virttype: %s" % virttype)
        if arch is not None and arch not in ARCH_NAMES:
            raise libvirt_error("VIR_ERR_INVALID_ARG", "unknown architecture: %s" % arch)
        caps = ET.fromstring(self.capabilities)
        arch = arch or caps.findtext("host/cpu/arch")
        entries = [entry for entry in caps.findall("guest/arch") if entry.get("name") == arch]
        if emulatorbin is not None:
            entries = [entry for entry in entries if entry.findtext("emulator") == emulatorbin]
        if not entries:
            raise libvirt_error("VIR_ERR_INVALID_ARG", "unable to find any emulator to serve '%s' architecture" % arch)
        emulator = entries[0].findtext("emulator")
        offered = [domain.get("type") for entry in entries for domain in entry.findall("domain")]
        virttype = virttype or ("kvm" if "kvm" in offered else offered[0])
        if virttype not in offered:
            if virttype == "kvm":
                raise libvirt_error("VIR_ERR_INVALID_ARG", "KVM is not supported by '%s' on this host" % emulator)
            raise libvirt_error("VIR_ERR_INVALID_ARG", "virttype '%s' is not supported by '%s'" % (virttype, emulator))
        known = {}
        for element in (element for entry in entries for element in entry.iter("machine")):
            known[element.text] = element.get("canonical") or element.text
        if machine is None:
            machine = next(iter(known.values()), None)
        elif machine not in known:
            raise libvirt_error("VIR_ERR_INVALID_ARG", "the machine '%s' is not supported by emulator '%s'" % (machine, emulator))
        root = ET.Element("domainCapabilities")
        for tag, text in (("path", emulator), ("domain", virttype), ("machine", known.get(machine, machine)), ("arch", arch)):
            ET.SubElement(root, tag).text = text
        cpu = ET.SubElement(root, "cpu")
        modes = self.cpu_modes.get(virttype, ())
        for mode in ("host-passthrough", "maximum", "host-model", "custom"):
            element = ET.SubElement(cpu, "mode", name=mode, supported="yes" if mode in modes else "no")
            if mode == "host-model" and mode in modes:
                ET.SubElement(element, "model", fallback="forbid").text = caps.findtext("host/cpu/model") or "qemu64"
            if mode == "custom" and mode in modes:
                for model, usable in self.cpu_models.get(virttype, {}).items():
                    ET.SubElement(element, "model", usable=usable, vendor="Intel").text = model
        return ET.tostring(root, encoding="unicode")

    def listAllInterfaces(self, flags=0):  # noqa: N802
        """The host's interfaces as libvirt's interface driver lists them (every one is active here)."""
        self._enter("listAllInterfaces", flags)
        if flags & libvirt.VIR_CONNECT_LIST_INTERFACES_INACTIVE and not flags & libvirt.VIR_CONNECT_LIST_INTERFACES_ACTIVE:
            return []
        return [FakeInterface(name, kind) for name, kind in self.interfaces.items()]

    def isAlive(self):  # noqa: N802
        return 1

    def close(self):
        self.closed += 1
        return 0

    def lookupByName(self, name):  # noqa: N802
        self._enter("lookupByName", name)
        if name not in self.domains:
            raise libvirt_error("VIR_ERR_NO_DOMAIN", "Domain not found: no domain with matching name '%s'" % name)
        return self.domains[name]

    def lookupByUUIDString(self, uuid):  # noqa: N802
        self._enter("lookupByUUIDString", uuid)
        for domain in self.domains.values():
            if domain.UUIDString() == uuid:
                return domain
        raise libvirt_error("VIR_ERR_NO_DOMAIN", "Domain not found: no domain with matching uuid '%s'" % uuid)

    def defineXML(self, xml):  # noqa: N802
        return self.defineXMLFlags(xml, 0)

    def defineXMLFlags(self, xml, flags=0):  # noqa: N802
        self._enter("defineXML", xml, flags)
        root = ET.fromstring(self._normalize(xml))
        name, uuid = root.findtext("name"), root.findtext("uuid")
        for other in self.domains.values():
            if other.name() != name and other.UUIDString() == uuid:
                raise libvirt_error("VIR_ERR_OPERATION_FAILED", "domain '%s' already exists with uuid %s" % (other.name(), uuid))
        existing = self.domains.get(name)
        if existing is not None:
            if existing.UUIDString() != uuid:
                raise libvirt_error("VIR_ERR_OPERATION_FAILED",
                                    "operation failed: domain '%s' already exists with uuid %s" % (name, existing.UUIDString()))
            existing.xml = ET.tostring(root, encoding="unicode")
            existing.persistent = True
            return existing
        domain = FakeDomain(self, ET.tostring(root, encoding="unicode"))
        self.domains[name] = domain
        return domain

    def createXML(self, xml, flags=0):  # noqa: N802
        self._enter("createXML", xml, flags)
        domain = FakeDomain(self, self._normalize(xml), persistent=False)
        if domain.name() in self.domains:
            raise libvirt_error("VIR_ERR_OPERATION_FAILED", "domain '%s' already exists" % domain.name())
        self.domains[domain.name()] = domain
        domain._set_state("running")
        return domain

    def listAllDomains(self, flags=0):  # noqa: N802
        self._enter("listAllDomains", flags)
        found = list(self.domains.values())
        if flags & libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE:
            found = [d for d in found if d.current_state() in ACTIVE]
        if flags & libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE:
            found = [d for d in found if d.current_state() not in ACTIVE]
        return found

    def listDomainsID(self):  # noqa: N802
        return [d.id for d in self.domains.values() if d.current_state() in ACTIVE]

    def listDefinedDomains(self):  # noqa: N802
        return [d.name() for d in self.domains.values() if d.current_state() not in ACTIVE]

    def networkLookupByName(self, name):  # noqa: N802
        self._enter("networkLookupByName", name)
        if name not in self.networks:
            raise libvirt_error("VIR_ERR_NO_NETWORK", "Network not found: no network with matching name '%s'" % name)
        return self.networks[name]

    # Forward modes of a bridge libvirt creates and addresses (no <forward>: isolated).
    ROUTED_FORWARD_MODES = (None, "nat", "route", "open")

    def _check_network(self, xml):
        """The parsed network definition, or the libvirtError libvirt's parser and its bridge driver
        (networkValidate) raise for what the network module could get wrong."""
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as error:
            raise libvirt_error("VIR_ERR_XML_DETAIL", "XML error: %s" % error) from None
        name = root.findtext("name")
        if not name:
            raise libvirt_error("VIR_ERR_NO_NAME", "missing name information")
        forward = root.find("forward")
        mode = None if forward is None else forward.get("mode", "nat")
        ips = root.findall("ip")
        if mode in ("nat", "route", "open") and not ips:
            raise libvirt_error("VIR_ERR_XML_ERROR",
                                "XML error: %s forwarding requested, but no IP address provided for network '%s'" % (mode, name))
        bridge = root.find("bridge")
        if mode not in self.ROUTED_FORWARD_MODES:
            if bridge is not None and any(bridge.get(key) is not None for key in ("stp", "delay", "zone")):
                raise libvirt_error("VIR_ERR_XML_ERROR", "XML error: bridge delay/stp/zone options only allowed in route, nat, and isolated mode, "
                                                         "not in %s (network '%s')" % (mode, name))
            if root.find("mtu") is not None:
                raise libvirt_error("VIR_ERR_XML_ERROR",
                                    "XML error: mtu size only allowed in open, route, nat, and isolated mode, not in %s (network '%s')" % (mode, name))
            dns = root.find("dns")
            unsupported = [tag for tag in ("mac", "ip", "domain") if root.find(tag) is not None]
            if dns is not None and any(dns.find(tag) is not None for tag in ("txt", "host", "srv")):
                unsupported.append("dns")
            if unsupported:
                raise libvirt_error("VIR_ERR_CONFIG_UNSUPPORTED", "unsupported configuration: Unsupported <%s> element in network %s with "
                                                                  "forward mode='%s'" % (unsupported[0], name, mode))
        with_dhcp = 0
        for ip in ips:
            if ip.get("family", "ipv4") != "ipv4":
                continue
            prefix = ip.get("prefix") or ip.get("netmask") or "32"
            subnet = ipaddress.ip_interface("%s/%s" % (ip.get("address"), prefix)).network
            ranges, hosts = ip.findall("dhcp/range"), ip.findall("dhcp/host")
            with_dhcp += bool(ranges or hosts)
            for dhcp_range in ranges:
                if not all(ipaddress.ip_address(dhcp_range.get(key)) in subnet for key in ("start", "end")):
                    raise libvirt_error("VIR_ERR_INTERNAL_ERROR", "internal error: range %s - %s is not entirely within network %s"
                                        % (dhcp_range.get("start"), dhcp_range.get("end"), subnet))
        if with_dhcp > 1:
            raise libvirt_error("VIR_ERR_CONFIG_UNSUPPORTED", "unsupported configuration: Multiple IPv4 dhcp sections found -- dhcp is supported "
                                                              "only for a single IPv4 address on each network")
        return root

    def networkDefineXML(self, xml):  # noqa: N802
        """Defines like libvirt's bridge driver: checks (see _check_network), keeps the UUID of the network of that
        name, and gives a bridge of libvirt's own a free virbrN name and a MAC address when the XML has none."""
        self._enter("networkDefineXML", xml)
        root = self._check_network(xml)
        name = root.findtext("name")
        existing = self.networks.get(name)
        self._complete_network(root, existing)
        self.network_log.append(("define", name, xml))
        if existing is not None:
            existing.xml = ET.tostring(root, encoding="unicode")
            existing.persistent = True
            return existing
        network = FakeNetwork(self, ET.tostring(root, encoding="unicode"), active=False)
        self.networks[name] = network
        return network

    def _complete_network(self, root, existing):
        """Fill in what the bridge driver fills in (UUID, bridge name, MAC), refusing another network's name."""
        name = root.findtext("name")
        if existing is not None and root.find("uuid") is not None and root.findtext("uuid") != existing.UUIDString():
            raise libvirt_error("VIR_ERR_OPERATION_FAILED", "operation failed: network '%s' already exists with uuid %s" % (name, existing.UUIDString()))
        if root.find("uuid") is None:
            uuid = ET.Element("uuid")
            uuid.text = existing.UUIDString() if existing is not None else str(uuidlib.uuid4())
            root.insert(list(root).index(root.find("name")) + 1, uuid)
        forward = root.find("forward")
        if (None if forward is None else forward.get("mode", "nat")) in self.ROUTED_FORWARD_MODES:
            bridge = root.find("bridge")
            if bridge is None:
                bridge = ET.SubElement(root, "bridge")
            if not bridge.get("name"):
                taken = {ET.fromstring(other.xml).find("bridge").get("name") for other in self.networks.values()
                         if ET.fromstring(other.xml).find("bridge") is not None}
                bridge.set("name", next("virbr%d" % index for index in itertools.count() if "virbr%d" % index not in taken))
            if root.find("mac") is None:  # where libvirt writes it: after <bridge> and <mtu>
                after = [index for index, child in enumerate(root) if child.tag in ("name", "uuid", "metadata", "forward", "bridge", "mtu")]
                root.insert(max(after) + 1, ET.Element("mac", address=next(self._macs)))

    def networkCreateXML(self, xml):  # noqa: N802
        self._enter("networkCreateXML", xml)
        network = FakeNetwork(self, xml, active=True, persistent=False)
        self.networks[network.name()] = network
        return network

    def listAllNetworks(self, flags=0):  # noqa: N802
        self._enter("listAllNetworks", flags)
        return list(self.networks.values())

    def listNetworks(self):  # noqa: N802
        self._enter("listNetworks")
        return [n.name() for n in self.networks.values() if n.active]

    def listDefinedNetworks(self):  # noqa: N802
        self._enter("listDefinedNetworks")
        return [n.name() for n in self.networks.values() if not n.active]


class FakeInterface:
    """A host interface of libvirt's interface driver: ``kind`` is its type (ethernet, bridge, bond, vlan)."""

    def __init__(self, name, kind):
        self._name = name
        self.kind = kind

    def name(self):
        return self._name

    def XMLDesc(self, flags=0):  # noqa: N802
        root = ET.Element("interface", type=self.kind, name=self._name)
        return ET.tostring(root, encoding="unicode")


class FakeLibvirt:
    """Fake hypervisors by URI; ``libvirt.open(uri)`` returns the one added for ``uri`` or fails like libvirt."""

    def __init__(self):
        self.connections = {}
        self.opened = []

    def add(self, uri="qemu:///system", capabilities=KVM_CAPABILITIES, hostname="hv1"):
        conn = FakeConnection(uri, capabilities, hostname)
        self.connections[uri] = conn
        return conn

    def open(self, uri=None):
        self.opened.append(uri)
        if uri not in self.connections:
            raise libvirt_error("VIR_ERR_SYSTEM_ERROR", "Failed to connect socket to '%s': No such file or directory" % uri, "VIR_FROM_RPC",
                                errno.ENOENT)
        return self.connections[uri]
