"""Valuation proven on-chain: a real ``score_task`` root committed, revealed, finalized and claimed
on a real Anvil, with the contract enforcing every payout, flag and slash.

The federation is a real (small) simulation whose trainers are devnet accounts: three honest
trainers, a free rider, and a fifth member that joins but never commits. Updates are committed
on-chain by digest (the sha256 of their safetensors bytes); the oracles rebuild each round's
:class:`RoundInput` from the chain's ``UpdateCommitted`` events, checking every digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
import torch
from eth_account import Account
from eth_account.signers.local import LocalAccount
from marketkit import Member, market_with
from web3 import Web3
from web3.types import TxReceipt

from marketplace import fl
from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace, Phase, Role, TaskParams
from marketplace.chain.deploy import DEFAULT_UNBONDING_DELAY
from marketplace.chain.devnet import DEV_PRIVATE_KEYS, DevnetProcess
from marketplace.errors import TransactionRevertedError
from marketplace.fl.serialization import dump_weights
from marketplace.oracle import RoundInput, ScoringResult, ValuationConfig, proof_for, score_task
from marketplace.storage.cid import raw_cid
from marketplace.valuation import Flag, LeafDomain, UpdateRef

pytestmark = pytest.mark.anvil

E18 = 10**18
BUDGET = 1000 * E18 + 1  # odd on purpose: integer payouts must still add up to it exactly
STAKE = 100 * E18
MIN_STAKE = 50 * E18
BOND = 10 * E18
ORACLE_SLASH = 30 * E18
PHASE = 600  # seconds of every phase
SPEC = fl.ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=1)

KEYS = [Account.from_key(k) for k in DEV_PRIVATE_KEYS]
DEPLOYER, REQUESTER = KEYS[0], KEYS[1]
ORACLES = KEYS[2:5]
COMMITTERS = KEYS[5:9]  # commit order on-chain: index order
FREE_RIDER = KEYS[8]
ABSENT = KEYS[9]  # joins, never commits
TRAINERS = [*COMMITTERS, ABSENT]


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def market(module_chain: DevnetProcess) -> Marketplace:
    """Marketplace deployed; requester, 3 oracles and 5 trainers registered and funded."""
    # A devnet of this module's own: it moves the chain clock a lot.
    w3 = connect(module_chain.rpc_url)
    return market_with(w3, DEPLOYER, [
        Member.dev(1, REQUESTER, Role.REQUESTER, tokens=BUDGET),
        *(Member.dev(i, o, Role.ORACLE, stake=STAKE, tokens=STAKE)
          for i, o in enumerate(ORACLES, start=2)),
        *(Member.dev(i, t, Role.TRAINER, stake=STAKE, tokens=STAKE + BOND)
          for i, t in enumerate(TRAINERS, start=5)),
    ], unbonding_delay=DEFAULT_UNBONDING_DELAY)  # fmt: skip


@pytest.fixture(autouse=True)
def _revert_chain(market: Marketplace) -> Iterator[None]:
    provider = market.w3.provider
    snap = provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield
    provider.make_request("evm_revert", [snap])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Federation:
    sim: fl.SimulationResult
    splits: fl.DataSplits


@pytest.fixture(scope="module")
def federation() -> Federation:
    """Two rounds of real training by the four committing trainers."""
    torch.set_num_threads(1)
    splits = fl.split_dataset(fl.load_dataset("digits"), seed=0)
    parts = fl.partition("iid", splits.train.y, num_clients=len(COMMITTERS), seed=0)
    sim = fl.simulate(
        model_spec=SPEC,
        splits=splits,
        partition=parts,
        rounds=2,
        train_config=fl.TrainConfig(epochs=2, lr=0.1),
        behaviours={FREE_RIDER.address: "free_rider"},
        trainer_ids=[t.address for t in COMMITTERS],
        seed=0,
    )
    return Federation(sim, splits)


# --- the task's life ----------------------------------------------------------------------------
def now(m: Marketplace) -> int:
    return int(m.w3.eth.get_block("latest")["timestamp"])


def update_bytes(u: fl.ClientUpdate) -> bytes:
    return dump_weights(u.delta)


def train(m: Marketplace, fed: Federation) -> int:
    """Create the task, join all five trainers, commit every committer's update each round;
    the task ends in Committing."""
    init = dump_weights(fed.sim.rounds[0].global_weights)
    params = TaskParams(
        budget=BUDGET,
        model_spec_cid="bafy-model-spec",
        initial_model_cid=raw_cid(init),
        initial_model_digest=hashlib.sha256(init).digest(),
        config_cid="bafy-task-document",
        validation_commitment=bytes.fromhex(fed.splits.validation.sha256()),
        rounds=len(fed.sim.rounds),
        min_trainers=len(TRAINERS),
        max_trainers=len(TRAINERS),
        min_stake=MIN_STAKE,
        join_deadline=now(m) + PHASE,
        oracles=tuple(o.address for o in ORACLES),
        trainer_bond=BOND,
        dispute_bond=BOND,
        round_duration=PHASE,
        commit_duration=PHASE,
        reveal_duration=PHASE,
        dispute_duration=PHASE,
        claim_duration=10 * PHASE,
        quorum_bps=6600,  # two of three equal stakes (6,667 bps would need all three)
        oracle_slash=ORACLE_SLASH,
    )
    task_id = m.create_task(REQUESTER, params)
    for o in ORACLES:  # consent: each proposed oracle takes its seat
        m.accept_seat(o, task_id)
    for t in TRAINERS:
        m.join(t, task_id)
    m.advance(DEPLOYER, task_id)  # full: training starts at once
    for record in fed.sim.rounds:
        by_sender = {u.sender: u for u in record.updates}
        for t in COMMITTERS:
            blob = update_bytes(by_sender[t.address])
            m.commit_update(
                t, task_id, record.server_round, raw_cid(blob), hashlib.sha256(blob).digest(),
                by_sender[t.address].num_samples,
            )  # fmt: skip
        m.increase_time(PHASE + 1)  # the absent trainer never commits: wait out the round
        m.advance(DEPLOYER, task_id)
    assert m.task(task_id).phase_enum == Phase.COMMITTING
    return task_id


def rounds_from_chain(m: Marketplace, fed: Federation, task_id: int) -> list[RoundInput]:
    """What an oracle reconstructs: committed updates in chain order, digests checked."""
    events = m.events(m.market, "UpdateCommitted", filters={"taskId": task_id})
    rounds = []
    for record in fed.sim.rounds:
        r = record.server_round
        committed = [
            (e["args"], e["blockNumber"], e["logIndex"])
            for e in events
            if int(e["args"]["round"]) == r
        ]
        committed.sort(key=lambda c: (c[1], c[2]))
        fetched = {u.sender: u for u in record.updates}  # what the store would return
        senders = [Web3.to_checksum_address(args["trainer"]) for args, _, _ in committed]
        for sender, (args, _, _) in zip(senders, committed, strict=True):
            digest = hashlib.sha256(update_bytes(fetched[sender])).digest()
            assert digest == bytes(args["digest"]), "the store returned other bytes"
        rounds.append(
            RoundInput(
                round=r,
                global_weights=record.global_weights,
                updates=[fetched[s] for s in senders],
                invalid={},
                commit_order={s: i for i, s in enumerate(senders)},
                refs=tuple(
                    UpdateRef(s, str(args["cid"]), "0x" + bytes(args["digest"]).hex())
                    for s, (args, _, _) in zip(senders, committed, strict=True)
                ),
            )
        )
    return rounds


def oracle_score(
    m: Marketplace, fed: Federation, task_id: int, config: ValuationConfig | None = None
) -> ScoringResult:
    """One oracle's scoring of the task, from the chain and its own copy of the data."""
    info = m.task(task_id)
    joined = [
        Web3.to_checksum_address(e["args"]["trainer"])
        for e in m.events(m.market, "TrainerJoined", filters={"taskId": task_id})
    ]
    return score_task(
        domain=LeafDomain(m.deployment.chain_id, m.market.address, task_id),
        model_spec=SPEC,
        strategy=fed.sim.strategy(),
        rounds=rounds_from_chain(m, fed, task_id),
        x_val=fed.splits.validation.x,
        y_val=fed.splits.validation.y,
        validation_digest=bytes(info.validation_commitment).hex(),
        budget=info.budget,
        trainers=joined,
        config=config or ValuationConfig(),
    )


