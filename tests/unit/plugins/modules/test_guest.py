# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest module against the fake libvirt: states, idempotence, check mode, diff, bad input, stability."""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET

import libvirt
import pytest
from ansible.module_utils import basic

from ansible_collections.arctictern.virt.plugins.module_utils import _domain as domains
from ansible_collections.arctictern.virt.plugins.module_utils import _domain_xml as domain_xml
from ansible_collections.arctictern.virt.plugins.modules import guest
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import (
    QEMU_CAPABILITIES, XEN_CAPABILITIES, FakeAgent, FakeDomain, libvirt_error,
)
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson
from ansible_collections.arctictern.virt.tests.unit.xml_compare import canonical

HOSTILE = "evil<name>&\"'"


@pytest.fixture
def host(fake_conn):
    fake_conn.add_network("default")
    fake_conn.add_network("lab", bridge="virbr1")
    return fake_conn


@pytest.fixture
def no_sleep(monkeypatch):
    class Clock:
        now = 0.0

        def monotonic(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    monkeypatch.setattr(domains, "time", Clock())


def args(**overrides):
    base = dict(name="web1", memory=512, vcpus=2, disks=[dict(path="/var/lib/libvirt/images/web1.qcow2")],
                nics=[dict(network="default")])
    base.update(overrides)
    return base


def defined_root(conn, name="web1"):
    return ET.fromstring(conn.domains[name].XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def fail(run_module, params, **kwargs):
    with pytest.raises(AnsibleFailJson) as error:
        run_module(guest.main, params, **kwargs)
    return error.value.result


# --- create and idempotence ----------------------------------------------------------------------------------

def test_create_running_then_nothing_to_do(host, run_module):
    result = run_module(guest.main, args(state="running"))
    assert result["changed"] is True and result["restart_needed"] is False
    domain = host.domains["web1"]
    assert domain.current_state() == "running"
    info = result["guest"]
    assert (info["name"], info["state"], info["memory"], info["vcpus"], info["virt_type"]) == ("web1", "running", 512, 2, "kvm")
    assert info["uuid"] == domain.UUIDString()
    assert info["nics"] == [{"mac": domains.stable_mac("web1", 0), "network": "default", "model": "virtio", "addresses": []}]
    assert result["xml"] == domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    again = run_module(guest.main, args(state="running"))
    assert again["changed"] is False and again["changes"] == [] and again["restart_needed"] is False
    assert host.called("defineXML") == 1 and domain.called("create") == 1
    assert again["guest"] == info


@pytest.mark.parametrize("uri, caps, extra, virt_type", [
    ("qemu:///system", None, {}, "kvm"),
    ("qemu:///system", QEMU_CAPABILITIES, {}, "qemu"),
    ("xen:///system", XEN_CAPABILITIES, {"kernel": "/boot/vmlinuz", "nics": [dict(bridge="xenbr0")]}, "xen"),
    ("xen:///system", XEN_CAPABILITIES, {"nics": [dict(bridge="xenbr0")], "machine": "xenfv"}, "xen"),
])
def test_hypervisor_auto_detection_and_idempotence(fake_libvirt, run_module, uri, caps, extra, virt_type):
    conn = fake_libvirt.add(uri, **({"capabilities": caps} if caps else {}))
    conn.add_network("default")
    params = args(uri=uri, **extra)
    result = run_module(guest.main, params)
    assert result["changed"] and result["guest"]["virt_type"] == virt_type
    root = ET.fromstring(conn.domains["web1"].xml)
    assert root.get("type") == virt_type
    if virt_type == "qemu":
        assert root.findtext("cpu/model") == "qemu64"
    if virt_type == "kvm":
        assert root.find("cpu").get("mode") == "host-model"
    if uri.startswith("xen"):
        assert root.findtext("os/type") == ("linux" if "kernel" in extra else "hvm")
        assert [t.get("dev") for t in root.iter("target") if t.get("dev")] == ["xvda"]
    assert run_module(guest.main, params)["changed"] is False


def test_check_mode_creates_nothing_but_reports(host, run_module):
    result = run_module(guest.main, args(state="running", autostart=True), check_mode=True, diff=True)
    assert result["changed"] is True
    assert not host.domains and host.called("defineXML") == 0
    assert result["guest"]["state"] == "running" and result["guest"]["uuid"] is None
    assert result["guest"]["nics"][0]["mac"] == domains.stable_mac("web1", 0)
    assert result["diff"]["before"] == "" and "<name>web1</name>" in result["diff"]["after"]
    assert result["xml"] == result["diff"]["after"]


def test_second_host_gives_the_same_macs(fake_libvirt, run_module):
    macs = []
    for uri in ("qemu:///system", "qemu+ssh://root@hv2/system"):
        conn = fake_libvirt.add(uri)
        conn.add_network("default")
        result = run_module(guest.main, args(uri=uri, nics=[dict(network="default"), dict(bridge="br0")]))
        macs.append([nic["mac"] for nic in result["guest"]["nics"]])
    assert macs[0] == macs[1] == [domains.stable_mac("web1", 0), domains.stable_mac("web1", 1)]


# --- updates ----------------------------------------------------------------------------------------------------

def test_update_running_guest_keeps_uuid_macs_addresses_and_asks_for_restart(host, run_module):
    host.add_domain(domain_xml.render_xml(domains.spec_from_options(args(nics=[dict(network="default", mac="52:54:00:0a:0b:0c")]), "kvm")),
                    state="running")
    domain = host.domains["web1"]
    defined_before = domain.xml
    before = domain_xml.spec_from_xml(defined_before)
    live = domain.XMLDesc(0)
    result = run_module(guest.main, args(memory=1024, nics=[dict(network="default"), dict(network="lab")]), diff=True)
    assert result["changed"] and result["restart_needed"] is True
    assert result["changes"] == ["memory", "nics"]
    after = domain_xml.spec_from_xml(domain.xml)
    assert after.uuid == before.uuid and after.memory_mib == 1024
    assert after.nics[0].mac == "52:54:00:0a:0b:0c"
    old_root, new_root = ET.fromstring(defined_before), ET.fromstring(domain.xml)
    assert new_root.find("devices/interface/address").attrib == old_root.find("devices/interface/address").attrib
    assert new_root.find("devices/disk/address").attrib == old_root.find("devices/disk/address").attrib
    assert after.nics[1].mac == domains.stable_mac("web1", 1)
    # The running guest is untouched until its next boot.
    assert domain.XMLDesc(0) == live and domain.current_state() == "running"
    assert "524288" in result["diff"]["before"] and "1048576" in result["diff"]["after"]
    assert (result["diff"]["before_header"], result["diff"]["after_header"]) == ("guest web1 (defined)", "guest web1 (wanted)")
    assert run_module(guest.main, args(memory=1024, nics=[dict(network="default"), dict(network="lab")]))["changed"] is False


def test_recorded_addresses_of_a_running_guest_change_live_without_a_restart(host, run_module):
    run_module(guest.main, args(state="running", nics=[dict(network="default", addresses=["192.168.122.10/24"])]))
    domain = host.domains["web1"]
    mac = domains.stable_mac("web1", 0)
    assert domain_xml.metadata_addresses(ET.fromstring(domain.XMLDesc(0))) == [(mac, "192.168.122.10/24")]
    moved = args(state="running", nics=[dict(network="default", addresses=["192.168.122.11/24"])])
    preview = run_module(guest.main, moved, check_mode=True)
    assert preview["changed"] and preview["changes"] == ["nics[].addresses"] and host.called("setMetadata") == 0
    result = run_module(guest.main, moved)
    assert result["changed"] and result["changes"] == ["nics[].addresses"] and result["restart_needed"] is False
    assert result["guest"]["nics"][0]["addresses"] == ["192.168.122.11/24"]
    for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):  # the live guest and its definition agree
        assert domain_xml.metadata_addresses(ET.fromstring(domain.XMLDesc(flags))) == [(mac, "192.168.122.11/24")]
    # Left out, the addresses stay; an empty list removes them from both.
    assert run_module(guest.main, args(state="running", nics=[dict(network="default")]))["changed"] is False
    run_module(guest.main, args(state="running", nics=[dict(network="default", addresses=[])]))
    assert domain_xml.metadata_addresses(ET.fromstring(domain.XMLDesc(0))) == []
    assert domain_xml.metadata_addresses(ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))) == []


