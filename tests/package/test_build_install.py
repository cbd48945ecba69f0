# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as users install it (issue #7): what the tarball holds and leaves out (galaxy.yml build_ignore),
and that the installed copy alone documents every module, plugin and role and has its playbooks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.arctictern.virt.tests.package.collection import FQCN, ROOT, run

# What the tarball may hold at its top level; anything else new at the repository root must be either shipped on
# purpose (add it here) or left out (galaxy.yml build_ignore).
SHIPPED_TOP_LEVEL = {"FILES.json", "MANIFEST.json", "README.md", "bindep.txt", "requirements-ee.txt",
                     "changelogs", "docs", "inventories", "meta", "playbooks", "plugins", "roles"}
# Release files the tarball may gain later.
MAY_SHIP_TOP_LEVEL = {"CHANGELOG.rst", "CHANGELOG.md", "COPYING", "LICENSE", "LICENSES"}
# Never shipped: the lab and what needs it, the tools that build and check the collection, local state.
NOT_SHIPPED = ("lab/", "benchmarks/", "scripts/", "extensions/", "inventories/lab/", "tests/", ".ci/", ".venv/",
               ".collections/", ".cache/", ".ansible/", ".pytest_cache/", ".git/", "results/", "ansible.cfg",
               "pyproject.toml", "requirements.txt", ".ansible-lint", ".gitignore")
# Directories of the repository shipped whole (bar Python caches).
SHIPPED_TREES = ("plugins", "roles", "playbooks", "meta", "changelogs", "inventories/example")


def _files(tree):
    return sorted(str(path.relative_to(ROOT)) for path in (ROOT / tree).rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc")


def _plugins(kind):
    return sorted(path.stem for path in (ROOT / "plugins" / kind).glob("*.py") if path.stem != "__init__")


MODULES = _plugins("modules")
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "meta" / "argument_specs.yml").is_file())
PLAYBOOKS = sorted(path.stem for path in (ROOT / "playbooks").glob("*.yml"))
DOCUMENTED = ([("module", name) for name in MODULES] + [("inventory", name) for name in _plugins("inventory")]
              + [("filter", name) for name in _plugins("filter")] + [("role", name) for name in ROLES])


def test_the_repository_has_what_the_tests_below_expect():
    # Guards the discovery above: an empty list would make the parametrized tests below vanish silently.
    assert len(MODULES) >= 10 and ROLES == ["guests", "iperf", "networks", "tinyproxy", "wan_migration"], (MODULES, ROLES)
    assert {"site", "migrate_wan", "debian_guests", "bandwidth"} <= set(PLAYBOOKS), PLAYBOOKS
    assert ("inventory", "libvirt") in DOCUMENTED and ("filter", "placement") in DOCUMENTED


def test_tarball_leaves_out_the_lab_and_the_tools(package):
    top_level = {member.split("/", 1)[0] for member in package.members}
    assert top_level - MAY_SHIP_TOP_LEVEL == SHIPPED_TOP_LEVEL, "unexpected: %s, missing: %s" % (
        sorted(top_level - SHIPPED_TOP_LEVEL - MAY_SHIP_TOP_LEVEL), sorted(SHIPPED_TOP_LEVEL - top_level))
    unwanted = [member for member in package.members
                if member.startswith(NOT_SHIPPED) or member.endswith((".png", ".pyc")) or "__pycache__" in member]
    assert not unwanted, unwanted
    # docs: the text, not the benchmarks' figures and data.
    assert {member for member in package.members if member.startswith("docs/")} == {
        str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md")}


def test_tarball_has_every_module_plugin_role_and_playbook(package):
    expected = [path for tree in SHIPPED_TREES for path in _files(tree)]
    assert not set(expected) - set(package.members), sorted(set(expected) - set(package.members))
    for name in MODULES:
        assert "plugins/modules/%s.py" % name in package.members
    for name in PLAYBOOKS:
        assert "playbooks/%s.yml" % name in package.members
    # ansible-builder reads the execution-environment metadata and the files it names from the installed collection.
    metadata = yaml.safe_load((package.installed / "meta" / "execution-environment.yml").read_text())
    for requirements in metadata["dependencies"].values():
        assert requirements in package.members, requirements


def test_manifest_matches_galaxy_yml(package):
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    info = json.loads((package.installed / "MANIFEST.json").read_text())["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == (galaxy["namespace"], galaxy["name"],
                                                                  galaxy["version"])
    assert info["dependencies"] == {}
    assert package.tarball.name == "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])


def test_only_the_installed_copy_is_on_the_collection_path(package):
    proc = run(["ansible-galaxy", "collection", "list", "--format", "json"], package.workdir, package.env)
    assert proc.returncode == 0, proc.stderr
    found = {path: names for path, names in json.loads(proc.stdout).items() if FQCN in names}
    assert list(found) == [str(package.collections_path / "ansible_collections")], found


@pytest.mark.parametrize("kind,name", DOCUMENTED, ids=["%s-%s" % entry for entry in DOCUMENTED])
def test_ansible_doc_renders_from_the_installed_copy(package, kind, name):
    proc = run(["ansible-doc", "-t", kind, "%s.%s" % (FQCN, name)], package.workdir, package.env)
    # ansible-doc exits 0 even for a plugin it cannot find or parse: what it prints tells.
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"\[(WARNING|ERROR)\]", proc.stderr), proc.stderr
    header = proc.stdout.splitlines()[0] if proc.stdout else ""
    # e.g. "> MODULE arctictern.virt.guest (/tmp/.../ansible_collections/arctictern/virt/plugins/modules/guest.py)",
    # "> ROLE: *arctictern.virt.guests* (/tmp/.../ansible_collections/arctictern/virt)"
    expected = r"> %s:? \*?%s\.%s\*? \(%s[/)]" % (kind.upper(), re.escape(FQCN), name, re.escape(str(package.installed)))
    assert re.match(expected, header), header
    text = proc.stdout.lower()
    assert "options" in text, proc.stdout
    if kind != "role":
        assert "examples" in text, proc.stdout


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_playbooks_run_by_name_from_the_installed_copy(package, name):
    proc = run(["ansible-playbook", "--syntax-check", "-i", "localhost,", "%s.%s" % (FQCN, name)], package.workdir,
               package.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "playbook: %s" % (package.installed / "playbooks" / ("%s.yml" % name)) in proc.stdout, proc.stdout


def test_installed_copy_is_byte_for_byte_the_tarball(package):
    proc = run(["ansible-galaxy", "collection", "verify", "--offline", FQCN], package.workdir, package.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Path(package.installed).is_dir()
