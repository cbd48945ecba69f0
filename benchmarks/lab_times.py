"""Measures the lab: how long it takes to come up (cold and warm), to build the guest image, and for a guest to
boot until its service answers the client, on a bridge (static address) and on a NAT network (DHCP).

    PYTHONPATH=.collections:. .venv/bin/python benchmarks/lab_times.py [--boots N]

Prints a table and writes it into docs/lab.md between the markers, with the machine's acceleration and cores."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import libvirt

from benchmarks.docblock import replace_block
from lab import lab as lab_control
from lab import image as image_module
from lab.ansible import Ansible, client_http

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "lab.md"
BEGIN, END = "<!-- lab-times:begin -->", "<!-- lab-times:end -->"


def timed(func, *args, **kwargs):
    start = time.monotonic()
    result = func(*args, **kwargs)
    return time.monotonic() - start, result


def boot_seconds(ansible, state, host, name, nic, cmdline_ip, probe):
    """Seconds from libvirt starting the guest to its agent answering the client at ``probe`` (address, port)."""
    cmdline = "console=ttyS0 quiet panic=-1 atv.name=%s atv.ip=%s" % (name, cmdline_ip)
    ansible.ok(host, "guest", name=name, state="present", memory=128, hypervisor=state["virt_type"],
               kernel=state["image"]["kernel"], initrd=state["image"]["initrd"], cmdline=cmdline, nics=[nic])
    conn = libvirt.open(state["hosts"][host]["uri"])
    try:
        domain = conn.lookupByName(name)
        start = time.monotonic()
        domain.create()
        answer = client_http(probe[0], port=probe[1], wait=120)
        elapsed = time.monotonic() - start
        if not answer["ok"]:
            raise RuntimeError("guest %s never answered: %s" % (name, answer))
        return elapsed
    finally:
        ansible.module(host, "guest", name=name, state="absent")
        conn.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=3, choices=range(1, 11), help="boots per network kind (1-10)")
    args = parser.parse_args(argv)

    was_up = lab_control.read_state() is not None
    if was_up:
        print("lab is up: measuring a warm 'lab up' only (bring it down first for a cold figure)")
        cold = None
    else:
        cold = timed(lab_control.up, log=lambda *_a: None)[0]
    warm, state = timed(lab_control.up, log=lambda *_a: None)
    with tempfile.TemporaryDirectory() as cache:
        image_module.CACHE_DIR = Path(cache)
        image_build = timed(image_module.ensure_image, log=lambda *_a: None)[0]

    ansible = Ansible()
    # The networks of playbooks/site.yml: br0 and the 'nat' network on hv1.
    site = ansible.playbook(ROOT / "playbooks" / "site.yml")
    if site.returncode:
        sys.exit("site.yml failed:\n" + site.stdout[-3000:])
    # An address per boot: each guest has its own MAC, and a reused address would wait on the client's ARP cache.
    bridged = [boot_seconds(ansible, state, "hv1", "boot-bridge-%d" % i, {"bridge": "br0"}, "198.18.0.%d/24" % (110 + i),
                            ("198.18.0.%d" % (110 + i), 80)) for i in range(args.boots)]
    # A NAT guest answers the client through hv1's port forward to the static lease of site.yml's web-nat, whose
    # MAC the measured guest borrows while web-nat is off.
    ansible.ok("hv1", "guest", name="web-nat", state="destroyed")
    try:
        nat = [boot_seconds(ansible, state, "hv1", "boot-nat-%d" % i, {"network": "nat", "mac": "52:54:00:a7:64:0a"},
                            "dhcp", (state["hosts"]["hv1"]["lan_address"], 8080)) for i in range(args.boots)]
    finally:
        ansible.ok("hv1", "guest", name="web-nat", state="running")
    rows = [
        ("lab up, cold (namespaces, daemons, KVM probe; image cached)", cold),
        ("lab up, warm (already up: checks only)", warm),
        ("guest image build (kernel package download, initramfs)", image_build),
        ("guest boot to answering, bridged, static address (median of %d)" % len(bridged), statistics.median(bridged)),
        ("guest boot to answering through a port forward, NAT network, DHCP (median of %d)" % len(nat),
         statistics.median(nat)),
    ]
    accel = "KVM" if state["virt_type"] == "kvm" else "QEMU TCG (no usable KVM on this machine)"
    lines = ["Measured %s on %d cores, guests under %s, by `PYTHONPATH=.collections:. .venv/bin/python "
             "benchmarks/lab_times.py --boots %d`." % (datetime.date.today(), os.cpu_count(), accel, args.boots), "",
             "| what | seconds |", "| --- | ---: |"]
    lines += ["| %s | %s |" % (what, "-" if value is None else "%.1f" % value) for what, value in rows]
    table = "\n".join(lines)
    print(table)
    print(json.dumps({"bridged": bridged, "nat": nat}))
    replace_block(DOC, BEGIN, END, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