def test_update_of_a_stopped_guest_needs_no_restart(host, run_module):
    run_module(guest.main, args())
    result = run_module(guest.main, args(vcpus=4))
    assert result["changed"] and result["changes"] == ["vcpus"] and result["restart_needed"] is False
    assert defined_root(host).findtext("vcpu") == "4"


def test_check_mode_update_changes_nothing(host, run_module):
    run_module(guest.main, args())
    xml = host.domains["web1"].xml
    result = run_module(guest.main, args(memory=2048), check_mode=True, diff=True)
    assert result["changed"] and result["changes"] == ["memory"]
    assert host.domains["web1"].xml == xml and host.called("defineXML") == 1
    assert result["guest"]["memory"] == 2048 and "2097152" in result["xml"]


def test_only_name_starts_an_existing_guest_without_redefining(host, run_module):
    run_module(guest.main, args(memory=2048))
    xml = host.domains["web1"].xml
    result = run_module(guest.main, dict(name="web1", state="running"))
    assert result["changed"] and result["guest"]["state"] == "running" and result["guest"]["memory"] == 2048
    assert host.domains["web1"].xml == xml and host.called("defineXML") == 1
    assert host.called("getCapabilities") == 1


def test_machine_alias_is_idempotent(host, run_module):
    result = run_module(guest.main, args(machine="q35"))
    assert defined_root(host).find("os/type").get("machine") == "pc-q35-7.2"
    assert result["changed"]
    assert run_module(guest.main, args(machine="q35"))["changed"] is False


