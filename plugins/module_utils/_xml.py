# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ElementTree helpers shared by the XML layers of guests (_domain_xml.py) and networks (_network.py): read
libvirt's document keeping its namespace prefixes, put a new element where libvirt writes it, and write a document
the same way whatever it came from, so that two versions differ in the changed lines only."""

from __future__ import annotations

import copy
import io
import xml.etree.ElementTree as ET

from ansible_collections.arctictern.virt.plugins.module_utils._errors import VirtError


def parse(xml, what="libvirt document"):
    """The root Element of ``xml``. Namespace prefixes (of other tools' metadata) are registered, so that writing
    the document back keeps them (libosinfo's ``libosinfo:`` rather than ``ns0:``)."""
    try:
        for _event, (prefix, uri) in ET.iterparse(io.StringIO(xml), events=("start-ns",)):
            if prefix:
                try:
                    ET.register_namespace(prefix, uri)
                except ValueError:
                    pass  # a prefix like ns0 that ElementTree reserves: it writes its own
        return ET.fromstring(xml)
    except ET.ParseError as error:
        raise VirtError("cannot read the %s: %s" % (what, error)) from None


def place(parent, element, order):
    """Insert ``element`` among the children of ``parent`` where libvirt writes it (``order``, a tuple of tags);
    tags missing from ``order`` (a newer libvirt's) count as coming last."""
    rank = order.index(element.tag) if element.tag in order else len(order)
    for index, child in enumerate(parent):
        if (order.index(child.tag) if child.tag in order else len(order)) > rank:
            parent.insert(index, element)
            return element
    parent.append(element)
    return element


def remove_all(parent, tag):
    for child in parent.findall(tag):
        parent.remove(child)


def pretty(root_or_xml, what="libvirt document"):
    """A document as indented text, written the same way whether it is libvirt's XML or an edit of it."""
    root = parse(root_or_xml, what) if isinstance(root_or_xml, str) else copy.deepcopy(root_or_xml)
    for element in root.iter():
        if len(element) == 0 and element.text is not None and not element.text.strip():
            element.text = None  # left from removed children, or libvirt's <ip ...>\n</ip>: written as <tag/>
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"
