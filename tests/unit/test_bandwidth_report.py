# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bandwidth_report with synthetic results (one failed pair, one pair never measured) and real files in tmp_path:
the Markdown matrix, the PNG heat map (read back as an image), changed only when the Markdown differs, check mode,
diff, and bad options failing with the option's name before anything is written. Then playbooks/bandwidth.yml for
real against iperf3 servers in a scratch network namespace (h3-bw), with one host whose server is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from ansible_collections.arctictern.virt.plugins.modules import bandwidth_report
from ansible_collections.arctictern.virt.tests.unit.utils import AnsibleFailJson

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# deb1 <-> deb2 measured, deb2 -> deb3 refused, deb3 never ran (no row of its own), deb1 -> deb3 measured.
RESULTS = [
    dict(source="deb1", destination="deb2", received_bps=941_300_000.0),
    dict(source="deb1", destination="deb3", received_bps=12_345_678.0),
    dict(source="deb2", destination="deb1", received_bps=870_000_000.0),
    dict(source="deb2", destination="deb3", failed=True, cause="refused",
         msg="198.18.0.33:5201 refused the connection | nobody listens"),
]
HOSTS = ["deb1", "deb2", "deb3"]


@pytest.fixture
def report(run_module, tmp_path):
    """``report(check_mode=False, diff=False, **options)``: the module's result, writing under tmp_path/out."""
    def run(check_mode=False, diff=False, **options):
        args = dict(results=RESULTS, hosts=HOSTS, markdown_path=str(tmp_path / "out" / "bandwidth.md"),
                    png_path=str(tmp_path / "out" / "bandwidth.png"))
        args.update(options)
        return run_module(bandwidth_report.main, {key: value for key, value in args.items() if value is not None},
                          check_mode, diff)
    return run


@pytest.fixture
def report_fails(run_module, tmp_path):
    def run(**options):
        args = dict(results=RESULTS, markdown_path=str(tmp_path / "bandwidth.md"))
        args.update(options)
        with pytest.raises(AnsibleFailJson) as failed:
            run_module(bandwidth_report.main, args)
        return failed.value.result
    return run


