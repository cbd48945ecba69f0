# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution-environment metadata (meta/execution-environment.yml, requirements-ee.txt, bindep.txt) parses the way
ansible-builder and bindep read it, and names what the collection needs to build and run libvirt-python."""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import yaml
from bindep.depends import Depends
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# Top-level import names of the third-party packages the collection's plugins use, and their PyPI distributions.
DISTRIBUTIONS = {"libvirt": "libvirt-python", "libvirt_qemu": "libvirt-python", "pyroute2": "pyroute2", "dns": "dnspython", "matplotlib": "matplotlib"}
# Dropped from collections' requirements by ansible-builder (introspect's EXCLUDE_REQUIREMENTS): listing them would
# mean a dev tool slipped in.
BUILDER_EXCLUDES = {"ansible", "ansible-base", "ansible-core", "tox", "pycodestyle", "yamllint", "pylint", "flake8",
                    "pytest", "pytest-xdist", "coverage", "mock", "testinfra", "ansible-lint", "molecule",
                    "galaxy-importer", "voluptuous", "yaml", "pyyaml", "json"}


def metadata():
    return yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())


def requirement_lines(path):
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def ee_requirements():
    return {canonicalize_name(req.name): req for req in map(Requirement, requirement_lines(ROOT / "requirements-ee.txt"))}


@functools.lru_cache(maxsize=None)
def bindep():
    # Parsing with bindep's grammar takes about a second: once.
    return Depends((ROOT / "bindep.txt").read_text())


def bindep_packages(*profiles):
    return {rule[0] for rule in bindep().active_rules(profiles)}


def test_metadata_names_relative_files_that_exist():
    data = metadata()
    assert data["version"] == 1
    assert set(data["dependencies"]) == {"python", "system"}
    assert data["dependencies"] == {"python": "requirements-ee.txt", "system": "bindep.txt"}
    for name in data["dependencies"].values():
        # ansible-builder refuses absolute paths; relative ones are from the collection root.
        assert not Path(name).is_absolute() and (ROOT / name).is_file(), name


def test_python_requirements_are_the_collection_s_own():
    requirements = ee_requirements()
    assert set(requirements) == {"libvirt-python", "pyroute2", "dnspython", "matplotlib"}
    assert not set(requirements) & BUILDER_EXCLUDES
    assert all(req.specifier and not req.url and not req.marker for req in requirements.values()), requirements
    # The development virtualenv installs the same (requirements.txt includes the file).
    assert "-r requirements-ee.txt" in requirement_lines(ROOT / "requirements.txt")


def test_every_third_party_import_of_the_plugins_is_required():
    imported = set()
    for path in (ROOT / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "ansible", "ansible_collections"}
    assert third_party <= set(DISTRIBUTIONS), "third-party imports without a known distribution: %s" % sorted(
        third_party - set(DISTRIBUTIONS))
    assert {DISTRIBUTIONS[name] for name in third_party} <= set(ee_requirements())


def test_bindep_builds_libvirt_python_on_debian_and_rpm_distributions():
    # Build stage (ansible-builder installs the "compile" profile to build wheels): headers, pkg-config, a compiler.
    assert {"libvirt-dev", "pkg-config", "gcc", "python3-dev"} <= bindep_packages("platform:dpkg", "compile")
    assert {"libvirt-devel", "pkgconf-pkg-config", "gcc", "python3-devel"} <= bindep_packages("platform:rpm", "compile")


def test_bindep_run_time_packages_leave_the_build_tools_out():
    # Final image: the libvirt client library, ssh for qemu+ssh:// URIs, qemu-img for disk overlays.
    assert bindep_packages("platform:dpkg") == {"libvirt0", "openssh-client", "qemu-utils"}
    assert bindep_packages("platform:rpm") == {"libvirt-libs", "openssh-clients", "qemu-img"}
