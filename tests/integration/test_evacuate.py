"""playbooks/evacuate.yml against the lab: drain hv1 of two small guests, which must both end on hv2, running the
same (counter continuing, same boot id), with the playbook's report saying where each went.

The play is limited to this test's guests (evacuate_guests): other tests' guests on hv1 stay where they are.
"""

from __future__ import annotations

import os
import re
import time

import libvirt
import pytest

from lab.ansible import client_http, where

pytestmark = [pytest.mark.lab, pytest.mark.slow]
libvirt.registerErrorHandler(lambda _ctx, _error: None, None)


def test_evacuate_hv1(ansible, lab, guests):
    tag = os.urandom(3).hex()
    vms = [guests.boot("hv1", "t-evac-%s-%d" % (tag, index)) for index in (1, 2)]
    before = {vm["name"]: client_http(vm["address"])["answer"] for vm in vms}

    started = time.monotonic()
    proc = ansible.playbook("playbooks/evacuate.yml", {"evacuate": "hv1", "evacuate_guests": [vm["name"] for vm in vms]})
    seconds = time.monotonic() - started
    print("\nevacuate.yml, two guests hv1 -> hv2: %.1f s" % seconds)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]

    for vm in vms:
        reply = client_http(vm["address"])
        assert reply["ok"], "%s does not answer after the evacuation: %s" % (vm["name"], reply)
        assert reply["answer"]["boot"] == before[vm["name"]]["boot"], "%s rebooted" % vm["name"]
        assert int(reply["answer"]["counter"]) > int(before[vm["name"]]["counter"])
        assert where(lab, vm["name"]) == {"hv2": "running"}
        # The report: one line per guest, with the mode, time and downtime of its migration.
        assert re.search(r'"msg": "%s: hv1 -> hv2 \(precopy, \d+ ms, downtime \d+ ms\)"' % re.escape(vm["name"]), proc.stdout), \
            proc.stdout[-3000:]
