"""Gossip of update announcements on a task's pubsub topic: verify, dedup, pull by CID, re-announce.

A trainer that has put its (encrypted) update in the content store signs an
:class:`~marketplace.crypto.announce.Announcement` ``{chainId, task, round, cid, digest, sender,
nonce}`` and publishes it on the task's topic (:func:`task_topic`). Every peer's :class:`Gossip`
takes each message through the same checks, cheapest first, and drops it, counted under its
reason, at the first that fails:

=====================  =====================================================================
``oversize``           more bytes than ``max_message_bytes`` (and the parser's own 2 KiB)
``malformed``          not an announcement (JSON shape, types, CID, digest length)
``replay``             another chain or task, or a round not within one of the current
``bad_signature``      the EIP-712 signature does not recover to ``sender`` (forged or altered)
``not_member``         ``sender`` is not a joined trainer of the task (``is_member``)
``sender_limit``       the sender already announced ``max_per_sender`` updates this round
``fetch_failed``       the CID could not be fetched, was too large, or hashed to another digest
``bad_payload``        an inline update that does not hash to the announced digest or CID
``error``              anything unexpected (``is_member`` or ``current_round`` raised): logged
=====================  =====================================================================

A message that passes is either a duplicate (its digest was seen, or is being fetched) or new: it
is then pulled from the store by CID with ``expected_sha256=digest`` and a size bound, pinned, and
only then re-announced and handed to ``on_update`` (and its bytes to ``on_payload``). A small
update may travel inside the message (:mod:`marketplace.gossip.inline`): its bytes must hash to
the signed digest and CID, and then no fetch is needed. So a node vouches only for bytes it holds
and checked, and every received message ends in exactly one of ``accepted``, ``duplicates`` or one
``dropped`` reason (``received == accepted + duplicates + sum(dropped)`` once fetches settle).

**Traffic bound.** A node re-publishes the original signed announcement (never a re-signed copy, so
the trainer's signature travels unchanged; without an inline payload, which every subscriber got
with the original and a late one fetches by CID) of an update it fetched, once per digest and at
most ``fanout`` times per round. With ``n`` peers, each announcing its own update once, a round
costs at most ``n · (1 + fanout)`` publications however many announcements (honest or not) arrive,
and each publication reaches every subscriber at most once (gossipsub's own seen-cache). Fetch
traffic is bounded too: a member can make a peer pull at most ``max_per_sender`` blobs of at most
``max_update_bytes`` per round (a failed fetch counts: junk CIDs cannot be re-announced
forever). Per-round state is forgotten once its round leaves the window.

**Batch leaves.** In a task with batched round commitments a trainer also publishes its signed
:class:`~marketplace.crypto.update_leaf.UpdateLeaf` on the same topic, framed as
``LEAF_MAGIC | leaf JSON`` (:meth:`Gossip.publish_leaf`). A leaf goes through the same checks
(``malformed``, ``replay``, ``bad_signature``, ``not_member``); a new one is counted under
``leaves`` and handed to ``on_leaf``, a repeat is a duplicate, a second different leaf of the
same sender and round is dropped (``sender_limit``). Leaves are not re-published by peers: the
trainer repeats its own until the round's batch is on-chain.

A small update may ride with its leaf instead of in an announcement of its own (one message and
one signature a trainer and round instead of two: :meth:`Gossip.publish_leaf` with ``payload``,
framed as an inline update whose head is the leaf). The leaf signs the same ``(cid, digest)`` an
announcement does, so the payload is checked against them exactly as an inline announcement's
(``bad_payload`` drops the whole message, leaf included), and then handed to ``on_update`` and
``on_payload`` as an accepted update's would be (with the leaf as the signed reference); the
message counts once, under ``leaves``.

Pubsub is best-effort: the chain's ``commitUpdate`` records are the canonical set of a round, and
a peer missing one fetches it by CID at the deadline. Gossip only gets the bytes there early.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount

from marketplace.crypto.announce import (
    MAX_ANNOUNCEMENT_BYTES,
    Announcement,
    UpdateRef,
    sign_announcement,
    verify_announcement,
)
from marketplace.crypto.update_leaf import UpdateLeaf, verify_update_leaf
from marketplace.errors import ConfigError, DigestMismatchError, SignatureError, StorageError
from marketplace.gossip import inline
from marketplace.gossip.topics import task_topic
from marketplace.storage.base import ContentStore
from marketplace.storage.pubsub import PubsubClient, TopicReceiver

log = logging.getLogger(__name__)

DROP_REASONS = (
    "oversize",
    "malformed",
    "replay",
    "bad_signature",
    "not_member",
    "sender_limit",
    "fetch_failed",
    "bad_payload",
    "error",
)

DEFAULT_MAX_UPDATE_BYTES = 512 * 1024 * 1024


def _in_window(round_: int, current: int) -> bool:
    """Whether a message of ``round_`` is accepted while this node believes it is ``current``:
    the last round (late messages), this one, and the next. The round is read from the chain at
    most once a second, so a fast peer's first message of the next round often arrives before
    this node saw the round change; refusing it cost a resend interval every round."""
    return current - 1 <= round_ <= current + 1


#: Frame of a batch leaf on the task's topic (see the module docstring).
LEAF_MAGIC = b"FMLEAF1\n"
#: What an inline update adds to a message at most (frame header and payload).
INLINE_FRAME_BYTES = len(inline.MAGIC) + 2 + inline.MAX_INLINE_BYTES


@dataclass(frozen=True)
class GossipStats:
    """A snapshot of one node's gossip counters (bytes are pubsub payload bytes)."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    republished: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    leaves: int = 0  # batch leaves accepted (new)

    @property
    def settled(self) -> bool:
        """Whether every received message has reached its outcome (no fetch still running)."""
        outcomes = self.accepted + self.duplicates + self.leaves + sum(self.dropped.values())
        return self.received == outcomes


