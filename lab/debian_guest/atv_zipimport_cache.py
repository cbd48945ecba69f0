"""Keeps the bytecode of the modules Python imports from zip files, as __pycache__ keeps that of plain files.

Installed in the lab's Debian image only, loaded by a .pth file. Ansible runs each task as a zip of its module and
module_utils (AnsiballZ), and Python compiles every source it imports from a zip anew and caches nothing: under
TCG that was about 1.2 of the 5.5 seconds of a task. Keyed by Python's bytecode magic and the source's digest, so
a changed source or another Python compiles afresh; a cache that cannot be read or written is passed by.
"""

import _imp
import hashlib
import importlib.util
import marshal
import os
import types
import zipimport

CACHE_DIR = "/var/cache/zipimport-bytecode"
_compile_source = zipimport._compile_source  # pylint: disable=protected-access


def _cached_compile_source(pathname, source):
    path = os.path.join(CACHE_DIR, hashlib.sha256(importlib.util.MAGIC_NUMBER + source).hexdigest())
    try:
        with open(path, "rb") as file:
            code = marshal.load(file)
    except (OSError, EOFError, ValueError, TypeError):
        code = None
    if isinstance(code, types.CodeType):
        # As for a .pyc: the code names the file it is imported from this time.
        _imp._fix_co_filename(code, pathname)  # pylint: disable=protected-access
        return code
    code = _compile_source(pathname, source)
    try:
        os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
        partial = "%s.%d" % (path, os.getpid())
        with open(partial, "wb") as file:
            marshal.dump(code, file)
        os.replace(partial, path)
    except OSError:
        pass
    return code


zipimport._compile_source = _cached_compile_source  # pylint: disable=protected-access
