"""Which tasks hold an account's reserved stake, and until when.

The registry keeps one reserved total per account; the per-task reservations live in the task
market: a trainer's ``minStake`` from ``TrainerJoined``, an oracle's seat from ``SeatAccepted``,
each given back by ``StakeReleased``, a claim (``Claimed``) or a slash (``OracleSlashed``). This
module reads those events (indexed by account, so one filtered query each) to name the tasks in
the error a person sees when unstaking reserved stake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from marketplace.chain.views import TaskInfo

_TAKEN = (("TrainerJoined", "trainer"), ("SeatAccepted", "oracle"))
_GIVEN_BACK = (("StakeReleased", "account"), ("Claimed", "account"), ("OracleSlashed", "oracle"))


@dataclass(frozen=True)
class StakeHold:
    """Task ``task_id`` holds part of the account's stake until ``until`` (unix time: the task's
    claim deadline once scheduled, else its current phase's deadline) — ``phase`` by name."""

    task_id: int
    until: int
    phase: str


def stake_holds(events: Any, task: Callable[[int], TaskInfo], account: str) -> list[StakeHold]:
    """The tasks whose reservation of ``account``'s stake is still held: ``events`` of the
    TaskMarket contract, ``task`` its typed task view (``Marketplace.request_unstake`` passes both;
    taking them, not the client, keeps this module below ``clients`` in the import graph)."""
    addr = Web3.to_checksum_address(account)
    taken = _task_ids(events, _TAKEN, addr)
    held = sorted(taken - _task_ids(events, _GIVEN_BACK, addr))
    holds = []
    for task_id in held:
        t = task(task_id)
        until = t.claims_open_at + t.claim_duration if t.claims_open_at else t.phase_deadline
        holds.append(StakeHold(task_id, int(until), t.phase.name.lower()))
    return holds


def _task_ids(events: Any, kinds: tuple[tuple[str, str], ...], addr: str) -> set[int]:
    ids: set[int] = set()
    for name, arg in kinds:
        logs = getattr(events, name)().get_logs(from_block=0, argument_filters={arg: addr})
        ids.update(int(log["args"]["taskId"]) for log in logs)
    return ids
