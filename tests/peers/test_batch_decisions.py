"""What a batched trainer decides when the chain's state runs ahead of its logs: a node (Anvil,
while it mines a block) can count a round's commits before their logs are readable, and a
decision taken on the count alone could leave a batched update out of its round."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from eth_account import Account

from marketplace.errors import ChainLagError
from marketplace.resilience import is_transient
from node.peers.journal import Journal
from node.peers.trainer_batch import BatchDuty

TASK = 7
CID = "bafkreialrj62i7uv3rzeultynmjx7wxbinttpvbckoapiaulxjb5xgyrpu"


def _duty(tmp_path, logs: dict[str, list[dict[str, Any]]]) -> BatchDuty:
    """A duty whose chain answers ``events`` from ``logs`` (event name -> logs)."""
    market = SimpleNamespace(
        market=SimpleNamespace(address="0x" + "11" * 20),
        events=lambda contract, event, **kw: logs.get(event, []),
        update_of=lambda task_id, round_, trainer: (bytes(32), 0),
    )
    session = SimpleNamespace(task_id=TASK, chain_id=31337, market=market, gossiped_leaves={})
    session.direct_commit_logs = lambda r: [  # TaskSession.direct_commit_logs over ``logs``
        e for e in logs.get("UpdateCommitted", []) if e["args"]["round"] == r
    ]
    account = Account.create()
    node = SimpleNamespace(
        session=session,
        me=account.address,
        account=account,
        journal=Journal(tmp_path / "journal.sqlite"),
        privacy=None,
        announce=None,
        published_update=lambda r: {"cid": CID, "digest": "ab" * 32, "n": 10},
    )
    return BatchDuty(node, SimpleNamespace(turn_seconds=6.0), send_leaf=lambda leaf: None)  # type: ignore[arg-type]


def test_commits_counted_before_their_logs_are_readable_are_retried_not_taken_as_direct(
    tmp_path,
) -> None:
    # Prepare: round 1 counts two commits; the logs show neither a batch nor a direct commit
    logs: dict[str, list[dict[str, Any]]] = {}
    duty = _duty(tmp_path, logs)
    info = SimpleNamespace(current_round=1, round_commits=2)
    # Execute / Assert: a transient error (the run loop retries), nothing decided or journaled
    with pytest.raises(ChainLagError, match="2 updates counted") as err:
        duty.step(info)  # type: ignore[arg-type]
    assert is_transient(err.value)
    assert not duty.node.journal.has(TASK, 1, "left-out")
    # Once a direct commit of the round is in the logs, the trainer commits directly too
    logs["UpdateCommitted"] = [{"args": {"round": 1, "trainer": "0x" + "22" * 20}}]
    step = duty.step(info)  # type: ignore[arg-type]
    assert step is not None and "other trainers committed directly" in step.action
    assert duty.node.journal.has(TASK, 1, "left-out")
