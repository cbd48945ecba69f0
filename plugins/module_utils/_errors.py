# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors raised by the collection's private core; the module base turns each into fail_json."""

from __future__ import annotations


class VirtError(Exception):
    """An error whose message is fit to show the user as it is."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class InvalidOption(VirtError):
    """A module option has a value the module cannot use; the message names the option."""

    def __init__(self, option, problem, **details):
        super().__init__("%s: %s" % (option, problem), option=option, **details)
        self.option = option


class ConnectionFailed(VirtError):
    """The libvirt daemon behind a URI cannot be reached. ``error`` is libvirt's libvirtError (its code, domain and
    errno tell why), None when the daemon did not answer in time."""

    def __init__(self, msg, error=None, **details):
        super().__init__(msg, **details)
        self.error = error


class NotFound(VirtError):
    """A guest, network or interface that must exist does not."""
