#!/usr/bin/env bash
# Lints the collection with the tools of .venv: ansible-lint (production profile, settings in .ansible-lint)
# and antsibull-changelog lint (changelogs/fragments/). Runs both, then exits non-zero if either failed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[[ -x .venv/bin/ansible-lint && -e .collections/ansible_collections/arctictern/virt ]] || {
  echo "lint: .venv or .collections missing: run scripts/bootstrap.sh first" >&2
  exit 2
}
export PATH=$root/.venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$root/.collections
start=$SECONDS
failed=()
ansible-lint --nocolor || failed+=(ansible-lint)
antsibull-changelog lint || failed+=("antsibull-changelog lint")
if ((${#failed[@]})); then
  echo "lint: FAILED (${failed[*]}) after $((SECONDS - start))s" >&2
  exit 1
fi
echo "lint: passed (ansible-lint, antsibull-changelog lint) in $((SECONDS - start))s"
