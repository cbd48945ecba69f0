#!/usr/bin/env bash
# Runs ansible-test sanity over the working tree (committed or not) with the Python of .venv.
# ansible-test only tests a collection that sits at .../ansible_collections/<namespace>/<name> in a git repo,
# and the repo root here is the collection root, so the tracked and untracked-but-not-ignored files are
# copied to .cache/sanity.XXXXXX/ansible_collections/arctictern/virt and committed there; the copy is removed
# afterwards. Extra arguments go to ansible-test, e.g.: scripts/sanity.sh --test pylint
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.venv
# A tree per run, so that concurrent runs do not delete each other's copy.
mkdir -p "$root/.cache"
work=$(mktemp -d "$root/.cache/sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/ansible_collections/arctictern/virt
start=$SECONDS

# ansible-test bootstraps pip in its virtual environments with a get-pip.py it downloads from a host that is
# out of reach here; it takes the script from its cache first, so a stand-in goes there.
pip_version=$("$venv/bin/python" -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="3.11"))["pip"])')
install -D -m 0644 "$root/scripts/ansible_test_pip_bootstrap.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"

mkdir -p "$tree"
# Files deleted but not yet committed as deleted are left out.
(cd "$root" && git ls-files -z -co --exclude-standard --deduplicate \
  | while IFS= read -r -d '' f; do if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi; done \
  | tar -c --null -T - -f -) | tar -x -C "$tree" -f -
git -C "$tree" -c init.defaultBranch=main init -q
git -C "$tree" add -A
git -C "$tree" -c user.name=sanity -c user.email=sanity@localhost -c commit.gpgsign=false commit -q --no-verify -m snapshot

# --python 3.11: otherwise ansible-test tries every Python from 3.8 to 3.13 it can find.
# All other tests run here (none needs Docker); pslint has nothing to check (no PowerShell) and passes.
args=(--local --python 3.11 --color no)
if ! command -v shellcheck >/dev/null; then
  echo "sanity: skipping shellcheck: no shellcheck binary (Debian package shellcheck)" >&2
  args+=(--skip-test shellcheck)
fi
cd "$tree"
status=0
"$venv/bin/ansible-test" sanity "${args[@]}" "$@" || status=$?
# Modules must run on targets with Python 3.9 (tests/config.yml): without extra arguments, compile and import
# are run on pyenv's 3.9 too, its bin first on PATH (pyenv's python3.9 shim is not enabled).
shopt -s nullglob
py39=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9*/bin)
if (($# == 0 && ${#py39[@]})); then
  PATH=${py39[-1]}:$PATH "$venv/bin/ansible-test" sanity --local --python 3.9 --color no --test compile --test import || status=$?
elif (($# == 0)); then
  echo "sanity: no pyenv Python 3.9: compile and import ran on 3.11 only" >&2
fi
if ((status)); then
  echo "sanity: FAILED after $((SECONDS - start))s (details above)" >&2
else
  echo "sanity: passed in $((SECONDS - start))s"
fi
exit "$status"
