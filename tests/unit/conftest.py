# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared unit-test fixtures: the fake libvirt (fake_libvirt.py) and a module runner (utils.py).

``libvirt.open`` is patched, so code under test goes through the real module_utils._libvirt connection layer.

Fixtures:
  fake_libvirt  registry of fake hypervisors by URI: ``fake_libvirt.add(uri, capabilities=XEN_CAPABILITIES)``
  fake_conn     a KVM host at qemu:///system (the default URI of every module)
  run_module    ``run_module(main, args, check_mode=False, diff=False)`` -> result dict; raises AnsibleFailJson
  scratch_netns ``scratch_netns()`` -> the name of a fresh, empty network namespace (atvtest-c-*), removed with
                everything in it after the test; the netlink tests need root
"""

from __future__ import annotations

import os

import libvirt
import pytest
from ansible.module_utils import basic

from ansible_collections.arctictern.virt.tests.unit import utils
from ansible_collections.arctictern.virt.tests.unit.fake_libvirt import FakeLibvirt
from lab.netlink import create_netns, remove_netns


@pytest.fixture
def fake_libvirt(monkeypatch):
    registry = FakeLibvirt()
    monkeypatch.setattr(libvirt, "open", registry.open)
    monkeypatch.setattr(libvirt, "openReadOnly", registry.open)
    return registry


@pytest.fixture
def fake_conn(fake_libvirt):
    return fake_libvirt.add("qemu:///system")


@pytest.fixture
def run_module(monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", utils.exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", utils.fail_json)
    return utils.run_module


@pytest.fixture
def scratch_netns():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    made = []

    def make():
        name = utils.scratch_netns_name()
        assert create_netns(name)
        made.append(name)
        return name

    yield make
    for name in made:
        remove_netns(name)
