"""The arctictern.virt.libvirt inventory plugin over both lab hypervisors (and one that cannot be reached),
through `ansible-inventory --list` as users run it."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from lab.ansible import ROOT, VENV_BIN, ansible_env

pytestmark = pytest.mark.lab


def plain(value):
    """The JSON of ansible-inventory with its untrusted-value markers ({"__ansible_unsafe": x}) taken off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return plain(value["__ansible_unsafe"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def members(listing, group):
    return set(listing.get(group, {}).get("hosts", []))


@pytest.fixture(scope="module")
def listing(site, lab, tmp_path_factory):  # pylint: disable=unused-argument
    config = tmp_path_factory.mktemp("inventory") / "lab.libvirt.yml"
    config.write_text(yaml.safe_dump({
        "plugin": "arctictern.virt.libvirt",
        "uris": [{"uri": lab["hosts"]["hv1"]["uri"], "name": "hv1"},
                 {"uri": lab["hosts"]["hv2"]["uri"], "name": "hv2"},
                 {"uri": "qemu+unix:///system?socket=/run/arctictern-lab/no-such-sock", "name": "hv9"}],
        "connect_timeout": 3,
        "keyed_groups": [{"key": "libvirt_state", "prefix": "st"}],
    }))
    proc = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(config), "--list"], cwd=ROOT,
                          env=ansible_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return plain(json.loads(proc.stdout)), proc.stderr


def test_guests_grouped_by_hypervisor_state_and_network(listing):
    groups, _stderr = listing
    assert {"web-bridged", "web-nat"} <= members(groups, "hypervisor_hv1")
    assert "web-hostonly" in members(groups, "hypervisor_hv2")
    assert not {"web-bridged", "web-nat"} & members(groups, "hypervisor_hv2")
    assert {"web-bridged", "web-nat", "web-hostonly"} <= members(groups, "state_running")
    assert {"web-bridged", "web-nat", "web-hostonly"} <= members(groups, "st_running")
    assert "web-bridged" in members(groups, "network_lan")
    assert members(groups, "network_nat") >= {"web-nat"} and "web-nat" not in members(groups, "network_hostonly")
    assert "web-hostonly" in members(groups, "network_hostonly")


def test_host_variables(listing, lab):
    groups, _stderr = listing
    hostvars = groups["_meta"]["hostvars"]
    nat, hostonly = hostvars["web-nat"], hostvars["web-hostonly"]
    assert nat["ansible_host"] == "198.18.100.10" and nat["libvirt_addresses"] == ["198.18.100.10"]
    assert hostonly["ansible_host"] == "198.18.200.10"
    # A bridged guest has no lease: its static address is the one the guest module recorded.
    assert hostvars["web-bridged"]["ansible_host"] == "198.18.0.21"
    assert (nat["libvirt_name"], nat["libvirt_hypervisor"], nat["libvirt_state"]) == ("web-nat", "hv1", "running")
    assert nat["libvirt_uri"] == lab["hosts"]["hv1"]["uri"] and hostonly["libvirt_uri"] == lab["hosts"]["hv2"]["uri"]
    assert nat["libvirt_nics"][0]["mac"] == "52:54:00:a7:64:0a" and nat["libvirt_nics"][0]["source"] == "nat"
    assert len(nat["libvirt_uuid"]) == 36
    # Nothing from a hypervisor that could not be read.
    assert not any(host.get("libvirt_hypervisor") == "hv9" for host in hostvars.values())


def test_unreachable_hypervisor_is_a_warning(listing):
    groups, stderr = listing
    assert "[WARNING]" in stderr and "hv9" in stderr and "no-such-sock" in stderr, stderr
    assert "hypervisor hv1" not in stderr and "hypervisor hv2" not in stderr, stderr
    assert "hypervisor_hv9" not in groups
