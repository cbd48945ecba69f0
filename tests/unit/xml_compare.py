# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Libvirt XML compared as canonical trees: what a redefinition kept, and exactly what it changed.

Used by the unit tests (fake libvirt) and the integration tests (the lab's real daemons) alike.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET


def canonical(xml, without=()):
    """``xml`` (a str or an Element) as a nested tuple that ignores formatting, attribute order and the
    XML declaration. Left out: the elements any ElementTree path in ``without`` matches, and for a path written
    ``PATH@NAME`` only the attribute NAME of the elements PATH matches. Sibling order is kept: libvirt gives
    devices meaning by their order."""
    root = ET.fromstring(xml) if isinstance(xml, str) else xml
    dropped, dropped_attributes = set(), {}
    for path in without:
        path, _at, attribute = path.rpartition("@") if "@" in path.rsplit("/", 1)[-1].split("[")[0] else (path, "", "")
        for element in root.iterfind(path):
            if attribute:
                dropped_attributes.setdefault(id(element), set()).add(attribute)
            else:
                dropped.add(id(element))

    def walk(element):
        children = tuple(walk(child) for child in element if id(child) not in dropped and isinstance(child.tag, str))
        attributes = tuple(sorted((key, value) for key, value in element.attrib.items()
                                  if key not in dropped_attributes.get(id(element), ())))
        return (element.tag, attributes, (element.text or "").strip(), children)

    return walk(root)


def differences(before, after, without=()):
    """Lines naming where two canonical trees differ (empty when equal), for readable assertion messages."""
    found = []

    def walk(left, right, where):
        if left[:3] != right[:3]:
            found.append("%s: %r != %r" % (where, left[:3], right[:3]))
        if len(left[3]) != len(right[3]):
            found.append("%s: %d children != %d: %s != %s" % (
                where, len(left[3]), len(right[3]), [child[0] for child in left[3]], [child[0] for child in right[3]]))
        for index, (one, two) in enumerate(zip(left[3], right[3])):
            walk(one, two, "%s/%s[%d]" % (where, one[0], index))

    walk(canonical(before, without), canonical(after, without), "")
    return found


def assert_same_except(before, after, without=()):
    """Fail unless ``before`` and ``after`` are the same tree once the ``without`` paths are left out of both."""
    found = differences(before, after, without)
    assert not found, "the definition changed beyond %s:\n%s" % (list(without), "\n".join(found[:20]))
