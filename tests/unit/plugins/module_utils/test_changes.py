# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change record of _changes.py: check mode only predicts, ``changed`` comes from what was recorded, and the
diff reaches the result under --diff only, in the shape Ansible takes."""

from __future__ import annotations

import types

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes


def changes_of(check_mode=False, diff=False, **kwargs):
    """A record for a module run with or without check mode and --diff (only those two attributes are read)."""
    return Changes(types.SimpleNamespace(check_mode=check_mode, _diff=diff), **kwargs)


def test_nothing_recorded_is_no_change():
    changes = changes_of(diff=True)
    # A diff alone is no change: a module may show an unchanged state.
    changes.diff({"up": True}, {"up": True})
    unchanged = {"before": {"up": True}, "after": {"up": True}}
    assert changes.result({"bridge": "br0"}) == {"bridge": "br0", "changed": False, "diff": unchanged}


def test_act_makes_the_change_and_returns_what_it_returns():
    calls = []
    changes = changes_of()
    assert changes.act(lambda *args: calls.append(args) or "made", 1, 2) == "made"
    assert calls == [(1, 2)]
    assert changes.result({})["changed"] is True


def test_check_mode_never_calls_the_function():
    def refuse(*_args):
        raise AssertionError("called in check mode")

    changes = changes_of(check_mode=True)
    # The object a change works on may not exist yet in check mode.
    assert changes.act(refuse, None) is None
    assert changes.check_mode is True
    assert changes.result({})["changed"] is True


@pytest.mark.parametrize("check_mode", [False, True])
def test_record_counts_a_change_and_its_options_once_each(check_mode):
    changes = changes_of(check_mode=check_mode, definition=True)
    changes.record("memory", "nics")
    changes.record("nics", "vcpus")
    changes.record()
    result = changes.result({})
    assert result == {"changed": True, "changes": ["memory", "nics", "vcpus"], "restart_needed": False}


def test_a_change_no_option_names_leaves_the_options_empty():
    changes = changes_of(definition=True)
    changes.record()
    changes.restart_needed = True
    assert changes.result({}) == {"changed": True, "changes": [], "restart_needed": True}


def test_only_a_definition_reports_options_and_restart():
    changes = changes_of()
    changes.record("autostart")
    assert changes.result({}) == {"changed": True}


def test_diff_only_under_diff_mode():
    for diff in (False, True):
        changes = changes_of(diff=diff)
        changes.record()
        changes.diff("a\n", "b\n")
        assert ("diff" in changes.result({})) is diff


def test_one_pair_is_a_dict_several_a_list_with_headers_only_when_given():
    one = changes_of(diff=True)
    one.diff("", "<network/>", "network n (defined)", "network n (wanted)")
    assert one.result({})["diff"] == {"before": "", "after": "<network/>",
                                      "before_header": "network n (defined)", "after_header": "network n (wanted)"}
    several = changes_of(diff=True)
    several.diff("a", "b")
    several.diff({}, {"active": True}, "state", "state")
    assert several.result({})["diff"] == [{"before": "a", "after": "b"},
                                          {"before": {}, "after": {"active": True}, "before_header": "state",
                                           "after_header": "state"}]


def test_no_diff_pairs_no_diff_key():
    changes = changes_of(diff=True)
    changes.record()
    assert "diff" not in changes.result({})