def test_hostile_name_round_trips(host, run_module):
    result = run_module(guest.main, args(name=HOSTILE))
    domain = host.domains[HOSTILE]
    root = ET.fromstring(domain.xml)
    assert [e.text for e in root.iter("name")] == [HOSTILE]
    assert result["guest"]["name"] == HOSTILE
    assert run_module(guest.main, args(name=HOSTILE))["changed"] is False


# --- power states ----------------------------------------------------------------------------------------------

def test_paused_then_running(host, run_module):
    result = run_module(guest.main, args(state="paused"))
    domain = host.domains["web1"]
    assert result["changed"] and domain.current_state() == "paused" and result["guest"]["state"] == "paused"
    assert run_module(guest.main, dict(name="web1", state="paused"))["changed"] is False
    result = run_module(guest.main, dict(name="web1", state="running"))
    assert result["changed"] and domain.current_state() == "running" and domain.called("resume") == 1


def test_shutdown_graceful(host, run_module, no_sleep):
    run_module(guest.main, args(state="running"))
    domain = host.domains["web1"]
    domain.shutdown_after = 2
    result = run_module(guest.main, dict(name="web1", state="shutdown"))
    assert result["changed"] and result["guest"]["state"] == "shutoff"
    assert domain.called("shutdown") == 1 and domain.called("destroy") == 0
    assert run_module(guest.main, dict(name="web1", state="shutdown"))["changed"] is False


def test_shutdown_timeout_fails_clearly_without_force(host, run_module, no_sleep):
    run_module(guest.main, args(state="running"))
    domain = host.domains["web1"]
    domain.shutdown_after = None
    result = fail(run_module, dict(name="web1", state="shutdown", shutdown_timeout=30))
    assert result["msg"].startswith("shutdown_timeout: guest 'web1' did not shut down within 30 seconds")
    assert "still running" in result["msg"]
    assert domain.current_state() == "running" and domain.called("destroy") == 0


def test_shutdown_timeout_with_force_powers_off(host, run_module, no_sleep, monkeypatch):
    run_module(guest.main, args(state="running"))
    domain = host.domains["web1"]
    domain.shutdown_after = None
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda _module, text: warnings.append(text))
    result = run_module(guest.main, dict(name="web1", state="shutdown", shutdown_timeout=30, force=True))
    assert result["changed"] and domain.current_state() == "shutoff" and domain.called("destroy") == 1
    assert warnings and "powered off" in warnings[0]


def test_destroyed_keeps_the_definition(host, run_module):
    run_module(guest.main, args(state="running"))
    result = run_module(guest.main, dict(name="web1", state="destroyed"))
    assert result["changed"] and host.domains["web1"].current_state() == "shutoff"
    assert "web1" in host.domains and host.domains["web1"].called("shutdown") == 0
    assert run_module(guest.main, dict(name="web1", state="destroyed"))["changed"] is False


def test_check_mode_power_changes_nothing(host, run_module):
    run_module(guest.main, args(state="running"))
    domain = host.domains["web1"]
    for state in ("shutdown", "destroyed", "paused", "absent"):
        result = run_module(guest.main, dict(name="web1", state=state), check_mode=True)
        assert result["changed"], state
    assert domain.current_state() == "running" and "web1" in host.domains
    assert domain.called("destroy") == domain.called("shutdown") == domain.called("suspend") == 0


