# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.arctictern.virt.plugins.module_utils._errors import VirtError
from ansible_collections.arctictern.virt.plugins.module_utils._iptables import (
    Iptables, jumps_to, parse_rules, sync_chain, sync_jump,
)
from ansible_collections.arctictern.virt.tests.unit.plugins.module_utils._iptables_fake import FakeIptables

IP6TABLES = "/usr/sbin/ip6tables"


def test_runner_reads_only_its_tables_with_its_binary_and_says_whether_it_changed_anything():
    fake = FakeIptables()
    iptables = Iptables(IP6TABLES, fake.run, ("filter",))

    assert iptables.apply([]) is False
    assert iptables.apply([["-t", "filter", "-N", "MINE"]]) is True
    tables = iptables.tables()

    assert fake.calls == [[IP6TABLES, "-w", "-t", "filter", "-N", "MINE"], [IP6TABLES, "-w", "-t", "filter", "-S"]]
    assert tables == {"filter": {"INPUT": [], "FORWARD": [], "OUTPUT": [], "MINE": []}}


@pytest.mark.parametrize("option, prefix", [(None, ""), ("port_forwards", "port_forwards: ")])
def test_runner_failures_name_the_command_and_the_option_when_given(option, prefix):
    iptables = Iptables(IP6TABLES, FakeIptables().run, ("nat",), option)

    with pytest.raises(VirtError) as caught:
        iptables.apply([["-t", "nat", "-X", "NOSUCH"]])
    assert caught.value.msg == ("%s'%s -w -t nat -X NOSUCH' failed: iptables: No chain/target/match by that name."
                                % (prefix, IP6TABLES))


def test_runner_reports_the_exit_code_when_iptables_says_nothing():
    iptables = Iptables("iptables", lambda argv: (4, "", ""), ("nat",))

    with pytest.raises(VirtError) as caught:
        iptables.tables()
    assert caught.value.msg == "'iptables -w -t nat -S' failed: rc=4"


def test_sync_chain_creates_keeps_and_removes_rules():
    tables = {"nat": parse_rules("-N MINE\n-A MINE -j ACCEPT\n-A MINE -j RETURN\n-A MINE -j RETURN\n")}

    assert sync_chain(tables, "nat", "MINE", [["-j", "RETURN"], ["-j", "DROP"]]) == [
        ["-t", "nat", "-D", "MINE", "-j", "ACCEPT"],
        ["-t", "nat", "-D", "MINE", "-j", "RETURN"],  # the duplicate
        ["-t", "nat", "-A", "MINE", "-j", "DROP"],
    ]
    assert sync_chain(tables, "mangle", "MINE", [["-j", "RETURN"]]) == [
        ["-t", "mangle", "-N", "MINE"], ["-t", "mangle", "-A", "MINE", "-j", "RETURN"]]


def test_sync_jump_moves_the_jump_to_the_top_only_when_it_must_be_first():
    tables = {"filter": parse_rules("-P FORWARD ACCEPT\n-A FORWARD -j OTHER\n-A FORWARD -g MINE\n")}

    assert jumps_to(["-g", "MINE"], "MINE") and not jumps_to(["-m", "MINE"], "MINE")
    assert sync_jump(tables, "filter", "FORWARD", ["-g", "MINE"], False) == []
    assert sync_jump(tables, "filter", "FORWARD", ["-g", "MINE"], True) == [
        ["-t", "filter", "-D", "FORWARD", "-g", "MINE"], ["-t", "filter", "-I", "FORWARD", "1", "-g", "MINE"]]
