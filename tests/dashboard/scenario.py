"""A marketplace on real Anvil (and Kubo) with scripted tasks, for the dashboard tests and bench.

Transactions go through the real contracts with the contract suite's helpers
(``tests/contracts/chainkit.py``): tasks are created, joined, trained (commits, posted models, a
reported mismatch), scored by three oracles by commit-reveal, finalized and claimed, with one
trainer flagged and slashed. Strings that the dashboard shows (CIDs, report fields) can be set by
the caller, so the XSS test can make them hostile.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contracts"))

from chainkit import (
    E18,
    Actors,
    Chain,
    Market,
    TaskSpec,
    Vote,
    payout_tree,
    root_bytes,
    task_params,
)

from marketplace.chain.compiler import compile_contracts
from marketplace.chain.deploy import ContractRecord, Deployment
from marketplace.chain.devnet import dev_private_keys
from marketplace.storage.base import ContentStore
from marketplace.valuation.merkle import LeafDomain
from marketplace.valuation.report import REPORT_VERSION

MAX = 2**256 - 1
STAKE = 1_000 * E18  # stake is reserved per live task (30 per seat, 50 per join): room for many
INVALID = 1


@dataclass
class World:
    """The deployed marketplace, its actors and the ``Deployment`` the indexer reads."""

    chain: Chain
    mkt: Market
    deployment: Deployment
    store: ContentStore | None

    @property
    def w3(self) -> Web3:
        return self.chain.w3


@dataclass(frozen=True)
class Strings:
    """The on-chain and report strings of a scripted task (hostile in the XSS test)."""

    model_spec_cid: str = "bafy-model-spec"
    update_cid: str = "bafy-update-{round}-{i}"
    model_cid: str = "bafy-model-{round}"
    evidence: str = "update norm 0.0 is below 0.1 x the round median"
    report_method: str = "exact"
    bad_reveal_cid: str | None = None  # oracle 1 reveals this CID instead of the report's


@dataclass
class ScriptedTask:
    task_id: int
    trainers: list[LocalAccount]
    flagged: LocalAccount
    payouts: dict[str, int]
    report_cid: str
    report: dict[str, Any] = field(repr=False)


def deploy_world(w3: Web3, store: ContentStore | None, *, trainers: int = 8) -> World:
    """Token, registry and market on ``w3``; actors funded, approved and registered."""
    keys = [Account.from_key(k) for k in dev_private_keys(max(20, 6 + trainers))]
    actors = Actors(
        deployer=keys[0], arbiter=keys[1], requester=keys[2], oracles=keys[3:6],
        trainers=keys[6 : 6 + trainers], outsiders=[],
    )  # fmt: skip
    chain = Chain(w3, compile_contracts())
    d = actors.deployer
    start = w3.eth.block_number
    token = chain.deploy("RewardToken", d, "FedMarket Reward", "FMR", d.address)
    registry = chain.deploy("ParticipantRegistry", d, token.address, 3600, d.address)
    market = chain.deploy("TaskMarket", d, registry.address, actors.arbiter.address)
    chain.tx(registry.functions.setMarket(market.address, True), d)
    for who in [actors.requester, *actors.oracles, *actors.trainers]:
        chain.tx(token.functions.mint(who.address, 1_000_000 * E18), d)
        chain.tx(token.functions.approve(market.address, MAX), who)
        chain.tx(token.functions.approve(registry.address, MAX), who)
    for o in actors.oracles:
        chain.tx(registry.functions.register(2, Web3.keccak(text=o.address), STAKE), o)
    for t in actors.trainers:
        chain.tx(registry.functions.register(1, Web3.keccak(text=t.address), STAKE), t)
    chain.tx(registry.functions.register(3, Web3.keccak(text="requester"), 0), actors.requester)
    arts = chain.artifacts
    contracts = {"RewardToken": token, "ParticipantRegistry": registry, "TaskMarket": market}
    deployment = Deployment(
        chain_id=w3.eth.chain_id,
        block=start + 1,
        deployer=d.address,
        contracts={n: ContractRecord(c.address, arts[n].abi) for n, c in contracts.items()},
    )
    return World(chain, Market(chain, actors, token, registry, market), deployment, store)


def create_task(world: World, spec: TaskSpec, strings: Strings = Strings()) -> int:
    mkt = world.mkt
    params = list(
        task_params(spec, token=mkt.token.address,
                    oracles=[o.address for o in mkt.actors.oracles], now=mkt.chain.now())
    )  # fmt: skip
    params[2] = strings.model_spec_cid
    receipt = mkt.chain.tx(mkt.fn.createTask(tuple(params)), mkt.actors.requester)
    (event,) = mkt.chain.events(mkt.market, receipt, "TaskCreated")
    task_id = int(event["taskId"])
    mkt.accept_all(task_id)  # consent: the proposed committee takes its seats
    return task_id


def train_round(world: World, task_id: int, trainers: list[LocalAccount], rnd: int,
                strings: Strings = Strings(), *, mismatch: bool = False) -> None:  # fmt: skip
    """Every trainer commits round ``rnd``, the round is closed (``advance``), trainer 0 posts
    the next model and, when ``mismatch``, trainer 1 a differing one."""
    mkt = world.mkt
    for i, t in enumerate(trainers):
        digest = Web3.keccak(text=f"update {task_id} {rnd} {i}")
        cid = strings.update_cid.format(round=rnd, i=i)
        mkt.chain.tx(mkt.fn.commitUpdate(task_id, rnd, cid, digest, 100 + i), t)
    mkt.chain.tx(mkt.fn.advance(task_id), trainers[0])
    cid = strings.model_cid.format(round=rnd + 1)
    mkt.chain.tx(mkt.fn.postModel(task_id, rnd + 1, cid, Web3.keccak(text=cid)), trainers[0])
    if mismatch:
        mkt.chain.tx(
            mkt.fn.postModel(task_id, rnd + 1, cid + "-other", Web3.keccak(text="other")),
            trainers[1],
        )


def build_report(
    trainers: list[LocalAccount],
    flagged: LocalAccount,
    rounds: int,
    rows: list[tuple[str, int, int, int]],
    strings: Strings,
    domain: LeafDomain,
) -> dict[str, Any]:
    """A public valuation report (as :mod:`marketplace.valuation.report` writes them)."""
    tree = payout_tree(rows, domain)
    per_round = []
    for r in range(1, rounds + 1):
        per_round.append({
            "round": r,
            "values_ppm": {t.address: (0 if t is flagged else 40_000 // r + 1_000 * i)
                           for i, t in enumerate(trainers)},
        })  # fmt: skip
    return {
        "version": REPORT_VERSION, "method": strings.report_method,
        "metric": "accuracy", "rounds": per_round,
        "totals_ppm": {a: s for a, _, s, _ in rows},
        "flags": {flagged.address: {"flags": INVALID, "evidence": [
            {"flag": "invalid", "round": 1, "reason": strings.evidence}]}},
        "payouts": [{"index": i, "account": a, "amount": str(m), "score_ppm": s, "flags": f}
                    for i, (a, m, s, f) in enumerate(rows)],
        "merkle_root": tree.root,
    }  # fmt: skip


def finalized_task(
    world: World,
    *,
    trainers: int = 4,
    rounds: int = 2,
    strings: Strings = Strings(),
    claim: bool = True,
    mismatch: bool = True,
) -> ScriptedTask:
    """A task through every phase on the real contracts; the last trainer is flagged (invalid
    update) and, once claims are made, slashed ``min_stake``."""
    mkt = world.mkt
    members = mkt.actors.trainers[:trainers]
    spec = TaskSpec(rounds=rounds, min_trainers=trainers, max_trainers=trainers)
    task_id = create_task(world, spec, strings)
    mkt.start(task_id, members)
    for r in range(1, rounds + 1):
        train_round(world, task_id, members, r, strings, mismatch=mismatch and r == rounds)
    flagged = members[-1]
    honest = members[:-1]
    share = 900 * E18 // len(honest)
    rows = [(t.address, share, 250_000 + i, 0) for i, t in enumerate(honest)]
    rows.append((flagged.address, 0, 0, INVALID))
    report = build_report(members, flagged, rounds, rows, strings, mkt.domain(task_id))
    blob = json.dumps(report, sort_keys=True).encode()
    report_cid = world.store.put(blob) if world.store is not None else "bafy-no-store"
    tree = payout_tree(rows, mkt.domain(task_id))
    vote = Vote(root_bytes(tree), report_cid, b"\x01" * 32)
    votes = {
        0: vote,
        1: replace(vote, salt=b"\x02" * 32, report_cid=strings.bad_reveal_cid or report_cid),
        2: replace(vote, salt=b"\x03" * 32),
    }
    mkt.score(task_id, votes)
    if claim:
        mkt.open_claims(task_id)
        for i in range(len(rows)):
            mkt.claim(task_id, tree, i)
    payouts = {a: m for a, m, _, _ in rows}
    return ScriptedTask(task_id, members, flagged, payouts, report_cid, report)
