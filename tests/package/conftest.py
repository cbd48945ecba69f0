# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the tests of the collection as users install it (tests/package/collection.py)."""

from __future__ import annotations

import tarfile
import types

import pytest

from ansible_collections.arctictern.virt.tests.package import collection


@pytest.fixture(scope="session")
def package(tmp_path_factory):
    """The collection built from the working tree and installed into an empty directory, once per session.

    ``tarball``, ``members`` (its file names, directories left out), ``collections_path`` (the only collection
    path), ``installed`` (the collection's directory there), ``env`` (for Ansible commands that see only it), and
    ``workdir`` (an empty directory to run them in)."""
    base = tmp_path_factory.mktemp("package")
    tarball = collection.build(base / "dist")
    with tarfile.open(tarball) as archive:
        members = sorted(member.name for member in archive.getmembers() if not member.isdir())
    collections_path = base / "collections"
    installed = collection.install(tarball, collections_path)
    workdir = base / "work"
    workdir.mkdir()
    return types.SimpleNamespace(tarball=tarball, members=members, collections_path=collections_path,
                                 installed=installed, env=collection.installed_env(collections_path), workdir=workdir)