def commit_and_reveal(
    m: Marketplace, task_id: int, votes: Sequence[tuple[LocalAccount, ScoringResult]],
    *, silent: Sequence[LocalAccount] = (),
) -> None:  # fmt: skip
    """Each ``(oracle, result)`` commits and reveals; ``silent`` oracles commit and never reveal."""
    salts = {}
    for i, (oracle, result) in enumerate(votes):
        salts[oracle.address] = bytes([i + 1]) * 32
        cid = raw_cid(result.report_bytes)
        m.commit_score(
            oracle, task_id,
            m.score_commitment(task_id, oracle.address, result.root, cid, salts[oracle.address]),
        )  # fmt: skip
    m.advance(DEPLOYER, task_id)  # everyone committed: reveal at once
    for oracle, result in votes:
        if oracle in silent:
            continue
        m.reveal_score(
            oracle, task_id, result.root, raw_cid(result.report_bytes), salts[oracle.address]
        )
    if silent:
        m.increase_time(PHASE + 1)
    m.advance(DEPLOYER, task_id)


def claim(
    m: Marketplace, result: ScoringResult, task_id: int, account: str, sender: LocalAccount
) -> TxReceipt:
    """Claim ``account``'s leaf of ``result`` (sent by ``sender``: anyone may claim any leaf)."""
    entry, proof = proof_for(result, account)
    return m.claim(
        sender, task_id, index=entry.index, account=entry.account, amount=entry.amount,
        score_ppm=entry.score_ppm, flags=entry.flags, proof=proof,
    )  # fmt: skip


