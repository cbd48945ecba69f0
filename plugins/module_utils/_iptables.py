# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iptables (or ip6tables) as the modules that keep chains of their own use it: ``Iptables`` runs it through a
``run(argv)`` callable shaped like ``AnsibleModule.run_command`` (argv lists, never a shell); the functions read and
plan rules as ``iptables -S`` prints them, a rule being its list of tokens after ``-A <chain>``.
"""

from __future__ import annotations

import shlex

from ansible_collections.arctictern.virt.plugins.module_utils._errors import VirtError


def parse_rules(text):
    """``iptables -S`` output of one table as {chain: [rule as a token list]}, listing empty chains too."""
    chains = {}
    for line in text.splitlines():
        try:
            tokens = shlex.split(line)
        except ValueError:  # a comment with an odd quote in someone else's rule
            tokens = line.split()
        if len(tokens) < 2:
            continue
        if tokens[0] in ("-P", "-N"):
            chains.setdefault(tokens[1], [])
        elif tokens[0] == "-A":
            chains.setdefault(tokens[1], []).append(tokens[2:])
    return chains


def jumps_to(rule, chain):
    """Whether ``rule`` jumps (or goes) to ``chain``."""
    return any(flag in ("-j", "-g") and target == chain for flag, target in zip(rule, rule[1:]))


def sync_chain(tables, table, chain, wanted):
    """The argument lists that make ``chain`` of ``table`` (created if missing) hold exactly the ``wanted`` rules,
    keeping those it has; ``tables`` is {table: parse_rules(...)}."""
    existing = tables.get(table, {}).get(chain)
    commands = []
    if existing is None:
        commands.append(["-t", table, "-N", chain])
        existing = []
    missing = list(wanted)
    for rule in existing:
        if rule in missing:
            missing.remove(rule)
        else:  # not wanted, or a duplicate
            commands.append(["-t", table, "-D", chain] + rule)
    return commands + [["-t", table, "-A", chain] + rule for rule in missing]


def sync_jump(tables, table, parent, rule, first):
    """The argument lists that leave ``parent`` with ``rule`` as its only jump to the chain ``rule`` ends with,
    as its first rule when ``first``."""
    rules = tables.get(table, {}).get(parent, [])
    jumps = [existing for existing in rules if jumps_to(existing, rule[-1])]
    if jumps == [rule] and (not first or rules[0] == rule):
        return []
    commands = [["-t", table, "-D", parent] + jump for jump in jumps]
    return commands + [["-t", table, "-I", parent, "1"] + rule if first else ["-t", table, "-A", parent] + rule]


class Iptables:
    """Reads ``tables`` (names such as "nat") and changes them with ``binary`` (iptables or ip6tables) through
    ``run(argv) -> (rc, stdout, stderr)``; a failure is a VirtError, its message led by ``option`` when given."""

    def __init__(self, binary, run, tables, option=None):
        self.binary = binary
        self.run = run
        self.table_names = tuple(tables)
        self.option = option

    def argv(self, args):
        # -w: wait for the xtables lock rather than fail while libvirt or another tool is changing rules.
        return [self.binary, "-w"] + list(args)

    def _run(self, args):
        argv = self.argv(args)
        rc, out, err = self.run(argv)
        if rc != 0:
            message = "'%s' failed: %s" % (" ".join(argv), (err or out or "rc=%d" % rc).strip())
            raise VirtError(message if self.option is None else "%s: %s" % (self.option, message))
        return out

    def tables(self):
        """Every rule of the tables it reads, as {table: parse_rules(...)}."""
        return {table: parse_rules(self._run(["-t", table, "-S"])) for table in self.table_names}

    def apply(self, commands):
        """Run each argument list of ``commands``; whether there were any."""
        for command in commands:
            self._run(command)
        return bool(commands)
