"""Asynchronous gossip averaging over IPFS: encrypted model snapshots, signed announcements.

The network side of :mod:`marketplace.fl.gossip_averaging`. Each peer, after every step:

1. serializes its model to safetensors (:func:`~marketplace.fl.serialization.dump_weights`),
   seals it in an envelope (:mod:`marketplace.crypto.envelope`) for the task's members, bound to
   ``(chain, task, round = version, sender)``, and puts it in its content store (Kubo);
2. signs a :class:`SnapshotAnnouncement` ``{chainId, taskId, version, cid, digest, sender,
   numSamples, nonce}`` (EIP-712, its own type, so it can never pass for an update
   announcement or the reverse) and publishes it on the task's averaging topic
   (:func:`averaging_topic`, distinct from the update gossip's topic).

Every peer keeps, per sender, the newest announcement it has heard (no round window, no barrier:
any version is a candidate, however old). Announcements pass these checks, cheapest first, and
are dropped and counted under the first that fails:

=================  ========================================================================
``oversize``       more bytes than ``max_message_bytes``
``malformed``      not a snapshot announcement (JSON shape, types, CID, digest)
``replay``         bound to another chain or task
``bad_signature``  the signature does not recover to ``sender``
``not_member``     ``sender`` is not a member of the task (``is_member``)
``error``          ``is_member`` raised
=================  ========================================================================

A passing announcement is ``accepted`` (newer than what is held for its sender), ``stale`` (not
newer) or ``own`` (our own, echoed back). Snapshots are pulled only when a step samples them
(``k`` per step, not every publication: a round costs ``n`` announcements to everyone plus
``n·k`` snapshot transfers at most), and each pulled one is refused, counted under its reason and
skipped, the step moving on to the next sampled candidate, if:

====================  =====================================================================
``fetch_failed``      the store could not serve the CID, it is larger than the bound, or it
                      does not hash to the announced digest
``bad_envelope``      not an envelope, not sealed for us, or bound to another chain, task,
                      version or sender (a foreign or replayed snapshot)
``invalid_snapshot``  the plaintext is not safetensors of the model's exact tensors (names,
                      shapes, dtypes), holds NaN/Inf, or exceeds the size or norm bound
====================  =====================================================================

Nothing is unpickled: :func:`~marketplace.fl.serialization.load_weights` reads the header and
checks it against the model's :class:`~marketplace.fl.serialization.WeightSpec` before any tensor
is built. A refused ``(sender, version)`` is never fetched again.

This mode is not paid: nothing of it goes on-chain. The chain's synchronous rounds stay the
canonical, paid path; see docs/design.md, "Asynchronous gossip averaging".
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from marketplace.crypto.announce import (
    MAX_SNAPSHOT_ANNOUNCEMENT_BYTES,
    SnapshotAnnouncement,
    sign_snapshot_announcement,
    verify_snapshot_announcement,
)
from marketplace.crypto.envelope import (
    MAX_HEADER_BYTES,
    TAG_SIZE,
    EnvelopeContext,
    open_envelope,
    seal,
)
from marketplace.errors import (
    ConfigError,
    CryptoError,
    SignatureError,
    StorageError,
)
from marketplace.fl.data import Dataset
from marketplace.fl.gossip_averaging import (
    GossipAveragingPeer,
    MixingRule,
    SnapshotInfo,
    SnapshotRefusedError,
    StepReport,
)
from marketplace.fl.serialization import WeightSpec, dump_weights, load_weights
from marketplace.fl.weights import Weights
from marketplace.gossip.topics import averaging_topic
from marketplace.storage.base import ContentStore
from marketplace.storage.pubsub import PubsubClient, TopicReceiver

if TYPE_CHECKING:
    from marketplace.protocol.session import TaskSession

log = logging.getLogger(__name__)

DROP_REASONS = ("oversize", "malformed", "replay", "bad_signature", "not_member", "error")
REFUSE_REASONS = ("fetch_failed", "bad_envelope", "invalid_snapshot")


def snapshot_info(ann: SnapshotAnnouncement) -> SnapshotInfo:
    """What the averaging engine needs to know of an announced snapshot before fetching it."""
    return SnapshotInfo(ann.sender, ann.version, ann.num_samples)


# --- the node --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AveragingStats:
    """A snapshot of one node's counters.

    ``received == accepted + stale + own + sum(dropped)`` (announcements); ``refused`` counts
    snapshots pulled and refused, by reason; ``snapshot_bytes_in/out`` are envelope bytes fetched
    and stored, ``bytes_in/out`` pubsub payload bytes.
    """

    received: int = 0
    accepted: int = 0
    stale: int = 0
    own: int = 0
    published: int = 0
    reannounced: int = 0
    publish_failed: int = 0
    fetched: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    snapshot_bytes_in: int = 0
    snapshot_bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """Whether every received announcement has reached its outcome."""
        return self.received == self.accepted + self.stale + self.own + sum(self.dropped.values())


class GossipAveragingNode:
    """One peer of gossip averaging on a real pubsub topic and content store.

    Parameters
    ----------
    peer:
        The averaging engine; its ``peer_id`` must be this node's address.
    pubsub, store:
        The node's Kubo pubsub client and content store.
    chain_id, market_address, task_id:
        What announcements and envelopes are bound to.
    identity_key, x25519_private:
        This node's signing key and envelope key.
    recipients:
        Address → X25519 public key of everyone a snapshot is sealed for (the task's trainers;
        this node included, so it could read its own).
    is_member:
        Whether an address may contribute snapshots (a cached chain check on a real task).
    topic:
        Default :func:`averaging_topic` of the task.
    max_snapshot_bytes:
        Largest plaintext snapshot accepted (default: the model's tensor bytes plus 64 KiB).
    max_snapshot_norm:
        Bound on a snapshot's total L2 norm (``None``: none).
    max_message_bytes:
        Largest announcement considered.
    keep_versions:
        Own snapshots kept pinned (older ones are unpinned after each publication).
    """

    def __init__(
        self,
        *,
        peer: GossipAveragingPeer,
        pubsub: PubsubClient,
        store: ContentStore,
        chain_id: int,
        market_address: str,
        task_id: int,
        identity_key: LocalAccount,
        x25519_private: X25519PrivateKey,
        recipients: Mapping[str, bytes],
        is_member: Callable[[str], bool],
        topic: str | None = None,
        max_snapshot_bytes: int | None = None,
        max_snapshot_norm: float | None = None,
        max_message_bytes: int = MAX_SNAPSHOT_ANNOUNCEMENT_BYTES,
        keep_versions: int = 2,
    ) -> None:
        address = str(identity_key.address)
        if peer.peer_id != address:
            raise ConfigError(
                f"the averaging peer's id {peer.peer_id!r} must be this node's address {address}"
            )
        if keep_versions < 1 or max_message_bytes <= 0:
            raise ConfigError("keep_versions and max_message_bytes must be positive")
        if address not in {str(to_checksum_address(a)) for a in recipients}:
            raise ConfigError(f"recipients must include this node ({address}): it is a member")
        self.peer = peer
        self._store = store
        self.chain_id = chain_id
        self.market_address = market_address
        self.task_id = task_id
        self.address = address
        self._identity = identity_key
        self._x25519 = x25519_private
        self._recipients = dict(recipients)
        self._is_member = is_member
        self.topic = topic or averaging_topic(chain_id, market_address, task_id)
        self._spec = WeightSpec.from_state(peer.weights)
        self._max_plain = max_snapshot_bytes or self._spec.total_bytes + 64 * 1024
        segments = self._max_plain // 4096 + 2  # at most, with the smallest segment size
        self._max_envelope = self._max_plain + 16 + MAX_HEADER_BYTES + segments * TAG_SIZE
        self._max_norm = max_snapshot_norm
        self._keep_versions = keep_versions

        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._latest: dict[str, SnapshotAnnouncement] = {}
        self._own_cids: list[str] = []
        self._last_raw: bytes | None = None
        self._receiver = TopicReceiver(
            pubsub, self.topic, lambda message: self._handle(message.data), lock=self._lock,
            max_message_bytes=min(max_message_bytes, MAX_SNAPSHOT_ANNOUNCEMENT_BYTES),
            label="gossip averaging", logger=log, thread_name=f"gossip-avg:{address[:10]}",
        )  # fmt: skip

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, *, publish_initial: bool = True) -> None:
        """Subscribe (live when this returns), receive on a thread, publish the version-0 model."""
        if self._receiver.started:
            raise ConfigError("gossip averaging already started: call start() once")
        self._receiver.start()
        if publish_initial:
            self.publish()

    def stop(self, timeout: float = 30.0) -> None:
        """Close the subscription and join the receive thread."""
        self._receiver.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the receive thread is alive."""
        return self._receiver.running

    @property
    def recipients(self) -> dict[str, bytes]:
        """Address → X25519 key of everyone this node's snapshots are sealed for."""
        return dict(self._recipients)

    def __enter__(self) -> GossipAveragingNode:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- public API -----------------------------------------------------------------------
    def candidates(self) -> dict[str, SnapshotInfo]:
        """The newest snapshot heard of from each other member."""
        with self._lock:
            return {sender: snapshot_info(ann) for sender, ann in self._latest.items()}

    def wait_for_candidates(
        self, count: int, *, timeout: float = 30.0, reannounce_every: float | None = 1.0
    ) -> dict[str, SnapshotInfo]:
        """Block until snapshots of ``count`` other members are known (start-up only: the
        algorithm itself never waits), re-announcing our latest snapshot every
        ``reannounce_every`` seconds meanwhile, for peers that subscribed after we published.
        Raises :class:`StorageError` on timeout."""
        deadline = time.monotonic() + timeout
        next_announce = time.monotonic() + (reannounce_every or 0.0)
        while len(found := self.candidates()) < count:
            now = time.monotonic()
            if now > deadline:
                raise StorageError(
                    f"heard of {len(found)} of {count} peers' snapshots on {self.topic!r} within "
                    f"{timeout:.0f}s: are the daemons connected and the peers started?"
                )
            if reannounce_every is not None and now >= next_announce:
                self.reannounce()
                next_announce = now + reannounce_every
            time.sleep(0.05)
        return found

    def reannounce(self) -> bool:
        """Publish our latest announcement again (same signed bytes, nothing new stored), for
        peers that joined the topic since; receivers count it as ``stale``. Returns whether
        there was one and it went out (a failure is logged, not raised)."""
        with self._lock:
            raw = self._last_raw
        if raw is None:
            return False
        try:
            self._receiver.publish(raw)
        except StorageError as exc:
            log.info("gossip averaging: re-announcement failed: %s", exc)
            return False
        with self._lock:
            self._counts["reannounced"] += 1
        return True

    def step(self) -> StepReport:
        """One local round: train, mix with sampled neighbours' snapshots, publish the result.

        A failed publication is logged and counted (``publish_failed``), not raised: the model
        moved on locally, and neighbours mix the previous snapshot meanwhile.
        """
        with self._lock:
            frozen = dict(self._latest)
        report = self.peer.step(
            {s: snapshot_info(a) for s, a in frozen.items()},
            lambda info: self._fetch(frozen[info.peer]),
        )
        with self._lock:
            self._counts["fetched"] += len(report.fetched)
            for detail in report.refused.values():
                self._refused[detail.split(":", 1)[0]] += 1
        try:
            self.publish()
        except StorageError as exc:
            with self._lock:
                self._counts["publish_failed"] += 1
            log.warning("gossip averaging: snapshot v%d not published: %s", report.version, exc)
        return report

    def run(self, rounds: int, *, on_step: Callable[[StepReport], None] | None = None) -> None:
        """``rounds`` steps back to back (no barrier: whatever neighbours have published)."""
        for _ in range(rounds):
            report = self.step()
            if on_step is not None:
                on_step(report)

    def publish(self) -> SnapshotAnnouncement:
        """Seal the current model for the recipients, store it, announce it (signed)."""
        snap = self.peer.snapshot()
        plain = dump_weights(snap.weights)
        context = EnvelopeContext(self.chain_id, self.task_id, snap.info.version, self.address)
        blob = seal(plain, recipients=self._recipients, context=context)
        cid = self._store.put(blob)
        ann = sign_snapshot_announcement(
            self._identity, chain_id=self.chain_id, task_id=self.task_id,
            version=snap.info.version, cid=cid, digest=hashlib.sha256(blob).digest(),
            num_samples=snap.info.num_samples, market_address=self.market_address,
        )  # fmt: skip
        raw = ann.to_json()
        self._receiver.publish(raw)  # serialized, retried once: see TopicReceiver.publish
        with self._lock:
            self._last_raw = raw
            self._counts["published"] += 1
            self._counts["snapshot_bytes_out"] += len(blob)
            self._own_cids.append(cid)
            expired = self._own_cids[: -self._keep_versions]
            self._own_cids = self._own_cids[-self._keep_versions :]
        for old in expired:
            try:
                self._store.unpin(old)
            except StorageError as exc:
                log.info("gossip averaging: could not unpin old snapshot %s: %s", old, exc)
        return ann

    def stats(self) -> AveragingStats:
        """A consistent snapshot of the counters (safe from any thread)."""
        with self._lock:
            c, topic = self._counts, self._receiver.counts
            return AveragingStats(
                received=topic["received"], accepted=c["accepted"], stale=c["stale"],
                own=c["own"], published=c["published"], reannounced=c["reannounced"],
                publish_failed=c["publish_failed"],
                fetched=c["fetched"], bytes_in=topic["bytes_in"], bytes_out=topic["bytes_out"],
                snapshot_bytes_in=c["snapshot_bytes_in"],
                snapshot_bytes_out=c["snapshot_bytes_out"],
                dropped={k: v for k, v in self._receiver.dropped.items() if v},
                refused={k: v for k, v in self._refused.items() if v},
            )  # fmt: skip

    # --- fetching -------------------------------------------------------------------------
    def _fetch(self, ann: SnapshotAnnouncement) -> Weights:
        """Pull, digest-check, open and validate one snapshot (called by the engine's step)."""
        try:
            blob = self._store.get(ann.cid, expected_sha256=ann.digest, max_size=self._max_envelope)
        except StorageError as exc:
            raise SnapshotRefusedError("fetch_failed", f"{ann.cid}: {exc}") from None
        with self._lock:
            self._counts["snapshot_bytes_in"] += len(blob)
        context = EnvelopeContext(self.chain_id, self.task_id, ann.version, ann.sender)
        try:
            plain = open_envelope(
                blob, recipient_address=self.address, x25519_private=self._x25519,
                expected_context=context,
            )  # fmt: skip
        except CryptoError as exc:
            raise SnapshotRefusedError("bad_envelope", str(exc)) from None
        weights = load_weights(  # InvalidUpdateError: the engine refuses it as invalid_snapshot
            plain, spec=self._spec, max_bytes=self._max_plain, max_total_norm=self._max_norm
        )
        return {k: weights[k] for k in sorted(weights)}

    # --- receiving ------------------------------------------------------------------------
    def _handle(self, data: bytes) -> None:
        """One message of at most ``max_message_bytes``, on the receive thread (counted as
        received, and as ``error`` if this raises, by :class:`TopicReceiver`)."""
        try:
            ann = SnapshotAnnouncement.from_json(data)
        except SignatureError as exc:
            return self._receiver.drop("malformed", exc)
        if (ann.chain_id, ann.task_id) != (self.chain_id, self.task_id):
            return self._receiver.drop("replay", f"chain {ann.chain_id} task {ann.task_id}")
        try:
            sender = verify_snapshot_announcement(
                ann, expected_chain_id=self.chain_id, expected_task_id=self.task_id,
                market_address=self.market_address,
            )  # fmt: skip
        except SignatureError as exc:
            return self._receiver.drop("bad_signature", exc)
        if sender == self.address:
            with self._lock:
                self._counts["own"] += 1
            return None
        if not self._is_member(sender):
            return self._receiver.drop("not_member", sender)
        with self._lock:
            held = self._latest.get(sender)
            if held is not None and held.version >= ann.version:
                self._counts["stale"] += 1
            else:
                self._latest[sender] = ann
                self._counts["accepted"] += 1
        return None


def open_gossip_averaging(
    session: TaskSession,
    pubsub: PubsubClient,
    dataset: Dataset,
    *,
    k: int | None = 2,
    mixing: MixingRule = "uniform",
    staleness_exponent: float = 0.0,
    max_staleness: int | None = None,
    seed: int = 0,
) -> GossipAveragingNode:
    """A not yet started :class:`GossipAveragingNode` for one trainer of a task.

    Everything comes from the :class:`~marketplace.protocol.session.TaskSession`: the model
    spec and local-training recipe of the task document, the task's initial weights (version 0,
    the same on every peer), the trainers as recipients and members (read once: call this
    after training has started, when the set is final), the session's identity and store.
    ``dataset`` is the trainer's rows.

    Call ``start()``, optionally ``wait_for_candidates(n)``, then ``run(rounds)``; ``stop()``
    at the end. Nothing is committed on-chain: this mode is not paid.
    """
    members = session.members()
    peer = GossipAveragingPeer(
        peer_id=session.identity.address, model_spec=session.doc.model, dataset=dataset,
        initial_weights=session.initial_weights(), train_config=session.doc.train, k=k,
        mixing=mixing, staleness_exponent=staleness_exponent, max_staleness=max_staleness,
        seed=seed,
    )  # fmt: skip
    return GossipAveragingNode(
        peer=peer, pubsub=pubsub, store=session.store, chain_id=session.chain_id,
        market_address=session.market.market.address, task_id=session.task_id,
        identity_key=session.identity.eth, x25519_private=session.identity.x25519_private,
        recipients=members.recipients(oracles=False), is_member=members.is_trainer,
    )  # fmt: skip
