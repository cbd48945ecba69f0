#!/usr/bin/env bash
# Lints the collection with the tools of .venv: ansible-lint (production profile, settings in .ansible-lint),
# antsibull-changelog lint (changelogs/fragments/) and antsibull-docs lint-collection-docs (the DOCUMENTATION,
# EXAMPLES and RETURN of every plugin and the argument specs of the roles, as the Ansible docsite renders them).
# Runs all three, then exits non-zero if any failed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[[ -x .venv/bin/ansible-lint && -x .venv/bin/antsibull-docs && -e .collections/ansible_collections/arctictern/virt ]] || {
  echo "lint: .venv or .collections missing: run scripts/bootstrap.sh first" >&2
  exit 2
}
export PATH=$root/.venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$root/.collections
start=$SECONDS
failed=()
ansible-lint --nocolor || failed+=(ansible-lint)
antsibull-changelog lint || failed+=("antsibull-changelog lint")
# It finds the collection through ANSIBLE_COLLECTIONS_PATH (.collections/ansible_collections/arctictern/virt);
# references to ansible.builtin's plugins and options are checked as well as the collection's own.
antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs dependent . \
  || failed+=("antsibull-docs lint-collection-docs")
if ((${#failed[@]})); then
  echo "lint: FAILED (${failed[*]}) after $((SECONDS - start))s" >&2
  exit 1
fi
echo "lint: passed (ansible-lint, antsibull-changelog lint, antsibull-docs lint-collection-docs) in $((SECONDS - start))s"
