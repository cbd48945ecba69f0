"""Fixtures for tests against the real lab: libvirt daemons in namespaces, real QEMU guests.

Modules run the way users run them: through Ansible, on the lab inventory's hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from lab import lab as lab_control

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def ansible_env():
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", "")),
        "PYTHONPATH": "%s:%s" % (ROOT / ".collections", ROOT),
    })
    return env


class Ansible:
    """Runs collection modules and playbooks over the lab inventory."""

    def module(self, host, module, check=False, diff=False, **args):
        """One module call on one lab host; returns Ansible's result dict (with 'failed' on failure)."""
        with tempfile.TemporaryDirectory() as tree:
            argv = [str(VENV_BIN / "ansible"), host, "-i", str(ROOT / "inventories" / "lab"),
                    "-m", module if "." in module else "arctictern.virt." + module,
                    "-a", json.dumps(args), "--tree", tree]
            argv += ["--check"] if check else []
            argv += ["--diff"] if diff else []
            proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=600,
                                  check=False)
            result_file = Path(tree) / host
            if not result_file.exists():
                raise AssertionError("no result from %s: %s\n%s" % (module, proc.stdout, proc.stderr))
            result = json.loads(result_file.read_text())
        result["_stdout"] = proc.stdout
        return result

    def ok(self, host, module, **kwargs):
        """A module call that must succeed."""
        result = self.module(host, module, **kwargs)
        assert not result.get("failed"), result.get("msg", result)
        return result

    def playbook(self, playbook, extra_vars=None, check=False):
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "lab"), str(playbook)]
        argv += ["-e", json.dumps(extra_vars)] if extra_vars else []
        argv += ["--check"] if check else []
        return subprocess.run(argv, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=1800,
                              check=False)


def run_in(host, *argv, timeout=120):
    """Run a program of the project (python -m ...) inside a lab host's namespaces."""
    state = lab_control.read_state()
    return subprocess.run([state["hosts"][host]["python"], *argv], cwd=ROOT, env=ansible_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def client_http(address, host="client", port=80, path="/", wait=0.0):
    """What the guest's agent answers to a request from a lab host (the client by default)."""
    proc = run_in(host, "-m", "lab.client", "http", address, "--port", str(port), "--path", path,
                  "--wait", str(wait), timeout=wait + 30)
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def lab():
    """The lab, brought up for the session; torn down at the end if this session brought it up."""
    was_up = lab_control.read_state() is not None
    state = lab_control.up(log=lambda *_args: None)
    yield state
    if not was_up and not os.environ.get("ATV_KEEP_LAB"):
        lab_control.down(log=lambda *_args: None)


@pytest.fixture(scope="session")
def ansible(lab):  # pylint: disable=redefined-outer-name,unused-argument
    return Ansible()


@pytest.fixture(scope="session")
def lan(lab, ansible):  # pylint: disable=redefined-outer-name
    """Both hypervisors with br0 on their LAN uplink, as site.yml makes it (with the collection's host_bridge)."""
    for host in ("hv1", "hv2"):
        ansible.ok(host, "host_bridge", name="br0", uplink="eth0")
    return {"bridge": "br0", "prefix": 24, "hosts": lab["hosts"]}


@pytest.fixture
def unique_name():
    return "t-" + uuid.uuid4().hex[:8]


# Guest addresses on the lab LAN; ATV_TEST_ADDRESSES=FIRST-LAST gives concurrent test runs disjoint ranges.
_FIRST, _LAST = (int(part) for part in os.environ.get("ATV_TEST_ADDRESSES", "130-249").split("-"))
_ADDRESSES = iter(range(_FIRST, _LAST + 1))


class Guests:
    """Boots lab guests with the collection's guest module and removes them after the test."""

    def __init__(self, ansible, lab):  # pylint: disable=redefined-outer-name
        self.ansible = ansible
        self.lab = lab
        self.created = []

    def options(self, name, address=None, nics=None, **overrides):
        """guest module options for a lab guest: the lab's kernel and initrd, 128 MiB, one NIC on br0."""
        cmdline = "console=ttyS0 quiet panic=-1 atv.name=%s atv.ip=%s" % (name, address or "dhcp")
        options = dict(name=name, memory=128, vcpus=1, hypervisor=self.lab["virt_type"],
                       kernel=self.lab["image"]["kernel"], initrd=self.lab["image"]["initrd"], cmdline=cmdline,
                       nics=nics if nics is not None else [{"bridge": "br0"}],
                       serial_log="/var/log/libvirt/qemu/%s-serial.log" % name)
        options.update(overrides)
        return options

    def next_address(self):
        return "198.18.0.%d" % next(_ADDRESSES)

    def boot(self, host, name, address=None, wait=True, **overrides):
        """Define and start a guest on the bridged LAN; with ``wait``, until its agent answers the client."""
        address = address or self.next_address()
        options = self.options(name, "%s/24" % address, **overrides)
        self.created.append((host, name))
        result = self.ansible.ok(host, "guest", state="running", **options)
        if wait:
            answer = client_http(address, wait=90)
            assert answer["ok"], "guest %s at %s never answered: %s" % (name, address, answer)
        return {"name": name, "address": address, "result": result, "options": options}

    def forget(self, host, name):
        self.created.remove((host, name))

    def cleanup(self):
        for host, name in self.created:
            for hypervisor in ("hv1", "hv2") if host in ("hv1", "hv2") else (host,):
                self.ansible.module(hypervisor, "guest", name=name, state="absent")


@pytest.fixture
def guests(ansible, lan, lab):  # pylint: disable=redefined-outer-name,unused-argument
    tracker = Guests(ansible, lab)
    yield tracker
    tracker.cleanup()
