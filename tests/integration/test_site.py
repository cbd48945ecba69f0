"""playbooks/site.yml on the lab inventory: it converges, its connectivity checks pass, the Debian guests serve
a proxy the client uses and measure the bandwidth between the hypervisors, and a second run changes nothing.

The second run leaves out the services part (tag services): under TCG it would take two more minutes to show what
is shown already: the idempotence of debian_guests.yml (test_debian_guests) and of the tinyproxy and iperf roles
(their Molecule scenarios)."""

from __future__ import annotations

import re

import pytest

from lab.ansible import recap

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CHECKS = {
    "The bridged guest answers on the LAN": "client",
    "The NAT guest answers through the port forward on its host": "client",
    "The host-only guest cannot be reached from the client": "client",
    "The host-only guest answers its own host": "hv2",
}
SERVICE_CHECKS = {
    "A page of the lab's web server comes through the proxy": "client",
    "A filtered domain is refused by the proxy": "client",
    "Measure from deb1 (on hv1) to deb2 (on hv2)": "deb1",
}
BANDWIDTH = re.compile(r"deb1 \(hv1\) -> deb2 \(hv2\): ([0-9.]+) Mbit/s received")


def task_outcome(stdout, task, host):
    """The status line ('ok', 'changed', 'failed', ...) of ``host`` in the output block of ``task``."""
    block = stdout.split("TASK [%s]" % task, 1)[1].split("\nTASK [", 1)[0].split("\nPLAY ", 1)[0]
    found = re.search(r"^(ok|changed|failed|fatal|skipping): \[%s\]" % re.escape(host), block, re.MULTILINE)
    return found.group(1) if found else block


def test_site_converges_and_is_idempotent(ansible, lab):  # pylint: disable=unused-argument
    first = ansible.playbook("playbooks/site.yml")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    summary = recap(first.stdout)
    assert set(summary) == {"hv1", "hv2", "client", "deb1", "deb2"}, first.stdout[-2000:]
    assert all(failed == unreachable == 0 for _ok, _changed, unreachable, failed in summary.values()), summary
    for task, host in {**CHECKS, **SERVICE_CHECKS}.items():
        assert task_outcome(first.stdout, task, host) == "ok", (task, first.stdout[-4000:])
    # What the Report tasks print: the agents' answers, and the refusal of the host-only guest.
    assert "bridged guest: name=web-bridged" in first.stdout
    assert "NAT guest via 198.18.0.11:8080: name=web-nat" in first.stdout
    assert "host-only guest from hv2: name=web-hostonly" in first.stdout
    assert "host-only guest from the client: unreachable" in first.stdout
    assert "through the proxy at http://198.18.0.31:8888: HTTP 200; blocked.lab.test: refused (403)" in first.stdout
    bandwidth = BANDWIDTH.search(first.stdout)
    assert bandwidth and float(bandwidth.group(1)) > 0, first.stdout[-3000:]
    print("\nsite.yml: deb1 (hv1) -> deb2 (hv2) %s Mbit/s" % bandwidth.group(1))

    second = ansible.playbook("playbooks/site.yml", skip_tags=["services"])
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    again = recap(second.stdout)
    assert {host: counts[1] for host, counts in again.items()} == {"hv1": 0, "hv2": 0, "client": 0}, second.stdout[-4000:]
