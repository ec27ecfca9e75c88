"""Binding update gossip to one task session: membership and rounds from the chain.

The gossip layer is transport only; this module answers its two questions from the chain, with
small caches so a busy topic does not turn into an RPC per message:

* ``is_member(sender)`` — a joined trainer of the task. Positive answers are final (a trainer
  cannot leave), negative ones are re-checked at most once per ``member_ttl`` seconds per address
  (a trainer may join while the task is open).
* ``current_round()`` — the task's round, re-read at most once per ``round_ttl`` seconds.

Chain reads happen on the gossip receive thread while the node's main loop uses the same web3
provider, so they are serialized by one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from marketplace.crypto.announce import UpdateRef
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.errors import StorageError
from marketplace.gossip.topics import task_topic
from marketplace.gossip.update_gossip import INLINE_FRAME_BYTES, Gossip
from marketplace.protocol.session import ENVELOPE_OVERHEAD, TaskSession
from marketplace.storage.pubsub import DEFAULT_MAX_MESSAGE_SIZE, PubsubClient

log = logging.getLogger(__name__)


MIN_ROUND_REREAD = 0.1  # seconds between forced re-reads of the round (see fresh_round)


class ChainMembership:
    """Cached answers to "is this address a trainer of the task" and "which round is it"."""

    def __init__(
        self,
        session: TaskSession,
        *,
        member_ttl: float = 5.0,
        round_ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._member_ttl = member_ttl
        self._round_ttl = round_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._members: set[str] = set()
        self._refused_at: dict[str, float] = {}
        self._round = 0
        self._round_at = float("-inf")

    def is_member(self, address: str) -> bool:
        key = address.lower()
        with self._lock:
            if key in self._members:
                return True
            seen = self._refused_at.get(key)
            if seen is not None and self._clock() - seen < self._member_ttl:
                return False
            member = self._session.market.is_trainer(self._session.task_id, address)
            if member:
                self._members.add(key)
                self._refused_at.pop(key, None)
            else:
                self._refused_at[key] = self._clock()
            return member

    def current_round(self) -> int:
        """The task's round, read from the chain at most once per ``round_ttl``."""
        return self._read_round(self._round_ttl)

    def note_round(self, round_: int) -> None:
        """The task entered ``round_`` (a ``PhaseAdvanced`` log pushed by the chain
        subscription): the cached round moves on without a chain read."""
        with self._lock:
            if round_ >= self._round:
                self._round = round_
                self._round_at = self._clock()

    def fresh_round(self) -> int:
        """The task's round re-read now (at most every :data:`MIN_ROUND_REREAD` seconds, so
        messages claiming a future round cannot make this node hammer its chain endpoint)."""
        return self._read_round(MIN_ROUND_REREAD)

    def _read_round(self, max_age: float) -> int:
        with self._lock:
            if self._clock() - self._round_at >= max_age:
                self._round = self._session.info().current_round
                self._round_at = self._clock()
            return self._round


def open_task_gossip(
    session: TaskSession,
    ipfs_api: str,
    *,
    fanout: int = 3,
    on_update: Callable[[UpdateRef], None] | None = None,
    on_payload: Callable[[UpdateRef, bytes], None] | None = None,
    on_leaf: Callable[[UpdateLeaf], None] | None = None,
    membership: ChainMembership | None = None,
) -> Gossip:
    """A started-ready :class:`Gossip` on the task's topic, signing with the session's key.

    A fetched blob is bounded by the task's update size (plus envelope overhead, as in
    :meth:`TaskSession.fetch_update`), so a member cannot make the node pull anything larger.
    Small updates travel inline (:mod:`marketplace.gossip.inline`); ``on_payload`` receives
    every accepted update's checked bytes, ``on_leaf`` every new checked batch leaf.
    ``membership`` (default: a new :class:`ChainMembership`) answers who is a member and
    which round it is; pass one to also feed it rounds (:meth:`ChainMembership.note_round`).
    """
    market_address = session.market.market.address
    membership = membership or ChainMembership(session)
    return Gossip(
        pubsub=PubsubClient(
            ipfs_api, max_message_size=DEFAULT_MAX_MESSAGE_SIZE + INLINE_FRAME_BYTES
        ),
        store=session.store,
        topic=task_topic(session.chain_id, market_address, session.task_id),
        chain_id=session.chain_id,
        market_address=market_address,
        task_id=session.task_id,
        identity_key=session.identity.eth,
        is_member=membership.is_member,
        current_round=membership.current_round,
        fresh_round=membership.fresh_round,
        fanout=fanout,
        max_update_bytes=session.doc.max_update_bytes + ENVELOPE_OVERHEAD,
        on_update=on_update,
        on_payload=on_payload,
        on_leaf=on_leaf,
    )


