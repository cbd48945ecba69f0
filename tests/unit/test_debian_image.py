# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parts of the lab's Debian guest image that run without building it: the cache key over its inputs, and the
bytecode cache its Python keeps for the modules Ansible imports from zip files (lab/debian_guest/), run here by a
fresh interpreter as the guest's .pth file loads it."""

from __future__ import annotations

import json
import marshal
import subprocess
import sys
import zipfile

import pytest

from lab import debian_image

KERNEL = ("linux-image-6.1.0-99-amd64", "6.1.999-1")


@pytest.fixture()
def sources(tmp_path, monkeypatch):
    directory = tmp_path / "debian_guest"
    directory.mkdir()
    (directory / "init").write_text("#!/bin/busybox sh\n")
    monkeypatch.setattr(debian_image, "SOURCES", directory)
    return directory


def test_cache_key_follows_every_guest_source_and_the_kernel(sources):
    key = debian_image.cache_key(*KERNEL)
    assert key.startswith("debian-") and key == debian_image.cache_key(*KERNEL)
    assert debian_image.cache_key(KERNEL[0], "6.1.999-2") != key
    (sources / "init").write_text("#!/bin/busybox sh\necho changed\n")
    changed = debian_image.cache_key(*KERNEL)
    assert changed != key
    (sources / "another_file.py").write_text("")
    assert debian_image.cache_key(*KERNEL) not in (key, changed)


def test_cache_key_ignores_bytecode_left_by_tests(sources):
    key = debian_image.cache_key(*KERNEL)
    (sources / "__pycache__").mkdir()
    (sources / "__pycache__" / "atv_zipimport_cache.cpython-311.pyc").write_bytes(b"\x00")
    assert debian_image.cache_key(*KERNEL) == key


IMPORT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import atv_zipimport_cache
atv_zipimport_cache.CACHE_DIR = sys.argv[2]
sys.path.insert(0, sys.argv[3])
import payload
print(json.dumps({"answer": payload.answer(), "filename": payload.answer.__code__.co_filename}))
"""


def import_from_zip(tmp_path, name, source):
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w") as file:
        file.writestr("payload.py", source)
    # -B: the fresh interpreter writes no __pycache__ into the sources.
    proc = subprocess.run([sys.executable, "-B", "-c", IMPORT, str(debian_image.SOURCES), str(tmp_path / "cache"), str(archive)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout), archive


def test_zip_imports_keep_their_bytecode(tmp_path):
    source = "def answer():\n    return 42\n"
    first, archive = import_from_zip(tmp_path, "first.zip", source)
    assert first == {"answer": 42, "filename": str(archive / "payload.py")}
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1

    # The same source from another zip comes from the cache: a planted code object shows it is read, under the
    # name of the file it is imported from now.
    cached[0].write_bytes(marshal.dumps(compile("def answer():\n    return 'from the cache'\n", "elsewhere.py", "exec")))
    second, archive = import_from_zip(tmp_path, "second.zip", source)
    assert second == {"answer": "from the cache", "filename": str(archive / "payload.py")}

    # A changed source is compiled afresh, beside the other.
    third, _archive = import_from_zip(tmp_path, "third.zip", "def answer():\n    return 43\n")
    assert third["answer"] == 43 and len(list((tmp_path / "cache").iterdir())) == 2


@pytest.mark.parametrize("content", [b"", b"\xff not marshal data", marshal.dumps(5)], ids=["empty", "garbage", "not-code"])
def test_a_broken_cache_entry_is_compiled_over(tmp_path, content):
    source = "def answer():\n    return 7\n"
    import_from_zip(tmp_path, "first.zip", source)
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(content)
    again, _archive = import_from_zip(tmp_path, "second.zip", source)
    assert again["answer"] == 7
    assert isinstance(marshal.loads(entry.read_bytes()), type(compile("", "", "exec")))
