"""The collection's Molecule scenarios (ansible-native, extensions/molecule/) over the lab."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest

from lab.ansible import ROOT, VENV_BIN, ansible_env

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.mark.parametrize("scenario", ["roles", "tinyproxy", "iperf"])
def test_molecule_scenario(lab, scenario, tmp_path):  # pylint: disable=unused-argument
    # Molecule installs the collection under test into ~/.ansible/collections, where a copy would outlive this
    # run and shadow later changes for ansible-lint: here it goes to a home of its own.
    # ssh's control sockets go to a short path: under that home, the path is too long for a unix socket.
    control_dir = tempfile.mkdtemp(prefix="atv-cp-")
    env = dict(ansible_env(), HOME=str(tmp_path), ANSIBLE_HOME=str(tmp_path / ".ansible"),
               ANSIBLE_SSH_CONTROL_PATH_DIR=control_dir)
    proc = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    shutil.rmtree(control_dir, ignore_errors=True)
    output = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-4000:]
    for action in ("converge", "idempotence", "verify", "destroy"):
        assert "%s: Executed: Successful" % action in output, action
