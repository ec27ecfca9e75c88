"""A task's protocol on real Anvil and Kubo, with the bad inputs a hostile peer can send.

Every peer here is a real TrainerNode/OracleNode with its own identity and journal, talking only
through the chain and the Kubo daemon.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from marketkit import Member, market_with

from marketplace.chain.backend import connect
from marketplace.chain.clients import Phase, Role
from marketplace.chain.devnet import advance_chain_time
from marketplace.crypto.envelope import EnvelopeContext, seal
from marketplace.errors import FedMarketError
from marketplace.fl import ModelSpec, TrainConfig, load_dataset, partition, split_dataset
from marketplace.fl.serialization import dump_weights
from marketplace.protocol.committee import accept_seat
from marketplace.protocol.identity import Identity
from marketplace.protocol.published_report import final_report
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.session import TaskSession
from marketplace.storage.kubo import KuboStore
from marketplace.valuation.flags import Flag
from node.peers.journal import Journal
from node.peers.oracle import OracleNode
from node.peers.trainer import TrainerNode

TOKEN = 10**18
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)


@pytest.fixture(scope="module")
def world(kubo, module_chain, tmp_path_factory):
    w3 = connect(module_chain.rpc_url)
    requester = Identity.dev(1)
    trainers = [Identity.dev(i) for i in range(2, 6)]
    oracles = [Identity.dev(i) for i in range(6, 9)]
    # Each task reserves 10 tokens of every seated oracle's and joined trainer's stake until it
    # ends, and several tasks here stop mid-way: room for all of them at once.
    peer = {"stake": 300 * TOKEN, "tokens": 1_000 * TOKEN}
    market = market_with(w3, Identity.dev(0).eth, [
        Member.of(requester, Role.REQUESTER, tokens=10_000 * TOKEN),
        *(Member.of(t, Role.TRAINER, **peer) for t in trainers),
        *(Member.of(o, Role.ORACLE, **peer) for o in oracles),
    ])  # fmt: skip
    splits = split_dataset(load_dataset("digits"), seed=0)
    yield {
        "market": market, "store": KuboStore(kubo.api_multiaddr), "requester": requester,
        "trainers": trainers, "oracles": oracles, "splits": splits,
        "tmp": tmp_path_factory.mktemp("peers"),
    }  # fmt: skip


def new_task(world, *, rounds=1, n_trainers=4, validation=None, privacy=None):
    splits = world["splits"]
    x, y = validation if validation is not None else (splits.validation.x, splits.validation.y)
    plan = TaskPlan(
        model=SPEC, train=TrainConfig(epochs=1, lr=0.1), budget=100 * TOKEN, rounds=rounds,
        oracles=tuple(o.address for o in world["oracles"]), min_trainers=n_trainers,
        max_trainers=n_trainers, min_stake=10 * TOKEN, trainer_bond=TOKEN, oracle_slash=10 * TOKEN,
        join_window=600, round_duration=600, commit_duration=600, reveal_duration=600,
        dispute_duration=600, privacy=privacy,
    )  # fmt: skip
    task_id, _ = create_task(world["market"], world["store"], world["requester"], plan, x, y)
    for o in world["oracles"]:  # consent: each proposed oracle takes its seat
        assert accept_seat(world["market"], o.eth, task_id) == (True, "accepted my committee seat")
    return task_id


def trainer_nodes(world, task_id, n=4):
    splits = world["splits"]
    parts = partition("iid", splits.train.y, num_clients=n, seed=0)
    return [
        TrainerNode(
            TaskSession.open(world["market"], world["store"], task_id, t),
            splits.train.subset(idx),
            Journal(world["tmp"] / f"t{task_id}-{t.address}.sqlite"),
        )
        for t, idx in zip(world["trainers"][:n], parts, strict=True)
    ]


def oracle_nodes(world, task_id):
    return [
        OracleNode(
            TaskSession.open(world["market"], world["store"], task_id, o),
            Journal(world["tmp"] / f"o{task_id}-{o.address}.sqlite"),
        )
        for o in world["oracles"]
    ]


def drive(world, task_id, nodes, *, until, limit=200):
    """Step the given nodes round-robin until ``until(info)``; move the clock when all wait."""
    market = world["market"]
    for _ in range(limit):
        info = market.task(task_id)
        if until(info):
            return info
        acted = False
        for n in nodes:
            acted |= not n.step().is_waiting
        if not acted:
            info = market.task(task_id)
            target = (
                info.claims_open_at if info.phase_enum == Phase.FINALIZED else info.phase_deadline
            )
            advance_chain_time(market.w3, max(1, target - market.now() + 1))
    raise AssertionError(f"task {task_id} stuck in {market.task(task_id).phase_enum}")


def commit_raw(world, task_id, trainer: Identity, blob: bytes, *, digest: bytes | None = None):
    """A hostile trainer: commits whatever bytes it likes for round 1."""
    market = world["market"]
    cid = world["store"].put(blob)
    market.commit_update(trainer.eth, task_id, 1, cid, digest or hashlib.sha256(blob).digest(), 100)


def join_all(world, task_id, nodes):
    """Every node joins; the last join fills the task, so the trainer whose turn it is (seat 0
    by address) starts training on its next step, while the others leave it to that one."""
    assert [n.step().action for n in nodes] == ["joined"] * len(nodes)
    starter = min(nodes, key=lambda n: n.me)
    for n in nodes:
        if n is not starter:
            assert n.step().action == "waiting for the task to start"
    assert starter.step().action == "advanced to training"


def test_malformed_updates_are_flagged_invalid_and_the_task_still_pays(world):
    task_id = new_task(world)
    trainers = trainer_nodes(world, task_id)
    join_all(world, task_id, trainers)
    honest, garbage, nan_sender, wrong_digest = trainers
    session = honest.session
    # Garbage that is not an envelope at all.
    commit_raw(world, task_id, garbage.session.identity, b"\x00not an envelope" * 10)
    # A well-formed envelope whose update contains NaN.
    bad = {k: torch.full_like(v, float("nan")) for k, v in session.global_weights(1).items()}
    ctx = EnvelopeContext(chain_id=session.chain_id, task_id=task_id, round=1,
                          sender=nan_sender.session.identity.address)  # fmt: skip
    commit_raw(world, task_id, nan_sender.session.identity,
               seal(dump_weights(bad), recipients=session.members().recipients(),
                    context=ctx))  # fmt: skip
    # Bytes that do not hash to the committed digest.
    commit_raw(world, task_id, wrong_digest.session.identity, b"x" * 64, digest=b"\x11" * 32)

    oracles = oracle_nodes(world, task_id)
    info = drive(
        world, task_id, [honest, *oracles], until=lambda i: i.phase_enum == Phase.FINALIZED
    )
    report = final_report(session)
    flags = {p["account"]: p["flags"] for p in report["payouts"]}

    def reason(node):
        return " ".join(e.get("reason", "") for e in report["flags"][node.me]["evidence"])

    for bad_node in (garbage, nan_sender, wrong_digest):
        assert flags[bad_node.me] & Flag.INVALID
    assert "CryptoError" in reason(garbage)
    assert "NaN" in reason(nan_sender)
    assert "DigestMismatchError" in reason(wrong_digest)
    assert flags[honest.me] == 0
    paid = {p["account"]: int(p["amount"]) for p in report["payouts"]}
    assert paid[honest.me] == 100 * TOKEN and info.budget == 100 * TOKEN


def test_oracle_refuses_a_validation_set_that_does_not_match_the_commitment(world):
    splits = world["splits"]
    task_id = new_task(world)
    trainers = trainer_nodes(world, task_id)
    drive(world, task_id, trainers, until=lambda i: i.phase_enum == Phase.COMMITTING)
    oracle = oracle_nodes(world, task_id)[0]
    market = world["market"]
    # The requester swapped the data behind the published CID's back: simulate by pointing the
    # oracle's document at a different (validly encrypted) validation set.
    from dataclasses import replace

    from marketplace.protocol.session import seal_validation_set

    blob, ref = seal_validation_set(
        splits.test.x, splits.test.y, oracles={oracle.me: oracle.session.identity.x25519_public},
        chain_id=market.deployment.chain_id, requester=world["requester"].address,
    )  # fmt: skip
    swapped = replace(ref, cid=world["store"].put(blob),
                      sha256=oracle.session.doc.validation.sha256,
                      samples=len(splits.test.y))  # fmt: skip
    oracle.session.doc = replace(oracle.session.doc, validation=swapped)
    with pytest.raises(FedMarketError, match="refusing to score"):
        oracle.step()
    assert bytes(market.call(market.market.functions.commitmentOf(task_id, oracle.me))) == bytes(32)


def test_an_oracle_that_missed_the_commit_phase_does_not_reveal_and_is_slashed(world):
    task_id = new_task(world)
    trainers = trainer_nodes(world, task_id)
    drive(world, task_id, trainers, until=lambda i: i.phase_enum == Phase.COMMITTING)
    first, second, late = oracle_nodes(world, task_id)
    drive(world, task_id, [first, second], until=lambda i: i.phase_enum == Phase.REVEALING)
    step = late.step()
    assert step.is_done and "missed the commit phase" in step.action
    market = world["market"]
    stake_before = market.participant(late.me).stake
    drive(world, task_id, [first, second, *trainers],
          until=lambda i: i.phase_enum == Phase.FINALIZED and bool(
              market.call(market.market.functions.isOracleSlashed(task_id, late.me))))  # fmt: skip
    assert market.participant(late.me).stake == stake_before - 10 * TOKEN


def test_a_trainer_restarted_after_publishing_commits_the_journaled_update(world, monkeypatch):
    task_id = new_task(world, n_trainers=2)
    a, b = trainer_nodes(world, task_id, n=2)
    join_all(world, task_id, [a, b])
    # Publish but "crash" before the commit transaction: make commit_update fail once.
    market = world["market"]

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    # monkeypatch restores the module-scoped market even if the step does not raise
    monkeypatch.setattr(market, "commit_update", crash)
    with pytest.raises(KeyboardInterrupt):
        a.step()
    monkeypatch.undo()
    recorded = a.journal.get(task_id, 1, "published")
    assert recorded is not None
    restarted = TrainerNode(TaskSession.open(market, world["store"], task_id, a.session.identity),
                            a.data, Journal(a.journal.path))  # fmt: skip
    assert restarted.step().action == "committed round 1"
    digest, _ = market.update_of(task_id, 1, a.me)
    assert digest.hex() == recorded["digest"]  # the same envelope, not a re-encryption


def race_in_one_block(w3, calls):
    """Run ``calls`` concurrently with automine off, mine once every transaction is pending (so
    all passed gas estimation against the same state), and return their results in order."""
    from concurrent.futures import ThreadPoolExecutor

    w3.provider.make_request("evm_setAutomine", [False])
    try:
        with ThreadPoolExecutor(len(calls)) as pool:
            racing = [pool.submit(call) for call in calls]
            for _ in range(600):
                pending = w3.eth.get_block("pending")["transactions"]
                if len(pending) >= len(calls) or any(f.done() for f in racing):
                    break
                time.sleep(0.05)
            w3.provider.make_request("evm_mine", [])
            return [f.result(timeout=60) for f in racing]
    finally:
        w3.provider.make_request("evm_setAutomine", [True])


def test_two_peers_racing_to_advance_one_wins_and_the_loser_reads_the_decoded_error(world):
    """Both transactions pass gas estimation, then land in the same block: the second one fails
    on-chain, and its custom error is recovered by replaying it, so the loser carries on."""
    task_id = new_task(world)
    nodes = trainer_nodes(world, task_id)
    assert [n.step().action for n in nodes] == ["joined"] * len(nodes)
    outcomes = race_in_one_block(
        world["market"].w3, [lambda n=n: n.try_advance() for n in nodes[:2]]
    )
    assert sorted(outcomes) == [False, True]
    assert world["market"].task(task_id).phase_enum == Phase.TRAINING


def test_a_failed_mined_transaction_names_its_custom_error(world):
    """The raw layer: the loser's error names the contract's reason, not just "status 0"."""
    from marketplace.errors import TransactionRevertedError

    task_id = new_task(world)
    nodes = trainer_nodes(world, task_id)
    assert [n.step().action for n in nodes] == ["joined"] * len(nodes)
    market = world["market"]

    def advance(node):
        try:
            market.advance(node.account, task_id)
            return None
        except TransactionRevertedError as exc:
            return exc

    errors = race_in_one_block(market.w3, [lambda n=n: advance(n) for n in nodes[:2]])
    lost = [e for e in errors if e is not None]
    assert len(lost) == 1
    # Training has started and its first round is still open: advancing again is too early.
    assert lost[0].error_name == "TaskMarketTooEarly"
    # In words with the fix, and still named (marketplace.chain.explain).
    text = str(lost[0])
    assert text.startswith("advance reverted: task ") and "not before" in text
    assert "(TaskMarketTooEarly)" in text and "mined in block" in text


def _post_model_senders(market, task_id):
    """Who sent each postModel transaction of the task (reverted ones included)."""
    w3 = market.w3
    post_model = market.market.functions.postModel(0, 0, "", b"\0" * 32)
    selector = post_model._encode_transaction_data()[:10]
    out = []
    for number in range(1, w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["to"] == market.market.address and tx["input"].hex().startswith(selector[2:]):
                _, args = market.market.decode_function_input(tx["input"])
                if args["taskId"] == task_id:
                    out.append((int(args["round"]), tx["from"]))
    return sorted(out)


def test_one_elected_trainer_posts_each_model_and_the_others_only_check_it(world):
    task_id = new_task(world, rounds=2)
    nodes = trainer_nodes(world, task_id)
    market = world["market"]
    join_all(world, task_id, nodes)
    drive(world, task_id, nodes, until=lambda i: i.phase_enum not in (Phase.OPEN, Phase.TRAINING)
          and market.model_digest(task_id, 3) != bytes(32))  # fmt: skip
    trainers = sorted(n.me for n in nodes)
    # Rounds 2 and 3 (the final model): one transaction each, by the trainer whose turn it was.
    assert _post_model_senders(market, task_id) == [(2, trainers[0]), (3, trainers[1])]
    for n in nodes:  # everyone derived the posted models
        assert n.session.model_digest(2) == market.model_digest(task_id, 2)
        assert n.session.model_digest(3) == market.model_digest(task_id, 3)


def test_when_the_elected_poster_is_silent_another_trainer_posts_after_the_grace(world):
    task_id = new_task(world, rounds=2, n_trainers=2)
    now = [0.0]
    market, splits = world["market"], world["splits"]
    nodes = [
        TrainerNode(
            TaskSession.open(market, world["store"], task_id, t),
            splits.train.subset(range(50 * i, 50 * i + 50)),
            Journal(world["tmp"] / f"grace{task_id}-{t.address}.sqlite"),
            post_grace=10.0,
            clock=lambda: now[0],
        )
        for i, t in enumerate(world["trainers"][:2])
    ]
    join_all(world, task_id, nodes)
    # The last to commit closes the round straight away.
    assert [n.step().action for n in nodes] == [
        "committed round 1",
        "committed round 1 and closed it",
    ]
    # Round r's model is posted by the trainer in seat r - 2 of the task's sorted trainers.
    poster = next(n for n in nodes if n.me == n.session.members().trainers[0])
    other = next(n for n in nodes if n is not poster)
    # The poster never runs again. The other trains round 2 without posting, then waits...
    assert other.step().action == "committed round 2"
    assert market.model_digest(task_id, 2) == bytes(32)
    assert other.step().action == "waiting for round 2 to close"
    # ...until the grace has passed on its clock: then it posts the model itself.
    now[0] += 10.0
    assert other.step().action == "posted the model of round 2"
    assert market.model_digest(task_id, 2) == other.session.model_digest(2)


# --- the member set: every trainer in every envelope ------------------------------------------
def _hide_joins_of(market, hidden, monkeypatch, *, also_on_rescan):
    """Make ``market``'s TrainerJoined logs leave out ``hidden`` (as a node whose state is ahead
    of its logs answers: Anvil, while it mines the block of that join); the rescan up to the
    latest block shows it unless ``also_on_rescan``."""
    real = market.events

    def lagging(contract, event, *, from_block=None, **kwargs):
        logs = real(contract, event, from_block=from_block, **kwargs)
        if event != "TrainerJoined" or (from_block is not None and not also_on_rescan):
            return logs
        return [e for e in logs if e["args"]["trainer"] != hidden]

    monkeypatch.setattr(market, "events", lagging)


def test_members_read_while_trainers_join_are_not_kept_past_the_join_phase(world):
    market, trainers = world["market"], world["trainers"]
    task_id = new_task(world, n_trainers=3)
    for t in trainers[:2]:
        market.join(t.eth, task_id)
    session = TaskSession.open(market, world["store"], task_id, trainers[0])
    assert session.members().trainers == tuple(sorted(t.address for t in trainers[:2]))
    market.join(trainers[2].eth, task_id)
    # Read during the join phase, the set was not kept: the third trainer is a recipient.
    everyone = tuple(sorted(t.address for t in trainers[:3]))
    assert session.members().trainers == everyone
    assert trainers[2].address in session.members().recipients()
    assert session.join_order() == [t.address for t in trainers[:3]]
    market.advance(trainers[0].eth, task_id)
    assert session.members() is session.members()  # final now: read once
    assert session.members().trainers == everyone


def test_a_join_the_logs_do_not_show_yet_is_read_again_or_retried_never_left_out(
    world, monkeypatch
):
    from marketplace.errors import ChainLagError
    from marketplace.protocol.members import load_members
    from marketplace.resilience import is_transient

    market, trainers = world["market"], world["trainers"]
    task_id = new_task(world, n_trainers=3)
    for t in trainers[:3]:
        market.join(t.eth, task_id)
    market.advance(trainers[0].eth, task_id)
    last = trainers[2].address
    everyone = tuple(sorted(t.address for t in trainers[:3]))
    with monkeypatch.context() as m:  # the cached scan lags; the rescan shows the join
        _hide_joins_of(market, last, m, also_on_rescan=False)
        assert load_members(market, task_id).trainers == everyone
        assert market.joined_trainers(task_id)[-1] == last
    with monkeypatch.context() as m:  # both lag: a transient error, retried by the run loop
        _hide_joins_of(market, last, m, also_on_rescan=True)
        session = TaskSession.open(market, world["store"], task_id, trainers[0])
        with pytest.raises(ChainLagError, match="3 trainers but the chain's logs show 2") as err:
            session.members()
        assert is_transient(err.value)
        with pytest.raises(ChainLagError):
            session.join_order()
    # Once the logs catch up, the whole set is read (nothing partial was kept).
    assert session.members().trainers == everyone
    assert session.join_order() == [t.address for t in trainers[:3]]


def test_a_closed_round_whose_logs_lag_its_count_is_retried_not_aggregated_short(
    world, monkeypatch
):
    from marketplace.errors import ChainLagError

    market = world["market"]
    task_id = new_task(world, n_trainers=2)
    nodes = trainer_nodes(world, task_id, n=2)
    join_all(world, task_id, nodes)
    drive(world, task_id, nodes, until=lambda i: i.phase_enum == Phase.COMMITTING)
    session = TaskSession.open(market, world["store"], task_id, world["trainers"][0])
    real = market.update_count
    # A batch that closed the round, counted in state, its log not readable yet: one more.
    with monkeypatch.context() as m:
        m.setattr(market, "update_count", lambda t, r: real(t, r) + 1)
        with pytest.raises(ChainLagError, match="counts 3 updates but its logs show 2"):
            session.round_updates(1)
    # Nothing short was kept: read again once the logs show every update.
    assert len(session.round_updates(1).valid) == 2