class BackgroundAnnouncer:
    """The trainer's ``announce`` hook: publishes on one background thread, in order.

    A publish goes through the local daemon's pubsub and may wait on it (Kubo serializes
    validation, and a refused publish is retried), so it must not hold up the trainer's loop: the
    commit is on its way on-chain, and peers that miss the announcement fetch the update by CID
    when the round closes. A failed publish is logged, never raised. ``payload_for(round,
    digest)`` returns the update's bytes to send inline, if this node still holds them (the
    session's :meth:`~marketplace.protocol.session.TaskSession.own_envelope`).
    """

    def __init__(
        self, gossip: Gossip, payload_for: Callable[[int, bytes], bytes | None] | None = None
    ) -> None:
        self._gossip = gossip
        self._payload_for = payload_for
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="announce")
        self._announced: dict[bytes, int] = {}  # digests announced alongside their leaf → round
        self.published = 0
        self.leaves_sent = 0
        self.failed = 0
        self.slowest_seconds = 0.0

    def __call__(self, round_: int, cid: str, digest: bytes) -> None:
        self._pool.submit(self._publish, round_, cid, digest)

    def _publish(self, round_: int, cid: str, digest: bytes) -> None:
        started = time.perf_counter()
        try:
            payload = self._payload_for(round_, digest) if self._payload_for else None
            self._gossip.announce(round_, cid, digest, payload=payload)
            self.published += 1
        except StorageError as exc:
            self.failed += 1
            log.warning("round %d: announcement not published: %s", round_, exc)
        self.slowest_seconds = max(self.slowest_seconds, time.perf_counter() - started)

    def send_leaf(self, leaf: UpdateLeaf) -> None:
        """Publish a signed batch leaf and make its update reachable (in order, after any
        queued announcement): a small update this node holds rides with the leaf (one message);
        a larger one is announced on its own, once, before the leaf."""
        self._pool.submit(self._publish_leaf, leaf)

    def _publish_leaf(self, leaf: UpdateLeaf) -> None:
        started = time.perf_counter()
        try:
            payload = self._payload_for(leaf.round, leaf.digest) if self._payload_for else None
            carried = self._gossip.publish_leaf(leaf, payload=payload)
            if not carried and leaf.digest not in self._announced:
                # Too large to carry, or not held: announced by CID, once per update.
                self._gossip.announce(leaf.round, leaf.cid, leaf.digest)
                self._announced[leaf.digest] = leaf.round
                self._announced = {d: r for d, r in self._announced.items()
                                   if r >= leaf.round - 1}  # fmt: skip
                self.published += 1
            self.leaves_sent += 1
        except StorageError as exc:
            self.failed += 1
            log.warning("round %d: batch leaf not published: %s", leaf.round, exc)
        self.slowest_seconds = max(self.slowest_seconds, time.perf_counter() - started)

    def close(self) -> None:
        """Wait for queued announcements (each bounded by the pubsub client's timeout)."""
        self._pool.shutdown(wait=True)
