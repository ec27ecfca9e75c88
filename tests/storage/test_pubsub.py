"""Pubsub over two real Kubo daemons, and the whole gossip path of one update.

Trainer A adds its encrypted update to its own daemon and announces it, signed, on the task's
topic; peer B receives the announcement on the other daemon, verifies it, fetches the blob through
IPFS from A's daemon, checks the digest and decrypts it.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import uuid
from collections.abc import Iterator

import pytest
import requests
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from marketplace.chain.devnet import DEV_PRIVATE_KEYS, dev_x25519_private, dev_x25519_public
from marketplace.crypto.announce import sign_announcement, verify_announcement
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.errors import SignatureError, StorageError, StoreUnreachableError
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon
from marketplace.storage.pubsub import (
    PubsubClient,
    PubsubMessage,
    Subscription,
    multibase_decode,
    multibase_encode,
)

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
RECEIVE_TIMEOUT = 20.0


class Receiver:
    """Reads a subscription on a thread, so a lost message fails the test instead of hanging it."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.inbox: queue.Queue[PubsubMessage | BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for message in self.sub:
                self.inbox.put(message)
            self.inbox.put(None)  # ended cleanly
        except BaseException as exc:
            self.inbox.put(exc)

    def next(self) -> PubsubMessage | BaseException | None:
        try:
            return self.inbox.get(timeout=RECEIVE_TIMEOUT)
        except queue.Empty:
            self.sub.close()
            pytest.fail(f"no pubsub message on {self.sub.topic!r} within {RECEIVE_TIMEOUT}s")

    def message(self) -> PubsubMessage:
        got = self.next()
        assert isinstance(got, PubsubMessage), got
        return got


@pytest.fixture
def topic() -> str:
    return f"fedmarket/test/{uuid.uuid4().hex}"


@pytest.fixture
def pair_clients(
    kubo_pair: tuple[KuboDaemon, KuboDaemon],
) -> Iterator[tuple[PubsubClient, PubsubClient]]:
    a, b = kubo_pair
    clients = PubsubClient(a.api_multiaddr), PubsubClient(b.api_multiaddr)
    yield clients
    for c in clients:
        c.close()


def subscribed(publisher: PubsubClient, subscriber: PubsubClient, topic: str) -> Receiver:
    receiver = Receiver(subscriber.subscribe(topic))
    publisher.wait_for_peers(topic)
    return receiver


def test_signed_update_announced_on_one_daemon_is_fetched_and_opened_from_the_other(
    kubo_pair: tuple[KuboDaemon, KuboDaemon], pair_clients, topic: str
) -> None:
    # Prepare: trainer (dev account 1) seals a 3 MB update for peer B (dev account 2)
    daemon_a, daemon_b = kubo_pair
    pub_a, pub_b = pair_clients
    store_a, store_b = KuboStore(daemon_a.api_multiaddr), KuboStore(daemon_b.api_multiaddr)
    trainer = Account.from_key(DEV_PRIVATE_KEYS[1])
    peer_b = Account.from_key(DEV_PRIVATE_KEYS[2]).address
    context = EnvelopeContext(chain_id=31337, task_id=7, round=2, sender=trainer.address)
    update = os.urandom(3 * 1024 * 1024)
    blob = seal(update, recipients={peer_b: dev_x25519_public(2)}, context=context)
    cid = store_a.put(blob)
    announcement = sign_announcement(
        trainer, chain_id=31337, task_id=7, round=2, cid=cid,
        digest=hashlib.sha256(blob).digest(), market_address=MARKET,
    )  # fmt: skip
    receiver = subscribed(pub_a, pub_b, topic)
    assert not store_b.has(cid)
    # Execute: publish, receive on B, verify, fetch by CID from the network, check digest, open
    pub_a.publish(topic, announcement.to_json())
    message = receiver.message()
    sender = verify_announcement(
        message.data, expected_chain_id=31337, expected_task_id=7, expected_round=2,
        market_address=MARKET,
    )  # fmt: skip
    fetched = store_b.get(cid, expected_sha256=announcement.digest, max_size=8 * 1024 * 1024)
    opened = open_envelope(
        fetched, recipient_address=peer_b, x25519_private=dev_x25519_private(2),
        expected_context=context,
    )  # fmt: skip
    receiver.sub.close()
    # Assert
    assert message.from_peer == daemon_a.peer_id
    assert message.topic == topic
    assert sender == trainer.address
    assert store_b.has(cid)
    assert opened == update


