# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/example, as shipped in the tarball: it parses with the installed collection's inventory plugin while
its hypervisors cannot be reached, and gives every hypervisor what playbooks/migrate.yml and evacuate.yml read."""

from __future__ import annotations

import json
import re

import pytest

from ansible_collections.arctictern.virt.tests.package.collection import ROOT, installed_env, run

# Every variable the migration playbooks read from a hypervisor's hostvars (hostvars[target].link_address, ...),
# besides the facts they set themselves (migrate_*, evacuate_*), and what their tasks template directly.
PLAYBOOK_VARIABLES = sorted(
    {name for playbook in ("migrate", "evacuate")
     for name in re.findall(r"hostvars\[[^\]]+\]\.(\w+)", (ROOT / "playbooks" / ("%s.yml" % playbook)).read_text())
     if not name.startswith(("migrate_", "evacuate_"))} | {"libvirt_uri"})


@pytest.fixture(scope="module")
def example(package, tmp_path_factory):
    """(inventory directory, environment, ssh log): the installed copy's example inventory, with an ``ssh`` first on
    PATH that notes its arguments in the log and refuses at once, so that libvirt's qemu+ssh transport fails the way
    an unreachable host does, without looking up or connecting to the example's host names (example.com resolves on
    a connected machine)."""
    fake_bin = tmp_path_factory.mktemp("fake-ssh")
    log = fake_bin / "ssh.log"
    ssh = fake_bin / "ssh"
    ssh.write_text("#!/bin/sh\necho \"$*\" >>'%s'\necho 'ssh: connect to host: Connection refused' >&2\nexit 255\n" % log)
    ssh.chmod(0o755)
    return package.installed / "inventories" / "example", installed_env(package.collections_path, [fake_bin]), log


def test_playbook_variables_are_found():
    assert PLAYBOOK_VARIABLES == ["libvirt_migration_uri", "libvirt_uri", "link_address"], PLAYBOOK_VARIABLES


def test_example_inventory_parses_with_its_hypervisors_unreachable(package, example):
    inventory, env, ssh_log = example
    proc = run(["ansible-inventory", "-i", inventory, "--graph"], package.workdir, env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\|--@hypervisors:\n[ |]+--hv1\n[ |]+--hv2\n", proc.stdout), proc.stdout
    # strict: false (as shipped): each hypervisor the plugin cannot read is a warning, not a failure.
    for alias in ("hv1", "hv2"):
        assert "arctictern.virt.libvirt: skipping hypervisor %s (qemu+ssh://" % alias in proc.stderr, proc.stderr
    # libvirt ran the stand-in ssh, with BatchMode from the URIs' no_tty=1 (its message may or may not reach the
    # warning: libvirt can fail writing to it first).
    calls = ssh_log.read_text()
    assert "BatchMode=yes" in calls and "hv1.example.com" in calls and "hv2.example.com" in calls, calls
    assert "[ERROR]" not in proc.stderr and "Failed to parse" not in proc.stderr, proc.stderr


def test_every_hypervisor_has_what_the_migration_playbooks_read(package, example):
    inventory, env, _ssh_log = example
    proc = run(["ansible-inventory", "-i", inventory, "--list"], package.workdir, env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    hypervisors = listing["hypervisors"]["hosts"]
    assert hypervisors == ["hv1", "hv2"]
    for host in hypervisors:
        hostvars = listing["_meta"]["hostvars"][host]
        assert not set(PLAYBOOK_VARIABLES) - set(hostvars), (host, hostvars)
    # Templated as a play sees them (the debug action runs on the controller: nothing connects).
    proc = run(["ansible", "hypervisors", "-i", inventory, "-m", "ansible.builtin.debug",
                "-a", "msg={{ [libvirt_uri, libvirt_migration_uri, link_address] | to_json }}"],
               package.workdir, env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"qemu:///system", "qemu+ssh://root@hv2.example.com/system", "10.20.0.12"' in proc.stdout.replace(
        '\\"', '"'), proc.stdout