class Gossip:
    """One node's gossip on one task's topic.

    Parameters
    ----------
    pubsub, store:
        The node's Kubo pubsub client and content store (the store fetches announced CIDs).
    topic:
        Usually :func:`task_topic` of the task.
    chain_id, market_address, task_id:
        What announcements must be bound to (EIP-712 domain and message).
    identity_key:
        This node's registered key; :meth:`announce` signs with it.
    is_member:
        Whether an address is a joined trainer of the task (the node passes a cached chain check).
    current_round:
        The task's current round (may be cached); messages of the previous, this and the next
        round are accepted.
    fresh_round:
        The task's round re-read from the chain, asked only when a message is further ahead
        than ``current_round`` allows (a cache older than a round); ``None``: never re-read.
    fanout:
        Re-publications per round at most (0 turns re-announcing off).
    max_message_bytes:
        Largest pubsub message considered (never above the parser's 2 KiB).
    max_update_bytes:
        Largest blob fetched for an announcement.
    max_per_sender:
        New updates accepted from one sender per round (a trainer commits one).
    fetch_workers:
        Fetches running at once, off the receive thread (a slow CID does not stall the topic).
    on_update:
        Called once per accepted update with its signed reference (the announcement, or the
        leaf that carried it), after its blob is fetched, digest-checked and pinned, from a fetch
        thread (the receive thread for an inline update when ``fanout`` is 0, and for one
        carried by a leaf). Not called for this node's own :meth:`announce`.
    on_payload:
        Called once per accepted update with its checked bytes (inline or fetched), after
        ``on_update``, from a fetch thread: a node keeps them instead of fetching them again.
    on_leaf:
        Called once per new batch leaf that passed every check, from the receive thread (keep
        it quick). Not called for this node's own :meth:`publish_leaf`.
    inline:
        Accept updates carried inline (messages up to :data:`~marketplace.gossip.inline.
        MAX_INLINE_BYTES` more); :meth:`announce` sends one when given ``payload``.
    """

    def __init__(
        self,
        *,
        pubsub: PubsubClient,
        store: ContentStore,
        topic: str,
        chain_id: int,
        market_address: str,
        task_id: int,
        identity_key: LocalAccount,
        is_member: Callable[[str], bool],
        current_round: Callable[[], int],
        fresh_round: Callable[[], int] | None = None,
        fanout: int = 3,
        max_message_bytes: int = 4096,
        max_update_bytes: int = DEFAULT_MAX_UPDATE_BYTES,
        max_per_sender: int = 2,
        fetch_workers: int = 2,
        on_update: Callable[[UpdateRef], None] | None = None,
        on_payload: Callable[[UpdateRef, bytes], None] | None = None,
        on_leaf: Callable[[UpdateLeaf], None] | None = None,
        inline: bool = True,
    ) -> None:
        if fanout < 0 or max_message_bytes <= 0 or max_update_bytes <= 0:
            raise ConfigError(
                f"gossip needs fanout >= 0 and positive size bounds, got fanout={fanout}, "
                f"max_message_bytes={max_message_bytes}, max_update_bytes={max_update_bytes}"
            )
        if max_per_sender < 1 or fetch_workers < 1:
            raise ConfigError(
                f"gossip needs max_per_sender >= 1 and fetch_workers >= 1, got {max_per_sender} "
                f"and {fetch_workers}"
            )
        task_topic(chain_id, market_address, task_id)  # validates the address and ids
        self._store = store
        self.topic = topic
        self.chain_id = chain_id
        self.market_address = market_address
        self.task_id = task_id
        self._identity = identity_key
        self._is_member = is_member
        self._current_round = current_round
        self._fresh_round = fresh_round
        self.fanout = fanout
        self._max_update_bytes = max_update_bytes
        self._max_per_sender = max_per_sender
        self._fetch_workers = fetch_workers
        self._on_update = on_update
        self._on_payload = on_payload
        self._on_leaf = on_leaf
        self._leaves: dict[tuple[str, int], UpdateLeaf] = {}  # (sender, round) -> first leaf
        self._max_announcement_bytes = min(max_message_bytes, MAX_ANNOUNCEMENT_BYTES)
        self.inline = inline

        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._held: dict[bytes, int] = {}  # digest → round, fetched and checked (or our own)
        # Fingerprints of messages already judged duplicates or accepted → round: the same bytes
        # again (a peer's re-announcement, a leaf's resend) are a duplicate without parsing or
        # verifying them once more.
        self._seen: dict[bytes, int] = {}
        self._fetching: set[bytes] = set()
        self._per_sender: Counter[tuple[str, int]] = Counter()
        self._republished: Counter[int] = Counter()  # round → re-publications made
        self._window_floor = -1  # state for rounds below this was forgotten

        self._receiver = TopicReceiver(
            pubsub, topic, lambda message: self._handle(message.data), lock=self._lock,
            max_message_bytes=self._max_announcement_bytes + (INLINE_FRAME_BYTES if inline else 0),
            label="gossip",
            logger=log, thread_name=f"gossip:{topic}",
        )  # fmt: skip
        self._pool: ThreadPoolExecutor | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Subscribe (live when this returns) and receive on a background thread.

        Raises :class:`StorageError` if the daemon refuses the subscription; later breaks of the
        subscription are logged and re-subscribed with backoff until :meth:`stop`.
        """
        if self._receiver.started:
            raise ConfigError("gossip already started: call start() once per Gossip")
        self._pool = ThreadPoolExecutor(self._fetch_workers, thread_name_prefix="gossip-fetch")
        try:
            self._receiver.start()  # the pool exists before the first message can arrive
        except BaseException:
            self._pool.shutdown(wait=False)
            self._pool = None
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Close the subscription, join the receive thread and wait for running fetches."""
        if not self._receiver.stop(timeout):
            log.warning("gossip receive thread on %r did not stop within %.0fs",
                        self.topic, timeout)  # fmt: skip
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def running(self) -> bool:
        """Whether the receive thread is alive."""
        return self._receiver.running

    def __enter__(self) -> Gossip:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- public API -----------------------------------------------------------------------
    def announce(
        self,
        round: int,
        cid: str,
        digest: bytes,
        nonce: int | None = None,
        *,
        payload: bytes | None = None,
    ) -> Announcement:
        """Sign an announcement of our own update (already in the store) and publish it.

        With ``payload`` (the update's bytes, at most :data:`~marketplace.gossip.inline.
        MAX_INLINE_BYTES`, and ``inline`` on) the bytes travel in the same message; a larger
        payload is announced by CID alone. A payload that is not the announced update raises
        :class:`~marketplace.errors.DigestMismatchError` before anything is sent.

        The digest is marked as held, so our own message coming back is a duplicate and
        ``on_update`` is not called for it. Publishes are serialized and retried once (Kubo's
        seqno validator: see :meth:`~marketplace.storage.pubsub.TopicReceiver.publish`); raises
        :class:`StorageError` if publishing fails.
        """
        announcement = sign_announcement(
            self._identity, chain_id=self.chain_id, task_id=self.task_id, round=round, cid=cid,
            digest=digest, market_address=self.market_address, nonce=nonce,
        )  # fmt: skip
        raw = announcement.to_json()
        if payload is not None and self.inline and len(payload) <= inline.MAX_INLINE_BYTES:
            inline.check_payload(payload, cid=cid, digest=digest)
            raw = inline.pack(raw, payload)
        with self._lock:
            self._held[digest] = round
        self._receiver.publish(raw)
        log.info("announced round %d update %s on %r", round, cid, self.topic)
        return announcement

    def publish_leaf(self, leaf: UpdateLeaf, *, payload: bytes | None = None) -> bool:
        """Publish this node's signed batch leaf (again, if it was: peers count a repeat as a
        duplicate), carrying the update's bytes when ``payload`` is given, ``inline`` is on and
        it fits (:data:`~marketplace.gossip.inline.MAX_INLINE_BYTES`). Whether it carried them.

        A payload that is not the leaf's update raises :class:`~marketplace.errors.
        DigestMismatchError` before anything is sent; :class:`StorageError` if publishing fails.
        """
        raw = LEAF_MAGIC + leaf.to_json()
        carried = payload is not None and self.inline and len(payload) <= inline.MAX_INLINE_BYTES
        if carried:
            assert payload is not None
            inline.check_payload(payload, cid=leaf.cid, digest=leaf.digest)
            raw = inline.pack(raw, payload)
        with self._lock:
            self._leaves[(leaf.sender, leaf.round)] = leaf
            if carried:
                self._held[leaf.digest] = leaf.round
        self._receiver.publish(raw)
        return carried

    def have(self, digest: bytes) -> bool:
        """Whether this node holds the update with this digest (fetched and checked, or ours)."""
        with self._lock:
            return digest in self._held

    def stats(self) -> GossipStats:
        """A consistent snapshot of the counters (safe from any thread)."""
        with self._lock:
            return GossipStats(
                received=self._receiver.counts["received"],
                accepted=self._counts["accepted"],
                duplicates=self._counts["duplicates"],
                republished=self._counts["republished"],
                bytes_in=self._receiver.counts["bytes_in"],
                bytes_out=self._receiver.counts["bytes_out"],
                dropped={k: v for k, v in self._receiver.dropped.items() if v},
                leaves=self._counts["leaves"],
            )

    # --- receiving ------------------------------------------------------------------------
    def _handle(self, data: bytes) -> None:
        """One message of at most ``max_message_bytes``, on the receive thread (counted as
        received, and as ``error`` if this raises, by :class:`TopicReceiver`)."""
        fingerprint = hashlib.blake2b(data, digest_size=16).digest()
        with self._lock:
            if fingerprint in self._seen:
                self._counts["duplicates"] += 1
                return None
        try:
            head, payload = inline.unpack(data) if self.inline else (data, None)
        except SignatureError as exc:
            return self._receiver.drop("malformed", exc)
        if payload is not None and len(payload) > inline.MAX_INLINE_BYTES:
            return self._receiver.drop("oversize", f"inline payload of {len(payload)} bytes")
        if head.startswith(LEAF_MAGIC):
            return self._handle_leaf(head[len(LEAF_MAGIC) :], fingerprint, payload)
        if len(head) > self._max_announcement_bytes:
            return self._receiver.drop("oversize", f"announcement of {len(head)} bytes")
        try:
            ann = Announcement.from_json(head)
        except SignatureError as exc:
            return self._receiver.drop("malformed", exc)
        with self._lock:
            if ann.digest in self._held:
                # A re-announcement (or our own message) of bytes this node already holds and
                # checked: nothing new, whoever signed it, so not worth a signature check.
                self._counts["duplicates"] += 1
                self._seen[fingerprint] = self._held[ann.digest]
                return None
        sender = self._admit(ann, verify_announcement, "")
        if sender is None:
            return None
        with self._lock:
            if ann.digest in self._held or ann.digest in self._fetching:
                self._counts["duplicates"] += 1
                if ann.digest in self._held:  # (a fetch under way may still fail: then a
                    self._seen[fingerprint] = ann.round  # repeat is a retry, not a duplicate)
                return None
            key = (sender, ann.round)
            if self._per_sender[key] >= self._max_per_sender:
                self._receiver.dropped["sender_limit"] += 1
                return None
            self._per_sender[key] += 1
            if payload is not None and self._refuse_payload(payload, ann, "inline update"):
                return None
            self._fetching.add(ann.digest)
        if payload is not None and self.fanout == 0:
            # Checked inline bytes and nothing to re-publish: finish here, on the receive
            # thread (a pool hand-off per message cost more than the bookkeeping it defers).
            return self._fetch(ann, data, payload, fingerprint)
        assert self._pool is not None  # set by start(), before the receive thread exists
        try:
            self._pool.submit(self._fetch, ann, data, payload, fingerprint)
        except RuntimeError:  # the pool is shutting down: stop() is under way
            with self._lock:
                self._fetching.discard(ann.digest)
            self._receiver.drop("fetch_failed", "stopping")
        return None

    def _admit(
        self, msg: Announcement | UpdateLeaf, verify: Callable[..., str], what: str
    ) -> str | None:
        """The checks every signed message passes: bound to this chain and task, its round in
        the window, its signature, its sender a member. Its sender, or ``None`` (dropped)."""
        current = self._round_seen_by(msg.round)
        self._forget_rounds_before(current - 1)
        bound_here = (msg.chain_id, msg.task_id) == (self.chain_id, self.task_id)
        if not bound_here or not _in_window(msg.round, current):
            self._receiver.drop(
                "replay", f"{what}chain {msg.chain_id} task {msg.task_id} round {msg.round}"
            )
            return None
        try:
            sender = verify(
                msg, expected_chain_id=self.chain_id, expected_task_id=self.task_id,
                expected_round=msg.round, market_address=self.market_address,
            )  # fmt: skip
        except SignatureError as exc:
            self._receiver.drop("bad_signature", exc)
            return None
        if not self._is_member(sender):
            self._receiver.drop("not_member", sender)
            return None
        return sender

    def _round_seen_by(self, round_: int) -> int:
        """The task's current round for a message of ``round_``: the cached one, or the chain's
        own when the message is ahead of the cache (rounds can be shorter than the cache's life)."""
        current = self._current_round()
        if round_ > current + 1 and self._fresh_round is not None:
            current = self._fresh_round()
        return current

    def _handle_leaf(self, raw: bytes, fingerprint: bytes, payload: bytes | None) -> None:
        """A batch leaf, perhaps carrying its update: the announcement's checks, then dedup by
        (sender, round); a carried update new to this node is checked and handed over."""
        try:
            leaf = UpdateLeaf.from_json(raw)
        except SignatureError as exc:
            return self._receiver.drop("malformed", exc)
        with self._lock:
            if self._leaves.get((leaf.sender, leaf.round)) == leaf:
                # The very leaf (signature included) already checked, or our own: a resend.
                self._counts["duplicates"] += 1
                self._seen[fingerprint] = leaf.round
                return None
        sender = self._admit(leaf, verify_update_leaf, "leaf for ")
        if sender is None:
            return None
        with self._lock:
            held = self._leaves.get((sender, leaf.round))
            if held == leaf:
                self._counts["duplicates"] += 1
                self._seen[fingerprint] = leaf.round
                return None
            if held is not None:
                self._receiver.dropped["sender_limit"] += 1
                return None
            carried = payload is not None and not (
                leaf.digest in self._held or leaf.digest in self._fetching
            )
            if carried:
                assert payload is not None
                if self._refuse_payload(payload, leaf, "update carried by the leaf"):
                    return None
                self._held[leaf.digest] = leaf.round
            self._leaves[(sender, leaf.round)] = leaf
            self._seen[fingerprint] = leaf.round
            self._counts["leaves"] += 1
        if self._on_leaf is not None:
            try:
                self._on_leaf(leaf)
            except Exception:
                log.exception("gossip on %r: on_leaf raised for %s", self.topic, sender)
        if carried:
            assert payload is not None
            self._deliver(leaf, payload)
        return None

    def _refuse_payload(self, payload: bytes, ref: UpdateRef, what: str) -> bool:
        """Whether carried bytes are not exactly the signed reference's update (counted as
        ``bad_payload`` and logged, then): the caller drops the whole message."""
        try:
            inline.check_payload(payload, cid=ref.cid, digest=ref.digest)
        except DigestMismatchError as exc:
            self._receiver.dropped["bad_payload"] += 1
            log.warning("gossip on %r: %s from %s refused: %s", self.topic, what, ref.sender, exc)
            return True
        return False

    def _forget_rounds_before(self, floor: int) -> None:
        """Drop per-round state of rounds that left the window, so memory stays bounded."""
        with self._lock:
            if floor <= self._window_floor:
                return
            self._window_floor = floor
            self._held = {d: r for d, r in self._held.items() if r >= floor}
            self._seen = {f: r for f, r in self._seen.items() if r >= floor}
            self._per_sender = Counter({k: v for k, v in self._per_sender.items() if k[1] >= floor})
            self._republished = Counter({r: n for r, n in self._republished.items() if r >= floor})
            self._leaves = {k: v for k, v in self._leaves.items() if k[1] >= floor}

    def _fetch(
        self, ann: Announcement, raw: bytes, payload: bytes | None, fingerprint: bytes
    ) -> None:
        """Pull, digest-check and pin the blob (unless it came inline, checked); then
        re-announce and call back (fetch thread)."""
        try:
            if payload is None and self._on_payload is not None:
                payload = self._store.get(
                    ann.cid, expected_sha256=ann.digest, max_size=self._max_update_bytes
                )
                self._store.pin(ann.cid)
            elif payload is None:
                for _chunk in self._store.get_stream(
                    ann.cid, expected_sha256=ann.digest, max_size=self._max_update_bytes
                ):
                    pass  # streamed and discarded: digest checked at the end, memory stays flat
                self._store.pin(ann.cid)
        except Exception as exc:
            with self._lock:
                self._fetching.discard(ann.digest)  # a later announcement may try again
                self._receiver.dropped["fetch_failed"] += 1
            log.warning("gossip on %r: fetch of %s from %s failed: %s",
                        self.topic, ann.cid, ann.sender, exc)  # fmt: skip
            return
        with self._lock:
            self._fetching.discard(ann.digest)
            self._held[ann.digest] = ann.round
            self._seen[fingerprint] = ann.round
            self._counts["accepted"] += 1
            republish = self._republished[ann.round] < self.fanout
            if republish:
                self._republished[ann.round] += 1
        if republish:
            self._republish(raw)
        self._deliver(ann, payload)

    def _deliver(self, ref: UpdateRef, payload: bytes | None) -> None:
        """Hand an accepted update (checked) to ``on_update`` and its bytes to ``on_payload``."""
        if self._on_update is not None:
            try:
                self._on_update(ref)
            except Exception:
                log.exception("gossip on %r: on_update raised for %s", self.topic, ref.cid)
        if self._on_payload is not None and payload is not None:
            try:
                self._on_payload(ref, payload)
            except Exception:
                log.exception("gossip on %r: on_payload raised for %s", self.topic, ref.cid)

    def _republish(self, raw: bytes) -> None:
        # The signed announcement alone: every subscriber got the inline bytes with the
        # original message, and one that missed it fetches them by CID (this node pinned them).
        head = inline.unpack(raw)[0] if self.inline else raw
        try:
            self._receiver.publish(head)
        except StorageError as exc:
            log.warning("gossip on %r: re-announce failed: %s", self.topic, exc)
            return
        with self._lock:
            self._counts["republished"] += 1
