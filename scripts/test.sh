#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs everything, then sanity, lint, unit and
# integration tests (real libvirt daemons and QEMU guests in the lab). Extra arguments go to a single pytest run
# (e.g. -m 'not slow', or a test file); without them the suite runs as fast as two cores allow:
#   - sanity and lint side by side (independent; each output shown whole once both are done), and beside them the
#     lab's images and hypervisor root are built (downloads and unpacking, once per machine; cached after);
#   - unit and package tests in two pytest workers, each test file in one worker (files keep their own scratch
#     namespaces), then the lab's integration tests in one process, one at a time (there is one lab).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
export PATH="$root/.venv/bin:$PATH" PYTHONPATH="$root/.collections:$root"
started=$(date +%s)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
bash scripts/sanity.sh >"$logs/sanity" 2>&1 &
sanity=$!
bash scripts/lint.sh >"$logs/lint" 2>&1 &
lint=$!
python -m lab image >"$logs/images" 2>&1 &
images=$!
status=0
wait "$sanity" || status=1
cat "$logs/sanity"
wait "$lint" || status=1
cat "$logs/lint"
wait "$images" || status=1
echo "lab images:" && cat "$logs/images"
((status == 0)) || exit 1
if (($#)); then
  python -m pytest "$@"
else
  python -m pytest -n 2 --dist loadfile tests/unit tests/package
  python -m pytest tests/integration
fi
echo "test.sh: whole suite in $(( $(date +%s) - started ))s"
