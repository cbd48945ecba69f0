"""arctictern.virt.guest against the lab's real libvirt daemons and QEMU (TCG) guests, through Ansible.

One guest, booting from the lab kernel with a copy-on-write disk on a base image, walks the whole state machine
(tests in file order, each bringing the guest to the state it starts from, so one can also run alone); every
step is run twice, checked in check mode where it changes something, and looked at independently with
libvirt-python on the daemon's root socket, guest_info and the guest's agent from the client.

Every test whose outcome a libvirt daemon decides runs on both hypervisor generations, hv1 (Debian 12's libvirt 9,
QEMU 7.2) then hv3 (Debian 13's libvirt 11, QEMU 10); input the module refuses whatever the daemon answers, and
the Xen XML schema check (no daemon at all), are checked once, on hv1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.arctictern.virt.plugins.module_utils import _domain as domains
from ansible_collections.arctictern.virt.plugins.module_utils import _domain_xml as domain_xml
from lab.ansible import client_http

# Where the tests run that no daemon's answer decides (the others run on each generation's first host).
HOST = "hv1"
# ansible-core 2.19 leaves 'failed' out of the --tree result file; the host's summary line still says it.
_FAILED = re.compile(r"\| (FAILED|UNREACHABLE)! =>")
_MIB = 1024


def failed(result):
    return bool(result.get("failed")) or bool(_FAILED.search(result.get("_stdout", "")))


def diff_has(result, sign, text):
    """Whether the --diff shown for the run (the --tree result file has no 'diff') has ``text`` as a line
    removed (sign '-') or added ('+')."""
    pattern = r"^%s\s*%s\s*$" % (re.escape(sign), re.escape(text))
    return re.search(pattern, result["_stdout"], re.MULTILINE) is not None


def run_ok(ansible, module, host, **kwargs):
    result = ansible.module(host, module, **kwargs)
    assert not failed(result), result.get("msg", result)
    return result


def lookup(lab, name, host):
    """The domain on the host's daemon, through a connection of our own (the independent look), or None."""
    conn = libvirt.open(lab["hosts"][host]["uri"])
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def defined_memory_mib(dom):
    return int(ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findtext("memory")) // _MIB


def qemu_img_info(path, force_share=True):
    argv = ["qemu-img", "info", "--output=json"] + (["--force-share"] if force_share else []) + [str(path)]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def validate_domain_xml(tmp_path, xml):
    path = tmp_path / ("domain-%s.xml" % uuid.uuid4().hex[:6])
    path.write_text(xml)
    run = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def file_identity(path):
    stat = os.stat(path)
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class Walker:
    """The guest that walks the state machine, with its task options and what the runs reported."""

    def __init__(self, ansible, lab, tracker, workdir, host):
        self.ansible = ansible
        self.lab = lab
        self.host = host
        self.name = "t-" + uuid.uuid4().hex[:8]
        self.address = tracker.next_address()
        self.base = workdir / "base.qcow2"
        self.overlay = workdir / "overlay.qcow2"
        subprocess.run(["qemu-img", "create", "-f", "qcow2", str(self.base), "64M"], check=True, capture_output=True)
        self.options = tracker.options(self.name, "%s/24" % self.address,
                                       disks=[{"path": str(self.overlay), "base_image": str(self.base)}])
        tracker.created.append((host, self.name))
        self.tracker = tracker
        # (uuid, first MAC) of every run that reported a defined guest: must stay one pair.
        self.identities = set()
        self.last_answer = None

    def run(self, state, check=False, diff=False, **overrides):
        options = dict(self.options, **overrides)
        result = run_ok(self.ansible, "guest", self.host, state=state, check=check, diff=diff, **options)
        guest = result["guest"]
        if guest.get("uuid"):
            self.identities.add((guest["uuid"], guest["nics"][0]["mac"]))
        return result

    def twice(self, state, **overrides):
        """Run a state for real, then again: the second run must change nothing."""
        first = self.run(state, **overrides)
        again = self.run(state, **overrides)
        assert again["changed"] is False, again
        assert again["changes"] == [] and again["restart_needed"] is False, again
        assert again["guest"] == first["guest"], (first["guest"], again["guest"])
        return first

    def domain(self):
        return lookup(self.lab, self.name, self.host)

    def state(self):
        """(state, reason) as libvirt reports it."""
        return tuple(self.domain().state())

    def answer(self, wait=0.0):
        return client_http(self.address, wait=wait)

    def answers(self, wait=90.0):
        answer = self.answer(wait)
        assert answer["ok"], "guest %s at %s does not answer: %s" % (self.name, self.address, answer)
        assert answer["answer"]["name"] == self.name, answer
        self.last_answer = answer["answer"]
        return answer["answer"]

    def bring(self, state):
        """Put the guest in ``state`` (shutoff, running, paused) when an earlier test did not leave it there."""
        dom = self.domain()
        now = dom.state()[0] if dom is not None else None
        if state == "shutoff" and now != libvirt.VIR_DOMAIN_SHUTOFF:
            self.run("destroyed" if dom is not None else "present")
        elif state in ("running", "paused"):
            if now != libvirt.VIR_DOMAIN_RUNNING:
                self.run("running")
            if self.last_answer is None or now != libvirt.VIR_DOMAIN_RUNNING:
                self.answers()
            if state == "paused":
                self.run("paused")