def expect_revert(
    error: str, fn: Callable[..., object], *args: Any, **kwargs: Any
) -> TransactionRevertedError:
    """Assert that ``fn(*args, **kwargs)`` reverts with the custom error ``error``."""
    with pytest.raises(TransactionRevertedError) as info:
        fn(*args, **kwargs)
    assert info.value.error_name == error, str(info.value)
    return info.value


# --- tests ----------------------------------------------------------------------------------------
def test_real_scores_finalize_and_every_trainer_claims_exactly_its_leaf(
    market: Marketplace, federation: Federation
) -> None:
    # Prepare: a trained task, three oracles scoring independently
    m = market
    task_id = train(m, federation)
    results = [oracle_score(m, federation, task_id) for _ in ORACLES]
    assert len({r.root for r in results}) == 1, "honest oracles must agree to the bit"
    result = results[0]
    flagged = {e.account for e in result.table.entries if e.flags}
    assert flagged == {FREE_RIDER.address, ABSENT.address}
    assert result.table.by_account()[ABSENT.address].flags == Flag.FREE_RIDER

    # Execute: commit, reveal, finalize, wait out the dispute window
    commit_and_reveal(m, task_id, list(zip(ORACLES, results, strict=True)))
    info = m.task(task_id)
    assert info.phase_enum == Phase.FINALIZED
    assert bytes(info.payout_root) == result.root
    m.increase_time(PHASE + 1)

    # Assert: a forged proof cannot take the budget
    honest = COMMITTERS[0]
    entry, proof = proof_for(result, honest.address)
    forged = replace(entry, amount=BUDGET)
    err = expect_revert(
        "TaskMarketInvalidProof", m.claim, honest, task_id, index=forged.index,
        account=forged.account, amount=forged.amount, score_ppm=forged.score_ppm,
        flags=forged.flags, proof=proof,
    )  # fmt: skip
    assert err.error_args == (task_id, entry.index)

    # Execute: every trainer's leaf is claimed (flagged leaves by a third party: anyone may)
    before = {
        t.address: (m.balance_of(t.address), m.participant(t.address).stake) for t in TRAINERS
    }
    market_before = m.balance_of(m.market.address)
    for t in TRAINERS:
        sender = DEPLOYER if t.address in flagged else t
        claim(m, result, task_id, t.address, sender)

    # Assert: balances, stakes and the budget
    for t in TRAINERS:
        e = result.table.by_account()[t.address]
        balance, stake = m.balance_of(t.address), m.participant(t.address).stake
        if e.flags:
            assert e.amount == 0
            assert balance == before[t.address][0], "a flagged trainer is paid nothing"
            assert stake == before[t.address][1] - MIN_STAKE, "a flagged trainer is slashed"
        else:
            assert e.amount > 0
            assert balance == before[t.address][0] + e.amount + BOND
            assert stake == before[t.address][1]
    honest_bonds = BOND * (len(TRAINERS) - len(flagged))
    assert m.balance_of(m.market.address) == market_before - BUDGET - honest_bonds - BOND * len(
        flagged
    )  # flagged bonds are burned
    assert m.task(task_id).paid == BUDGET == result.table.total
    claimed = m.events(m.market, "Claimed", filters={"taskId": task_id})
    assert sum(int(e["args"]["amount"]) for e in claimed) == BUDGET
    assert {
        Web3.to_checksum_address(e["args"]["account"]): int(e["args"]["flags"]) for e in claimed
    } == {e.account: e.flags for e in result.table.entries}

    # Assert: a second claim of a leaf reverts
    entry, _ = proof_for(result, honest.address)
    err = expect_revert(
        "TaskMarketAlreadyClaimed", claim, m, result, task_id, honest.address, honest
    )
    assert err.error_args == (task_id, entry.index)


