"""The networked unlearning's deterministic schedule: who is expected in each calibration round,
when a round closes, and who is dropped after a missed deadline — from the chain's record alone."""

from __future__ import annotations

from marketplace.chain.versions_client import CalibrationCommit
from marketplace.protocol.calibration import schedule
from marketplace.unlearning.federaser import FedEraserConfig
from marketplace.unlearning.history import StoredHistory
from marketplace.unlearning.plan import plan_unlearning

A, B, C, W = (f"0x{i:040x}" for i in (0xA, 0xB, 0xC, 0xF))
TIMEOUT, ANCHOR = 100, 1_000


def history(rounds: int = 3) -> StoredHistory:
    parts = {r: {A: 10, B: 20, C: 30, W: 40} for r in range(1, rounds + 1)}
    return StoredHistory(rounds, parts, lambda r: {}, lambda r: [])


def commit(trainer: str, round_: int, at: int) -> CalibrationCommit:
    return CalibrationCommit(1, round_, trainer, b"\x01" * 32, f"cid-{trainer}-{round_}", at)


def run(commits: list[CalibrationCommit], now: int):  # type: ignore[no-untyped-def]
    h = history()
    plan = plan_unlearning(h, withdrawn=[W], epochs=2, config=FedEraserConfig(interval=1))
    return schedule(
        plan, h, withdrawn=[W], commits=commits, anchor=ANCHOR, timeout=TIMEOUT, now=now
    )


def test_a_round_closes_at_its_last_commit_when_everyone_is_in() -> None:
    statuses = run([commit(A, 1, 1_010), commit(C, 1, 1_030), commit(B, 1, 1_020)], now=1_031)

    first, second = statuses
    assert first.closed_at == 1_030 and first.participants == (A, B, C)
    assert second.opens_at == 1_030 and second.deadline == 1_130 and not second.closed
    assert second.expected == (A, B, C)  # the withdrawn trainer is never expected


def test_a_silent_trainer_is_dropped_at_the_deadline_and_a_late_commit_does_not_count() -> None:
    commits = [commit(A, 1, 1_010), commit(B, 1, 1_020), commit(C, 1, 1_101)]  # C: 1 s late

    waiting = run(commits, now=1_100)  # the deadline itself is still on time
    (first,) = waiting
    assert not first.closed and first.missing == (C,)

    first, second, third = run([*commits, commit(A, 2, 1_150), commit(B, 2, 1_160)], now=1_161)
    assert first.closed_at == 1_100 and first.participants == (A, B) and first.missing == (C,)
    assert second.expected == (A, B) and second.closed_at == 1_160  # C stays out
    assert third.expected == (A, B) and third.opens_at == 1_160


def test_every_peer_computes_the_same_schedule_whatever_order_it_read_the_commits_in() -> None:
    commits = [commit(A, 1, 1_010), commit(B, 1, 1_020), commit(A, 2, 1_150)]
    now = 1_500

    assert run(commits, now) == run(list(reversed(commits)), now)
