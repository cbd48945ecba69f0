# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as users get it: the tarball ``ansible-galaxy collection build`` makes from the repository, installed
with ``ansible-galaxy collection install`` into an empty directory that is then the only collection path.

Shared by tests/package (contents, ansible-doc, the example inventory) and tests/integration/test_installed_site.py
(playbooks/site.yml over the lab from the installed copy).

The repository is reachable as a collection through .collections/ (ansible.cfg, PYTHONPATH of the scripts and of
lab.ansible): ``installed_env`` keeps all of that out, so whatever Ansible finds comes from the installed copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NAMESPACE, NAME = "arctictern", "virt"
FQCN = "%s.%s" % (NAMESPACE, NAME)


def installed_env(collections_path, path_prefix=()):
    """The environment of an Ansible run that sees only the collections under ``collections_path``.

    Every ANSIBLE_* variable of the caller (ANSIBLE_CONFIG, ANSIBLE_COLLECTIONS_PATH of scripts/lint.sh...) and
    PYTHONPATH (.collections in the scripts and the README) are dropped, sys.path is not searched for collections,
    and the commands run in a directory without ansible.cfg (see ``run``). ``path_prefix``: directories put first on
    PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_") and key != "PYTHONPATH"}
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "PATH": os.pathsep.join([*(str(path) for path in path_prefix), str(VENV_BIN), env.get("PATH", "")]),
    })
    return env


def run(argv, cwd, env, timeout=120):
    """Run one of the virtualenv's Ansible commands (``argv[0]`` a name such as ``ansible-doc``) in ``cwd``, which
    must not hold an ansible.cfg: the repository root's would bring .collections back."""
    assert not (Path(cwd) / "ansible.cfg").exists(), cwd
    return subprocess.run([str(VENV_BIN / argv[0]), *(str(arg) for arg in argv[1:])], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def build(output_dir):
    """The tarball of the repository as it is now (working tree, build_ignore of galaxy.yml); returns its path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    proc = run(["ansible-galaxy", "collection", "build", "--output-path", output_dir, ROOT], output_dir,
               installed_env(output_dir / "no-collections"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarballs = sorted(output_dir.glob("%s-%s-*.tar.gz" % (NAMESPACE, NAME)))
    assert len(tarballs) == 1, (tarballs, proc.stdout)
    return tarballs[0]


def install(tarball, collections_path):
    """Install ``tarball`` offline (the collection has no dependencies) under ``collections_path``, which must be
    new or empty; returns the installed collection's directory."""
    collections_path = Path(collections_path)
    collections_path.mkdir(parents=True, exist_ok=True)
    assert not any(collections_path.iterdir()), "not empty: %s" % collections_path
    # The collection path must be the configured one too, or ansible-galaxy finds an installed copy elsewhere
    # (.collections through the repository's ansible.cfg) and installs nothing.
    proc = run(["ansible-galaxy", "collection", "install", "--offline", tarball, "-p", collections_path],
               collections_path, installed_env(collections_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = collections_path / "ansible_collections" / NAMESPACE / NAME
    assert (installed / "MANIFEST.json").is_file(), proc.stdout + proc.stderr
    return installed