@pytest.fixture(scope="module")
def walker(ansible, lab, pair_guests, pair, tmp_path_factory):
    """One per generation, on its first host."""
    return Walker(ansible, lab, pair_guests, tmp_path_factory.mktemp("walker"), pair[0])


# --- the state machine ------------------------------------------------------------------------------------------

@pytest.mark.lab
def test_check_mode_define_creates_nothing(walker, tmp_path):
    result = walker.run("running", check=True, diff=True)
    assert result["changed"] is True
    assert {"hypervisor", "memory", "kernel", "disks", "nics"} <= set(result["changes"])
    assert result["guest"]["uuid"] is None and result["guest"]["state"] == "running"
    assert "@@ -0,0 " in result["_stdout"] and diff_has(result, "+", "<name>%s</name>" % walker.name)
    assert walker.domain() is None
    assert not walker.overlay.exists(), "check mode created the overlay"
    # What the module would define on this real host is valid libvirt domain XML.
    validate_domain_xml(tmp_path, result["xml"])


@pytest.mark.lab
def test_absent_to_present_defines_with_an_overlay(walker):
    first = walker.twice("present")
    assert first["changed"] is True
    guest = first["guest"]
    assert guest["state"] == "shutoff" and guest["memory"] == 128 and guest["virt_type"] == walker.lab["virt_type"]
    assert re.match(r"^52:54:00(:[0-9a-f]{2}){3}$", guest["nics"][0]["mac"])
    dom = walker.domain()
    assert dom is not None and dom.isPersistent() and not dom.isActive()
    assert dom.UUIDString() == guest["uuid"]
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    # The disk is a qcow2 overlay backed by the base image, made once: the second run left it alone.
    info = json.loads(qemu_img_info(walker.overlay).stdout)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(walker.base), info
    walker.overlay_identity = file_identity(walker.overlay)
    walker.run("present")
    assert file_identity(walker.overlay) == walker.overlay_identity
    # Starting it, in check mode, reports the change and starts nothing.
    check = walker.run("running", check=True)
    assert check["changed"] is True and check["guest"]["state"] == "running"
    assert walker.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


@pytest.mark.lab
@pytest.mark.slow
def test_present_to_running_boots_and_answers(walker, ansible):
    walker.bring("shutoff")
    first = walker.twice("running")
    assert first["changed"] is True and first["guest"]["state"] == "running"
    assert walker.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    answer = walker.answers()
    assert int(answer["counter"]) >= 1
    # QEMU has the overlay open (it holds its write lock), on top of the base.
    assert qemu_img_info(walker.overlay, force_share=False).returncode != 0
    live = ET.fromstring(walker.domain().XMLDesc(0))
    assert [s.get("file") for s in live.findall("devices/disk/source")][:1] == [str(walker.overlay)]
    info = run_ok(ansible, "guest_info", walker.host, name=walker.name)
    (seen,) = info["guests"]
    assert (seen["name"], seen["state"], seen["uuid"]) == (walker.name, "running", first["guest"]["uuid"])
    assert seen["nics"][0]["mac"] == first["guest"]["nics"][0]["mac"]
    if hasattr(walker, "overlay_identity"):
        assert file_identity(walker.overlay)[0] == walker.overlay_identity[0], "the overlay was recreated"


