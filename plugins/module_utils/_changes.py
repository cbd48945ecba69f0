# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change record every state-changing module keeps: one way to change things or only predict them in check
mode, to say what changed and to show it with --diff."""

from __future__ import annotations


class Changes:
    """What one run of a module changes.

    A handler makes each change through ``act`` (in check mode the change is only counted, which is the
    prediction), notes a change it made or predicted some other way with ``record``, and adds what --diff shows with
    ``diff``. ``result(values)`` is the module's result: ``values`` with ``changed`` and, under --diff, ``diff``.

    ``definition=True`` is for modules that change a libvirt definition: their result also lists the options
    whose defined value changes (``changes``) and says whether the guest or network must restart to use them
    (``restart_needed``, which the handler sets).
    """

    def __init__(self, module, definition=False):
        self.check_mode = module.check_mode
        self.changed = False
        self.options = []
        self.restart_needed = False
        self._diff_mode = module._diff
        self._definition = definition
        self._diffs = []

    def record(self, *options):
        """Count a change: of the values of ``options`` (given without options: a change no option names)."""
        self.changed = True
        self.options.extend(option for option in options if option not in self.options)

    def act(self, func, *args):
        """Count a change and make it, ``func(*args)``, unless in check mode; func's result (None in check mode,
        where what the change works on may not even exist yet)."""
        self.changed = True
        if self.check_mode:
            return None
        return func(*args)

    def diff(self, before, after, before_header=None, after_header=None):
        """Add a before/after pair for --diff (texts are shown as a unified diff, dicts as YAML)."""
        entry = dict(before=before, after=after)
        if before_header is not None:
            entry["before_header"] = before_header
        if after_header is not None:
            entry["after_header"] = after_header
        self._diffs.append(entry)

    def result(self, values):
        """``values`` with what this record holds; ``diff`` only under --diff, a single pair as itself (Ansible
        takes a dict or a list of them)."""
        result = dict(values, changed=self.changed)
        if self._definition:
            result.update(changes=list(self.options), restart_needed=self.restart_needed)
        if self._diff_mode and self._diffs:
            result["diff"] = self._diffs[0] if len(self._diffs) == 1 else list(self._diffs)
        return result