def test_majority_root_finalizes_and_the_dissenting_oracle_is_not_slashed(
    market: Marketplace, federation: Federation
) -> None:
    # Prepare: two oracles score by the task's rules; the third reveals another root
    m = market
    task_id = train(m, federation)
    honest = oracle_score(m, federation, task_id)
    other = oracle_score(m, federation, task_id, ValuationConfig(method="leave_one_out"))
    assert other.root != honest.root
    dissenter = ORACLES[2]

    # Execute
    commit_and_reveal(m, task_id, [(ORACLES[0], honest), (ORACLES[1], honest), (dissenter, other)])

    # Assert: the majority root is final
    info = m.task(task_id)
    assert info.phase_enum == Phase.FINALIZED
    assert bytes(info.payout_root) == honest.root
    assert (
        bytes(m.call(m.market.functions.revealedRootOf(task_id, dissenter.address))) == other.root
    )

    # Execute / Assert: dissent alone is not slashable (issue 10, F2): it revealed, and no
    # arbiter ruled against its root
    expect_revert("TaskMarketTooEarly", m.slash_oracle, DEPLOYER, task_id, dissenter.address)
    m.increase_time(PHASE + 1)
    stake = m.participant(dissenter.address).stake
    expect_revert(
        "TaskMarketOracleNotSlashable", m.slash_oracle, DEPLOYER, task_id, dissenter.address
    )
    assert m.participant(dissenter.address).stake == stake
    expect_revert(
        "TaskMarketOracleNotSlashable", m.slash_oracle, DEPLOYER, task_id, ORACLES[0].address
    )
    assert m.participant(ORACLES[0].address).stake == STAKE

    # Assert: claims follow the majority's table
    entry, _ = proof_for(honest, COMMITTERS[0].address)
    before = m.balance_of(entry.account)
    claim(m, honest, task_id, entry.account, COMMITTERS[0])
    assert m.balance_of(entry.account) == before + entry.amount + BOND


def test_oracle_that_does_not_reveal_is_slashed(
    market: Marketplace, federation: Federation
) -> None:
    # Prepare
    m = market
    task_id = train(m, federation)
    result = oracle_score(m, federation, task_id)
    silent = ORACLES[1]

    # Execute: all commit, one never reveals; the reveal phase closes at its deadline
    commit_and_reveal(m, task_id, [(o, result) for o in ORACLES], silent=[silent])
    m.increase_time(PHASE + 1)
    stake = m.participant(silent.address).stake
    m.slash_oracle(DEPLOYER, task_id, silent.address)

    # Assert
    info = m.task(task_id)
    assert info.phase_enum == Phase.FINALIZED
    assert bytes(info.payout_root) == result.root
    assert info.revealed_count == 2
    assert m.participant(silent.address).stake == stake - ORACLE_SLASH
    assert m.call(m.market.functions.isOracleSlashed(task_id, silent.address))
    for o in (ORACLES[0], ORACLES[2]):
        expect_revert("TaskMarketOracleNotSlashable", m.slash_oracle, DEPLOYER, task_id, o.address)