@pytest.mark.lab
@pytest.mark.slow
def test_running_to_paused_stops_answering(walker):
    walker.bring("running")
    check = walker.run("paused", check=True)
    assert check["changed"] is True and check["guest"]["state"] == "paused"
    assert walker.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    walker.answers(wait=10)
    first = walker.twice("paused")
    assert first["changed"] is True and first["guest"]["state"] == "paused"
    assert walker.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert walker.answer()["ok"] is False


@pytest.mark.lab
@pytest.mark.slow
def test_paused_to_running_resumes_the_same_boot(walker):
    walker.bring("paused")
    before = walker.last_answer
    first = walker.twice("running")
    assert first["changed"] is True and first["guest"]["state"] == "running"
    assert walker.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    answer = walker.answers(wait=30)
    assert answer["boot"] == before["boot"], "the guest rebooted instead of resuming"
    assert int(answer["counter"]) > int(before["counter"])


@pytest.mark.lab
@pytest.mark.slow
def test_memory_change_on_running_guest(walker):
    walker.bring("running")
    identity = set(walker.identities)
    check = walker.run("running", check=True, diff=True, memory=160)
    assert check["changed"] is True and check["changes"] == ["memory"]
    assert diff_has(check, "-", '<memory unit="KiB">131072</memory>')
    assert diff_has(check, "+", '<memory unit="KiB">163840</memory>')
    assert not diff_has(check, "-", "<name>%s</name>" % walker.name), "the diff shows more than the change"
    assert defined_memory_mib(walker.domain()) == 128
    walker.options["memory"] = 160
    first = walker.twice("running")
    assert first["changed"] is True and first["restart_needed"] is True and first["changes"] == ["memory"]
    assert first["guest"]["memory"] == 160
    assert walker.identities == identity, "UUID or MAC changed with the redefinition"
    dom = walker.domain()
    # Defined 160 MiB; the running guest keeps its 128 MiB until it boots again.
    assert defined_memory_mib(dom) == 160
    assert dom.info()[1] == 128 * _MIB
    assert walker.answers(wait=10)["boot"] == walker.last_answer["boot"]


def recorded_addresses(dom, flags):
    return domain_xml.metadata_addresses(ET.fromstring(dom.XMLDesc(flags)))


@pytest.mark.lab
def test_recorded_addresses_change_on_a_running_guest_without_a_restart(walker, ansible):
    walker.bring("running")
    mac = ET.fromstring(walker.domain().XMLDesc(0)).find("devices/interface/mac").get("address")
    own = "%s/24" % walker.address
    assert recorded_addresses(walker.domain(), 0) == [(mac, own)]
    extra = dict(walker.options["nics"][0], addresses=[own, "192.0.2.7/24"])
    first = walker.run("running", nics=[extra])
    assert first["changed"] and first["changes"] == ["nics[].addresses"] and first["restart_needed"] is False, first
    dom = walker.domain()
    for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):  # the live guest and its definition agree
        assert recorded_addresses(dom, flags) == [(mac, own), (mac, "192.0.2.7/24")]
    (info,) = run_ok(ansible, "guest_info", walker.host, name=walker.name, address_sources=["metadata"])["guests"]
    assert info["addresses"] == [walker.address, "192.0.2.7"], info
    assert walker.answers(wait=10)["boot"] == walker.last_answer["boot"], "the guest restarted"
    # Back as it was: the task without the extra address.
    again = walker.run("running")
    assert again["changed"] and again["restart_needed"] is False
    assert recorded_addresses(walker.domain(), 0) == [(mac, own)]


@pytest.mark.lab
@pytest.mark.slow
def test_running_to_shutdown_is_graceful(walker):
    walker.bring("running")
    start = time.monotonic()
    first = walker.twice("shutdown", shutdown_timeout=60)
    elapsed = time.monotonic() - start
    assert first["changed"] is True and first["guest"]["state"] == "shutoff"
    # Powered off by the guest on the ACPI request, not pulled.
    assert walker.state() == (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN)
    assert elapsed < 60
    assert "warnings" not in first
    assert walker.answer()["ok"] is False


