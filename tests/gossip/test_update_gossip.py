"""Gossip of signed update announcements over three real Kubo daemons connected in a line (A-B-C).

A trainer's update is added on A; its announcement must reach C (through B: A and C are not
connected), every node must fetch the blob by CID with its digest checked and call ``on_update``
once. Bad messages are dropped under their reason and the node goes on working.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.chain.devnet import DEV_PRIVATE_KEYS
from marketplace.crypto.announce import Announcement, sign_announcement
from marketplace.crypto.update_leaf import UpdateLeaf, sign_update_leaf
from marketplace.errors import ConfigError
from marketplace.gossip.topics import task_topic
from marketplace.gossip.update_gossip import LEAF_MAGIC, Gossip, GossipStats
from marketplace.storage.cid import raw_cid
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon, start_kubo
from marketplace.storage.pubsub import PubsubClient

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN = 31337
ROUND = 3
WAIT = 30.0  # generous bound for a condition to become true; never asserted as a duration

NODE_KEYS = [Account.from_key(DEV_PRIVATE_KEYS[i]) for i in (1, 2, 3)]  # the peers A, B, C
TRAINER = Account.from_key(DEV_PRIVATE_KEYS[4])  # a member publishing through A's daemon
TRAINER_2 = Account.from_key(DEV_PRIVATE_KEYS[5])
OUTSIDER = Account.from_key(DEV_PRIVATE_KEYS[6])  # signs correctly, but never joined the task
BROKEN_LOOKUP = Account.from_key(DEV_PRIVATE_KEYS[7])  # is_member raises for this one
MEMBERS = {a.address for a in (*NODE_KEYS, TRAINER, TRAINER_2)}


def is_member(address: str) -> bool:
    if address == BROKEN_LOOKUP.address:
        raise RuntimeError("chain lookup failed")
    return address in MEMBERS


def wait_until(condition: Callable[[], bool], describe: Callable[[], object]) -> None:
    """Poll ``condition`` until true; fail with ``describe()`` after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {WAIT:.0f}s; state: {describe()}")
        time.sleep(0.05)


@dataclass
class Peer:
    name: str
    daemon: KuboDaemon
    pubsub: PubsubClient
    store: KuboStore
    gossip: Gossip
    updates: list[Announcement] = field(default_factory=list)

    def stats(self) -> GossipStats:
        return self.gossip.stats()


@dataclass
class Net:
    task_id: int
    topic: str
    peers: list[Peer]

    @property
    def a(self) -> Peer:
        return self.peers[0]

    @property
    def b(self) -> Peer:
        return self.peers[1]

    @property
    def c(self) -> Peer:
        return self.peers[2]

    def publish(self, raw: bytes) -> None:
        """Publish raw bytes on the topic through daemon A (as a trainer sharing A's daemon)."""
        self.a.pubsub.publish(self.topic, raw)

    def send(self, raw: bytes, observer: Peer) -> None:
        """Publish through A and wait until ``observer`` received it (only with fanout 0).

        Kubo's seqno validator ignores a message whose seqno is below one already validated from
        the same peer, and it validates concurrently, so a burst from one daemon can lose a
        message at random. One message in flight at a time keeps the counts exact.
        """
        before = observer.stats().received
        self.publish(raw)
        wait_until(lambda: observer.stats().received > before, self.describe)

    def sign(self, account: LocalAccount, cid: str, digest: bytes, **over: int) -> Announcement:
        fields = {"chain_id": CHAIN, "task_id": self.task_id, "round": ROUND, **over}
        return sign_announcement(account, cid=cid, digest=digest, market_address=MARKET, **fields)

    def describe(self) -> dict[str, object]:
        return {p.name: (p.stats(), len(p.updates)) for p in self.peers}


