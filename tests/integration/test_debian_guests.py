"""The lab's Debian guests (playbooks/debian_guests.yml): booted by arctictern.virt.guest from copy-on-write
overlays on the Debian image the lab builds, Ansible logs into them over SSH, each has its own SSH host key and
machine ID, apt finds the roles' packages in the lab's repository and nothing beyond the lab, and a second run
changes nothing."""

from __future__ import annotations

import time

import pytest

from lab.ansible import recap

pytestmark = [pytest.mark.lab, pytest.mark.slow]

GUESTS = ("deb1", "deb2")


@pytest.fixture(scope="module")
def booted(ansible, lab):  # pylint: disable=unused-argument
    started = time.monotonic()
    proc = ansible.playbook("playbooks/debian_guests.yml")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    print("\ndebian_guests.yml: %.1f s" % (time.monotonic() - started))
    return proc


def shell(ansible, host, command):
    result = ansible.ok(host, "ansible.builtin.shell", cmd=command)
    return result["stdout"]


def test_ansible_logs_into_each_guest_and_each_is_its_own(ansible, booted):  # pylint: disable=unused-argument
    seen = {}
    for host in GUESTS:
        release, hostname, machine_id, host_key = shell(
            ansible, host, "cat /etc/debian_version; hostname; cat /etc/machine-id; "
                           "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").split()
        assert release.startswith("12."), release
        assert hostname == host
        seen[host] = (machine_id, host_key)
    (id1, key1), (id2, key2) = list(seen.values())
    assert id1 != id2 and key1 != key2, seen


def test_apt_installs_from_the_lab_repository_only(ansible, booted, lab):  # pylint: disable=unused-argument
    out = shell(ansible, "deb1", "apt-get update -q >/dev/null && apt-cache policy tinyproxy iperf3 && ip route")
    # Both packages have a candidate, and both come from the lab's repository.
    assert out.count("Candidate:") == 2 and "Candidate: (none)" not in out, out
    assert out.count(lab["web"]["url"].rstrip("/")) >= 2, out
    # The guests reach the LAN and nothing else: no default route out of the lab.
    assert "default" not in out, out


def test_a_second_run_changes_nothing(ansible, booted):  # pylint: disable=unused-argument
    again = ansible.playbook("playbooks/debian_guests.yml")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    changed = {host: counts[1] for host, counts in recap(again.stdout).items()}
    assert changed == {"hv1": 0, "hv2": 0, "deb1": 0, "deb2": 0}, again.stdout[-4000:]