@pytest.mark.lab
@pytest.mark.slow
def test_running_again_then_destroyed(walker):
    walker.bring("shutoff")
    before = walker.last_answer
    walker.run("running")
    answer = walker.answers()
    if before is not None:
        assert answer["boot"] != before["boot"], "a new boot must have a new boot id"
    # The new boot has the memory last defined (160 MiB, defined while the guest ran, after the memory test).
    assert walker.domain().info()[1] == walker.options["memory"] * _MIB
    first = walker.twice("destroyed")
    assert first["changed"] is True and first["guest"]["state"] == "shutoff"
    assert walker.state() == (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED)
    assert walker.answer()["ok"] is False


@pytest.mark.lab
def test_absent_undefines_and_keeps_files(walker):
    walker.bring("shutoff")
    files = [walker.overlay, walker.base, walker.lab["image"]["kernel"], walker.lab["image"]["initrd"]]
    before = [file_identity(path) for path in files]
    check = run_ok(walker.ansible, "guest", walker.host, check=True, diff=True, name=walker.name, state="absent")
    assert check["changed"] is True and diff_has(check, "-", "<name>%s</name>" % walker.name)
    assert walker.domain() is not None
    first = run_ok(walker.ansible, "guest", walker.host, name=walker.name, state="absent")
    assert first["changed"] is True and first["guest"] == {"name": walker.name, "state": "absent"}
    assert walker.domain() is None
    again = run_ok(walker.ansible, "guest", walker.host, name=walker.name, state="absent")
    assert again["changed"] is False
    assert [file_identity(path) for path in files] == before
    walker.tracker.forget(walker.host, walker.name)
    # Same UUID and MAC from the first definition to the last run.
    assert len(walker.identities) == 1, walker.identities


# --- NICs on a libvirt network, autostart -----------------------------------------------------------------------

def _lab_subnet():
    """A 198.19.N.0/24 of this run's own: N is the first address of ATV_TEST_ADDRESSES (disjoint per engineer)."""
    first = int(os.environ.get("ATV_TEST_ADDRESSES", "130-249").split("-")[0])
    return "198.19.%d" % first


def _leased_addresses(dom):
    try:
        interfaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
    except libvirt.libvirtError:
        return []
    return [a["addr"] for iface in interfaces.values() for a in (iface.get("addrs") or [])
            if a["type"] == libvirt.VIR_IP_ADDR_TYPE_IPV4]


@pytest.mark.lab
@pytest.mark.slow
def test_nic_on_nat_network_gets_a_lease_and_autostart_round_trip(ansible, lab, pair, guests, unique_name):
    host = pair[0]
    network = "t-net-" + uuid.uuid4().hex[:6]
    subnet = _lab_subnet()
    name = unique_name
    try:
        run_ok(ansible, "network", host, name=network, mode="nat", address="%s.1/24" % subnet,
               dhcp={"start": "%s.100" % subnet, "end": "%s.150" % subnet})
        options = guests.options(name, nics=[{"network": network}])
        guests.created.append((host, name))
        booted = run_ok(ansible, "guest", host, state="running", autostart=True, **options)
        assert booted["guest"]["nics"][0]["network"] == network
        assert booted["guest"]["autostart"] is True
        dom = lookup(lab, name, host)
        assert dom.autostart() == 1
        # autostart alone: nothing else is touched; same value twice is no change, then off and back.
        assert run_ok(ansible, "guest", host, name=name, state="running", autostart=True)["changed"] is False
        off = run_ok(ansible, "guest", host, name=name, autostart=False)
        assert off["changed"] is True and off["changes"] == [] and off["guest"]["autostart"] is False
        assert dom.autostart() == 0 and dom.isActive()
        assert run_ok(ansible, "guest", host, name=name, autostart=False)["changed"] is False

        deadline = time.monotonic() + 60
        while not _leased_addresses(dom) and time.monotonic() < deadline:
            time.sleep(1)
        leased = _leased_addresses(dom)
        assert leased and leased[0].startswith(subnet + "."), "no DHCP lease for %s: %s" % (name, leased)
        info = run_ok(ansible, "guest_info", host, name=name)
        (seen,) = info["guests"]
        assert leased[0] in seen["addresses"], seen
        assert seen["nics"][0]["source"] == network and seen["nics"][0]["type"] == "network"
        # The agent answers the host at the leased address (the NAT bridge is there).
        answer = client_http(leased[0], host=host, wait=30)
        assert answer["ok"] and answer["answer"]["name"] == name, answer
    finally:
        ansible.module(host, "guest", name=name, state="absent")
        if (host, name) in guests.created:
            guests.forget(host, name)
        ansible.module(host, "network", name=network, state="absent")


