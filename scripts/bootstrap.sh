#!/usr/bin/env bash
# Installs everything the collection, its lab and its tests need on Debian 12: Debian packages and a
# virtualenv in .venv with the Python dependencies. Idempotent: a second run only checks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

debian_packages=(
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  dnsmasq-base iproute2 busybox-static cpio gcc libc6-dev python3-dev python3-venv iptables nftables
  conntrack bridge-utils libxml2-utils util-linux kmod xz-utils zstd git shellcheck swtpm swtpm-tools
  openssh-server openssh-client bind9 bind9-utils bind9-dnsutils iperf3 tinyproxy debootstrap dpkg-dev
  netcat-openbsd e2fsprogs
)
missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No init system here: keep package scripts from trying to start services.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
# requirements.txt includes requirements-ee.txt (-r): a change to either reinstalls.
want=$(cat requirements.txt requirements-ee.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip wheel 2> >(grep -v "is ignored" >&2)
  .venv/bin/pip install -q -r requirements.txt 2> >(grep -v "is ignored" >&2)
  echo "$want" >"$stamp"
fi

# The collection is imported as ansible_collections.arctictern.virt by Ansible, pytest and the lab alike.
mkdir -p .collections/ansible_collections/arctictern
ln -sfn ../../.. .collections/ansible_collections/arctictern/virt
echo "bootstrap: ready"
