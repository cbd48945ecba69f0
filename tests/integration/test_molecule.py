"""The collection's Molecule scenarios (ansible-native, extensions/molecule/) over the lab."""

from __future__ import annotations

import re
import subprocess

import pytest

from lab.ansible import ROOT, VENV_BIN, ansible_env

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.mark.parametrize("scenario", ["roles"])
def test_molecule_scenario(lab, scenario, tmp_path):  # pylint: disable=unused-argument
    # Molecule installs the collection under test into ~/.ansible/collections, where a copy would outlive this
    # run and shadow later changes for ansible-lint: here it goes to a home of its own.
    env = dict(ansible_env(), HOME=str(tmp_path), ANSIBLE_HOME=str(tmp_path / ".ansible"))
    proc = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    output = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-4000:]
    for action in ("converge", "idempotence", "verify", "destroy"):
        assert "%s: Executed: Successful" % action in output, action