# --- bad input --------------------------------------------------------------------------------------------------

def _definition(lab, name):
    options = dict(name=name, memory=128, vcpus=1, hypervisor=lab["virt_type"], kernel=lab["image"]["kernel"],
                   initrd=lab["image"]["initrd"], cmdline="console=ttyS0 atv.name=%s" % name, nics=[])
    return options


# (id, overrides of a good definition (None removes the option), words the message must have)
BAD_INPUT = [
    # Refused by the module's own checks, whatever the daemon would say: once, on HOST.
    ("missing-name", {"name": None}, ["name"]),
    ("memory-0", {"memory": 0}, ["memory"]),
    ("memory-string", {"memory": "lots"}, ["memory"]),
    ("vcpus-negative", {"vcpus": -1}, ["vcpus"]),
    ("network-and-bridge", {"nics": [{"network": "t-no-such-net", "bridge": "br0"}]}, ["nics", "network", "bridge"]),
    ("invalid-mac", {"nics": [{"bridge": "br0", "mac": "52:54:00:zz:00:01"}]}, ["mac"]),
    ("unreachable-uri", {"uri": "qemu+unix:///system?socket=/nonexistent/sock"}, ["uri"]),
    ("xen-mode-on-qemu-guest", {"xen_mode": "pv"}, ["xen_mode"]),
]
UNKNOWN_TO_THE_HOST = [
    # Refused on what the daemon answers (its networks, guests, capabilities): on each generation.
    ("unknown-network", {"nics": [{"network": "t-no-such-net"}]}, ["nics", "t-no-such-net"]),
    ("unknown-guest-no-definition", "no-definition", ["name", "NAME"]),
    ("xen-on-qemu-host", {"hypervisor": "xen"}, ["hypervisor", "xen"]),
]


def assert_refused(ansible, lab, host, name, overrides, words):
    """The guest task with ``overrides`` fails with a message that has ``words`` (NAME: the guest's), and defines
    nothing."""
    if overrides == "no-definition":
        args = dict(name=name)
    else:
        args = _definition(lab, name)
        args.update(overrides)
        args = {key: value for key, value in args.items() if value is not None}
    result = ansible.module(host, "guest", state="running", **args)
    assert failed(result), result
    assert "Traceback" not in json.dumps(result)
    for word in words:
        assert word.replace("NAME", name) in result["msg"], (word, result["msg"])
    assert lookup(lab, name, host) is None


@pytest.mark.lab
@pytest.mark.parametrize("overrides, words", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_fails_naming_the_option_and_defines_nothing(ansible, lab, unique_name, overrides, words):
    assert_refused(ansible, lab, HOST, unique_name, overrides, words)


@pytest.mark.lab
@pytest.mark.parametrize("overrides, words", [case[1:] for case in UNKNOWN_TO_THE_HOST],
                         ids=[case[0] for case in UNKNOWN_TO_THE_HOST])
def test_what_the_host_lacks_fails_naming_the_option_and_defines_nothing(ansible, lab, pair, unique_name, overrides,
                                                                         words):
    assert_refused(ansible, lab, pair[0], unique_name, overrides, words)


@pytest.mark.lab
@pytest.mark.parametrize("case", ["missing-bridge", "missing-disk-file"])
def test_new_guest_that_cannot_start_is_not_left_behind(ansible, lab, pair, unique_name, tmp_path, case):
    """Only libvirt knows, at start, that the bridge or disk file is missing: the new guest must not stay defined
    (nor its new overlay) after the task failed."""
    host = pair[0]
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(tmp_path / "base.qcow2"), "16M"], check=True, capture_output=True)
    args = _definition(lab, unique_name)
    if case == "missing-bridge":
        args.update(nics=[{"bridge": "t-nobr0"}], disks=[{"path": str(tmp_path / "o.qcow2"), "base_image": str(tmp_path / "base.qcow2")}])
        named = "t-nobr0"
    else:
        args.update(disks=[{"path": str(tmp_path / "none.qcow2")}])
        named = str(tmp_path / "none.qcow2")
    try:
        result = ansible.module(host, "guest", state="running", **args)
        assert failed(result), result
        assert "Traceback" not in json.dumps(result) and named in result["msg"], result["msg"]
        assert lookup(lab, unique_name, host) is None, "the guest stayed defined after the failed task"
        assert not (tmp_path / "o.qcow2").exists(), "the overlay made for the failed guest stayed"
    finally:
        ansible.module(host, "guest", name=unique_name, state="absent")


