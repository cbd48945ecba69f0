# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bandwidth_report module's run: iperf3 figures between pairs of hosts as a Markdown matrix (rows: from, the
client; columns: to, the server) and, with matplotlib, a PNG heat map of the same matrix.

The Markdown holds nothing but what the figures say (no time stamp), so a run whose figures are the same changes
nothing; the PNG is drawn again whenever the Markdown changes or the PNG is missing.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes
from ansible_collections.arctictern.virt.plugins.module_utils._errors import InvalidOption

MBIT = 1e6
NO_CELL = "–"
# A cell of the Markdown table must stay on one line and not end early.
CELL_ESCAPES = {"|": "\\|", "\n": " ", "\r": " "}


@dataclasses.dataclass(frozen=True)
class Pair:
    """One measurement from ``source`` (the client) to ``destination`` (the server); ``mbps`` is None if it failed."""

    source: str
    destination: str
    mbps: float | None
    cause: str | None = None
    msg: str | None = None

    @property
    def failed(self):
        return self.mbps is None


def write_report(module):
    """The module's run: options checked first (matplotlib included), then each file written only if it must be."""
    params = module.params
    pairs = read_pairs(params["results"])
    hosts = read_hosts(params["hosts"], pairs)
    markdown_path, png_path = read_paths(params["markdown_path"], params["png_path"])
    pyplot = load_pyplot() if png_path else None
    by_pair = {(pair.source, pair.destination): pair for pair in pairs}
    markdown = render_markdown(params["title"], params["description"], hosts, by_pair)

    changes = Changes(module)
    before = read_text(markdown_path)
    if before != markdown:
        changes.diff(before or "", markdown, markdown_path, markdown_path)
        changes.act(write_text, module, markdown_path, markdown)
    draw = bool(png_path) and (before != markdown or not os.path.exists(png_path))
    if draw:
        changes.act(draw_heat_map, module, pyplot, png_path, params["title"], hosts, by_pair)
    results = [pair_result(pair) for pair in ordered(hosts, by_pair)]
    return changes.result(dict(
        markdown=markdown,
        markdown_path=markdown_path,
        png_path=png_path,
        png_written=draw,
        pairs=results,
        failed_pairs=[result for result in results if result["failed"]],
        missing_pairs=[dict(source=source, destination=destination) for source, destination in missing(hosts, by_pair)],
    ))


# ---------------------------------------------------------------------------------------------------------------------
# Options


def read_pairs(results):
    pairs, seen = [], {}
    for index, entry in enumerate(results):
        where = "entry %d" % (index + 1)
        source, destination = _host_name(entry["source"], where, "source"), _host_name(
            entry["destination"], where, "destination")
        if source == destination:
            raise InvalidOption("results", "%s: source and destination are both %r; a host does not measure itself"
                                % (where, source))
        if (source, destination) in seen:
            raise InvalidOption("results", "%s: %s -> %s is measured twice (also %s)"
                                % (where, source, destination, seen[(source, destination)]))
        seen[(source, destination)] = where
        pairs.append(_pair(entry, source, destination, where))
    return pairs


def _host_name(value, where, key):
    name = (value or "").strip()
    if not name:
        raise InvalidOption("results", "%s: %s must name a host" % (where, key))
    return name


def _pair(entry, source, destination, where):
    if entry["failed"]:
        return Pair(source, destination, None, entry["cause"] or "error", entry["msg"])
    received = entry["received_bps"]
    if received is None:
        raise InvalidOption("results", "%s (%s -> %s): received_bps is needed unless failed is true"
                            % (where, source, destination))
    if received < 0:
        raise InvalidOption("results", "%s (%s -> %s): received_bps must be 0 or more, not %r"
                            % (where, source, destination, received))
    return Pair(source, destination, received / MBIT)


def read_hosts(hosts, pairs):
    """The matrix's hosts in order: ``hosts`` as given, or the hosts of the results as they first appear."""
    named = [name for pair in pairs for name in (pair.source, pair.destination)]
    if hosts is None:
        return list(dict.fromkeys(named))
    for name in hosts:
        if not name or not name.strip():
            raise InvalidOption("hosts", "a host name must not be empty")
        if hosts.count(name) > 1:
            raise InvalidOption("hosts", "%r appears %d times" % (name, hosts.count(name)))
    for index, pair in enumerate(pairs):
        for key, name in (("source", pair.source), ("destination", pair.destination)):
            if name not in hosts:
                raise InvalidOption("results", "entry %d: %s %r is not one of hosts (%s)"
                                    % (index + 1, key, name, ", ".join(hosts)))
    return list(hosts)


def read_paths(markdown_path, png_path):
    markdown_path = os.path.abspath(markdown_path)
    if os.path.isdir(markdown_path):
        raise InvalidOption("markdown_path", "%s is a directory; give the path of the Markdown file" % markdown_path)
    if png_path is None:
        return markdown_path, None
    png_path = os.path.abspath(png_path)
    if png_path == markdown_path:
        raise InvalidOption("png_path", "must differ from markdown_path (%s)" % markdown_path)
    if os.path.isdir(png_path):
        raise InvalidOption("png_path", "%s is a directory; give the path of the PNG file" % png_path)
    return markdown_path, png_path


def load_pyplot():
    """matplotlib's pyplot with the Agg backend (no display); InvalidOption naming png_path when it is missing."""
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise InvalidOption("png_path", "drawing the heat map needs the Python library matplotlib on the host that "
                                        "runs the module (%s); install it, or leave png_path out to write the Markdown "
                                        "only" % error) from None
    return pyplot


