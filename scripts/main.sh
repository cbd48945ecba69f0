#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs everything, brings the lab up and runs playbooks/site.yml
# over it (networks of all three kinds, a guest on each, connectivity checks from the client), then
# playbooks/migrate_wan.yml (a guest moved from site A to site B, into another subnet, keeping its clients).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
export PATH="$root/.venv/bin:$PATH" PYTHONPATH="$root/.collections:$root"
python -m lab up
ansible-playbook -i inventories/lab playbooks/site.yml "$@"
ansible-playbook -i inventories/lab playbooks/migrate_wan.yml "$@"
