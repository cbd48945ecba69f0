"""playbooks/bandwidth.yml over the lab's Debian guests: iperf3 servers from the iperf role, a measurement each
way between the guests of the two hypervisors, and a report (Markdown matrix, PNG heat map, raw results); a pair
that fails is reported with its cause and does not stop the others."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PAIRS = {("deb1", "deb2"), ("deb2", "deb1")}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def guests(ansible, lab):  # pylint: disable=unused-argument
    proc = ansible.playbook("playbooks/debian_guests.yml")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def report(tmp_path):
    raw = json.loads((tmp_path / "bandwidth.json").read_text())
    return {(pair["source"], pair["destination"]): pair for pair in raw}, (tmp_path / "bandwidth.md").read_text()


def test_every_pair_measured_and_reported(ansible, guests, tmp_path):  # pylint: disable=unused-argument
    proc = ansible.playbook("playbooks/bandwidth.yml", {"bandwidth_report_dir": str(tmp_path), "bandwidth_duration": 2})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    pairs, markdown = report(tmp_path)
    assert set(pairs) == PAIRS, pairs
    assert all(not pair["failed"] and pair["received_bps"] > 0 for pair in pairs.values()), pairs
    # Each measured figure is in the matrix, in Mbit/s: row deb1 has deb2's figure in the deb2 column, and so on.
    for (source, destination), pair in pairs.items():
        row = next(line for line in markdown.splitlines() if line.startswith("| **%s** |" % source))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        column = 1 if destination == "deb1" else 2
        assert float(cells[column]) == pytest.approx(pair["received_bps"] / 1e6, abs=0.051), (row, pair)
    assert (tmp_path / "bandwidth.png").read_bytes().startswith(PNG_MAGIC)


def test_a_failed_pair_is_reported_with_its_cause(ansible, guests, tmp_path):  # pylint: disable=unused-argument
    # Nothing listens on 5999: both pairs fail, the play goes on and the report says why.
    proc = ansible.playbook("playbooks/bandwidth.yml", {
        "bandwidth_report_dir": str(tmp_path), "bandwidth_install_servers": False, "bandwidth_port": 5999})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    pairs, markdown = report(tmp_path)
    assert {key: (pair["failed"], pair["cause"]) for key, pair in pairs.items()} == {
        key: (True, "refused") for key in PAIRS}, pairs
    assert len(re.findall(r"refused", markdown)) >= 2, markdown
    assert (tmp_path / "bandwidth.png").read_bytes().startswith(PNG_MAGIC)
