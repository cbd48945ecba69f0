"""The collection's Molecule scenarios (ansible-native, extensions/molecule/) over the lab.

tinyproxy works on deb1 only and iperf on deb2 and the client: the two run side by side, each mostly waiting on its
own TCG guest (one of the machine's two cores each), after the Debian guests were booted once for both."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest

from lab.ansible import ROOT, VENV_BIN, ansible_env

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SIDE_BY_SIDE = ("tinyproxy", "iperf")


class MoleculeRun:
    """``molecule test -s <scenario>`` started in the background, with a home of its own under ``home``.

    Molecule installs the collection under test into ~/.ansible/collections, where a copy would outlive this run and
    shadow later changes for ansible-lint: hence the home of its own. ssh's control sockets go to a short path: under
    that home, the path is too long for a unix socket. The output goes to a file (two runs side by side would stall
    on full pipes)."""

    def __init__(self, scenario, home):
        self.control_dir = tempfile.mkdtemp(prefix="atv-cp-")
        self.log = home / "molecule.log"
        env = dict(ansible_env(), HOME=str(home), ANSIBLE_HOME=str(home / ".ansible"),
                   ANSIBLE_SSH_CONTROL_PATH_DIR=self.control_dir)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,  # pylint: disable=consider-using-with
                                         stdout=out, stderr=subprocess.STDOUT, text=True)

    def finish(self, timeout=900):
        """(exit code, output without colours) once it ended; killed when it outlasts ``timeout``."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        return self.proc.returncode, re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.control_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def side_by_side(ansible, tmp_path_factory):
    """The runs of SIDE_BY_SIDE, started together once the Debian guests run (each scenario's create finds them up)."""
    booted = ansible.playbook("playbooks/debian_guests.yml")
    assert booted.returncode == 0, booted.stdout[-4000:] + booted.stderr[-2000:]
    runs = {scenario: MoleculeRun(scenario, tmp_path_factory.mktemp(scenario)) for scenario in SIDE_BY_SIDE}
    yield runs
    for run in runs.values():
        run.stop()


@pytest.mark.parametrize("scenario", ["roles", *SIDE_BY_SIDE])
def test_molecule_scenario(lab, request, scenario, tmp_path):  # pylint: disable=unused-argument
    run = request.getfixturevalue("side_by_side")[scenario] if scenario in SIDE_BY_SIDE else MoleculeRun(scenario, tmp_path)
    returncode, output = run.finish()
    assert returncode == 0, output[-4000:]
    for action in ("converge", "idempotence", "verify", "destroy"):
        assert "%s: Executed: Successful" % action in output, action
