"""On-chain gas of training rounds with batched round commitments (``bench_round.py --gas-only``).

One process drives funded devnet accounts on a real Anvil through the library, with no training:
per trainer count ``n``, a task with ``n`` trainers runs ``rounds`` rounds where every trainer
signs its :class:`~marketplace.crypto.update_leaf.UpdateLeaf` (as a `node run` trainer gossips
it), the round's elected closer (:func:`~marketplace.protocol.round_batch.closer_for`) checks
every leaf and sends the batch with the library's
:func:`~marketplace.protocol.round_closer.close_round` (as a `node run` closer does) — its
``commitRound`` (which also posts the model that starts the round and ends the round), and after
the last round one trainer posts the final model (``postModel``).

``gas_per_trainer_round`` = (every ``commitRound`` + ``postModel`` + ``advance`` of the training
rounds) / (n · rounds), the same accounting as the process-per-trainer run (joins and task
creation are per task, not per round). Updates are real CIDs and digests of stand-in payloads:
gas does not depend on the weights.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from marketplace.chain.backend import connect
from marketplace.chain.batch_client import BatchCommits
from marketplace.chain.clients import Marketplace, Role
from marketplace.chain.deploy import deploy_marketplace
from marketplace.chain.devnet import dev_private_keys, start_anvil
from marketplace.chain.views import TaskParams
from marketplace.crypto.update_leaf import sign_update_leaf
from marketplace.protocol.round_batch import closer_for
from marketplace.protocol.round_closer import NO_MODEL, close_round
from marketplace.storage.cid import raw_cid

log = logging.getLogger(__name__)

TOKEN = 10**18
ORACLES = 3
PER_ROUND = ("commitRound", "postModel", "advance", "commitUpdate")


def _digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _run_task(
    market: Marketplace,
    batches: BatchCommits,
    requester: LocalAccount,
    oracles: list[LocalAccount],
    trainers: list[LocalAccount],
    rounds: int,
) -> dict[str, Any]:
    n = len(trainers)
    now = market.now()
    params = TaskParams(
        budget=1000 * TOKEN,
        model_spec_cid="bafy-spec",
        initial_model_cid=raw_cid(b"model 1"),
        initial_model_digest=_digest("model 1"),
        config_cid="bafy-config",
        validation_commitment=_digest("validation"),
        rounds=rounds,
        min_trainers=n,
        max_trainers=n,
        min_stake=10 * TOKEN,
        join_deadline=now + 3600,
        oracles=tuple(o.address for o in oracles),
        trainer_bond=TOKEN,
        oracle_slash=10 * TOKEN,
    )
    task_id = market.create_task(requester, params)
    for o in oracles:
        market.accept_seat(o, task_id)
    for t in trainers:
        market.join(t, task_id)  # the last join fills the task: it opens round 1 with advance
    market.advance(requester, task_id)

    gas: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "gas": 0})

    def record(name: str, receipt: TxReceipt) -> None:
        gas[name]["count"] += 1
        gas[name]["gas"] += int(receipt["gasUsed"])

    market.receipt_hooks.append(record)
    chain_id = market.deployment.chain_id
    order = batches.join_order(task_id)
    by_address = {t.address: t for t in trainers}
    started = time.perf_counter()
    try:
        for r in range(1, rounds + 1):
            leaves = [
                sign_update_leaf(
                    t,
                    chain_id=chain_id,
                    task_id=task_id,
                    round=r,
                    cid=raw_cid(f"update {task_id} {r} {t.address}".encode()),
                    digest=_digest(f"update {task_id} {r} {t.address}"),
                    num_samples=100,
                    market_address=market.market.address,
                )
                for t in trainers
            ]
            closer = by_address[closer_for(r, order, elapsed=0.0, turn_seconds=60.0)]
            model = _digest(f"model {r}") if r > 1 else NO_MODEL
            close_round(
                batches,
                closer,
                leaves,
                join_order=order,
                task_id=task_id,
                round_=r,
                publish=raw_cid,  # the leaf set's CID, not stored: gas does not depend on it
                model_digest=model,
                model_cid=raw_cid(f"model {r}".encode()) if r > 1 else "",
            )
        final = rounds + 1
        market.post_model(
            trainers[0],
            task_id,
            final,
            raw_cid(f"model {final}".encode()),
            _digest(f"model {final}"),
        )
    finally:
        market.receipt_hooks.remove(record)
    phase = market.task(task_id).phase
    per_round = sum(gas[f]["gas"] for f in PER_ROUND if f in gas)
    return {
        "task_id": task_id,
        "phase_after": int(phase),
        "gas": dict(gas),
        "gas_per_round": per_round / rounds,
        "gas_per_trainer_round": per_round / (n * rounds),
        "driver_sec": time.perf_counter() - started,
    }


def batched_gas(counts: list[int], rounds: int) -> dict[str, Any]:
    """Gas of batched rounds at each trainer count in ``counts`` (one Anvil for all)."""
    most = max(counts)
    keys = dev_private_keys(2 + ORACLES + most)
    accounts = [Account.from_key(k) for k in keys]
    deployer, requester = accounts[0], accounts[1]
    oracles = accounts[2 : 2 + ORACLES]
    trainers = accounts[2 + ORACLES :]
    report: dict[str, Any] = {
        "rounds": rounds,
        "mode": "batched round commitments; funded dev accounts driven from one process "
        "(library calls, no training) on a real Anvil",
        "runs": {},
    }
    with start_anvil(accounts=len(accounts)) as anvil:
        w3 = connect(anvil.rpc_url)
        market = Marketplace(w3, deploy_marketplace(w3, deployer, unbonding_delay=60))
        batches = BatchCommits(market)
        market.mint(deployer, requester.address, 100_000 * TOKEN)
        market.register(requester, Role.REQUESTER, _digest("requester x25519"), 0)
        for i, who in enumerate([*oracles, *trainers]):
            role = Role.ORACLE if i < ORACLES else Role.TRAINER
            market.mint(deployer, who.address, 1_000 * TOKEN)
            market.register(who, role, _digest(f"x25519 {i}"), 100 * TOKEN)
        for n in counts:
            log.warning("%d trainers: batched rounds (gas only)", n)
            report["runs"][str(n)] = _run_task(
                market, batches, requester, oracles, trainers[:n], rounds
            )
    report["gas_per_trainer_round"] = {
        n: run["gas_per_trainer_round"] for n, run in report["runs"].items()
    }
    return report
