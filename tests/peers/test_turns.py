"""Turn-taking for task-wide chores (node/peers/turns.py): the seat's holder acts at once, the
others after a grace period, and a holder that missed its recent turns is skipped."""

from __future__ import annotations

from node.peers.turns import MISSES_TO_SKIP, SKIPS_BEFORE_RETRY, ChoreTurns

MEMBERS = ["0xCC", "0xaa", "0xBb"]  # sorted by address: 0xaa, 0xBb, 0xCC


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def turns(me: str, clock: Clock) -> ChoreTurns:
    return ChoreTurns(me, chain_now=lambda: 0, grace=10.0, clock=clock)


def test_the_seat_holder_acts_at_once_the_others_after_the_grace():
    clock = Clock()
    holder, other = turns("0xBb", clock), turns("0xCC", clock)
    assert holder.my_turn(("advance", 3), MEMBERS, 1) is True
    assert other.my_turn(("advance", 3), MEMBERS, 1) is False
    clock.t = 10.0
    assert other.my_turn(("advance", 3), MEMBERS, 1) is True
    assert other.missed("0xbb") == 1


def test_a_holder_that_missed_its_recent_turns_is_skipped_and_restored_when_it_acts():
    clock = Clock()
    me = turns("0xCC", clock)
    for k in range(MISSES_TO_SKIP):  # 0xBb holds seat 1 and never acts
        clock.t = 100.0 * k
        assert me.my_turn(("advance", k), MEMBERS, 1) is False
        clock.t += 10.0
        assert me.my_turn(("advance", k), MEMBERS, 1) is True
    assert me.holder(MEMBERS, 1) == "0xCC"  # skipped: the next in order holds its seat
    assert me.my_turn(("advance", 9), MEMBERS, 1) is True  # at once, no grace
    # After SKIPS_BEFORE_RETRY skipped seats it gets one turn again
    for _ in range(SKIPS_BEFORE_RETRY - 2):  # two seats were skipped above
        assert me.holder(MEMBERS, 1) == "0xCC"
    assert me.holder(MEMBERS, 1) == "0xBb" and me.missed("0xBb") == MISSES_TO_SKIP - 1
    # 0xaa keeps its turns: a chore done in time (no longer asked about) resets its count
    other = turns("0xCC", clock)
    other._missed["0xaa"] = 1
    assert other.my_turn(("advance", 20), MEMBERS, 0) is False
    other.my_turn(("advance", 21), MEMBERS, 2)
    assert other.missed("0xaa") == 0
