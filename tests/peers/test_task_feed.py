"""Event-driven peers (marketplace.protocol.task_feed) on real Anvil and Kubo.

A peer's run loop sleeps on the feed: the task's next log (by websocket subscription) wakes it,
with polling as the fallback when there is no websocket or it drops. Updates that gossip
delivered or that the commit logs announced are kept opened, and the round's close does not read
them from the store again (store reads are counted, never timed).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from marketkit import Member, market_with

from marketplace.chain.backend import connect
from marketplace.chain.clients import Role
from marketplace.chain.devnet import free_port, start_devnet
from marketplace.chain.subscription import ChainSubscription, Wakeup, ws_endpoint
from marketplace.fl import ModelSpec, TrainConfig, load_dataset, partition, split_dataset
from marketplace.gossip.membership import BackgroundAnnouncer, open_task_gossip
from marketplace.protocol.committee import accept_seat
from marketplace.protocol.identity import Identity
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.session import CommittedUpdate, TaskSession
from marketplace.protocol.task_feed import TaskFeed, open_task_feed
from marketplace.protocol.update_cache import UpdateCache
from marketplace.storage.kubo import KuboStore
from node.peers.base import Peer, Step
from node.peers.journal import Journal
from node.peers.trainer import TrainerNode

TOKEN = 10**18
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=0)
WAIT = 60.0  # bound for a condition to become true; never asserted as a duration


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {WAIT:.0f}s: {what}")
        time.sleep(0.02)


class CountingStore:
    """The real Kubo store, with every ``get`` counted by CID."""

    def __init__(self, inner: KuboStore) -> None:
        self._inner = inner
        self.gets: Counter[str] = Counter()

    def get(self, cid: str, **kwargs: Any) -> bytes:
        self.gets[cid] += 1
        return self._inner.get(cid, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture(scope="module")
def world(kubo, module_chain, tmp_path_factory):
    w3 = connect(module_chain.rpc_url)
    requester = Identity.dev(1)
    trainers = [Identity.dev(i) for i in (2, 3)]
    oracles = [Identity.dev(i) for i in (6, 7, 8)]
    peer = {"stake": 100 * TOKEN, "tokens": 1_000 * TOKEN}
    market = market_with(w3, Identity.dev(0).eth, [
        Member.of(requester, Role.REQUESTER, tokens=10_000 * TOKEN),
        *(Member.of(t, Role.TRAINER, **peer) for t in trainers),
        *(Member.of(o, Role.ORACLE, **peer) for o in oracles),
    ])  # fmt: skip
    yield {
        "market": market, "store": KuboStore(kubo.api_multiaddr), "requester": requester,
        "trainers": trainers, "oracles": oracles, "rpc_url": module_chain.rpc_url,
        "splits": split_dataset(load_dataset("digits"), seed=0),
        "tmp": tmp_path_factory.mktemp("feed"),
    }  # fmt: skip


def new_task(world) -> int:
    splits = world["splits"]
    plan = TaskPlan(
        model=SPEC, train=TrainConfig(epochs=1, lr=0.1), budget=100 * TOKEN, rounds=2,
        oracles=tuple(o.address for o in world["oracles"]), min_trainers=2, max_trainers=2,
        min_stake=10 * TOKEN, trainer_bond=TOKEN, oracle_slash=10 * TOKEN, join_window=600,
        round_duration=600, commit_duration=600, reveal_duration=600, dispute_duration=600,
    )  # fmt: skip
    task_id, _ = create_task(
        world["market"], world["store"], world["requester"], plan, splits.validation.x,
        splits.validation.y,
    )  # fmt: skip
    for o in world["oracles"]:
        accept_seat(world["market"], o.eth, task_id)
    return task_id


def trainers_of(world, task_id: int, store=None) -> list[TrainerNode]:
    splits = world["splits"]
    parts = partition("iid", splits.train.y, num_clients=2, seed=0)
    return [
        TrainerNode(
            TaskSession.open(world["market"], store or world["store"], task_id, t),
            splits.train.subset(idx),
            Journal(world["tmp"] / f"t{task_id}-{t.address}.sqlite"),
        )
        for t, idx in zip(world["trainers"], parts, strict=True)
    ]


class UntilFull(Peer):
    """A peer whose only business is to see the task fill up (then it is done)."""

    role = "watcher"

    def step(self) -> Step:
        info = self.session.info()
        if info.trainer_count >= info.max_trainers:
            return Step.done("the task is full")
        return Step.waiting("waiting for trainers")


def run_in_background(peer: Peer, feed: TaskFeed, poll: float) -> tuple[threading.Thread, list]:
    """``peer.run`` on a thread, sleeping on ``feed``; records whether each sleep was woken."""
    sleeps: list[bool] = []

    def sleep(seconds: float) -> None:
        sleeps.append(feed.wakeup.wait(seconds))

    thread = threading.Thread(target=lambda: peer.run(poll=poll, sleep=sleep), daemon=True)
    thread.start()
    return thread, sleeps


# --- waking -----------------------------------------------------------------------------------
def test_a_waiting_peer_is_woken_by_the_task_s_next_event_not_by_its_poll(world) -> None:
    # Prepare: one trainer joined; the watcher polls once an hour, but sleeps on the feed
    task_id = new_task(world)
    first, second = trainers_of(world, task_id)
    first.step()
    watcher = UntilFull(first.session, Journal(world["tmp"] / f"w{task_id}.sqlite"))
    feed = open_task_feed(first.session, world["rpc_url"])
    try:
        assert feed.subscription is not None
        wait_until(feed.subscription.connected.is_set, "the subscription is live")
        thread, sleeps = run_in_background(watcher, feed, poll=3600.0)
        wait_until(lambda: len(sleeps) >= 1 or not thread.is_alive(), "the watcher waits")
        # Execute: the second trainer joins (a TrainerJoined log of this task)
        assert second.step().action == "joined"
        # Assert: the run loop stepped again and finished, each sleep cut short by an event
        thread.join(WAIT)
        assert not thread.is_alive(), "the peer was not woken by the join"
        assert sleeps and all(sleeps)
        assert feed.subscription.notifications >= 1 and feed.stats()["wakes"] >= 1
    finally:
        feed.close()


def test_without_a_websocket_the_peer_polls_and_says_so_once(world, kubo, caplog) -> None:
    # Prepare: an HTTP endpoint that serves no JSON-RPC websocket (Kubo's API port)
    caplog.set_level(logging.WARNING, logger="marketplace.chain.subscription")
    task_id = new_task(world)
    first, second = trainers_of(world, task_id)
    first.step()
    watcher = UntilFull(first.session, Journal(world["tmp"] / f"w{task_id}.sqlite"))
    feed = open_task_feed(first.session, kubo.api_url)
    try:
        assert feed.subscription is not None
        wait_until(lambda: feed.subscription.drops >= 2, "the subscription was retried")
        thread, sleeps = run_in_background(watcher, feed, poll=0.05)
        # Execute
        second.step()
        # Assert: the poll found the change; no sleep was cut short; one warning line
        thread.join(WAIT)
        assert not thread.is_alive() and sleeps and not any(sleeps)
        assert not feed.subscribed
        lines = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(lines) == 1 and "polling meanwhile" in lines[0]
    finally:
        feed.close()
    assert open_task_feed(first.session, "inprocess").subscription is None  # polls only


def test_a_dropped_socket_is_retried_visibly_and_restored(chain_kind, tmp_path, caplog) -> None:
    # Prepare: a node of our own, so it can be stopped and started again on the same port
    caplog.set_level(logging.WARNING, logger="marketplace.chain.subscription")
    port = free_port()
    node = start_devnet(chain_kind, port=port, log_path=tmp_path / "a.log")
    url = ws_endpoint(node.rpc_url)
    assert url is not None
    wakeup = Wakeup()
    sub = ChainSubscription(url, wakeup=wakeup, heads=True).start()
    restarted = None
    try:
        wait_until(sub.connected.is_set, "subscribed")
        wakeup.wait(0)  # the wake-up that every (re)connection gives
        # Execute: the node goes away
        node.stop()
        # Assert: the drop is noticed, logged once, and the loop is woken to poll
        wait_until(lambda: sub.drops >= 1 and not sub.connected.is_set(), "drop noticed")
        assert wakeup.wait(WAIT)
        assert any("dropped" in r.getMessage() for r in caplog.records)
        # Execute: the node comes back on the same port
        restarted = start_devnet(chain_kind, port=port, log_path=tmp_path / "b.log")
        wait_until(sub.connected.is_set, "resubscribed")
        wakeup.wait(0)
        connect(restarted.rpc_url).provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        # Assert: notifications flow again
        assert wakeup.wait(WAIT)
        assert any("restored" in r.getMessage() for r in caplog.records)
    finally:
        sub.stop()
        node.stop()
        if restarted is not None:
            restarted.stop()


# --- updates kept ------------------------------------------------------------------------------
def test_a_commit_seen_in_the_logs_is_fetched_once_and_not_again_at_the_close(world) -> None:
    # Prepare: the first trainer reads the store through a counter and listens to the logs
    task_id = new_task(world)
    store = CountingStore(world["store"])
    first, second = trainers_of(world, task_id, store=store)
    feed = open_task_feed(first.session, world["rpc_url"])
    try:
        assert feed.subscription is not None
        wait_until(feed.subscription.connected.is_set, "subscribed")
        first.step(), second.step()  # both join
        starter = min((first, second), key=lambda n: n.me)
        assert starter.step().action == "advanced to training"
        # Execute: both train and commit round 1 (the last committer closes it)
        second.step(), first.step()
        assert first.session.info().current_round == 2
        wait_until(lambda: feed.cache.held() == 2, "both updates kept")
        reads_before_close = sum(store.gets.values())
        model = first.session.model_digest(2)  # the close: aggregates round 1's commits
        # Assert: the other's update was read once (the prefetch), ours never; the close read
        # nothing, and computed the same model as a peer without a cache
        committed = {c.sender: c.cid for c in first.session.committed(1)}
        assert store.gets[committed[second.me]] == 1
        assert store.gets[committed[first.me]] == 0
        assert sum(store.gets.values()) == reads_before_close
        assert feed.cache.stats["hits"] == 2 and feed.cache.stats["misses"] == 0
        fresh = TaskSession.open(world["market"], world["store"], task_id, world["trainers"][0])
        assert fresh.model_digest(2) == model
    finally:
        feed.close()


def test_an_update_gossip_delivered_inline_is_never_read_from_the_store(world, kubo_pair) -> None:
    # Prepare: gossip between the two trainers over two connected daemons; the first trainer
    # has no log subscription (gossip alone feeds its cache) and counts its store reads
    task_id = new_task(world)
    store = CountingStore(world["store"])
    first, second = trainers_of(world, task_id, store=store)
    feed = open_task_feed(first.session, world["rpc_url"], subscribe=False)
    gossip_first = open_task_gossip(
        first.session, kubo_pair[0].api_multiaddr, on_payload=feed.on_gossip
    )
    gossip_second = open_task_gossip(second.session, kubo_pair[1].api_multiaddr)
    announcer = BackgroundAnnouncer(gossip_second, payload_for=second.session.own_envelope)
    second.announce = announcer
    gossip_first.start(), gossip_second.start()
    try:
        gossip_first._receiver._pubsub.wait_for_peers(gossip_first.topic, 1)  # type: ignore[attr-defined]
        first.step(), second.step()
        starter = min((first, second), key=lambda n: n.me)
        assert starter.step().action == "advanced to training"
        # Execute: the second trainer commits (and announces inline); then the first
        second.step()
        wait_until(lambda: feed.cache.held() == 1, "the gossiped update kept")
        first.step()
        first.session.model_digest(2)
        # Assert: the second trainer's update never came from the first trainer's store
        committed = {c.sender: c.cid for c in first.session.committed(1)}
        assert store.gets[committed[second.me]] == 0
        assert feed.cache.stats["delivered"] == 1 and feed.cache.stats["hits"] == 1
        assert gossip_first.stats().accepted == 1
    finally:
        announcer.close()
        gossip_first.stop(), gossip_second.stop()
        feed.close()


def test_gossiped_leaves_wake_the_loop_only_once_the_rounds_leaves_are_all_in() -> None:
    # Prepare: a feed over a three-trainer task (only what on_leaf reads: the held leaves and
    # the trainers); each wake-up costs a peer a round of chain reads
    from types import SimpleNamespace

    trainers = ["0xA", "0xB", "0xC"]
    members = SimpleNamespace(trainers=trainers)
    session = SimpleNamespace(gossiped_leaves={}, members=lambda: members)
    wakeup = Wakeup()
    feed = TaskFeed(session, wakeup, cache=None, logs=None)  # type: ignore[arg-type]
    # Execute + Assert: two of three leaves do not wake; the third does; old rounds are dropped
    session.gossiped_leaves[1] = {"0xA": "old"}
    for sender in trainers[:2]:
        feed.on_leaf(SimpleNamespace(round=3, sender=sender))  # type: ignore[arg-type]
    assert not wakeup.wait(0)
    feed.on_leaf(SimpleNamespace(round=3, sender="0xC"))  # type: ignore[arg-type]
    assert wakeup.wait(0)
    assert sorted(session.gossiped_leaves[3]) == trainers and 1 not in session.gossiped_leaves


def test_a_pushed_phase_advance_moves_gossips_round_without_a_chain_read() -> None:
    # Prepare: gossip's membership over a session that counts its chain reads, fed by the
    # feed's PhaseAdvanced logs (what `node run` wires)
    from types import SimpleNamespace

    from marketplace.gossip.membership import ChainMembership

    reads: list[int] = []

    def info() -> SimpleNamespace:
        reads.append(1)
        return SimpleNamespace(current_round=2)

    membership = ChainMembership(SimpleNamespace(info=info), round_ttl=60.0)  # type: ignore[arg-type]
    events = iter([
        {"event": "PhaseAdvanced", "args": {"round": 3}},
        {"event": "PhaseAdvanced", "args": {"round": 1}},  # stale: never moves the round back
    ])  # fmt: skip
    logs = SimpleNamespace(decode=lambda raw: next(events))
    feed = TaskFeed(None, Wakeup(), cache=None, logs=logs, on_round=membership.note_round)  # type: ignore[arg-type]
    assert membership.current_round() == 2 and len(reads) == 1
    # Execute: the round advances on-chain, pushed by the subscription
    woke = feed.on_log({})
    # Assert: the loop is woken and gossip's round moved on with no chain read
    assert woke and membership.current_round() == 3 and len(reads) == 1
    feed.on_log({})
    assert membership.current_round() == 3 and len(reads) == 1


def test_delivered_bytes_are_opened_on_the_delivering_thread_and_wrong_ones_never_kept(
    world,
) -> None:
    # Prepare: the second trainer's sealed update of round 1 (its own envelope) and a cache on
    # the first trainer's session
    task_id = new_task(world)
    first, second = trainers_of(world, task_id)
    first.step(), second.step()
    starter = min((first, second), key=lambda n: n.me)
    assert starter.step().action == "advanced to training"
    delta = second.train_round(1)
    assert not isinstance(delta, Step)
    cid, digest = second.session.publish_update(1, delta[0])
    blob = second.session.own_envelope(1, digest)
    assert blob is not None
    cache = UpdateCache(first.session)
    try:
        # Execute: bytes that are not the digest's, bytes that do not open, then the update
        cache.deliver(1, second.me, digest, blob[:-1])
        cache.deliver(1, second.me, hashlib.sha256(b"junk").digest(), b"junk")
        cache.deliver(1, second.me, digest, blob)
        # Assert: kept on return (no worker involved), under the committed key only
        assert cache.held() == 1 and cache.stats["opened"] == 1 and cache.stats["failed"] == 1
        committed = CommittedUpdate(second.me, 1, cid, digest, len(second.data), -1)
        held = cache.get(committed)
        assert held is not None and held.keys() == delta[0].keys()
        assert cache.get(CommittedUpdate(second.me, 1, cid, bytes(32), 1, -1)) is None
    finally:
        cache.close()
