# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a module's main() in-process, the way Ansible's developer guide unit-tests modules.

exit_json and fail_json are patched to raise, so a test gets the result dict back (or AnsibleFailJson with it)
instead of the process exiting. The ``run_module`` fixture in conftest.py wraps this.
"""

from __future__ import annotations

import contextlib
import json
import secrets

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    patch_module_args = None


class AnsibleExitJson(Exception):
    """The module called exit_json; ``result`` holds what it returned."""

    def __init__(self, result):
        super().__init__(result.get("msg", "exit_json"))
        self.result = result


class AnsibleFailJson(Exception):
    """The module called fail_json; ``result`` holds msg and the rest."""

    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


def exit_json(_module, **kwargs):
    kwargs.setdefault("changed", False)
    raise AnsibleExitJson(kwargs)


def fail_json(_module, **kwargs):
    kwargs["failed"] = True
    raise AnsibleFailJson(kwargs)


@contextlib.contextmanager
def set_module_args(args):
    """Make ``args`` the module arguments of AnsibleModule instances created inside the block."""
    if patch_module_args is not None:
        with patch_module_args(args):
            yield
        return
    saved = basic._ANSIBLE_ARGS
    basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    try:
        yield
    finally:
        basic._ANSIBLE_ARGS = saved


def run_module(main, args, check_mode=False, diff=False):
    """Run ``main`` with ``args`` (exit_json/fail_json must already be patched); return the result dict.

    Raises AnsibleFailJson when the module fails.
    """
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with set_module_args(args):
        try:
            main()
        except AnsibleExitJson as done:
            return done.result
    raise AssertionError("the module returned without calling exit_json or fail_json")


def result_of(main, args):
    """Like run_module, with check and diff mode given as ``_ansible_check_mode``/``_ansible_diff`` in ``args``, and
    a failure returned as its result dict (``failed: True``) instead of raised: for tests that compare results."""
    args = dict(args)
    check_mode, diff = args.pop("_ansible_check_mode", False), args.pop("_ansible_diff", False)
    try:
        return run_module(main, args, check_mode, diff)
    except AnsibleFailJson as failed:
        return failed.result


def scratch_netns_name():
    """A name no namespace has yet, in the atvtest-c-* family the lab never uses."""
    return "atvtest-c-%s" % secrets.token_hex(4)
