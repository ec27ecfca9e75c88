"""Small updates carried inside their announcement (marketplace.gossip.inline), over the three
real Kubo daemons of test_update_gossip (A-B-C in a line).

The payload is never added to any daemon here, so a node that accepts it cannot have fetched it:
acceptance proves the inline path; a refused payload must be dropped under its reason.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest

from marketplace.errors import DigestMismatchError, SignatureError
from marketplace.gossip import inline
from marketplace.storage.cid import raw_cid
from tests.gossip.test_update_gossip import (  # noqa: F401 (make_net is a fixture)
    TRAINER,
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
