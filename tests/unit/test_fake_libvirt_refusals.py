# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fake refuses what libvirt 9.0 refuses, with libvirt's error code, error domain and errno (what the collection
decides from), so that a test passing against the fake does not rely on a call the real daemon would refuse."""

from __future__ import annotations

import errno

import libvirt
import pytest


@pytest.mark.parametrize("xml, code, domain, words", [
    ("<domain type='kvm'><name>x</name", "VIR_ERR_XML_DETAIL", "VIR_FROM_DOMAIN", "(domain_definition)"),
    ("", "VIR_ERR_XML_DETAIL", "VIR_FROM_DOMAIN", "(domain_definition)"),
    ("<network><name>n1</name></network>", "VIR_ERR_XML_ERROR", "VIR_FROM_XML", "expecting root element of 'domain', not 'network'"),
    ("<domain type='kvm'><memory>1024</memory></domain>", "VIR_ERR_NO_NAME", "VIR_FROM_DOMAIN", "missing name information"),
])
def test_define_refuses_what_is_no_domain_definition(fake_conn, xml, code, domain, words):
    with pytest.raises(libvirt.libvirtError) as caught:
        fake_conn.defineXML(xml)
    error = caught.value
    assert (error.get_error_code(), error.get_error_domain()) == (getattr(libvirt, code), getattr(libvirt, domain))
    assert words in error.get_error_message() and fake_conn.domains == {}


def test_connecting_to_no_daemon_fails_like_a_missing_socket(fake_libvirt):
    with pytest.raises(libvirt.libvirtError) as caught:
        libvirt.open("qemu+tcp://198.18.1.99/system")
    error = caught.value
    assert (error.get_error_code(), error.get_error_domain(), error.get_int1()) == (
        libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC, errno.ENOENT)
