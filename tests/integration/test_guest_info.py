"""arctictern.virt.guest_info on the site guests (playbooks/site.yml), checked against libvirt read directly."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import libvirt
import pytest

from lab.ansible import run_in

pytestmark = pytest.mark.lab

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def live_domain(lab, host, name):
    """(info(), live XML root, libvirt version) of a guest, read from the root namespace."""
    conn = libvirt.open(lab["hosts"][host]["uri"])
    try:
        dom = conn.lookupByName(name)
        return dom.info(), ET.fromstring(dom.XMLDesc(0)), conn.getLibVersion()
    finally:
        conn.close()


def by_name(result):
    return {guest["name"]: guest for guest in result["guests"]}


def test_lists_the_site_guests_of_a_hypervisor(ansible, site, lab):
    result = ansible.ok("hv1", "guest_info", include_xml=False, check=True)
    assert not result["changed"]
    names = [guest["name"] for guest in result["guests"]]
    assert names == sorted(names) and set(site["hv1"]) <= set(names)
    guests = by_name(result)
    for name in site["hv1"]:
        info, xml, version = live_domain(lab, "hv1", name)
        guest = guests[name]
        assert guest["state"] == "running" and info[0] == libvirt.VIR_DOMAIN_RUNNING
        assert guest["memory_mib"] == info[2] // 1024 == 128 and guest["max_memory_mib"] == info[1] // 1024
        assert guest["vcpus"] == info[3] == 1 and guest["virt_type"] == lab["virt_type"] and guest["persistent"]
        interfaces = xml.findall("devices/interface")
        assert [nic["mac"] for nic in guest["nics"]] == [i.find("mac").get("address") for i in interfaces]
        assert [nic["target"] for nic in guest["nics"]] == [i.find("target").get("dev") for i in interfaces]
    assert [nic["source"] for nic in guests["web-bridged"]["nics"]] == ["lan"]
    nat = guests["web-nat"]["nics"][0]
    assert (nat["source"], nat["type"], nat["mac"]) == ("nat", "network", "52:54:00:a7:64:0a")
    # The NAT guest's address comes from its DHCP lease on the nat network.
    assert nat["addresses"] == ["198.18.100.10/24"] and guests["web-nat"]["addresses"] == ["198.18.100.10"]
    host = result["host"]
    assert host["hostname"] == "hv1" and host["uri"] == "qemu:///system"
    assert host["libvirt_version"] == "%d.%d.%d" % (version // 1000000, version // 1000 % 1000, version % 1000)
    assert lab["virt_type"] in host["virt_types"] and "hvm" in host["os_types"] and host["cpus"] >= 1


def test_one_guest_by_name_with_its_lease_address(ansible, site):
    result = ansible.ok("hv2", "guest_info", name="web-hostonly", address_sources=["lease"], include_xml=True)
    (guest,) = result["guests"]
    assert guest["name"] == "web-hostonly" and guest["state"] == "running"
    assert guest["nics"][0]["source"] == "hostonly" and guest["addresses"] == ["198.18.200.10"]
    assert "<name>web-hostonly</name>" in guest["xml"]
    assert "web-hostonly" in site["hv2"]


def test_state_filter(ansible, site):
    running = by_name(ansible.ok("hv1", "guest_info", state=["running"]))
    assert set(site["hv1"]) <= set(running) and all(guest["state"] == "running" for guest in running.values())
    stopped = by_name(ansible.ok("hv1", "guest_info", state=["shutoff", "paused"]))
    assert not set(site["hv1"]) & set(stopped)
    assert all(guest["state"] in ("shutoff", "paused") for guest in stopped.values())


def test_bridged_guest_address_is_known_once_the_host_talked_to_it(ansible, site):
    """web-bridged has a static address (kernel command line); the hypervisor learns it in its ARP table."""
    assert "web-bridged" in site["hv1"]
    probe = json.loads(run_in("hv1", "-m", "lab.client", "http", "198.18.0.21", "--wait", "30").stdout)
    assert probe["ok"], probe
    (guest,) = ansible.ok("hv1", "guest_info", name="web-bridged", address_sources=["arp"])["guests"]
    assert guest["addresses"] == ["198.18.0.21"], guest


def test_bridged_guest_address_recorded_by_the_guest_module(ansible, site):
    """site.yml records web-bridged's static address with the guest module: known without any traffic."""
    assert "web-bridged" in site["hv1"]
    (guest,) = ansible.ok("hv1", "guest_info", name="web-bridged", address_sources=["metadata"])["guests"]
    assert guest["nics"][0]["addresses"] == ["198.18.0.21/24"] and guest["addresses"] == ["198.18.0.21"], guest


def test_unknown_name_fails(ansible, lab):  # pylint: disable=unused-argument
    result = ansible.module("hv1", "guest_info", name="ti-no-such-guest")
    assert result.get("failed") and "name" in result["msg"] and "ti-no-such-guest" in result["msg"], result
    assert "Traceback" not in json.dumps(result) and "module_stderr" not in result
