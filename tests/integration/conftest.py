"""Fixtures for tests against the real lab: libvirt daemons in namespaces, real QEMU guests.

Modules run the way users run them: through Ansible, on the lab inventory's hosts."""

from __future__ import annotations

import os
import uuid

import libvirt
import pytest

from lab import lab as lab_control
# client_http and run_in are re-exported for the tests.
from lab.ansible import Ansible, client_http, hypervisors, run_in, where  # noqa: F401  pylint: disable=unused-import
from lab.topology import DEBIAN12, DEBIAN13


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The Molecule scenarios run last, in their file's order. Their destroy steps purge the packages that the roles
    install on the Debian guests; run earlier, they would make site.yml install tinyproxy and iperf3 again (over a
    minute under TCG), while after site.yml their converge finds them installed (site.yml's first run on the fresh
    guests is the roles' install from nothing)."""
    items.sort(key=lambda item: item.path.name == "test_molecule.py")


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
    """Every hypervisor with br0 on its LAN uplink, as site.yml makes it on hv1 and hv2 (with the collection's
    host_bridge)."""
    for host in hypervisors(lab):
        ansible.ok(host, "host_bridge", name="br0", uplink="eth0")
    return {"bridge": "br0", "prefix": 24, "hosts": lab["hosts"]}


# Each hypervisor generation's two hosts, which migrate to each other: (first, other).
PAIRS = {DEBIAN12: ("hv1", "hv2"), DEBIAN13: ("hv3", "hv4")}


@pytest.fixture(scope="module", params=list(PAIRS))
def pair(request, lab):  # pylint: disable=redefined-outer-name
    """One generation's two hypervisors, (first, other). Module-scoped, so pytest runs a module's tests that use it in
    file order on debian12, then all again on debian13; fixtures built on it are built once per generation."""
    hosts = PAIRS[request.param]
    assert {lab["hosts"][name]["generation"] for name in hosts} == {request.param}, "lab.json gives these hosts another generation"
    return hosts


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
        """guest module options for a lab guest: the lab's kernel and initrd, 128 MiB, one NIC on br0 (with its
        static ``address``, ip/prefix, recorded)."""
        cmdline = "console=ttyS0 quiet panic=-1 atv.name=%s atv.ip=%s" % (name, address or "dhcp")
        if nics is None:
            nics = [{"bridge": "br0", "addresses": [address] if address else []}]
        options = dict(name=name, memory=128, vcpus=1, hypervisor=self.lab["virt_type"],
                       kernel=self.lab["image"]["kernel"], initrd=self.lab["image"]["initrd"], cmdline=cmdline,
                       nics=nics,
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
        for _host, name in self.created:
            # A guest may have moved to any hypervisor since: removed with the module where libvirt has it.
            for hypervisor in where(self.lab, name):
                self.ansible.module(hypervisor, "guest", name=name, state="absent")


@pytest.fixture
def guests(ansible, lan, lab):  # pylint: disable=redefined-outer-name,unused-argument
    tracker = Guests(ansible, lab)
    yield tracker
    tracker.cleanup()


@pytest.fixture(scope="module")
def module_guests(ansible, lan, lab):  # pylint: disable=redefined-outer-name,unused-argument
    """Like ``guests``, for guests that several tests of one module share (booting is slow: boot few)."""
    tracker = Guests(ansible, lab)
    yield tracker
    tracker.cleanup()


@pytest.fixture(scope="module")
def pair_guests(ansible, lan, lab, pair):  # pylint: disable=redefined-outer-name,unused-argument
    """Like ``module_guests``, for one generation's run of a module: its guests go when that run ends."""
    tracker = Guests(ansible, lab)
    yield tracker
    tracker.cleanup()


# What playbooks/site.yml (inventories/lab/host_vars) puts on each hypervisor.
SITE_GUESTS = {"hv1": ("web-bridged", "web-nat"), "hv2": ("web-hostonly",)}


def _site_guests_running(lab):  # pylint: disable=redefined-outer-name
    for host, names in SITE_GUESTS.items():
        conn = libvirt.open(lab["hosts"][host]["uri"])
        try:
            running = {dom.name() for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
        finally:
            conn.close()
        if not set(names) <= running:
            return False
    return True


@pytest.fixture(scope="session")
def site(lab, ansible):  # pylint: disable=redefined-outer-name
    """The lab as playbooks/site.yml makes it (networks lan/nat/hostonly, guests web-*); the playbook runs only
    when one of its guests is missing or stopped, without its services part (the Debian guests: minutes under TCG,
    and nothing here needs them). Returns SITE_GUESTS."""
    if not _site_guests_running(lab):
        proc = ansible.playbook("playbooks/site.yml", skip_tags=["services"])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return SITE_GUESTS
