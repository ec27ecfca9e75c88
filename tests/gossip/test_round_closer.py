"""The closer procedure and a trainer's proofs of its batched leaves, through the library on a
real Anvil (``marketplace.protocol.round_closer``: what ``node run`` and ``round_gas`` use).

A round is closed with a foreign leaf among the gathered ones (dropped, not committed); the task
then fails scoring (nobody reveals) and each trainer proves its own batched leaf from the
published leaf set before it claims its fallback pay, pro rata by the samples it signed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from marketkit import Member, market_with
from web3 import Web3

from marketplace.chain.batch_client import BatchCommits
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.devnet import advance_chain_time, dev_private_keys
from marketplace.chain.views import TaskParams
from marketplace.crypto.update_leaf import UpdateLeaf, sign_update_leaf
from marketplace.errors import BatchError
from marketplace.protocol.round_closer import close_round, own_leaf_proof, prove_own_leaves
from marketplace.storage.cid import raw_cid
from marketplace.storage.embedded import EmbeddedStore

TOKEN = 10**18
BUDGET = 900 * TOKEN
WINDOW = 600
KEYS = [Account.from_key(k) for k in dev_private_keys(6)]
DEPLOYER, REQUESTER, ORACLE, T0, T1, OUTSIDER = KEYS


@pytest.fixture
def market(w3: Web3, chain_snapshot: None) -> Iterator[Marketplace]:
    members = [
        Member.dev(1, REQUESTER, Role.REQUESTER, tokens=10_000 * TOKEN),
        Member.dev(2, ORACLE, Role.ORACLE, stake=100 * TOKEN, tokens=200 * TOKEN),
        *(
            Member.dev(i, who, Role.TRAINER, stake=100 * TOKEN, tokens=200 * TOKEN)
            for i, who in ((3, T0), (4, T1), (5, OUTSIDER))
        ),
    ]
    yield market_with(w3, DEPLOYER, members)


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def started_task(market: Marketplace) -> int:
    params = TaskParams(
        budget=BUDGET, model_spec_cid="bafy-spec", initial_model_cid=raw_cid(b"model 1"),
        initial_model_digest=_digest("model 1"), config_cid="bafy-config",
        validation_commitment=_digest("validation"), rounds=1, min_trainers=2, max_trainers=2,
        min_stake=10 * TOKEN, join_deadline=market.now() + WINDOW, oracles=(ORACLE.address,),
        trainer_bond=TOKEN, oracle_slash=10 * TOKEN, round_duration=WINDOW,
        commit_duration=WINDOW, reveal_duration=WINDOW,
    )  # fmt: skip
    task_id = market.create_task(REQUESTER, params)
    market.accept_seat(ORACLE, task_id)
    for t in (T0, T1):
        market.join(t, task_id)
    if market.task(task_id).phase_enum != Phase.TRAINING:
        market.advance(REQUESTER, task_id)
    return task_id


def leaf(market: Marketplace, who: LocalAccount, task_id: int, samples: int) -> UpdateLeaf:
    payload = f"update {task_id} {who.address}".encode()
    return sign_update_leaf(
        who, chain_id=market.deployment.chain_id, task_id=task_id, round=1,
        cid=raw_cid(payload), digest=_digest(payload.decode()), num_samples=samples,
        market_address=market.market.address,
    )  # fmt: skip


def test_closer_drops_a_foreign_leaf_and_each_trainer_proves_its_own_for_fallback_pay(
    market: Marketplace, tmp_path: Path
) -> None:
    # Prepare: both trainers' leaves and an outsider's (registered, never joined)
    store = EmbeddedStore(tmp_path / "store")
    batches = BatchCommits(market)
    task_id = started_task(market)
    order = batches.join_order(task_id)
    own = {T0.address: leaf(market, T0, task_id, 100), T1.address: leaf(market, T1, task_id, 200)}
    foreign = leaf(market, OUTSIDER, task_id, 5000)
    # Execute: T0 closes the round with what it gathered
    closed = close_round(
        batches, T0, [*own.values(), foreign], join_order=order, task_id=task_id, round_=1,
        publish=store.put,
    )  # fmt: skip
    # Assert: the foreign leaf was refused, the batch holds both trainers and ended the round
    assert [lf.sender for lf, _ in closed.rejected] == [OUTSIDER.address]
    assert closed.batch.senders() == set(own)
    recorded = batches.batches(task_id)[1]
    assert (recorded.root, recorded.samples, recorded.leaves_cid) == (
        closed.batch.root, 300, closed.leaves_cid,
    )  # fmt: skip
    assert market.task(task_id).phase_enum == Phase.COMMITTING
    with pytest.raises(BatchError):  # a leaf the batch does not hold has no proof
        own_leaf_proof(
            recorded, store, foreign, join_order=order, market_address=market.market.address
        )

    # Prepare: nobody commits or reveals, so scoring fails and the budget is the fallback pool
    for _ in range(2):
        advance_chain_time(market.w3, WINDOW + 1)
        market.advance(REQUESTER, task_id)
    assert market.task(task_id).phase_enum == Phase.CANCELLED
    assert market.fallback_of(task_id, T1.address)[0] == 0  # batched samples not yet proven
    proven: set[tuple[str, int]] = set()
    for t in (T0, T1):
        # Execute: each trainer proves its own batched leaf (twice: the second is a no-op)
        for attempt in range(2):
            done = prove_own_leaves(
                batches, store, t, task_id, {1: own[t.address]},
                done=lambda r, a=t.address: (a, r) in proven,
                record=lambda r, a=t.address: proven.add((a, r)),
            )  # fmt: skip
            assert done == ([1] if attempt == 0 else [])
    # Assert: the fallback pay is pro rata by the signed samples
    before = market.balance_of(T1.address)
    samples, amount = market.fallback_of(task_id, T1.address)
    assert (samples, amount) == (200, BUDGET * 200 // 300)
    market.claim_fallback(T1, task_id)
    assert market.balance_of(T1.address) == before + amount + TOKEN  # and the bond back