@pytest.fixture
def make_net(kubo_line: tuple[KuboDaemon, KuboDaemon, KuboDaemon]) -> Iterator[Callable[..., Net]]:
    """Build gossip on A, B, C on a fresh task topic; everything is stopped after the test."""
    opened: list[Peer] = []

    def build(store_timeout: float = 30.0, **options: int) -> Net:
        task_id = random.getrandbits(32)
        topic = task_topic(CHAIN, MARKET, task_id)
        peers = []
        for name, daemon, key in zip("ABC", kubo_line, NODE_KEYS, strict=True):
            updates: list[Announcement] = []
            pubsub = PubsubClient(daemon.api_multiaddr)
            store = KuboStore(daemon.api_multiaddr, timeout=store_timeout)
            gossip = Gossip(
                pubsub=pubsub, store=store,
                topic=topic, chain_id=CHAIN, market_address=MARKET, task_id=task_id,
                identity_key=key, is_member=is_member, current_round=lambda: ROUND,
                on_update=updates.append, **options,
            )  # fmt: skip
            peer = Peer(name, daemon, pubsub, store, gossip, updates)
            gossip.start()
            opened.append(peer)
            peers.append(peer)
        net = Net(task_id, topic, peers)
        # Wait for the mesh: B sees A and C on the topic, A and C see B.
        net.a.pubsub.wait_for_peers(topic, 1)
        net.b.pubsub.wait_for_peers(topic, 2)
        net.c.pubsub.wait_for_peers(topic, 1)
        return net

    yield build
    for peer in opened:
        peer.gossip.stop()
        peer.pubsub.close()
        peer.store.close()


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """Wrap gossip's ``name`` (a signature check) so each call is recorded in the list returned."""
    from marketplace.gossip import update_gossip

    calls: list[str] = []
    real = getattr(update_gossip, name)

    def counting(*args: object, **kwargs: object) -> str:
        calls.append(name)
        return str(real(*args, **kwargs))

    monkeypatch.setattr(update_gossip, name, counting)
    return calls


def is_pinned(daemon: KuboDaemon, cid: str) -> bool:
    """Whether ``daemon`` pins ``cid`` (so its garbage collection keeps it)."""
    resp = requests.post(
        f"{daemon.api_url}/api/v0/pin/ls", params={"arg": cid, "type": "recursive"}, timeout=10
    )
    return resp.status_code == 200 and cid in (resp.json().get("Keys") or {})


def put_blob(store: KuboStore, size: int = 64 * 1024) -> tuple[bytes, str, bytes]:
    blob = os.urandom(size)
    return blob, store.put(blob), hashlib.sha256(blob).digest()


# --- topic ---------------------------------------------------------------------------------
def test_task_topic_is_one_per_chain_market_and_task_whatever_the_address_case() -> None:
    # Prepare / Execute
    topic = task_topic(CHAIN, MARKET, 7)
    # Assert
    assert topic == f"fedmarket/{CHAIN}/{MARKET.lower()}/7"
    assert task_topic(CHAIN, MARKET.lower(), 7) == topic
    others = {task_topic(1, MARKET, 7), task_topic(CHAIN, MARKET, 8),
              task_topic(CHAIN, "0x" + "11" * 20, 7)}  # fmt: skip
    assert topic not in others and len(others) == 3


def test_task_topic_refuses_a_market_that_is_not_an_address() -> None:
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        task_topic(CHAIN, "0x1234", 7)


# --- propagation ---------------------------------------------------------------------------
def test_announcement_published_on_a_reaches_c_through_b_and_every_node_fetches_it_once(
    make_net: Callable[..., Net],
) -> None:
    # Prepare: the update is added on A's daemon only
    net = make_net()
    blob, cid, digest = put_blob(net.a.store)
    assert not net.c.store.has(cid)
    announcement = net.sign(TRAINER, cid, digest)
    # Execute
    net.publish(announcement.to_json())
    # Assert: every node fetched it, re-announced it once, and saw the others' re-announcements
    wait_until(lambda: all(len(p.updates) == 1 for p in net.peers), net.describe)
    wait_until(
        lambda: (
            sum(p.stats().republished for p in net.peers) == 3
            and all(p.stats().settled for p in net.peers)
            and net.c.stats().duplicates >= 1
        ),
        net.describe,
    )
    for peer in net.peers:
        assert peer.updates == [announcement], peer.name
        assert peer.gossip.have(digest)
        assert peer.stats().accepted == 1 and peer.stats().dropped == {}
    assert net.c.store.has(cid) and is_pinned(net.c.daemon, cid)  # fetched over B, kept on C
    assert net.c.store.get(cid, expected_sha256=digest) == blob


