"""Oracle peers evaluate a task's validation submissions on real Anvil and Kubo: the final
aggregate is submission 1, a developer's model submission 2, the (K+1)-th reverts; every score
is committed and revealed from the oracle's journal (a restarted oracle reveals what it
committed); a committee member that commits and stays silent is slashed through the registry."""

from __future__ import annotations

import hashlib

import pytest

from marketplace.chain.clients import Marketplace, Phase
from marketplace.chain.deploy import deploy_product
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.model_market_client import ModelMarketClient, ProductParams, ProductRole
from marketplace.errors import TransactionRevertedError
from marketplace.fl.serialization import dump_weights
from marketplace.protocol.identity import Identity
from marketplace.protocol.members import load_members
from marketplace.protocol.model_evaluation import evaluate_submission, seal_submission
from marketplace.protocol.session import TaskSession
from node.peers.journal import Journal
from node.peers.oracle import OracleNode

from .test_protocol import TOKEN, drive, new_task, trainer_nodes, world  # noqa: F401

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]
WINDOW = 600  # the evaluation's commit and reveal windows


def _oracle(world, market, task_id, who):  # noqa: F811
    return OracleNode(
        TaskSession.open(market, world["store"], task_id, who),
        Journal(world["tmp"] / f"sub{task_id}-{who.address}.sqlite"),
    )


def _step_until(market, nodes, done, limit=60):
    """Step ``nodes`` until ``done()``; when every node waits, move the clock one window."""
    for _ in range(limit):
        if done():
            return
        if all(n.step().is_waiting for n in nodes):
            advance_chain_time(market.w3, WINDOW + 1)
    raise AssertionError("the oracles stopped making progress")


def _seal_and_put(world, market, client, task_id, blob, sender):  # noqa: F811
    committee = load_members(market, task_id).recipients(trainers=False)
    sealed = seal_submission(
        blob, recipients=committee, chain_id=client.chain_id, task_id=task_id, developer=sender
    )
    return str(world["store"].put(sealed))


def test_oracles_evaluate_submissions_and_a_silent_member_is_slashed(world):  # noqa: F811
    # Prepare: ModelMarket beside the task market; a task trained to its final model
    w3 = world["market"].w3
    market = Marketplace(w3, deploy_product(w3, Identity.dev(0).eth, world["market"].deployment))
    client = ModelMarketClient(w3, market.deployment)
    task_id = new_task(world)
    trainers = trainer_nodes(world, task_id)
    first, second, silent = (_oracle(world, market, task_id, o) for o in world["oracles"])
    drive(world, task_id, [*trainers, first, second, silent],
          until=lambda i: i.phase_enum == Phase.FINALIZED
          and market.now() >= i.claims_open_at)  # fmt: skip
    requester, developer = world["requester"], Identity.dev(9)
    client.configure(requester.eth, task_id, ProductParams(
        max_submissions=2, threshold_ppm=500_000, eval_commit_duration=WINDOW,
        eval_reveal_duration=WINDOW,
    ))  # fmt: skip
    session = first.session
    final_round = session.info().rounds + 1
    final = dump_weights(session.global_weights(final_round))
    # Execute: the final aggregate is submission 1, the developer's model submission 2
    sub1 = client.submit_final_model(
        requester.eth, task_id, _seal_and_put(world, market, client, task_id, final,
                                              requester.address)
    )  # fmt: skip
    client.register(developer.eth, ProductRole.DEVELOPER, developer.x25519_public)
    own = dump_weights(session.initial_weights())
    sub2 = client.submit(
        developer.eth, task_id,
        _seal_and_put(world, market, client, task_id, own, developer.address),
        hashlib.sha256(own).digest(),
    )  # fmt: skip
    # Assert: the (K+1)-th submission reverts with its named error
    assert (sub1, sub2) == (1, 2)
    assert client.submission(task_id, 1).digest == market.call(
        market.market.functions.modelDigest(task_id, final_round)
    )
    with pytest.raises(TransactionRevertedError) as refused:
        client.submit(developer.eth, task_id, "bafy-third", hashlib.sha256(b"3").digest())
    assert refused.value.error_name == "ModelMarketSubmissionLimit"
    # Execute: the silent member commits on submission 1 and never reveals; the others commit
    reg = market.registry.functions
    stake = {o.me: market.participant(o.me).stake for o in (first, second, silent)}
    reserved = {o.me: int(market.call(reg.reservedOf(o.me))) for o in (first, second, silent)}
    client.commit_evaluation(silent.account, task_id, 1, 0, b"\x01" * 32)
    _step_until(market, [first, second],
                lambda: client.evaluation_of(task_id, 2, second.me).committed)  # fmt: skip
    # a restarted oracle reveals what its journal says it committed
    first = _oracle(world, market, task_id, world["oracles"][0])
    _step_until(market, [first, second],
                lambda: all(client.evaluation_of(task_id, s, o.me).settled
                            for s in (1, 2) for o in (first, second, silent)
                            if client.evaluation_of(task_id, s, o.me).committed))  # fmt: skip
    assert first.step().is_done and second.step().is_done
    # Assert: deterministic scores decided by the committee; the silent member lost its stake
    x_val, y_val = world["splits"].validation.x, world["splits"].validation.y
    expected = [evaluate_submission(session.doc.model, b, x_val, y_val) for b in (final, own)]
    for sub, score in zip((1, 2), expected, strict=True):
        info = client.submission(task_id, sub)
        assert (info.decided, info.score_ppm, info.passed) == (True, score, score >= 500_000)
        assert client.evaluation_of(task_id, sub, first.me).score_ppm == score
    assert expected[0] > expected[1]  # the trained model beats the initial weights
    slash = market.task(task_id).oracle_slash
    assert market.participant(silent.me).stake == stake[silent.me] - slash
    assert market.participant(first.me).stake == stake[first.me]
    for o in (first, second, silent):
        assert int(market.call(reg.reservedOf(o.me))) == reserved[o.me]