def test_forged_announcement_on_the_topic_is_rejected_and_the_real_one_accepted(
    pair_clients, topic: str
) -> None:
    # Prepare: account 5 signs, then relabels the sender as the trainer (account 1)
    pub_a, pub_b = pair_clients
    trainer, attacker = (Account.from_key(DEV_PRIVATE_KEYS[i]) for i in (1, 5))
    cid = "bafkreifjde7jmcmm6pow6bnrpbinseecfmmozn57xbumhhh5u55pnfifx4"
    args = {"chain_id": 31337, "task_id": 7, "round": 2, "cid": cid, "digest": b"\x11" * 32}
    forged = sign_announcement(attacker, market_address=MARKET, **args)
    forged_wire = forged.to_json().replace(attacker.address.encode(), trainer.address.encode())
    genuine = sign_announcement(trainer, market_address=MARKET, **args)
    receiver = subscribed(pub_a, pub_b, topic)
    expected = {"expected_chain_id": 31337, "expected_task_id": 7, "expected_round": 2}
    # Execute
    pub_a.publish(topic, forged_wire)
    pub_a.publish(topic, genuine.to_json())
    first, second = receiver.message(), receiver.message()
    receiver.sub.close()
    # Assert
    with pytest.raises(SignatureError, match="forged or altered"):
        verify_announcement(first.data, market_address=MARKET, **expected)
    assert verify_announcement(second.data, market_address=MARKET, **expected) == trainer.address


def test_oversize_message_is_refused_by_the_publisher(pair_clients, topic: str) -> None:
    # Prepare
    small = PubsubClient(pair_clients[0].api_multiaddr, max_message_size=100)
    # Execute / Assert
    with pytest.raises(StorageError, match="exceeds max_message_size=100"):
        small.publish(topic, b"x" * 101)


def test_oversize_incoming_message_is_dropped_and_the_next_one_delivered(
    kubo_pair: tuple[KuboDaemon, KuboDaemon], pair_clients, topic: str
) -> None:
    # Prepare: a subscriber that accepts 1 KiB; a peer that publishes 50 KiB anyway
    pub_a, _ = pair_clients
    strict = PubsubClient(kubo_pair[1].api_multiaddr, max_message_size=1024)
    receiver = subscribed(pub_a, strict, topic)
    # Execute
    pub_a.publish(topic, os.urandom(50 * 1024))
    pub_a.publish(topic, b"small and welcome")
    message = receiver.message()
    receiver.sub.close()
    # Assert
    assert message.data == b"small and welcome"


def test_malformed_line_from_the_daemon_is_dropped() -> None:
    # Prepare: a subscription fed by a canned response, as a misbehaving endpoint would send
    response = requests.Response()
    response.status_code = 200
    good = (
        b'{"from":"12D3KooWpeer","data":"' + multibase_encode(b"ok").encode() + b'","seqno":""}\n'
    )
    response.raw = _LineSource([b'{"from": 1, "data": "zNOTMULTIBASE"}\n', b"not json\n", good])
    sub = Subscription(PubsubClient("/ip4/127.0.0.1/tcp/1"), "t", response, max_size=1024)
    # Execute
    messages = []
    with pytest.raises(StoreUnreachableError, match="was ended by the daemon"):
        messages.extend(sub)
    # Assert
    assert [m.data for m in messages] == [b"ok"]


def test_close_from_another_thread_ends_the_iteration_cleanly(pair_clients, topic: str) -> None:
    # Prepare
    _, pub_b = pair_clients
    receiver = Receiver(pub_b.subscribe(topic))
    # Execute
    receiver.sub.close()
    ended = receiver.next()
    # Assert
    assert ended is None


def test_daemon_dying_under_a_subscription_raises_store_unreachable(
    fresh_kubo: KuboDaemon, topic: str
) -> None:
    # Prepare
    client = PubsubClient(fresh_kubo.api_multiaddr)
    receiver = Receiver(client.subscribe(topic))
    # Execute
    fresh_kubo.kill()
    outcome = receiver.next()
    # Assert
    assert isinstance(outcome, StoreUnreachableError)
    assert "is the daemon running?" in str(outcome) or "still running" in str(outcome)


def test_publish_to_a_stopped_daemon_raises_store_unreachable(fresh_kubo: KuboDaemon) -> None:
    # Prepare
    client = PubsubClient(fresh_kubo.api_multiaddr, retries=0)
    fresh_kubo.stop()
    # Execute / Assert
    with pytest.raises(StoreUnreachableError, match=r"is unreachable .*--ipfs-api"):
        client.publish("t", b"hello")


@given(st.binary(max_size=300))
def test_multibase_round_trips(raw: bytes) -> None:
    # Execute / Assert
    encoded = multibase_encode(raw)
    assert encoded.startswith("u") and "=" not in encoded
    assert multibase_decode(encoded) == raw


class _LineSource:
    """Enough of a urllib3 response for ``requests.Response.iter_content``."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def stream(self, *_args: object, **_kwargs: object) -> Iterator[bytes]:
        yield from self._chunks