def test_own_announcement_reaches_the_others_and_is_not_called_back_on_the_announcer(
    make_net: Callable[..., Net],
) -> None:
    # Prepare
    net = make_net()
    _, cid, digest = put_blob(net.a.store)
    # Execute
    announcement = net.a.gossip.announce(ROUND, cid, digest)
    # Assert: B and C fetch it; A counts their re-announcements as duplicates, never calls back
    assert announcement.sender == NODE_KEYS[0].address
    wait_until(lambda: len(net.b.updates) == 1 and len(net.c.updates) == 1, net.describe)
    wait_until(lambda: net.a.stats().duplicates >= 1 and net.a.stats().settled, net.describe)
    assert net.b.updates == [announcement] and net.c.updates == [announcement]
    assert net.a.updates == [] and net.a.stats().accepted == 0
    assert net.a.gossip.have(digest)
    assert net.a.stats().bytes_out >= len(announcement.to_json())


# --- drops ---------------------------------------------------------------------------------
def test_bad_messages_are_dropped_under_their_reason_and_the_node_keeps_working(
    make_net: Callable[..., Net],
) -> None:
    # Prepare: one real update for this round, one for the previous round (a late arrival) and
    # one for the next (a fast peer's, before this node saw the round change)
    net = make_net(fanout=0)
    _, cid, digest = put_blob(net.a.store)
    _, late_cid, late_digest = put_blob(net.a.store)
    _, early_cid, early_digest = put_blob(net.a.store)
    other_cid = raw_cid(b"another update")
    valid = net.sign(TRAINER, cid, digest)
    forged = dataclasses.replace(net.sign(OUTSIDER, cid, digest), sender=TRAINER.address)
    altered = dataclasses.replace(valid, cid=other_cid)
    bad = {
        "bad_signature": [forged.to_json(), altered.to_json()],
        "replay": [
            net.sign(TRAINER, cid, digest, chain_id=1).to_json(),
            net.sign(TRAINER, cid, digest, task_id=net.task_id + 1).to_json(),
            net.sign(TRAINER, cid, digest, round=ROUND - 2).to_json(),
            net.sign(TRAINER, cid, digest, round=ROUND + 2).to_json(),
        ],
        "not_member": [net.sign(OUTSIDER, cid, digest).to_json()],
        "malformed": [b'{"chainId": 31337', b"[]", valid.to_json().replace(b"round", b"rnd")],
        "oversize": [b"{" + b" " * 5000 + b"}"],
        "error": [net.sign(BROKEN_LOOKUP, cid, digest).to_json()],
    }
    late = net.sign(TRAINER, late_cid, late_digest, round=ROUND - 1)
    early = net.sign(TRAINER, early_cid, early_digest, round=ROUND + 1)
    # Execute: every bad message, then the three good ones, through A to C
    for messages in bad.values():
        for raw in messages:
            net.send(raw, observer=net.c)
    net.send(late.to_json(), observer=net.c)
    net.send(early.to_json(), observer=net.c)
    net.send(valid.to_json(), observer=net.c)
    # Assert: at C, each bad one counted under its reason, the three good ones accepted
    total = sum(len(m) for m in bad.values()) + 3
    wait_until(lambda: net.c.stats().received == total and net.c.stats().settled, net.describe)
    stats = net.c.stats()
    assert stats.dropped == {reason: len(m) for reason, m in bad.items()}
    assert stats.accepted == 3 and stats.duplicates == 0
    assert sorted(u.round for u in net.c.updates) == [ROUND - 1, ROUND, ROUND + 1]
    assert all(p.gossip.running for p in net.peers)


