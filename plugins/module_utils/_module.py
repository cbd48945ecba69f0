# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One base for every module of the collection: common options, one error path, check mode helpers."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.arctictern.virt.plugins.module_utils._errors import VirtError

# Options every libvirt-facing module takes; documented once in doc_fragments/libvirt.py.
LIBVIRT_ARGUMENT_SPEC = dict(
    uri=dict(type="str", default="qemu:///system"),
    connect_timeout=dict(type="float", default=10.0),
)


class ArcticternModule(AnsibleModule):
    """AnsibleModule with the collection's conventions.

    ``run(handler)`` calls ``handler(self)``, which returns the result dict; a VirtError raised anywhere below
    becomes ``fail_json(msg=...)`` so that no traceback reaches the user.
    """

    def __init__(self, argument_spec, libvirt=True, required_libs=(), **kwargs):
        spec = dict(LIBVIRT_ARGUMENT_SPEC) if libvirt else {}
        spec.update(argument_spec)
        super().__init__(argument_spec=spec, **kwargs)
        for name, import_error in required_libs:
            if import_error is not None:
                self.fail_json(msg=missing_required_lib(name), exception=import_error)

    def run(self, handler):
        try:
            result = handler(self)
        except VirtError as error:
            self.fail_json(msg=error.msg, **error.details)
        except Exception as error:  # pylint: disable=broad-except
            # Not expected: still a clear failure, with the trace kept for -vvv only.
            self.fail_json(msg="%s: %s" % (type(error).__name__, error), exception=traceback.format_exc())
        result.setdefault("changed", False)
        self.exit_json(**result)
