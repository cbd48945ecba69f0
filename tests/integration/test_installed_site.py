# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml over the lab from the collection as users install it (issue #7): built with ansible-galaxy,
installed into an empty directory that is the only collection path, run by name (arctictern.virt.site).

The lab inventory needs nothing of the repository's collection: its hosts' interpreters (/run/arctictern-lab/bin/
<host>-python, written by ``python -m lab up``) run the virtualenv's Python inside the host's namespaces without
PYTHONPATH, and its variables come from the lab's state file. What brings the repository in is the environment
lab.ansible gives Ansible (ANSIBLE_CONFIG and ANSIBLE_COLLECTIONS_PATH naming .collections, PYTHONPATH with
.collections): tests/package/collection.py's ``installed_env`` leaves all of it out, and commands run in an empty
directory, away from the repository's ansible.cfg."""

from __future__ import annotations

import pytest

from ansible_collections.arctictern.virt.tests.integration.test_site import CHECKS, recap, task_outcome
from ansible_collections.arctictern.virt.tests.package import collection

pytestmark = [pytest.mark.lab, pytest.mark.slow]

INVENTORY = collection.ROOT / "inventories" / "lab"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(collection directory, environment, working directory) of a fresh build installed on its own."""
    base = tmp_path_factory.mktemp("installed-site")
    tarball = collection.build(base / "dist")
    collections_path = base / "collections"
    installed_dir = collection.install(tarball, collections_path)
    workdir = base / "work"
    workdir.mkdir()
    return installed_dir, collection.installed_env(collections_path), workdir


def test_modules_run_in_lab_hosts_from_the_installed_copy(lab, installed):  # pylint: disable=redefined-outer-name,unused-argument
    installed_dir, env, workdir = installed
    # A read-only module on a hypervisor, through its namespace interpreter; -vvv names the module file used.
    proc = collection.run(["ansible", "hv1", "-i", INVENTORY, "-m", "arctictern.virt.route_info", "-vvv"], workdir, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "Using module file %s" % (installed_dir / "plugins" / "modules" / "route_info.py") in proc.stdout, \
        proc.stdout[-3000:]
    assert "hv1 | SUCCESS" in proc.stdout, proc.stdout[-3000:]


def test_site_converges_from_the_installed_copy(lab, installed):  # pylint: disable=redefined-outer-name,unused-argument
    installed_dir, env, workdir = installed
    # The playbook Ansible resolves by name is the installed one.
    check = collection.run(["ansible-playbook", "--syntax-check", "-i", INVENTORY, "arctictern.virt.site"], workdir, env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "playbook: %s" % (installed_dir / "playbooks" / "site.yml") in check.stdout, check.stdout

    # The services part (Debian guests over SSH, minutes under TCG) runs in test_site; the installed roles it uses
    # are checked by tests/package (ansible-doc of every role).
    proc = collection.run(["ansible-playbook", "-i", INVENTORY, "arctictern.virt.site", "--skip-tags", "services"],
                          workdir, env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = recap(proc.stdout)
    assert set(summary) == {"hv1", "hv2", "client"}, proc.stdout[-2000:]
    assert all(failed == unreachable == 0 for _ok, _changed, unreachable, failed in summary.values()), summary
    for task, host in CHECKS.items():
        assert task_outcome(proc.stdout, task, host) == "ok", (task, proc.stdout[-4000:])
    assert "bridged guest: name=web-bridged" in proc.stdout
    assert "NAT guest via 198.18.0.11:8080: name=web-nat" in proc.stdout
    assert "host-only guest from hv2: name=web-hostonly" in proc.stdout
    assert "host-only guest from the client: unreachable" in proc.stdout
