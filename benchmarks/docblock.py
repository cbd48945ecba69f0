"""The benchmarks' figures in the docs: each benchmark owns a block of a Markdown file between two HTML comments,
which a run replaces with its own text, leaving the rest of the file as it is. ``block_diff`` tells whether a
block still reads as the script would write it (a hand edit shows up as a difference)."""

from __future__ import annotations

import difflib


def _split(text, path, begin, end):
    """(before and the begin marker, the block, the end marker and after) of ``text``; each marker once, in order."""
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise RuntimeError("%s must hold %s ... %s exactly once, in that order" % (path, begin, end))
    head, rest = text.split(begin)
    block, tail = rest.split(end)
    return head + begin, block.strip("\n"), end + tail


def read_block(path, begin, end):
    """What stands between the markers ``begin`` and ``end`` of the file ``path`` (a Path)."""
    return _split(path.read_text(), path, begin, end)[1]


def replace_block(path, begin, end, block):
    """Replace what stands between the markers ``begin`` and ``end`` of the file ``path`` (a Path) with ``block``."""
    head, _old, tail = _split(path.read_text(), path, begin, end)
    path.write_text(head + "\n" + block + "\n" + tail)


def block_diff(path, begin, end, block):
    """A unified diff from the block in ``path`` to ``block`` (what the script writes), or "" when they agree."""
    lines = difflib.unified_diff(read_block(path, begin, end).splitlines(), block.splitlines(),
                                 "%s (in the file)" % begin, "%s (as the script writes it)" % begin, lineterm="")
    return "\n".join(lines)