def test_absent_powers_off_and_undefines_but_keeps_disks(host, run_module, tmp_path):
    disk = tmp_path / "web1.qcow2"
    disk.write_text("image")
    run_module(guest.main, args(state="running", disks=[dict(path=str(disk))]))
    domain = host.domains["web1"]
    result = run_module(guest.main, dict(name="web1", state="absent"), diff=True)
    assert result["changed"] and result["guest"] == {"name": "web1", "state": "absent"}
    assert "web1" not in host.domains and domain.called("destroy") == 1
    assert domain.undefined_with & libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    assert domain.undefined_with & libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    assert domain.undefined_with & libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    assert disk.read_text() == "image"
    assert result["diff"]["after"] == "" and "<name>web1</name>" in result["diff"]["before"]
    assert (result["diff"]["before_header"], result["diff"]["after_header"]) == ("guest web1 (defined)", "guest web1 (removed)")
    assert run_module(guest.main, dict(name="web1", state="absent"))["changed"] is False


def test_absent_on_xen_uses_the_flags_libxl_takes(fake_libvirt, run_module):
    conn = fake_libvirt.add("xen:///system", XEN_CAPABILITIES)
    run_module(guest.main, args(uri="xen:///system", kernel="/boot/k", nics=[dict(bridge="xenbr0")]))
    domain = conn.domains["web1"]
    run_module(guest.main, dict(name="web1", uri="xen:///system", state="absent"))
    assert not conn.domains and domain.undefined_with == libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE


def test_absent_transient_guest_is_only_destroyed(host, run_module):
    host.createXML(domain_xml.render_xml(domains.spec_from_options(args(), "kvm")))
    result = run_module(guest.main, dict(name="web1", state="absent"))
    assert result["changed"] and not host.domains and host.called("createXML") == 1


def test_autostart(host, run_module):
    run_module(guest.main, args(autostart=True))
    domain = host.domains["web1"]
    assert domain.autostart() == 1
    result = run_module(guest.main, dict(name="web1", autostart=True))
    assert result["changed"] is False and result["guest"]["autostart"] is True
    result = run_module(guest.main, dict(name="web1", autostart=False))
    assert result["changed"] and domain.autostart() == 0 and domain.called("setAutostart") == 2


# --- disks --------------------------------------------------------------------------------------------------------

@pytest.fixture
def qemu_img(monkeypatch):
    commands = []

    def run_command(_module, argv, **_kwargs):
        commands.append(argv)
        with open(argv[-1], "w", encoding="utf-8") as image:
            image.write("overlay")
        return 0, "", ""

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda _module, name, **_kw: "/usr/bin/" + name)
    return commands