def test_a_message_ahead_of_the_cached_round_is_judged_by_the_chains_round(
    make_net: Callable[..., Net],
) -> None:
    # Prepare: every node's cached round is ROUND, the chain has moved on to ROUND + 2 (rounds
    # shorter than the cache's life)
    net = make_net(fanout=0, fresh_round=lambda: ROUND + 2)
    _, cid, digest = put_blob(net.a.store)
    _, far_cid, far_digest = put_blob(net.a.store)
    ahead = net.sign(TRAINER, cid, digest, round=ROUND + 3)
    too_far = net.sign(TRAINER, far_cid, far_digest, round=ROUND + 4)
    # Execute
    net.send(ahead.to_json(), observer=net.b)
    net.send(too_far.to_json(), observer=net.b)
    # Assert: the next round of the chain's is accepted, the one after is still a replay
    wait_until(lambda: net.b.stats().received == 2 and net.b.stats().settled, net.describe)
    assert net.b.stats().accepted == 1 and net.b.stats().dropped == {"replay": 1}
    assert net.b.updates == [ahead]


def test_the_same_update_announced_twice_is_accepted_once(make_net: Callable[..., Net]) -> None:
    # Prepare: fanout 0, so B receives exactly what A's trainer publishes
    net = make_net(fanout=0)
    _, cid, digest = put_blob(net.a.store)
    announcement = net.sign(TRAINER, cid, digest)
    same_digest_new_nonce = net.sign(TRAINER, cid, digest, nonce=announcement.nonce + 1)
    # Execute
    net.send(announcement.to_json(), observer=net.b)
    net.send(announcement.to_json(), observer=net.b)
    net.send(same_digest_new_nonce.to_json(), observer=net.b)
    # Assert
    wait_until(lambda: net.b.stats().received == 3 and net.b.stats().settled, net.describe)
    assert net.b.stats().accepted == 1 and net.b.stats().duplicates == 2
    assert net.b.updates == [announcement]


