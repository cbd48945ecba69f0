# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake of the host's iptables for the tests of _firewall and the network module (libvirt networks: fake_libvirt.py)."""

from __future__ import annotations

BUILTIN_CHAINS = {
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}


class FakeIptables:
    """iptables semantics for -S, -N, -X, -F, -A, -I, -D over {table: {chain: [rule tokens]}}.

    ``run`` is shaped like AnsibleModule.run_command; every argv is kept in ``calls``.
    """

    def __init__(self):
        self.tables = {table: {chain: [] for chain in chains} for table, chains in BUILTIN_CHAINS.items()}
        self.calls = []

    def writes(self):
        """The calls that changed something (all but -S)."""
        return [argv for argv in self.calls if "-S" not in argv]

    def run(self, argv, **_kwargs):
        assert isinstance(argv, list), "iptables must be run with an argv list, never a shell string"
        self.calls.append(list(argv))
        assert argv[1] == "-w" and argv[2] == "-t"
        chains = self.tables[argv[3]]
        operation, args = argv[4], argv[5:]
        if operation == "-S":
            lines = ["-P %s ACCEPT" % chain for chain in BUILTIN_CHAINS[argv[3]]]
            lines += ["-N %s" % chain for chain in chains if chain not in BUILTIN_CHAINS[argv[3]]]
            lines += ["-A %s %s" % (chain, " ".join(rule)) for chain, rules in chains.items() for rule in rules]
            return 0, "\n".join(lines) + "\n", ""
        chain = args[0]
        if operation == "-N":
            if chain in chains:
                return 1, "", "iptables: Chain already exists."
            chains[chain] = []
            return 0, "", ""
        if chain not in chains:
            return 1, "", "iptables: No chain/target/match by that name."
        if operation == "-X":
            referenced = any(chain in rule for rules in chains.values() for rule in rules)
            if chains[chain] or referenced:
                return 1, "", "iptables: Directory not empty."
            del chains[chain]
        elif operation == "-F":
            chains[chain] = []
        elif operation == "-A":
            chains[chain].append(args[1:])
        elif operation == "-I":
            chains[chain].insert(int(args[1]) - 1, args[2:])
        elif operation == "-D":
            if args[1:] not in chains[chain]:
                return 1, "", "iptables: Bad rule (does a matching rule exist in that chain?)."
            chains[chain].remove(args[1:])
        else:
            raise AssertionError("unexpected iptables call %r" % argv)
        return 0, "", ""
