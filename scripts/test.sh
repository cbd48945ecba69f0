#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs everything, then sanity, lint, unit and
# integration tests (real libvirt daemons and QEMU guests in the lab). Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
export PATH="$root/.venv/bin:$PATH" PYTHONPATH="$root/.collections:$root"
started=$(date +%s)
bash scripts/sanity.sh
bash scripts/lint.sh
python -m pytest "$@"
echo "test.sh: whole suite in $(( $(date +%s) - started ))s"
