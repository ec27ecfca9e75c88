"""The oracle's sourcing duty (node/peers/oracle_sourcing.py) on real Anvil and Kubo, in-process.

Three OracleNodes take their seats on a sourced task's data request, value the revealed offers
(two clean shards, one offer whose sealed "sketch" is not a sketch, one whose sketch disagrees with
its declared count), commit and reveal the selection. One oracle is rebuilt from its journal after
committing (a restart) and reveals what it committed; the malformed offers are rejected with their
reasons and never stop an oracle. Then only the winners can join the task.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from marketkit import Member, market_with

from marketplace.chain.backend import connect
from marketplace.chain.clients import Role
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.sourcing_client import DataSourcingClient, RequestParams
from marketplace.crypto.envelope import EnvelopeContext, seal
from marketplace.errors import TransactionRevertedError
from marketplace.fl import ModelSpec, TrainConfig, load_dataset, split_dataset
from marketplace.fl.data import canonical_digest
from marketplace.protocol.committee import accept_seat
from marketplace.protocol.identity import Identity
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.session import TaskSession
from marketplace.protocol.sourcing import (
    SOURCING_ROUND,
    PreparedOffer,
    commit_offer,
    load_selection,
    prepare_offer,
    publish_request,
)
from marketplace.sourcing import SketchSpec, discriminant_basis
from marketplace.storage.kubo import KuboStore
from node.peers.journal import Journal
from node.peers.oracle import OracleNode
from node.peers.oracle_sourcing import step_name

TOKEN = 10**18
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)
WINDOW = 600


@pytest.fixture(scope="module")
def world(kubo, module_chain, tmp_path_factory):
    w3 = connect(module_chain.rpc_url)
    requester = Identity.dev(1)
    owners = [Identity.dev(i) for i in range(2, 6)]
    oracles = [Identity.dev(i) for i in range(6, 9)]
    peer = {"stake": 100 * TOKEN, "tokens": 1_000 * TOKEN}
    market = market_with(w3, Identity.dev(0).eth, [
        Member.of(requester, Role.REQUESTER, tokens=10_000 * TOKEN),
        *(Member.of(t, Role.TRAINER, **peer) for t in owners),
        *(Member.of(o, Role.ORACLE, **peer) for o in oracles),
    ])  # fmt: skip
    return {
        "market": market, "store": KuboStore(kubo.api_multiaddr), "requester": requester,
        "owners": owners, "oracles": oracles,
        "splits": split_dataset(load_dataset("digits"), seed=0),
        "client": DataSourcingClient(w3, market.deployment), "tmp": tmp_path_factory.mktemp("o"),
    }  # fmt: skip


def sourced_task(world, *, document: bytes | None = None) -> tuple[int, int, SketchSpec]:
    """A task gated by DataSourcing, with a data request on it (budget 150, quorum 2);
    ``document`` replaces the request document the requester publishes."""
    market, store, client = world["market"], world["store"], world["client"]
    val = world["splits"].validation
    plan = TaskPlan(
        model=SPEC, train=TrainConfig(epochs=1, lr=0.1), budget=100 * TOKEN, rounds=1,
        oracles=tuple(o.address for o in world["oracles"]), min_trainers=2, max_trainers=2,
        min_stake=10 * TOKEN, trainer_bond=TOKEN, oracle_slash=10 * TOKEN,
        join_window=8 * WINDOW, round_duration=600, commit_duration=600, reveal_duration=600,
        dispute_duration=600, join_gate=client.address,
    )  # fmt: skip
    requester = world["requester"]
    task_id, _ = create_task(market, store, requester, plan, val.x, val.y)
    for o in world["oracles"]:
        accept_seat(market, o.eth, task_id)
    basis = discriminant_basis(val.x, val.y, num_classes=10, num_directions=9, seed=0)
    spec = SketchSpec(task_seed=0, input_dim=64, num_classes=10, num_directions=9, basis=basis)
    market.ensure_allowance(requester.eth, client.address, 150 * TOKEN)
    if document is not None:
        now, oracles = market.now(), tuple(o.address for o in world["oracles"])
        params = RequestParams(
            task_id, market.token.address, 150 * TOKEN, TOKEN, str(store.put(document)),
            bytes.fromhex(canonical_digest(val.x, val.y)), oracles, 2,
            *(now + k * WINDOW for k in range(1, 6)),
        )  # fmt: skip
        return task_id, client.create_request(requester.eth, params), spec
    request_id, _ = publish_request(
        client, store, requester.eth, task_id=task_id, token=market.token.address,
        budget=150 * TOKEN, spec=spec, oracles=tuple(o.address for o in world["oracles"]),
        quorum=2, validation_commitment=bytes.fromhex(canonical_digest(val.x, val.y)),
        window=WINDOW, claim_window=WINDOW, now=market.now(),
    )  # fmt: skip
    return task_id, request_id, spec


def oracle_node(world, task_id: int, o: Identity) -> OracleNode:
    session = TaskSession.open(world["market"], world["store"], task_id, o)
    return OracleNode(session, Journal(world["tmp"] / f"o{task_id}-{o.address}.sqlite"))


def warp_past(world, deadline: int) -> None:
    market = world["market"]
    advance_chain_time(market.w3, max(1, deadline - market.now() + 1))


def test_oracles_select_from_revealed_offers_reject_malformed_ones_and_resume_after_restart(world):
    market, store, client = world["market"], world["store"], world["client"]
    task_id, request_id, spec = sourced_task(world)
    nodes = [oracle_node(world, task_id, o) for o in world["oracles"]]
    assert [n.step().action for n in nodes] == [f"took the seat on data request {request_id}"] * 3
    assert [n.step().action for n in nodes] == [
        f"data request {request_id}: waiting for offers"
    ] * 3

    train = world["splits"].train
    keys = {o.address: o.x25519_public for o in world["oracles"]}
    chain_id = market.w3.eth.chain_id
    good, bad_json, lying = world["owners"][:2], world["owners"][2], world["owners"][3]
    prepared = {}
    for k, owner in enumerate(good):
        rows = slice(300 * k, 300 * (k + 1))
        prepared[owner.address] = prepare_offer(
            store=store, spec=spec, x=train.x[rows], y=train.y[rows], ask=(40 + 10 * k) * TOKEN,
            request_id=request_id, task_id=task_id, chain_id=chain_id, owner=owner.address,
            committee_keys=keys,
        )  # fmt: skip
    # A sealed blob that is not a sketch at all, and a true sketch with a false row count.
    context = EnvelopeContext(chain_id, task_id, SOURCING_ROUND, bad_json.address)
    junk = seal(b'{"not": "a sketch"}', recipients=keys, context=context)
    prepared[bad_json.address] = PreparedOffer(
        request_id, TOKEN, 10, str(store.put(junk)), b"\x01" * 32
    )
    true = prepare_offer(
        store=store, spec=spec, x=train.x[600:700], y=train.y[600:700], ask=TOKEN,
        request_id=request_id, task_id=task_id, chain_id=chain_id, owner=lying.address,
        committee_keys=keys,
    )  # fmt: skip
    prepared[lying.address] = dataclasses.replace(true, samples=true.samples + 1)
    owners = {o.address: o for o in world["owners"]}
    for address, p in prepared.items():
        commit_offer(client, owners[address].eth, p)  # approves and posts the offer bond
    view = client.request(request_id)
    warp_past(world, view.offer_deadline)
    for address, p in prepared.items():
        client.reveal_offer(owners[address].eth, request_id, ask=p.ask, samples=p.samples,
                            sketch_cid=p.sketch_cid, salt=p.salt)  # fmt: skip
    assert nodes[0].step().is_waiting  # the reveal window is still open
    warp_past(world, view.reveal_deadline)

    steps = [n.step() for n in nodes]
    assert [s.action for s in steps] == [
        f"committed the selection of data request {request_id}"
    ] * 3
    assert len({s.detail for s in steps}) == 1  # the same winners, to the bit
    # A restart: a new node on the same journal waits, then reveals what the first committed.
    restarted = oracle_node(world, task_id, world["oracles"][0])
    chosen = restarted.journal.get(task_id, 0, step_name(request_id, "chosen"))
    assert (
        restarted.step().action == f"data request {request_id}: waiting for the selection reveals"
    )
    warp_past(world, view.select_commit_deadline)
    actions = [n.step().action for n in (restarted, *nodes[1:])]
    assert actions[0] == f"revealed the selection of data request {request_id}"
    assert actions[1].endswith("(final)")  # the quorum (2) is reached by the second reveal
    # Sourcing is over for every oracle: back to the task's own state machine.
    assert [n.step().action for n in nodes] == ["waiting for training to end"] * 3

    tree, report = load_selection(client, store, request_id)
    assert report["requestId"] == request_id and chosen["report_cid"]
    rows = {r["owner"]: r for r in report["offers"]}
    winners = {a for a, r in rows.items() if r["won"]}
    assert winners and winners <= {o.address for o in good}  # only valid offers can win
    assert steps[0].detail == ", ".join(sorted(winners))
    assert "sketch keys must be" in rows[bad_json.address]["rejected"]
    assert "declares 101" in rows[lying.address]["rejected"]
    assert not rows[bad_json.address]["won"] and not rows[lying.address]["won"]
    assert json.dumps(report)

    # Only winners join: the gate refuses the others by name; a registered winner joins.
    for loser in (o for o in world["owners"] if o.address not in winners):
        with pytest.raises(TransactionRevertedError) as refused:
            market.join(loser.eth, task_id)
        assert refused.value.error_name == "TaskMarketJoinRefused"
    for address in winners:
        client.register_winner(owners[address].eth, request_id, tree)
        market.join(owners[address].eth, task_id)
        assert market.is_trainer(task_id, address)


def test_a_malformed_request_document_does_not_stop_the_oracle(world):
    # The requester's document is not a request document: each oracle says why, leaves the data
    # request alone and goes on with the task's own state machine (it never raises).
    task_id, request_id, _ = sourced_task(world, document=b'{"version": 1, "spec": "nonsense"}')
    for o in world["oracles"]:
        node = oracle_node(world, task_id, o)
        assert node.step().is_waiting
        assert node.sourcing.finished
        assert not world["client"].request(request_id).accepted  # no seat taken
