# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for the get-pip.py that ansible-test downloads from a host this machine cannot reach.

scripts/sanity.sh puts it where ansible-test looks first (~/.ansible/test/cache/get_pip_<version>.py).
ansible-test runs it inside each new, pip-less virtual environment with get-pip's arguments, for example
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``: pip comes from the interpreter's own
ensurepip, then the pinned pip from PyPI.
"""

from __future__ import annotations

import subprocess
import sys

# get-pip.py options that pip install does not know.
GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")


def main():
    status = subprocess.call([sys.executable, "-m", "ensurepip", "--upgrade"], stdout=subprocess.DEVNULL)
    if status == 0:
        args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
        status = subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade"] + args)
    sys.exit(status)


if __name__ == "__main__":
    main()