def table_rows(markdown):
    """{row host: [cell, ...]} of the Markdown table, cells split on unescaped pipes."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| **"):
            cells = [cell.strip() for cell in line.replace("\\|", "\0").strip("|").split("|")]
            rows[cells[0].strip("*")] = [cell.replace("\0", "|") for cell in cells[1:]]
    return rows


def test_markdown_matrix_rows_are_sources_and_columns_destinations(report, tmp_path):
    result = report()
    markdown = (tmp_path / "out" / "bandwidth.md").read_text()
    assert result["changed"] is True
    assert result["markdown"] == markdown
    assert "| from \\ to | deb1 | deb2 | deb3 |" in markdown
    assert table_rows(markdown) == {
        "deb1": ["–", "941.3", "12.3"],
        "deb2": ["870.0", "–", "failed: refused"],
        "deb3": ["not measured", "not measured", "–"],
    }
    # The failure's message is listed with its pipe escaped, so that it cannot break the table.
    assert "- deb2 → deb3: refused: 198.18.0.33:5201 refused the connection \\| nobody listens" in markdown
    assert "Not measured (no result): deb3 → deb1, deb3 → deb2." in markdown
    assert [(pair["source"], pair["destination"], pair["received_mbps"], pair["failed"]) for pair in result["pairs"]] \
        == [("deb1", "deb2", 941.3, False), ("deb1", "deb3", 12.346, False), ("deb2", "deb1", 870.0, False),
            ("deb2", "deb3", None, True)]
    assert [(pair["source"], pair["destination"], pair["cause"]) for pair in result["failed_pairs"]] == [
        ("deb2", "deb3", "refused")]
    assert result["missing_pairs"] == [dict(source="deb3", destination="deb1"), dict(source="deb3", destination="deb2")]


def test_png_is_a_heat_map_of_the_matrix(report, tmp_path):
    import matplotlib.image  # pylint: disable=import-outside-toplevel
    result = report(title="Lab bandwidth")
    png = tmp_path / "out" / "bandwidth.png"
    assert result["png_written"] is True and result["png_path"] == str(png)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    pixels = matplotlib.image.imread(str(png))
    height, width = pixels.shape[:2]
    assert width > 300 and height > 250
    # The failed pair is hatched in red: strongly red pixels exist (viridis has none).
    red = ((pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)).sum()
    assert red > 50, red


def test_same_figures_change_nothing_and_new_ones_change_both_files(report, tmp_path):
    first = report()
    png = tmp_path / "out" / "bandwidth.png"
    drawn = png.stat().st_mtime_ns
    again = report()
    assert (again["changed"], again["png_written"]) == (False, False)
    assert png.stat().st_mtime_ns == drawn
    assert again["markdown"] == first["markdown"]

    changed = report(results=[dict(RESULTS[0], received_bps=500_000_000.0)] + RESULTS[1:])
    assert (changed["changed"], changed["png_written"]) == (True, True)
    assert table_rows((tmp_path / "out" / "bandwidth.md").read_text())["deb1"][1] == "500.0"


def test_a_missing_png_is_drawn_again_alone(report, tmp_path):
    report()
    markdown = tmp_path / "out" / "bandwidth.md"
    written = markdown.stat().st_mtime_ns
    os.unlink(tmp_path / "out" / "bandwidth.png")
    result = report()
    assert (result["changed"], result["png_written"]) == (True, True)
    assert (tmp_path / "out" / "bandwidth.png").exists()
    assert markdown.stat().st_mtime_ns == written


def test_check_mode_predicts_and_writes_nothing_and_diff_shows_the_markdown(report, tmp_path):
    result = report(check_mode=True, diff=True)
    assert (result["changed"], result["png_written"]) == (True, True)
    assert not (tmp_path / "out").exists()
    assert result["diff"]["before"] == ""
    assert result["diff"]["after"] == result["markdown"]
    assert result["diff"]["after_header"] == str(tmp_path / "out" / "bandwidth.md")

    report()
    changed = [dict(RESULTS[0], failed=True, cause="timeout")] + RESULTS[1:]
    predicted = report(check_mode=True, diff=True, results=changed)
    assert predicted["changed"] is True
    assert "| **deb1** | – | 941.3 | 12.3 |" in predicted["diff"]["before"]
    assert "| **deb1** | – | failed: timeout | 12.3 |" in predicted["diff"]["after"]
    assert table_rows((tmp_path / "out" / "bandwidth.md").read_text())["deb1"][1] == "941.3"


def test_markdown_only_without_png_path_needs_no_matplotlib(report, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = report(png_path=None)
    assert result["changed"] is True and result["png_path"] is None and result["png_written"] is False
    assert (tmp_path / "out" / "bandwidth.md").exists()
    assert not (tmp_path / "out" / "bandwidth.png").exists()


def test_without_matplotlib_png_path_fails_naming_it_before_writing(report_fails, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = report_fails(png_path=str(tmp_path / "bandwidth.png"))
    assert result["option"] == "png_path"
    assert result["msg"].startswith("png_path: drawing the heat map needs the Python library matplotlib")
    assert not (tmp_path / "bandwidth.md").exists()


def test_hosts_default_to_the_order_of_the_results(report):
    result = report(hosts=None, results=[RESULTS[3], RESULTS[0]])
    assert table_rows(result["markdown"]) == {
        "deb2": ["–", "failed: refused", "not measured"],
        "deb3": ["not measured", "–", "not measured"],
        "deb1": ["941.3", "not measured", "–"],
    }


def test_no_results_at_all_still_make_a_report(report):
    result = report(results=[], hosts=["deb1"], png_path=None)
    assert table_rows(result["markdown"]) == {"deb1": ["–"]}
    assert result["pairs"] == [] and result["missing_pairs"] == []


@pytest.mark.parametrize("options, option, words", [
    (dict(results=[dict(source="deb1", destination="deb1", received_bps=1.0)]), "results",
     "entry 1: source and destination are both 'deb1'"),
    (dict(results=[RESULTS[0], RESULTS[0]]), "results", "entry 2: deb1 -> deb2 is measured twice (also entry 1)"),
    (dict(results=[dict(source="deb1", destination="deb2")]), "results",
     "entry 1 (deb1 -> deb2): received_bps is needed unless failed is true"),
    (dict(results=[dict(source="deb1", destination="deb2", received_bps=-1.0)]), "results", "0 or more"),
    (dict(results=[dict(source=" ", destination="deb2", received_bps=1.0)]), "results", "source must name a host"),
    (dict(hosts=["deb1"]), "results", "entry 1: destination 'deb2' is not one of hosts (deb1)"),
    (dict(hosts=["deb1", "deb2", "deb1"]), "hosts", "'deb1' appears 2 times"),
    (dict(markdown_path="/"), "markdown_path", "is a directory"),
    (dict(png_path="SAME"), "png_path", "must differ from markdown_path"),
])
def test_bad_options_fail_naming_the_option_and_write_nothing(report_fails, tmp_path, options, option, words):
    if options.get("png_path") == "SAME":
        options["png_path"] = str(tmp_path / "bandwidth.md")
    result = report_fails(**options)
    assert result["option"] == option
    assert result["msg"].startswith("%s: " % option)
    assert words in result["msg"]
    assert not (tmp_path / "bandwidth.md").exists()
    assert not (tmp_path / "bandwidth.png").exists()


# ---------------------------------------------------------------------------------------------------------------------
# playbooks/bandwidth.yml for real, over three local hosts in the scratch namespace h3-bw: each host is one loopback
# address there, bw1 and bw2 with an iperf3 server the test starts (the role needs systemd: the play runs with
# bandwidth_install_servers=false), bw3 without one, so that the pairs to bw3 fail (refused) and the others do not.

NAMESPACE = "h3-bw"
BW_HOSTS = {"bw1": "127.33.0.1", "bw2": "127.33.0.2", "bw3": "127.33.0.3"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def bandwidth_lab(tmp_path):
    """h3-bw with the three addresses, iperf3 servers on bw1's and bw2's, and a Python that runs inside it."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)
    servers = []
    try:
        subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
        subprocess.run(["ip", "-n", NAMESPACE, "link", "set", "lo", "up"], check=True)
        for address in BW_HOSTS.values():
            subprocess.run(["ip", "-n", NAMESPACE, "address", "add", address + "/8", "dev", "lo"], check=True)
        for address in (BW_HOSTS["bw1"], BW_HOSTS["bw2"]):
            servers.append(subprocess.Popen(["ip", "netns", "exec", NAMESPACE, "iperf3", "--server", "--bind", address,
                                             "--port", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        python = tmp_path / "python-in-h3-bw"
        python.write_text('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (NAMESPACE, sys.executable))
        python.chmod(0o755)
        time.sleep(0.5)
        yield python
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True, check=False)


def test_playbook_measures_every_pair_one_at_a_time_and_reports_the_failed_ones(bandwidth_lab, tmp_path):
    local = {"ansible_connection": "ansible.builtin.local", "ansible_python_interpreter": str(bandwidth_lab)}
    inventory = {"all": {"children": {"bw": {"hosts": {
        name: dict(local, bandwidth_address=address) for name, address in BW_HOSTS.items()}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    report_dir = tmp_path / "report"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"), ANSIBLE_HOME=str(tmp_path / "home"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               PATH="%s:%s" % (os.path.dirname(sys.executable), os.environ.get("PATH", "")))
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
            os.path.join(ROOT, "playbooks", "bandwidth.yml"), "-e", "bandwidth_group=bw",
            "-e", "bandwidth_install_servers=false", "-e", "bandwidth_duration=1",
            "-e", "bandwidth_report_dir=%s" % report_dir]
    played = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert played.returncode == 0, played.stdout + played.stderr
    markdown = (report_dir / "bandwidth.md").read_text()
    rows = table_rows(markdown)
    assert sorted(rows) == ["bw1", "bw2", "bw3"]
    assert (rows["bw1"][0], rows["bw1"][2], rows["bw2"][2]) == ("–", "failed: refused", "failed: refused")
    # Every pair with a server measured, none found its server busy: one pair at a time.
    for source, column in (("bw1", 1), ("bw2", 0), ("bw3", 0), ("bw3", 1)):
        assert float(rows[source][column]) > 10, markdown
    assert "- bw1 → bw3: refused" in markdown and "- bw2 → bw3: refused" in markdown
    assert "TCP, 1 s per pair, 1" in markdown
    assert (report_dir / "bandwidth.png").read_bytes().startswith(PNG_SIGNATURE)
