"""Small updates carried inside their announcement or their batch leaf (marketplace.gossip.inline),
over the three real Kubo daemons of test_update_gossip (A-B-C in a line).

The payload is never added to any daemon here, so a node that accepts it cannot have fetched it:
acceptance proves the inline path; a refused payload must be dropped under its reason.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount

from marketplace.crypto.update_leaf import UpdateLeaf, sign_update_leaf
from marketplace.errors import DigestMismatchError, SignatureError
from marketplace.gossip import inline
from marketplace.gossip.update_gossip import LEAF_MAGIC
from marketplace.storage.cid import raw_cid
from tests.gossip.test_update_gossip import (  # noqa: F401 (make_net is a fixture)
    CHAIN,
    MARKET,
    ROUND,
    TRAINER,
    TRAINER_2,
    Net,
    make_net,
    wait_until,
)


def payload_of(size: int = 12_000) -> tuple[bytes, str, bytes]:
    blob = os.urandom(size)
    return blob, raw_cid(blob), hashlib.sha256(blob).digest()


@pytest.fixture
def payload_net(request: pytest.FixtureRequest) -> tuple[Net, dict[str, list[bytes]]]:
    """A-B-C gossip (fanout 0); ``delivered[name]`` lists the bytes each node handed over."""
    build: Callable[..., Net] = request.getfixturevalue("make_net")
    delivered: dict[str, list[bytes]] = {"A": [], "B": [], "C": []}
    net = build(fanout=0)
    for peer in net.peers:
        peer.gossip._on_payload = lambda _ann, data, name=peer.name: delivered[name].append(data)
    return net, delivered


def test_an_inline_update_is_accepted_without_any_fetch(
    payload_net: tuple[Net, dict[str, list[bytes]]],
) -> None:
    # Prepare: the payload is in no daemon, so only the message can carry it
    net, delivered = payload_net
    blob, cid, digest = payload_of()
    assert not net.a.store.has(cid)
    message = inline.pack(net.sign(TRAINER, cid, digest).to_json(), blob)
    # Execute
    net.send(message, net.b)
    # Assert: B accepted it and handed over exactly those bytes
    wait_until(lambda: len(net.b.updates) == 1 and net.b.stats().settled, net.describe)
    assert delivered["B"] == [blob]
    assert net.b.stats().dropped == {}
    assert not net.b.store.has(cid)  # nothing was fetched


def test_with_fanout_0_an_inline_update_is_handed_over_on_the_receive_thread(
    payload_net: tuple[Net, dict[str, list[bytes]]],
) -> None:
    # Prepare: note the thread each delivery runs on (fanout 0: nothing to re-publish)
    import threading

    net, _ = payload_net
    threads: list[str] = []
    net.b.gossip._on_payload = lambda _ann, _data: threads.append(threading.current_thread().name)
    blob, cid, digest = payload_of()
    # Execute
    net.send(inline.pack(net.sign(TRAINER, cid, digest).to_json(), blob), net.b)
    # Assert: handed over by the topic's receive thread itself, no fetch pool in between
    wait_until(lambda: len(threads) == 1 and net.b.stats().settled, net.describe)
    assert threads == [f"gossip:{net.topic}"]
    assert net.b.stats().accepted == 1


def test_a_gossip_node_announces_its_own_small_update_inline(
    payload_net: tuple[Net, dict[str, list[bytes]]],
) -> None:
    # Prepare
    net, delivered = payload_net
    blob, cid, digest = payload_of()
    # Execute: A's own announcement, with the payload, never stored anywhere
    net.a.gossip.announce(3, cid, digest, payload=blob)
    # Assert: B and C (through B's relay of the same message) took the bytes from the message
    wait_until(lambda: delivered["B"] == [blob] and delivered["C"] == [blob], net.describe)


@pytest.mark.parametrize("tamper", ["payload", "cid"])
def test_an_inline_payload_that_is_not_the_announced_update_is_dropped(
    payload_net: tuple[Net, dict[str, list[bytes]]], tamper: str
) -> None:
    # Prepare: a correctly signed announcement whose payload differs from its digest or CID
    net, delivered = payload_net
    blob, cid, digest = payload_of()
    if tamper == "payload":
        carried = blob[:-1] + bytes([blob[-1] ^ 1])  # digest mismatch
    else:
        carried = blob
        cid = raw_cid(os.urandom(100))  # same digest, another CID: peers fetching it differ
    message = inline.pack(net.sign(TRAINER, cid, digest).to_json(), carried)
    # Execute
    net.send(message, net.b)
    # Assert
    wait_until(lambda: net.b.stats().settled, net.describe)
    assert net.b.stats().dropped == {"bad_payload": 1}
    assert net.b.updates == [] and delivered["B"] == []


def test_an_oversize_inline_payload_is_dropped(
    payload_net: tuple[Net, dict[str, list[bytes]]],
) -> None:
    # Prepare: one byte over the cap (the frame itself is built by hand: pack refuses it)
    net, delivered = payload_net
    blob, cid, digest = payload_of(inline.MAX_INLINE_BYTES + 1)
    head = net.sign(TRAINER, cid, digest).to_json()
    message = inline.MAGIC + len(head).to_bytes(2, "big") + head + blob
    for peer in net.peers:  # the pubsub clients let it through: the gossip layer must refuse it
        peer.pubsub.max_message_size = len(message)
    # Execute
    net.send(message, net.b)
    # Assert
    wait_until(lambda: net.b.stats().settled, net.describe)
    assert net.b.stats().dropped == {"oversize": 1}
    assert delivered["B"] == []


def test_pack_refuses_an_oversize_payload_and_check_payload_a_wrong_one() -> None:
    blob, cid, digest = payload_of(inline.MAX_INLINE_BYTES + 1)
    with pytest.raises(SignatureError, match="exceeds"):
        inline.pack(b"{}", blob)
    small, small_cid, small_digest = payload_of(100)
    inline.check_payload(small, cid=small_cid, digest=small_digest)  # the right one passes
    with pytest.raises(DigestMismatchError, match="hashes to"):
        inline.check_payload(small, cid=small_cid, digest=digest)
    with pytest.raises(DigestMismatchError, match="not the content"):
        inline.check_payload(small, cid=cid, digest=small_digest)
    assert inline.unpack(b'{"a":1}') == (b'{"a":1}', None)  # a bare announcement passes through


def test_a_re_announcement_carries_the_signed_announcement_without_the_payload(
    request: pytest.FixtureRequest,
) -> None:
    # Prepare: fanout 1 (each node re-announces once), and a wiretap on C's daemon
    import threading

    from marketplace.storage.pubsub import PubsubClient

    build: Callable[..., Net] = request.getfixturevalue("make_net")
    net = build(fanout=1)
    seen: list[bytes] = []
    tap = PubsubClient(net.c.daemon.api_multiaddr).subscribe(net.topic)
    reader = threading.Thread(target=lambda: seen.extend(m.data for m in tap), daemon=True)
    reader.start()
    blob, cid, digest = payload_of()
    head = net.sign(TRAINER, cid, digest).to_json()
    try:
        # Execute: a trainer's inline announcement through A
        net.publish(inline.pack(head, blob))
        # Assert: B and C accepted the bytes and re-announced the bare signed announcement
        wait_until(
            lambda: net.b.stats().republished == 1 and net.c.stats().republished == 1,
            net.describe,
        )
        wait_until(lambda: seen.count(head) >= 2, lambda: [len(m) for m in seen])
        framed = [m for m in seen if m.startswith(inline.MAGIC)]
        assert framed == [inline.pack(head, blob)]  # the payload travelled once, in the original
        assert all(m in (head, framed[0]) for m in seen)
    finally:
        tap.close()
        reader.join(timeout=5)


# --- a batch leaf carrying its update ---------------------------------------------------------
def signed_leaf(net: Net, cid: str, digest: bytes, who: LocalAccount = TRAINER) -> UpdateLeaf:
    return sign_update_leaf(
        who, chain_id=CHAIN, task_id=net.task_id, round=ROUND, cid=cid, digest=digest,
        num_samples=10, market_address=MARKET,
    )  # fmt: skip


@pytest.fixture
def leaf_net(
    payload_net: tuple[Net, dict[str, list[bytes]]],
) -> tuple[Net, dict[str, list[bytes]], list[UpdateLeaf]]:
    """``payload_net`` whose node B also keeps the leaves it accepts."""
    net, delivered = payload_net
    leaves: list[UpdateLeaf] = []
    net.b.gossip._on_leaf = leaves.append
    return net, delivered, leaves


def test_a_leaf_carrying_its_update_is_one_message_handed_over_as_leaf_and_update(
    leaf_net: tuple[Net, dict[str, list[bytes]], list[UpdateLeaf]],
) -> None:
    # Prepare: the payload is in no daemon, so only the leaf's message can carry it
    net, delivered, leaves = leaf_net
    blob, cid, digest = payload_of()
    leaf = signed_leaf(net, cid, digest)
    message = inline.pack(LEAF_MAGIC + leaf.to_json(), blob)
    # Execute: the message, then the trainer's resend of it
    net.send(message, net.b)
    net.send(message, net.b)
    # Assert: one leaf kept, the bytes handed over once with the leaf as their signed reference,
    # the resend a duplicate, nothing fetched; the message counted once, under leaves
    wait_until(lambda: net.b.stats().received == 2 and net.b.stats().settled, net.describe)
    stats = net.b.stats()
    assert (stats.leaves, stats.duplicates, stats.accepted, stats.dropped) == (1, 1, 0, {})
    assert leaves == [leaf]
    assert delivered["B"] == [blob] and net.b.updates == [leaf]
    assert net.b.gossip.have(digest) and not net.b.store.has(cid)


@pytest.mark.parametrize("tamper", ["payload", "cid"])
def test_a_leaf_carrying_other_bytes_than_it_signs_is_dropped_leaf_and_all(
    leaf_net: tuple[Net, dict[str, list[bytes]], list[UpdateLeaf]], tamper: str
) -> None:
    # Prepare: a correctly signed leaf whose carried bytes are not its (digest, CID)
    net, delivered, leaves = leaf_net
    blob, cid, digest = payload_of()
    if tamper == "payload":
        carried = blob[:-1] + bytes([blob[-1] ^ 1])
    else:
        carried, cid = blob, raw_cid(os.urandom(100))
    message = inline.pack(LEAF_MAGIC + signed_leaf(net, cid, digest).to_json(), carried)
    # Execute
    net.send(message, net.b)
    # Assert: refused as a whole: no leaf kept, no bytes handed over
    wait_until(lambda: net.b.stats().settled, net.describe)
    assert net.b.stats().dropped == {"bad_payload": 1}
    assert leaves == [] and delivered["B"] == [] and net.b.updates == []


def test_a_leaf_carrying_bytes_already_held_is_kept_and_the_bytes_not_handed_over_again(
    leaf_net: tuple[Net, dict[str, list[bytes]], list[UpdateLeaf]],
) -> None:
    # Prepare: B already took the update from its inline announcement
    net, delivered, leaves = leaf_net
    blob, cid, digest = payload_of()
    net.send(inline.pack(net.sign(TRAINER, cid, digest).to_json(), blob), net.b)
    leaf = signed_leaf(net, cid, digest)
    # Execute
    net.send(inline.pack(LEAF_MAGIC + leaf.to_json(), blob), net.b)
    # Assert
    wait_until(lambda: net.b.stats().settled and leaves == [leaf], net.describe)
    assert delivered["B"] == [blob]  # once, from the announcement
    assert net.b.stats().accepted == 1 and net.b.stats().leaves == 1


def test_publish_leaf_carries_a_small_update_and_sends_a_large_one_bare(
    leaf_net: tuple[Net, dict[str, list[bytes]], list[UpdateLeaf]],
) -> None:
    # Prepare: A's own leaves, one for an update that fits a message, one for one that does not
    net, delivered, leaves = leaf_net
    small, small_cid, small_digest = payload_of()
    large, large_cid, large_digest = payload_of(inline.MAX_INLINE_BYTES + 1)
    with pytest.raises(DigestMismatchError):  # bytes that are not the leaf's update: refused
        net.a.gossip.publish_leaf(signed_leaf(net, small_cid, small_digest), payload=small[1:])
    # Execute
    carried = net.a.gossip.publish_leaf(signed_leaf(net, small_cid, small_digest), payload=small)
    wait_until(lambda: len(leaves) == 1, net.describe)
    bare = net.a.gossip.publish_leaf(
        signed_leaf(net, large_cid, large_digest, who=TRAINER_2), payload=large
    )
    # Assert: B and C took the small update from the leaf; the large leaf came without bytes
    wait_until(lambda: len(leaves) == 2 and delivered["C"] == [small], net.describe)
    assert (carried, bare) == (True, False)
    assert delivered["B"] == [small]
    assert net.a.gossip.have(small_digest)  # its own bytes come back as a duplicate


def test_the_announcer_sends_a_held_small_update_with_its_leaf_and_announces_others_once(
    leaf_net: tuple[Net, dict[str, list[bytes]], list[UpdateLeaf]],
) -> None:
    # Prepare: A's announcer holds one update's bytes (small) and not another's (in A's store)
    from marketplace.gossip.membership import BackgroundAnnouncer

    net, delivered, leaves = leaf_net
    small, small_cid, small_digest = payload_of()
    other, other_cid, other_digest = payload_of()
    assert net.a.store.put(other) == other_cid
    held = {small_digest: small}
    announcer = BackgroundAnnouncer(net.a.gossip, payload_for=lambda _r, d: held.get(d))
    with_bytes = signed_leaf(net, small_cid, small_digest)
    without = signed_leaf(net, other_cid, other_digest, who=TRAINER_2)
    try:
        # Execute: each leaf sent twice (the duty's resend)
        for leaf in (with_bytes, with_bytes, without, without):
            announcer.send_leaf(leaf)
            announcer._pool.submit(lambda: None).result()  # one message in flight at a time
            wait_until(lambda: net.b.stats().settled, net.describe)
    finally:
        announcer.close()
    # Assert: the held update rode with its leaf; the other was announced once, by CID
    wait_until(lambda: net.b.stats().received == 5 and net.b.stats().settled, net.describe)
    assert (announcer.leaves_sent, announcer.published, announcer.failed) == (4, 1, 0)
    assert leaves == [with_bytes, without] and delivered["B"] == [small, other]
    assert net.b.stats().accepted == 1 and net.b.stats().dropped == {}  # fetched by its CID