# ---------------------------------------------------------------------------------------------------------------------
# The matrix


def ordered(hosts, by_pair):
    return [by_pair[(source, destination)] for source in hosts for destination in hosts
            if (source, destination) in by_pair]


def missing(hosts, by_pair):
    return [(source, destination) for source in hosts for destination in hosts
            if source != destination and (source, destination) not in by_pair]


def pair_result(pair):
    return dict(source=pair.source, destination=pair.destination, failed=pair.failed,
                received_mbps=None if pair.failed else round(pair.mbps, 3), cause=pair.cause, msg=pair.msg)


def cell_text(source, destination, by_pair):
    """What the matrix shows for a pair: Mbit/s, the cause of a failure, or that it was not measured."""
    if source == destination:
        return NO_CELL
    pair = by_pair.get((source, destination))
    if pair is None:
        return "not measured"
    if pair.failed:
        return "failed: %s" % pair.cause
    return "%.1f" % pair.mbps


def _escape(text):
    return "".join(CELL_ESCAPES.get(char, char) for char in str(text))


def render_markdown(title, description, hosts, by_pair):
    lines = ["# %s" % _escape(title), ""]
    if description:
        lines += [description.strip(), ""]
    lines += ["Mbit/s received, from each host (row, the iperf3 client) to each other host (column, the iperf3 "
              "server).", ""]
    if not hosts:
        return "\n".join(lines + ["No hosts were measured.", ""])
    lines.append("| from \\ to | %s |" % " | ".join(_escape(host) for host in hosts))
    lines.append("| :-- | %s |" % " | ".join("--:" for _host in hosts))
    for source in hosts:
        cells = [_escape(cell_text(source, destination, by_pair)) for destination in hosts]
        lines.append("| **%s** | %s |" % (_escape(source), " | ".join(cells)))
    lines.append("")
    failed = [pair for pair in ordered(hosts, by_pair) if pair.failed]
    if failed:
        lines += ["Failed pairs:", ""]
        lines += ["- %s → %s: %s%s" % (_escape(pair.source), _escape(pair.destination), _escape(pair.cause),
                                       ": " + _escape(pair.msg) if pair.msg else "") for pair in failed]
        lines.append("")
    not_measured = missing(hosts, by_pair)
    if not_measured:
        lines += ["Not measured (no result): %s." % ", ".join(
            "%s → %s" % (_escape(source), _escape(destination)) for source, destination in not_measured), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Files


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidOption("markdown_path", "cannot read %s: %s" % (path, error)) from None


def _temporary_beside(path, suffix):
    """A new temporary file in the directory of ``path`` (made if missing), so that the final move is atomic."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=suffix, dir=directory)
    os.close(handle)
    return temporary


def write_text(module, path, text):
    temporary = _temporary_beside(path, ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    module.atomic_move(temporary, path)


def draw_heat_map(module, pyplot, path, title, hosts, by_pair):
    """The matrix as a heat map: colour by Mbit/s, each cell labelled; failed pairs hatched in red with their cause,
    pairs without a result and the diagonal grey."""
    size = len(hosts)
    values = [[_cell_value(source, destination, by_pair) for destination in hosts] for source in hosts]
    figures = [value for row in values for value in row if value is not None]
    top = max(figures) if figures and max(figures) > 0 else 1.0
    colour_map = pyplot.get_cmap("viridis").with_extremes(bad="lightgrey")
    fig, axes = pyplot.subplots(figsize=(2.5 + 1.4 * max(size, 1), 1.8 + 1.1 * max(size, 1)))
    try:
        image = axes.imshow([[float("nan") if value is None else value for value in row] for row in values],
                            cmap=colour_map, vmin=0, vmax=top)
        for row, source in enumerate(hosts):
            for column, destination in enumerate(hosts):
                _label_cell(pyplot, axes, row, column, by_pair.get((source, destination)), source == destination,
                            values[row][column], top)
        axes.set_xticks(range(size), labels=hosts, rotation=30, ha="right")
        axes.set_yticks(range(size), labels=hosts)
        axes.set_xlabel("to (iperf3 server)")
        axes.set_ylabel("from (iperf3 client)")
        axes.set_title(title, fontsize=10)
        fig.colorbar(image, ax=axes, label="Mbit/s received")
        fig.tight_layout()
        temporary = _temporary_beside(path, ".png")
        fig.savefig(temporary, dpi=110, format="png")
    finally:
        pyplot.close(fig)
    module.atomic_move(temporary, path)


def _cell_value(source, destination, by_pair):
    pair = by_pair.get((source, destination))
    return None if pair is None or pair.failed else pair.mbps


def _label_cell(pyplot, axes, row, column, pair, diagonal, value, top):
    if diagonal:
        axes.text(column, row, NO_CELL, ha="center", va="center", fontsize=9, color="dimgrey")
        return
    if pair is None:
        axes.text(column, row, "not\nmeasured", ha="center", va="center", fontsize=8, color="dimgrey")
    elif pair.failed:
        axes.add_patch(pyplot.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, hatch="xx", edgecolor="red",
                                        linewidth=0))
        axes.text(column, row, "failed\n%s" % pair.cause, ha="center", va="center", fontsize=8, color="darkred",
                  fontweight="bold", bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.5))
    else:
        axes.text(column, row, "%.1f" % value, ha="center", va="center", fontsize=9,
                  color="white" if value < top / 2 else "black")
