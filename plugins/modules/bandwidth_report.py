#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iperf3 figures between pairs of hosts as a Markdown matrix and a PNG heat map."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bandwidth_report
short_description: Write iperf3 figures between pairs of hosts as a Markdown matrix and a PNG heat map
version_added: 0.2.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Takes the results of measurements between pairs of hosts, as M(arctictern.virt.iperf_measure) returns them, and
    writes a Markdown table of the Mbit/s received from each host (a row, the iperf3 client) to each other host (a
    column, the iperf3 server). A failed pair shows its cause in its cell and is listed under the table with its
    message; a pair without a result shows C(not measured). One failed pair never keeps the others from the report.
  - With O(png_path), also draws the same matrix as a heat map (matplotlib), with labelled axes, the figure in each
    cell, failed pairs hatched in red with their cause, and a colour bar in Mbit/s.
  - The Markdown holds only what the figures say, no time stamp. The module changes the Markdown file only when its
    content differs, and draws the PNG then, or when the PNG is missing. Missing directories of both paths are made.
  - Runs where the files go, usually the controller (C(delegate_to=localhost)).
  - playbooks/bandwidth.yml measures between every pair of an inventory group's hosts and runs this module.
options:
  results:
    description:
      - One entry per measured pair. A host does not measure itself, and each pair (in its direction) appears once.
    type: list
    elements: dict
    required: true
    suboptions:
      source:
        description: The host the measurement ran on (the iperf3 client), as the matrix names it.
        type: str
        required: true
      destination:
        description: The host measured to (the iperf3 server).
        type: str
        required: true
      received_bps:
        description:
          - Bits per second the receiving side got (M(arctictern.virt.iperf_measure)'s C(received_bps)), 0 or more.
          - Needed unless O(results[].failed=true); ignored when it is.
        type: float
      failed:
        description: Whether the measurement failed.
        type: bool
        default: false
      cause:
        description:
          - Why it failed, shown in its cell, such as M(arctictern.virt.iperf_measure)'s C(cause) (V(refused),
            V(busy), V(timeout), V(auth), ...). V(error) when left out.
        type: str
      msg:
        description: The failure's message, listed under the table.
        type: str
  hosts:
    description:
      - The hosts of the matrix, in this order, as rows and columns. Every host of O(results) must be one of them; a
        pair of them without a result shows C(not measured).
      - When left out, the hosts of O(results) in the order they first appear.
    type: list
    elements: str
  markdown_path:
    description: Where the Markdown report goes.
    type: path
    required: true
  png_path:
    description:
      - Where the PNG heat map goes. Needs the Python library matplotlib on the host that runs the module; without
        this option the module writes the Markdown only and does not need it.
    type: path
  title:
    description: Heading of the report and title of the heat map.
    type: str
    default: iperf3 bandwidth
  description:
    description: A paragraph under the heading, say how the figures were measured.
    type: str
attributes:
  check_mode:
    description: Reports whether the files would change and shows the Markdown's diff; writes nothing.
    support: full
  diff_mode:
    description: Shows the Markdown file before and after. The PNG is not shown.
    support: full
requirements:
  - matplotlib, only with O(png_path)
seealso:
  - module: arctictern.virt.iperf_measure
"""

EXAMPLES = r"""
- name: Write the report of two pairs, one of which failed
  arctictern.virt.bandwidth_report:
    results:
      - source: deb1
        destination: deb2
        received_bps: 941300000
      - source: deb2
        destination: deb1
        failed: true
        cause: refused
        msg: "198.18.0.31:5201 refused the connection"
    hosts: [deb1, deb2]
    markdown_path: results/bandwidth/bandwidth.md
    png_path: results/bandwidth/bandwidth.png
    description: TCP, 5 s per pair, one stream.
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
markdown:
  description: The Markdown report, as written (or as it would be, in check mode).
  returned: always
  type: str
markdown_path:
  description: Absolute path of the Markdown file.
  returned: always
  type: str
  sample: /srv/reports/bandwidth.md
png_path:
  description: Absolute path of the PNG file; null without O(png_path).
  returned: always
  type: str
  sample: /srv/reports/bandwidth.png
png_written:
  description: Whether the PNG was drawn (would be, in check mode).
  returned: always
  type: bool
pairs:
  description: Every pair of O(results), by the order of O(hosts) (row, then column).
  returned: always
  type: list
  elements: dict
  contains:
    source:
      description: The client host.
      type: str
      sample: deb1
    destination:
      description: The server host.
      type: str
      sample: deb2
    failed:
      description: Whether the measurement failed.
      type: bool
    received_mbps:
      description: Mbit/s received, rounded to 0.001; null for a failed pair.
      type: float
      sample: 941.3
    cause:
      description: Why it failed; null for a pair that did not.
      type: str
      sample: refused
    msg:
      description: The failure's message; null when there is none.
      type: str
failed_pairs:
  description: The failed pairs of RV(pairs).
  returned: always
  type: list
  elements: dict
missing_pairs:
  description: The pairs of different O(hosts) without a result (C(source), C(destination)).
  returned: always
  type: list
  elements: dict
  sample: [{source: deb3, destination: deb1}]
"""

from ansible_collections.arctictern.virt.plugins.module_utils._bandwidth_report import write_report
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule

ARGUMENT_SPEC = dict(
    results=dict(type="list", elements="dict", required=True, options=dict(
        source=dict(type="str", required=True),
        destination=dict(type="str", required=True),
        received_bps=dict(type="float"),
        failed=dict(type="bool", default=False),
        cause=dict(type="str"),
        msg=dict(type="str"),
    )),
    hosts=dict(type="list", elements="str"),
    markdown_path=dict(type="path", required=True),
    png_path=dict(type="path"),
    title=dict(type="str", default="iperf3 bandwidth"),
    description=dict(type="str"),
)


def main():
    module = ArcticternModule(ARGUMENT_SPEC, libvirt=False, supports_check_mode=True)
    module.run(write_report)


if __name__ == "__main__":
    main()