@pytest.mark.lab
def test_hostile_name_round_trips(ansible, lab, pair, tmp_path):
    host = pair[0]
    name = "evil<x>&\"'-" + uuid.uuid4().hex[:6]
    try:
        result = run_ok(ansible, "guest", host, state="present", **_definition(lab, name))
        assert result["changed"] is True and result["guest"]["name"] == name
        dom = lookup(lab, name, host)
        assert dom is not None and dom.name() == name
        assert ET.fromstring(dom.XMLDesc(0)).findtext("name") == name
        validate_domain_xml(tmp_path, result["xml"])
        (seen,) = run_ok(ansible, "guest_info", host, name=name)["guests"]
        assert seen["name"] == name
        assert run_ok(ansible, "guest", host, state="present", **_definition(lab, name))["changed"] is False
        gone = run_ok(ansible, "guest", host, name=name, state="absent")
        assert gone["changed"] is True and lookup(lab, name, host) is None
    finally:
        ansible.module(host, "guest", name=name, state="absent")


# --- Xen XML (no Xen host here: rendered and checked against libvirt's schema) -----------------------------------
# The unit tests validate plain PV and HVM definitions; these add hostile strings and several disks and buses.

XEN_CAPABILITIES = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest><os_type>xen</os_type><arch name="x86_64"><domain type="xen"/></arch></guest>
  <guest><os_type>hvm</os_type><arch name="x86_64"><loader>/usr/lib/xen-4.17/boot/hvmloader</loader>
    <domain type="xen"/></arch></guest>
</capabilities>"""


@pytest.mark.parametrize("params", [
    dict(name="evil<x>&\"'", xen_mode="pv", kernel="/boot/vmlinuz-<x>", initrd="/boot/initrd&", cmdline="root=/dev/xvda a='<&>'",
         disks=[{"path": "/images/a&b.qcow2"}, {"path": "/dev/vg0/data", "format": "raw", "readonly": True}],
         nics=[{"bridge": "xenbr0"}, {"network": "net<&>", "mac": "00:16:3E:12:34:56"}], serial_log="/var/log/x<y>.log"),
    dict(name="hvm1", xen_mode="hvm", memory=2048, vcpus=4,
         disks=[{"path": "/images/hvm1.qcow2"}, {"path": "/images/d.raw", "format": "raw", "bus": "sata"},
                {"path": "/images/cd.raw", "format": "raw", "bus": "ide", "readonly": True}],
         nics=[{"bridge": "xenbr0", "model": "e1000"}], serial_log="/var/log/hvm1.log"),
], ids=["pv", "hvm"])
def test_xen_domain_xml_is_schema_valid(tmp_path, params):
    spec = domains.complete_from_host(domains.spec_from_options(params, "xen"), ET.fromstring(XEN_CAPABILITIES))
    xml = domain_xml.render_xml(spec)
    validate_domain_xml(tmp_path, xml)
    root = ET.fromstring(xml)
    assert root.get("type") == "xen" and root.findtext("name") == params["name"]
    assert root.findtext("os/type") == ("linux" if params["xen_mode"] == "pv" else "hvm")
    assert [t.get("bus") for t in root.findall("devices/disk/target")] == [d.get("bus", "xen") for d in params["disks"]]
    assert domain_xml.spec_from_xml(xml) == spec