def test_the_same_bytes_again_are_a_duplicate_without_a_second_signature_check(
    make_net: Callable[..., Net], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: count signature checks (every node's); fanout 0, so only A's trainer publishes
    checks = count_calls(monkeypatch, "verify_announcement")
    net = make_net(fanout=0)
    _, cid, digest = put_blob(net.a.store)
    raw = net.sign(TRAINER, cid, digest).to_json()
    net.send(raw, observer=net.b)
    wait_until(lambda: all(p.stats().accepted == 1 for p in net.peers), net.describe)
    verified_once = len(checks)
    # Execute: the identical bytes twice more (as a peer's re-announcement would be)
    net.send(raw, observer=net.b)
    net.send(raw, observer=net.b)
    # Assert: duplicates on every node, and no signature checked again
    wait_until(lambda: all(p.stats().received == 3 for p in net.peers), net.describe)
    assert all(p.stats().duplicates == 2 and p.stats().accepted == 1 for p in net.peers)
    assert len(checks) == verified_once == len(net.peers)


def test_another_announcement_of_held_bytes_is_a_duplicate_without_a_signature_check(
    make_net: Callable[..., Net], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: count signature checks; B holds an update once its announcement was accepted
    checks = count_calls(monkeypatch, "verify_announcement")
    net = make_net(fanout=0)
    _, cid, digest = put_blob(net.a.store)
    first = net.sign(TRAINER, cid, digest)
    net.send(first.to_json(), observer=net.b)
    wait_until(lambda: all(p.stats().accepted == 1 for p in net.peers), net.describe)
    verified = len(checks)
    # Execute: other bytes announcing the same digest: a new nonce, and a forged signature
    renewed = net.sign(TRAINER, cid, digest, nonce=first.nonce + 1)
    forged = dataclasses.replace(renewed, signature=bytes(65))
    net.send(renewed.to_json(), observer=net.b)
    net.send(forged.to_json(), observer=net.b)
    # Assert: nothing new for anyone (the bytes are held and checked), so nothing verified
    wait_until(lambda: all(p.stats().received == 3 for p in net.peers), net.describe)
    assert all(p.stats().duplicates == 2 and p.stats().accepted == 1 for p in net.peers)
    assert all(p.updates == [first] for p in net.peers)
    assert len(checks) == verified


def test_a_nodes_own_leaf_coming_back_is_a_duplicate_without_a_signature_check(
    make_net: Callable[..., Net], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: count leaf signature checks; A publishes its own signed leaf
    checks = count_calls(monkeypatch, "verify_update_leaf")
    net = make_net(fanout=0)
    own = sign_update_leaf(NODE_KEYS[0], chain_id=CHAIN, task_id=net.task_id, round=ROUND,
                           cid=raw_cid(b"u"), digest=bytes(32), num_samples=10,
                           market_address=MARKET)  # fmt: skip
    # Execute
    net.a.gossip.publish_leaf(own)
    # Assert: B and C check and keep it; A, its author, counts its echo as a duplicate unchecked
    wait_until(lambda: all(p.stats().received == 1 for p in net.peers), net.describe)
    assert [p.stats().leaves for p in net.peers] == [0, 1, 1]
    assert net.a.stats().duplicates == 1
    assert len(checks) == 2


def test_fetch_of_a_missing_cid_or_a_wrong_digest_is_counted_and_the_node_keeps_working(
    make_net: Callable[..., Net],
) -> None:
    # Prepare: a CID nobody holds, a real CID announced with another digest, then a good one
    net = make_net(store_timeout=3.0, fanout=0)
    missing = os.urandom(1024)
    _, cid, _ = put_blob(net.a.store)
    _, good_cid, good_digest = put_blob(net.a.store)
    wrong_digest = hashlib.sha256(b"not the blob").digest()
    # Execute
    missing_cid = raw_cid(missing)
    net.send(net.sign(TRAINER, missing_cid, hashlib.sha256(missing).digest()).to_json(), net.c)
    net.send(net.sign(TRAINER_2, cid, wrong_digest).to_json(), net.c)
    wait_until(lambda: net.c.stats().dropped.get("fetch_failed") == 2, net.describe)
    net.send(net.sign(TRAINER_2, good_cid, good_digest, round=ROUND - 1).to_json(), net.c)
    # Assert
    wait_until(lambda: len(net.c.updates) == 1 and net.c.stats().settled, net.describe)
    stats = net.c.stats()
    assert stats.dropped == {"fetch_failed": 2} and stats.accepted == 1
    assert not net.c.gossip.have(wrong_digest)
    assert net.c.updates[0].cid == good_cid


# --- bounds --------------------------------------------------------------------------------
def test_each_node_re_announces_at_most_fanout_updates_per_round(
    make_net: Callable[..., Net],
) -> None:
    # Prepare: fanout 1; one trainer's update on A, another's on C
    net = make_net(fanout=1)
    _, first_cid, first_digest = put_blob(net.a.store)
    _, second_cid, second_digest = put_blob(net.c.store)
    # Execute: the first spreads (each node re-announces it), then the second from C's daemon
    net.publish(net.sign(TRAINER, first_cid, first_digest).to_json())
    wait_until(lambda: all(p.stats().republished == 1 for p in net.peers), net.describe)
    net.c.pubsub.publish(net.topic, net.sign(TRAINER_2, second_cid, second_digest).to_json())
    # Assert: everyone fetched both, nobody re-announced the second
    wait_until(
        lambda: all(p.stats().accepted == 2 and p.stats().settled for p in net.peers),
        net.describe,
    )
    assert [p.stats().republished for p in net.peers] == [1, 1, 1]
    assert all([u.digest for u in p.updates] == [first_digest, second_digest] for p in net.peers)


def test_a_sender_announcing_more_updates_than_allowed_in_a_round_is_cut_off(
    make_net: Callable[..., Net],
) -> None:
    # Prepare: one update per sender and round
    net = make_net(fanout=0, max_per_sender=1)
    first = put_blob(net.a.store)
    second = put_blob(net.a.store)
    # Execute: the same trainer announces two different updates for the round
    net.send(net.sign(TRAINER, first[1], first[2]).to_json(), observer=net.b)
    net.send(net.sign(TRAINER, second[1], second[2]).to_json(), observer=net.b)
    # Assert
    wait_until(lambda: net.b.stats().received == 2 and net.b.stats().settled, net.describe)
    assert net.b.stats().accepted == 1
    assert net.b.stats().dropped == {"sender_limit": 1}


def test_gossip_refuses_a_negative_fanout(kubo_line: tuple[KuboDaemon, ...]) -> None:
    with pytest.raises(ConfigError, match="fanout"):
        Gossip(
            pubsub=PubsubClient(kubo_line[0].api_multiaddr),
            store=KuboStore(kubo_line[0].api_multiaddr), topic="t", chain_id=CHAIN,
            market_address=MARKET, task_id=1, identity_key=TRAINER, is_member=is_member,
            current_round=lambda: ROUND, fanout=-1,
        )  # fmt: skip


# --- resilience ----------------------------------------------------------------------------
@pytest.mark.kubo
def test_daemon_dying_under_the_subscription_does_not_kill_the_receive_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare
    with start_kubo() as daemon:
        pubsub, store = PubsubClient(daemon.api_multiaddr), KuboStore(daemon.api_multiaddr)
        gossip = Gossip(
            pubsub=pubsub, store=store, topic=task_topic(CHAIN, MARKET, 1), chain_id=CHAIN,
            market_address=MARKET, task_id=1, identity_key=TRAINER, is_member=is_member,
            current_round=lambda: ROUND,
        )  # fmt: skip
        gossip.start()
        caplog.set_level(logging.WARNING, logger="marketplace.gossip.update_gossip")
        # Execute
        daemon.kill()
        # Assert: the break is logged, re-subscribing is attempted, the thread lives until stop()
        wait_until(lambda: "re-subscribe failed" in caplog.text, lambda: caplog.text)
        assert gossip.running
        gossip.stop()
        assert not gossip.running
        pubsub.close()
        store.close()


def test_batch_leaves_are_checked_like_announcements_and_handed_over_once(
    make_net: Callable[..., Net],
) -> None:
    # Prepare: a trainer's leaf for this round, and leaves every check must refuse
    held: list[UpdateLeaf] = []
    net = make_net(fanout=0, on_leaf=held.append)

    def leaf(who: LocalAccount, samples: int = 10, **over: int) -> bytes:
        fields = {"chain_id": CHAIN, "task_id": net.task_id, "round": ROUND, **over}
        signed = sign_update_leaf(who, cid=raw_cid(b"u"), digest=bytes(32), num_samples=samples,
                                  market_address=MARKET, **fields)  # fmt: skip
        return LEAF_MAGIC + signed.to_json()

    valid = leaf(TRAINER)
    outsiders = UpdateLeaf.from_json(leaf(OUTSIDER)[len(LEAF_MAGIC) :])
    forged = dataclasses.replace(outsiders, sender=TRAINER.address)
    bad = {
        "bad_signature": [LEAF_MAGIC + forged.to_json()],
        "replay": [
            leaf(TRAINER, chain_id=1),
            leaf(TRAINER, round=ROUND - 2),
            leaf(TRAINER, round=ROUND + 2),
        ],
        "not_member": [leaf(OUTSIDER)],
        "malformed": [LEAF_MAGIC + b"{}"],
        "sender_limit": [leaf(TRAINER, samples=11)],  # a second, different leaf of the round
    }
    # Execute: the valid leaf twice, then every bad one, through A to C
    net.send(valid, observer=net.c)
    net.send(valid, observer=net.c)
    for messages in bad.values():
        for raw in messages:
            net.send(raw, observer=net.c)
    # Assert: at C one leaf kept and handed over, the repeat a duplicate, each bad one dropped
    total = 2 + sum(len(m) for m in bad.values())
    wait_until(lambda: net.c.stats().received == total and net.c.stats().settled, net.describe)
    stats = net.c.stats()
    assert stats.leaves == 1 and stats.duplicates == 1 and stats.accepted == 0
    assert stats.dropped == {reason: len(m) for reason, m in bad.items()}
    kept = UpdateLeaf.from_json(valid[len(LEAF_MAGIC) :])
    assert held and set(held) == {kept}  # every peer that got it kept the same, checked leaf
