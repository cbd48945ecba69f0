"""The benchmarks' figures in the docs: each benchmark owns a block of a Markdown file between two HTML comments,
which a run replaces with its own text, leaving the rest of the file as it is."""

from __future__ import annotations


def replace_block(path, begin, end, block):
    """Replace what stands between the markers ``begin`` and ``end`` of the file ``path`` (a Path) with ``block``."""
    text = path.read_text()
    if begin not in text or end not in text:
        raise RuntimeError("%s has no %s ... %s markers" % (path, begin, end))
    path.write_text(text.split(begin)[0] + begin + "\n" + block + "\n" + end + text.split(end)[1])