def test_base_image_overlay_created_once_and_not_in_check_mode(host, run_module, qemu_img, tmp_path):
    base = tmp_path / "debian.qcow2"
    base.write_text("base")
    overlay = tmp_path / "web1.qcow2"
    params = args(disks=[dict(path=str(overlay), base_image=str(base), base_format="qcow2")])
    result = run_module(guest.main, params, check_mode=True)
    assert result["changed"] and not qemu_img and not overlay.exists()
    run_module(guest.main, params)
    assert qemu_img == [["/usr/bin/qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)]]
    assert overlay.read_text() == "overlay"
    assert run_module(guest.main, params)["changed"] is False and len(qemu_img) == 1


def test_failed_define_removes_the_new_overlay(host, run_module, qemu_img, tmp_path):
    base = tmp_path / "debian.qcow2"
    base.write_text("base")
    overlay = tmp_path / "web1.qcow2"
    host.fail_on["defineXML"] = "unsupported configuration: something"
    result = fail(run_module, args(disks=[dict(path=str(overlay), base_image=str(base), base_format="qcow2")]))
    assert "defining guest 'web1'" in result["msg"] and "unsupported configuration" in result["msg"]
    assert qemu_img and not overlay.exists() and not host.domains


# --- the guest agent channel --------------------------------------------------------------------------------------

AGENT = "org.qemu.guest_agent.0"
SPICE_CHANNEL = "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>"
# An agent channel as libvirt stores it once it gave it a socket and a port on the virtio-serial bus.
ASSIGNED_AGENT_CHANNEL = ("<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web1.agent'/>"
                          "<target type='virtio' name='%s'/>"
                          "<address type='virtio-serial' controller='0' bus='0' port='1'/></channel>" % AGENT)


def channels(conn, name="web1"):
    """The defined guest's channels as canonical trees, in order."""
    return [canonical(channel) for channel in defined_root(conn, name).findall("devices/channel")]


def agent_channels(conn, name="web1"):
    return [channel for channel in defined_root(conn, name).findall("devices/channel")
            if channel.find("target").get("name") == AGENT]


def define_with_channels(conn, *channels, state="shutoff"):
    """web1 as args() defines it, with ``channels`` (XML strings) added to its devices."""
    root = ET.fromstring(domain_xml.render_xml(domains.spec_from_options(args(), "kvm")))
    for channel in channels:
        root.find("devices").append(ET.fromstring(channel))
    return conn.add_domain(ET.tostring(root, encoding="unicode"), state=state)


def test_guest_agent_true_adds_the_channel_and_keeps_what_libvirt_gave_it(host, run_module):
    result = run_module(guest.main, args(guest_agent=True))
    assert result["changed"] and "guest_agent" in result["changes"] and result["guest"]["guest_agent"] is True
    [channel] = agent_channels(host)
    assert channel.get("type") == "unix" and channel.find("source").attrib == {"mode": "bind"}
    assert channel.find("target").attrib == {"type": "virtio", "name": AGENT}
    # libvirt gives the channel a socket path and a virtio-serial port; a second run keeps both and changes nothing.
    domain = host.domains["web1"]
    root = ET.fromstring(domain.xml)
    root.find("devices").remove(root.find("devices/channel"))
    root.find("devices").append(ET.fromstring(ASSIGNED_AGENT_CHANNEL))
    domain.xml = ET.tostring(root, encoding="unicode")
    again = run_module(guest.main, args(guest_agent=True))
    assert again["changed"] is False and again["changes"] == [] and again["guest"]["guest_agent"] is True
    assert domain.xml == ET.tostring(root, encoding="unicode") and host.called("defineXML") == 1
    # Another change redefines the guest; the channel still keeps its path and address.
    run_module(guest.main, args(guest_agent=True, memory=1024))
    [channel] = agent_channels(host)
    assert channel.find("source").get("path") == "/var/lib/libvirt/qemu/channel/target/web1.agent"
    assert channel.find("address").attrib == {"type": "virtio-serial", "controller": "0", "bus": "0", "port": "1"}


def test_guest_agent_true_leaves_exactly_one_channel(host, run_module):
    define_with_channels(host, ASSIGNED_AGENT_CHANNEL, ASSIGNED_AGENT_CHANNEL.replace("port='1'", "port='2'"))
    result = run_module(guest.main, args(guest_agent=True))
    assert result["changed"] and result["changes"] == ["guest_agent"]
    [channel] = agent_channels(host)
    assert channel.find("address").get("port") == "1"
    assert run_module(guest.main, args(guest_agent=True))["changed"] is False


def test_guest_agent_false_removes_only_the_agent_channel(host, run_module):
    own = "<channel type='unix'><source mode='bind' path='/run/web1.own'/><target type='virtio' name='org.example.own.0'/></channel>"
    define_with_channels(host, SPICE_CHANNEL, ASSIGNED_AGENT_CHANNEL, own)
    result = run_module(guest.main, args(guest_agent=False))
    assert result["changed"] and result["changes"] == ["guest_agent"] and result["guest"]["guest_agent"] is False
    assert channels(host) == [canonical(SPICE_CHANNEL), canonical(own)]
    assert run_module(guest.main, args(guest_agent=False))["changed"] is False


def test_guest_agent_left_out_touches_no_channel(host, run_module):
    created = run_module(guest.main, args())
    assert created["guest"]["guest_agent"] is False and "guest_agent" not in created["changes"]
    assert defined_root(host).find("devices/channel") is None
    host.domains.pop("web1")
    define_with_channels(host, SPICE_CHANNEL, ASSIGNED_AGENT_CHANNEL)
    result = run_module(guest.main, args(memory=1024))
    assert result["changes"] == ["memory"] and result["guest"]["guest_agent"] is True
    assert channels(host) == [canonical(SPICE_CHANNEL), canonical(ASSIGNED_AGENT_CHANNEL)]


def test_guest_agent_on_xen_fails_naming_the_option(fake_libvirt, run_module):
    conn = fake_libvirt.add("xen:///system", XEN_CAPABILITIES)
    xen = args(uri="xen:///system", kernel="/boot/vmlinuz", nics=[dict(bridge="xenbr0")])
    result = fail(run_module, dict(xen, guest_agent=True))
    assert result["msg"].startswith("guest_agent: a Xen guest cannot have the QEMU guest agent channel"), result["msg"]
    assert not conn.domains and conn.called("defineXML") == 0
    # false and left out are fine: there is no channel to remove.
    assert run_module(guest.main, xen)["changed"] is True
    assert run_module(guest.main, dict(xen, guest_agent=False))["changed"] is False
    assert fail(run_module, dict(xen, guest_agent=True))["msg"].startswith("guest_agent: ")


def test_guest_agent_check_mode_changes_nothing_and_diff_shows_the_channel(host, run_module):
    define_with_channels(host, SPICE_CHANNEL)
    xml = host.domains["web1"].xml
    result = run_module(guest.main, args(guest_agent=True), check_mode=True, diff=True)
    assert result["changed"] and result["changes"] == ["guest_agent"] and result["guest"]["guest_agent"] is True
    assert host.domains["web1"].xml == xml and host.called("defineXML") == 0
    changed = [line for line in difflib.ndiff(result["diff"]["before"].splitlines(), result["diff"]["after"].splitlines())
               if line[:2] in ("+ ", "- ")]
    assert [line[2:].strip() for line in changed] == [
        '<channel type="unix">', '<source mode="bind" />', '<target type="virtio" name="%s" />' % AGENT, '</channel>']
    assert all(line.startswith("+ ") for line in changed)
    assert result["xml"] == result["diff"]["after"]
    removal = run_module(guest.main, args(guest_agent=False), check_mode=True)
    assert removal["changed"] is False


def test_guest_agent_on_a_running_guest_applies_from_its_next_boot(host, run_module):
    domain = define_with_channels(host, state="running")
    domain.agent = FakeAgent()
    ping = '{"execute":"guest-ping"}'
    result = run_module(guest.main, args(state="running", guest_agent=True))
    assert result["changed"] and result["changes"] == ["guest_agent"] and result["restart_needed"] is True
    with pytest.raises(libvirt.libvirtError, match="QEMU guest agent is not configured"):
        domain.qemuAgentCommand(ping, 5, 0)  # the running guest still has its old definition
    run_module(guest.main, dict(name="web1", state="destroyed"))
    run_module(guest.main, dict(name="web1", state="running"))
    assert domain.qemuAgentCommand(ping, 5, 0) == '{"return": {}}'
    again = run_module(guest.main, args(state="running", guest_agent=True))
    assert again["changed"] is False and again["restart_needed"] is False


# --- bad input ----------------------------------------------------------------------------------------------------

def test_unknown_network_fails_before_anything_is_made(host, run_module, qemu_img, tmp_path):
    base = tmp_path / "debian.qcow2"
    base.write_text("base")
    params = args(state="running", nics=[dict(network="nope")],
                  disks=[dict(path=str(tmp_path / "web1.qcow2"), base_image=str(base), base_format="qcow2")])
    result = fail(run_module, params)
    assert result["msg"].startswith("nics[0].network: there is no libvirt network 'nope'")
    assert not host.domains and host.called("defineXML") == 0 and not qemu_img


@pytest.mark.parametrize("params, prefix", [
    (args(memory=0), "memory: "),
    (args(vcpus=0), "vcpus: "),
    (args(nics=[dict(network="default"), dict(bridge="br0", mac="ff:ff:ff:ff:ff:ff")]), "nics[1].mac: "),
    (args(nics=[dict(network="default", bridge="br0")]), "nics[0]: "),
    (args(nics=[dict(model="virtio")]), "nics[0]: "),
    (args(disks=[]), "disks: "),
    (args(xen_mode="pv"), "xen_mode: "),
    (args(hypervisor="xen"), "hypervisor: "),
    (args(state="shutdown", shutdown_timeout=-1), "shutdown_timeout: "),
    (args(name="a/b"), "name: "),
])
def test_bad_input_fails_naming_the_option(host, run_module, params, prefix):
    result = fail(run_module, params)
    assert result["msg"].startswith(prefix), result["msg"]
    assert not host.domains and host.called("defineXML") == 0


def test_missing_guest_without_definition_fails_clearly(host, run_module):
    for state in ("running", "shutdown", "paused", "destroyed", "present"):
        result = fail(run_module, dict(name="ghost", state=state))
        assert result["msg"].startswith("name: there is no guest 'ghost'"), result["msg"]
    assert not host.domains


def test_unreachable_uri_fails_naming_it(fake_libvirt, run_module):
    result = fail(run_module, args(uri="qemu+ssh://nowhere/system", connect_timeout=2))
    assert result["msg"].startswith("uri: cannot connect to libvirt at 'qemu+ssh://nowhere/system'")


def test_libvirt_error_on_start_is_reported(host, run_module):
    run_module(guest.main, args())
    host.domains["web1"].fail_on["create"] = "network 'default' is not active"
    result = fail(run_module, dict(name="web1", state="running"))
    assert result["msg"] == "starting guest 'web1': network 'default' is not active"


def test_new_guest_that_cannot_start_is_not_kept(host, run_module, monkeypatch, tmp_path):
    """A problem only libvirt's start sees (here: a missing bridge) leaves neither the definition nor the overlay."""
    base, overlay = tmp_path / "base.qcow2", tmp_path / "web1.qcow2"
    base.write_bytes(b"base")

    def create_overlays(_module, _todo):
        overlay.write_bytes(b"qcow2")
        return [str(overlay)]

    def create(_domain):
        raise libvirt_error("VIR_ERR_INTERNAL_ERROR", "Cannot get interface MTU on 'nobr0': No such device")

    monkeypatch.setattr(domains, "missing_overlays", lambda spec: [(str(overlay), str(base), "qcow2")])
    monkeypatch.setattr(domains, "create_overlays", create_overlays)
    monkeypatch.setattr(FakeDomain, "create", create)
    result = fail(run_module, args(state="running", nics=[dict(bridge="nobr0")]))
    assert "No such device" in result["msg"] and "the new guest was not kept" in result["msg"]
    assert "web1" not in host.domains
    assert not overlay.exists() and base.exists()


def test_existing_guest_that_cannot_start_keeps_its_definition(host, run_module):
    run_module(guest.main, args())
    host.domains["web1"].fail_on["create"] = "network 'default' is not active"
    fail(run_module, args(state="running"))
    assert "web1" in host.domains


# --- the real libvirt test driver ---------------------------------------------------------------------------------

def test_module_calls_are_standard_libvirt(run_module):
    """Run the module against libvirt's own in-process test driver (test:///default): real API, real XML parser."""
    keep = libvirt.open("test:///default")  # the driver's state lives while a connection is open
    try:
        params = args(name="arctictern-unit", uri="test:///default", state="running", nics=[dict(bridge="br0")])
        result = run_module(guest.main, params)
        assert result["changed"] and result["guest"]["state"] == "running" and result["guest"]["virt_type"] == "qemu"
        assert run_module(guest.main, params)["changed"] is False
        result = run_module(guest.main, dict(name="arctictern-unit", uri="test:///default", memory=1024))
        assert result["restart_needed"] is True
        assert run_module(guest.main, dict(name="arctictern-unit", uri="test:///default", state="shutdown"))["guest"]["state"] == "shutoff"
        run_module(guest.main, dict(name="arctictern-unit", uri="test:///default", state="absent"))
        assert "arctictern-unit" not in keep.listDefinedDomains()
    finally:
        keep.close()


def test_guest_agent_with_the_real_libvirt_test_driver(run_module):
    """libvirt stores the new channel its own way (without the empty <source>, with a virtio-serial controller):
    a second run still sees it, and false removes it."""
    keep = libvirt.open("test:///default")
    name = "arctictern-agent"
    try:
        params = args(name=name, uri="test:///default", nics=[dict(bridge="br0")], guest_agent=True)
        assert "guest_agent" in run_module(guest.main, params)["changes"]
        root = ET.fromstring(keep.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert [t.get("name") for t in root.findall("devices/channel/target")] == ["org.qemu.guest_agent.0"]
        again = run_module(guest.main, params)
        assert again["changed"] is False and again["guest"]["guest_agent"] is True
        removed = run_module(guest.main, dict(params, guest_agent=False))
        assert removed["changes"] == ["guest_agent"] and removed["guest"]["guest_agent"] is False
        root = ET.fromstring(keep.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert root.find("devices/channel") is None
        assert run_module(guest.main, dict(params, guest_agent=False))["changed"] is False
    finally:
        if name in keep.listDefinedDomains():
            keep.lookupByName(name).undefine()
        keep.close()
