"""Secure aggregation between real peers: the round of :mod:`marketplace.crypto.secagg` over the
chain (Anvil or any RPC) and the content store (Kubo), with signed messages on the task's pubsub
topic.

One trainer's :class:`SecAggPeer` walks one round in non-blocking :meth:`~SecAggPeer.step` calls
(the node's Step style: each call does what it can now and says what it waits for):

``share``
    Build the round's :class:`~marketplace.crypto.secagg.SecAggTrainer` over the task's trainers
    and their registered X25519 keys; seal each peer's share bundle to that peer alone (envelope
    bound to chain, task, round and sender), store the envelopes and an index of them, and publish
    a signed :data:`SECAGG_MESSAGE_TYPE` message (kind ``shares``) pointing to the index.
``collect shares``
    Open the bundle addressed to us in every other trainer's index (signature, membership,
    chain/task/round binding and every digest checked). Every trainer must share: the roster is
    fixed here, dropouts are tolerated from now on.
``mask``
    Clip and mask our input; store the masked vector, seal the plaintext to the **oracle committee
    only**, store a manifest naming both, and commit it on-chain (``commitUpdate``) with the
    binding digest ``H(… | H(masked) | H(plaintext))`` as the update digest.
``wait for close``
    The round's survivors are the trainers with an on-chain commit once the round has closed on
    the chain (everyone reads the same set: no peer can show others a different dropped set).
    Fetch each survivor's manifest and masked vector, and check the binding digest against the
    chain.
``unmask``
    Publish (kind ``unmask``) our unmasking response for that survivor / dropped split.
``sum``
    With ``threshold`` valid responses, compute the exact sum of the survivors' clipped inputs and
    their mean: :attr:`SecAggPeer.aggregate`.

Peers re-publish every message they sent this round (shares, masked input, unmasking) every
``republish_every`` seconds until the round moves on (pubsub is best-effort and reaches only live
subscribers: a peer that missed a share set while its subscription formed must still get it after
the sender has moved on to masking). Until the round closes a peer also relays the share
messages it holds from the others (their signed messages, re-published unchanged in meaning): a
sender that crashed right after sharing — its input committed before a slower peer had even
subscribed — would otherwise leave that peer without its shares until the round's deadline.
And since a sender's manifest carries its signed share message, a peer still missing the shares
of a trainer that has committed reads them from that commit (the chain names the manifest): a
sender that committed and crashed before anyone heard its shares does not stall the round either.
Receivers keep the first valid message per sender and kind, and count anything else as dropped,
under its reason.

Crash recovery: everything random a peer chooses is written to its :class:`RoundJournal` before
anything that depends on it leaves the node — the self-mask seed and the plaintext salt when the
peer is created, each signed message before its first publication, each opened share bundle on
receipt. A peer rebuilt over the same journal (a restarted node) re-publishes the same messages,
masks the same input into the same bytes and never commits twice (the chain is read first), so
its peers never see two versions of anything it sent. A round that closes on-chain before this
peer could mask is given up (:attr:`SecAggPeer.abandoned`); the node then follows the model the
survivors post.

:mod:`marketplace.protocol.secagg_committee` is the committee's side: it opens each survivor's
sealed plaintext with an oracle's key, checks binding and clip, and recomputes the round's
aggregate.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from marketplace.chain.clients import Phase
from marketplace.crypto.announce import SignedMessageType
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.crypto.secagg import (
    PublicInput,
    SecAggContext,
    SecAggParams,
    SecAggTrainer,
    binding_digest,
    unmask_sum,
)
from marketplace.errors import (
    ConfigError,
    CryptoError,
    DigestMismatchError,
    FedMarketError,
    StorageError,
)
from marketplace.gossip.topics import task_topic
from marketplace.jsonlimits import shallow_json
from marketplace.protocol.session import ENVELOPE_OVERHEAD, CommittedUpdate, TaskSession
from marketplace.storage.pubsub import PubsubClient, PubsubMessage, TopicReceiver

log = logging.getLogger(__name__)

MAX_SECAGG_MESSAGE_BYTES = 2048
MAX_INDEX_BYTES = 64 * 1024  # share index and unmask responses: JSON, a few hundred bytes a peer
MANIFEST_FORMAT = "fedmarket-secagg-input/1"


class Kind(enum.IntEnum):
    """What a signed secure-aggregation message points to."""

    SHARES = 1  # the index of this sender's share envelopes (one per peer)
    UNMASK = 2  # this sender's unmasking response


#: EIP-712 type of every secure-aggregation message: bound to chain (domain), market (verifying
#: contract), task, round and kind; its own primary type, so it never verifies as an update or
#: snapshot announcement.
SECAGG_MESSAGE_TYPE = SignedMessageType(
    primary_type="SecAggMessage",
    fields=(
        ("chainId", "chain_id", "uint256"),
        ("taskId", "task_id", "uint256"),
        ("round", "round", "uint256"),
        ("kind", "kind", "uint256"),
        ("cid", "cid", "string"),
        ("digest", "digest", "bytes32"),
        ("sender", "sender", "address"),
    ),
    label="secure-aggregation message",
    max_bytes=MAX_SECAGG_MESSAGE_BYTES,
)


@dataclass(frozen=True)
class SecAggMessage:
    """ "My ``kind`` payload for ``round`` of ``task`` is under ``cid`` (sha256 ``digest``)"."""

    chain_id: int
    task_id: int
    round: int
    kind: int
    cid: str
    digest: bytes
    sender: str
    signature: bytes = b""

    def __post_init__(self) -> None:
        SECAGG_MESSAGE_TYPE.validate(self)
        if self.kind not in set(Kind):
            raise CryptoError(f"malformed secure-aggregation message: unknown kind {self.kind}")

    def to_json(self) -> bytes:
        return SECAGG_MESSAGE_TYPE.to_json(self)

    @classmethod
    def from_json(cls, raw: bytes | str) -> SecAggMessage:
        """Parse the wire form (does not verify); :class:`SignatureError` if malformed."""
        return cls(**SECAGG_MESSAGE_TYPE.parse_json(raw))


def secagg_topic(chain_id: int, market_address: str, task_id: int) -> str:
    """The task's secure-aggregation topic: the update topic plus ``/secagg``."""
    return task_topic(chain_id, market_address, task_id) + "/secagg"


class Stage(enum.Enum):
    SHARE = "share"
    COLLECT_SHARES = "collect shares"
    MASK = "mask"
    WAIT_CLOSE = "wait for close"
    UNMASK = "unmask"
    SUM = "sum"
    DONE = "done"


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class RoundJournal(Protocol):
    """Where a :class:`SecAggPeer` keeps what it must not forget across a crash (one round's
    entries; the node's journal, or :class:`MemoryJournal`). Payloads are small JSON objects."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The payload recorded under ``key``, or ``None``."""

    def record(self, key: str, payload: dict[str, Any]) -> None:
        """Record (or replace) ``key``, durably before returning."""

    def record_once(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Record ``key`` unless already recorded; the payload on record."""


class MemoryJournal:
    """A :class:`RoundJournal` in memory (no crash recovery: tests, benchmarks)."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def record(self, key: str, payload: dict[str, Any]) -> None:
        self._entries[key] = dict(payload)

    def record_once(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._entries.setdefault(key, dict(payload))


# RoundJournal keys
SECRETS_KEY = "secagg_secrets"  # the self-mask seed and the plaintext salt
HELD_KEY = "secagg_held"  # the share bundles opened so far, sender -> base64


@dataclass(frozen=True)
class Manifest:
    """What a trainer commits on-chain in secure-aggregation mode (the CID of this JSON; the
    update digest is the binding digest of the masked vector and the sealed plaintext)."""

    masked_cid: str
    masked_sha256: str  # hex
    plaintext_sha256: str  # hex, of the salted plaintext inside the committee's envelope
    sealed_cid: str  # the plaintext sealed to the oracle committee only
    sealed_sha256: str  # hex
    commitments: Mapping[str, str]
    dim: int
    # The sender's signed ``shares`` message (JSON text): a trainer that committed and then
    # vanished before anyone heard its shares on pubsub still gives them through the chain.
    shares: str = ""

    def to_json(self) -> bytes:
        return _canonical({"format": MANIFEST_FORMAT, **self.__dict__})

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse a manifest; :class:`CryptoError` naming what is wrong."""
        try:
            data = shallow_json(raw)  # a peer's: nesting bounded
            if data.pop("format") != MANIFEST_FORMAT:
                raise CryptoError(f"not a secure-aggregation manifest ({MANIFEST_FORMAT})")
            out = cls(**data)
            commitments = {str(k): str(v) for k, v in dict(out.commitments).items()}
            if not isinstance(out.dim, int) or out.dim < 1:
                raise CryptoError("secure-aggregation manifest has a bad dimension")
            return cls(**{**out.__dict__, "commitments": commitments})
        except CryptoError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CryptoError(f"malformed secure-aggregation manifest: {exc}") from None


def _message_key(kind: Kind) -> str:
    return f"secagg_message_{kind.name.lower()}"


def round_context(session: TaskSession, round_: int) -> SecAggContext:
    return SecAggContext(session.chain_id, session.task_id, round_)


def round_params(session: TaskSession) -> SecAggParams:
    """The task's secure-aggregation parameters for its trainer roster."""
    terms = session.doc.secagg
    if terms is None:
        raise ConfigError(
            f"task {session.task_id} does not use secure aggregation (no secagg term in its "
            "document): publish updates with TaskSession.publish_update instead"
        )
    return terms.params(len(session.members().trainers))


def fetch_survivor(session: TaskSession, c: CommittedUpdate) -> tuple[Manifest, PublicInput]:
    """A committed survivor's manifest and public input, its binding checked against the
    on-chain digest; :class:`CryptoError` / :class:`StorageError` naming what is wrong."""
    manifest = Manifest.from_json(session.store.get(c.cid, max_size=MAX_INDEX_BYTES))
    limit = session.doc.max_update_bytes
    raw = session.store.get(
        manifest.masked_cid, expected_sha256=bytes.fromhex(manifest.masked_sha256), max_size=limit
    )
    if len(raw) != 4 * manifest.dim:
        raise CryptoError(
            f"masked input of {c.sender} has {len(raw)} bytes, not 4 x {manifest.dim}"
        )
    plain_sha = bytes.fromhex(manifest.plaintext_sha256)
    if binding_digest(round_context(session, c.round), c.sender, raw, plain_sha) != c.digest.hex():
        raise CryptoError(f"masked input of {c.sender} does not match its on-chain digest")
    public = PublicInput(
        sender=c.sender.lower(),
        masked=np.frombuffer(raw, dtype="<u4").astype(np.uint32),
        plaintext_sha256=plain_sha,
        binding=c.digest.hex(),
        commitments=manifest.commitments,
    )
    return manifest, public


class SecAggPeer:
    """One trainer's side of one secure-aggregation round, over chain, store and pubsub.

    Parameters
    ----------
    session : TaskSession
        The trainer's session of a task whose document has a ``secagg`` term; training must
        have started (the roster is the task's trainers).
    pubsub : PubsubClient
        Its Kubo daemon's pubsub (the messages' transport).
    round_ : int
        The round.
    vector : np.ndarray or None
        This trainer's input, flat float (it is clipped to the task's ``clip_norm``); ``None``:
        this trainer has no input this round (its DP budget is spent) and drops out by choice
        after sharing (the others need its shares), then helps unmask.
    num_samples : int
        Committed with the update (as in plain mode).
    republish_every : float
        Seconds between re-publications of our current message.
    journal : RoundJournal or None
        Where this round's secrets and sent messages are kept (see the module docstring); a
        peer built over a journal that already holds them resumes the round where it was.
    """

    def __init__(
        self,
        session: TaskSession,
        pubsub: PubsubClient,
        *,
        round_: int,
        vector: np.ndarray | None,
        num_samples: int,
        republish_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        journal: RoundJournal | None = None,
    ) -> None:
        self.session = session
        self.journal: RoundJournal = MemoryJournal() if journal is None else journal
        self.round = round_
        self.vector = None if vector is None else np.asarray(vector, dtype=np.float64).ravel()
        self.num_samples = num_samples
        self.params = round_params(session)
        self.ctx = round_context(session, round_)
        self.me = session.identity.address
        self.market_address = str(session.market.market.address)
        self.topic = secagg_topic(session.chain_id, self.market_address, session.task_id)
        self.stage = Stage.SHARE
        self.aggregate: np.ndarray | None = None  # the survivors' mean, once summed
        self.abandoned = False  # the round closed before this peer could mask
        self.survivors: tuple[str, ...] = ()
        self.dropped_reasons: Counter[str] = Counter()
        self._republish_every, self._clock = republish_every, clock
        self._lock = threading.Lock()
        self._inbox: dict[tuple[int, str], SecAggMessage] = {}
        self._outbox: list[bytes] = []  # every message sent this round, re-published in turn
        self._published_at = -float("inf")
        self._commits_read_at = -float("inf")
        self._manifests_read: set[str] = set()
        self._opened: set[str] = set()
        self._inputs: dict[str, PublicInput] = {}
        self._responses: dict[str, bytes] = {}
        members = session.members()
        self.roster = {a: members.keys[a] for a in members.trainers}
        # Chosen once, journaled before anything depending on them leaves the node.
        chosen = self.journal.record_once(
            SECRETS_KEY, {"self_seed": secrets.token_hex(32), "salt": secrets.token_hex(16)}
        )
        self._salt = bytes.fromhex(chosen["salt"])
        self.trainer = SecAggTrainer(
            address=self.me, x25519_private=session.identity.x25519_private, roster=self.roster,
            ctx=self.ctx, params=self.params, self_seed=bytes.fromhex(chosen["self_seed"]),
        )  # fmt: skip
        self._bundles: dict[str, str] = dict((self.journal.get(HELD_KEY) or {}).get("held", {}))
        for sender, bundle in self._bundles.items():
            self.trainer.receive_bundle(sender, base64.b64decode(bundle))
            self._opened.add(sender)
        sent = self.journal.get(_message_key(Kind.SHARES))
        if sent is not None:  # a restart: our shares are out; send the very same message again
            self._outbox = [str(sent["message"]).encode()]
            self.stage = Stage.COLLECT_SHARES
        self._receiver = TopicReceiver(
            pubsub, self.topic, self._on_message, max_message_bytes=MAX_SECAGG_MESSAGE_BYTES,
            lock=self._lock, label="secagg", logger=log,
        )  # fmt: skip
        self._receiver.start()

    def stop(self) -> None:
        """Close the subscription (the round's result, if any, stays readable)."""
        self._receiver.stop()

    # --- receiving ------------------------------------------------------------------------
    def _on_message(self, message: PubsubMessage) -> None:
        refused = self._accept(message.data)
        if refused is not None:
            self._receiver.drop(*refused)

    def _accept(self, data: bytes) -> tuple[str, object] | None:
        """Check a signed message (binding, signature, membership) and keep the first per sender
        and kind; the drop reason and its detail if refused."""
        try:
            msg = SecAggMessage.from_json(data)
            SECAGG_MESSAGE_TYPE.check_binding(
                msg,
                {"chain_id": self.ctx.chain_id, "task_id": self.ctx.task_id, "round": self.round},
            )
            sender = SECAGG_MESSAGE_TYPE.recover_sender(msg, self.market_address)
        except CryptoError as exc:
            return ("replay" if "replay" in str(exc) else "bad_message", exc)
        if sender not in self.roster:
            return ("not_member", sender)
        with self._lock:
            held = self._inbox.setdefault((msg.kind, sender), msg)
            if held != msg:
                self.dropped_reasons["equivocation"] += 1
        return None

    def _shares_from_commits(self, missing: list[str]) -> None:
        """Take the ``shares`` message of a missing sender that has already committed from its
        on-chain manifest (at most every ``republish_every`` seconds: a chain read and a fetch)."""
        now = self._clock()
        if now - self._commits_read_at < self._republish_every:
            return
        self._commits_read_at = now
        for c in self.session.committed(self.round):
            if c.sender not in missing or c.cid in self._manifests_read:
                continue
            try:
                manifest = Manifest.from_json(
                    self.session.store.get(c.cid, max_size=MAX_INDEX_BYTES)
                )
            except (CryptoError, StorageError) as exc:
                log.info("secagg round %d: manifest of %s not read: %s", self.round, c.sender, exc)
                continue
            self._manifests_read.add(c.cid)
            refused = self._accept(manifest.shares.encode()) if manifest.shares else ("empty", "")
            if refused is not None:
                log.warning(
                    "secagg round %d: shares in the manifest of %s refused: %s",
                    self.round, c.sender, refused[0],
                )  # fmt: skip

    def _received(self, kind: Kind) -> dict[str, SecAggMessage]:
        with self._lock:
            return {s: m for (k, s), m in self._inbox.items() if k == kind and s != self.me}

    # --- sending --------------------------------------------------------------------------
    def _post(self, kind: Kind, payload: bytes) -> None:
        """Store ``payload``, sign a message pointing to it, journal the message, publish it."""
        cid = self.session.store.put(payload)
        unsigned = SecAggMessage(
            chain_id=self.ctx.chain_id, task_id=self.ctx.task_id, round=self.round,
            kind=int(kind), cid=cid, digest=hashlib.sha256(payload).digest(), sender=self.me,
        )  # fmt: skip
        signed = SECAGG_MESSAGE_TYPE.sign(self.session.identity.eth, unsigned, self.market_address)
        self._send(kind, signed.to_json())

    def _send(self, kind: Kind, message: bytes) -> None:
        # The first message journaled for a kind is the only one this peer ever publishes.
        kept = self.journal.record_once(_message_key(kind), {"message": message.decode()})
        message = str(kept["message"]).encode()
        if message not in self._outbox:
            self._outbox.append(message)
        self._published_at = -float("inf")
        self._republish()

    def _republish(self) -> None:
        if self._clock() - self._published_at < self._republish_every:
            return
        messages = [*self._outbox, *self._relayed()]
        if not messages:
            return
        try:
            for message in messages:
                self._receiver.publish(message)
            self._published_at = self._clock()
        except StorageError as exc:  # best-effort: the next step tries again
            log.info("secagg: publish failed (%s); retrying on the next step", exc)

    def _relayed(self) -> list[bytes]:
        """The others' share messages this peer holds, while the round is open (see the module
        docstring: a late subscriber still gets the shares of a sender that crashed)."""
        if self.stage not in (Stage.COLLECT_SHARES, Stage.MASK, Stage.WAIT_CLOSE):
            return []
        return [msg.to_json() for msg in self._received(Kind.SHARES).values()]

    def _fetch(self, msg: SecAggMessage) -> bytes:
        return self.session.store.get(
            msg.cid, expected_sha256=msg.digest, max_size=MAX_INDEX_BYTES + ENVELOPE_OVERHEAD
        )

    def _env(self, sender: str) -> EnvelopeContext:
        return EnvelopeContext(self.ctx.chain_id, self.ctx.task_id, self.round, sender)

    def _open(self, blob: bytes, sender: str) -> bytes:
        return open_envelope(
            blob, recipient_address=self.me, x25519_private=self.session.identity.x25519_private,
            expected_context=self._env(sender),
        )  # fmt: skip

    # --- the round ------------------------------------------------------------------------
    def step(self) -> str:
        """Do what can be done now; returns what was done or what we wait for."""
        try:
            return self._step()
        finally:
            self._republish()

    def _step(self) -> str:
        if self.stage in (Stage.SHARE, Stage.COLLECT_SHARES, Stage.MASK) and self._round_closed():
            shared = self.stage is not Stage.SHARE  # others may have masked with our shares
            if shared and (self.stage is Stage.MASK or not self._collect_shares()):
                self.stage = Stage.WAIT_CLOSE  # we hold every share: help unmask the survivors
            else:
                self.stage, self.abandoned = Stage.DONE, True
                return f"round {self.round} closed before this trainer could mask: given up"
        if self.stage is Stage.SHARE:
            self._share()
            self.stage = Stage.COLLECT_SHARES
            return "published share bundles"
        if self.stage is Stage.COLLECT_SHARES:
            missing = self._collect_shares()
            if missing:
                return f"waiting for the shares of {len(missing)} trainer(s)"
            self.stage = Stage.MASK
            return "holds every trainer's shares"
        if self.stage is Stage.MASK:
            if self.vector is None:
                self.stage = Stage.WAIT_CLOSE
                return f"no input for round {self.round}: sits it out, shares held"
            self._mask_and_commit(self.vector)
            self.stage = Stage.WAIT_CLOSE
            return f"committed the masked input of round {self.round}"
        if self.stage is Stage.WAIT_CLOSE:
            if not self._round_closed():
                return f"waiting for round {self.round} to close on-chain"
            if not self._load_survivors():
                return f"waiting for round {self.round}'s committed inputs to be served"
            self.stage = Stage.UNMASK
        if self.stage is Stage.UNMASK:
            dropped = [a for a in self.roster if a not in self._inputs]
            response = self.trainer.unmask_response(self.survivors, dropped)
            self._responses[self.me] = response
            # Sealed to the task's members: with the masked inputs (public by their CIDs) the
            # responses give the round's sum, which is for the members alone.
            sent = self.journal.get(_message_key(Kind.UNMASK))
            if sent is not None:  # a restart: the same survivors, so the same response
                self._send(Kind.UNMASK, str(sent["message"]).encode())
            else:
                members = self.session.members().recipients()
                blob = seal(response, recipients=members, context=self._env(self.me))
                self._post(Kind.UNMASK, blob)
            self.stage = Stage.SUM
            return f"published unmasking ({len(dropped)} dropped)"
        if self.stage is Stage.SUM:
            return self._try_sum()
        return "done"

    def _share(self) -> None:
        index: dict[str, dict[str, str]] = {}
        env = self._env(self.me)
        for peer, bundle in self.trainer.share_bundles().items():
            address = next(a for a in self.roster if a.lower() == peer)
            blob = seal(bundle, recipients={address: self.roster[address]}, context=env)
            cid = self.session.store.put(blob)
            index[address] = {"cid": cid, "sha256": hashlib.sha256(blob).hexdigest()}
        self._post(Kind.SHARES, _canonical(index))

    def _collect_shares(self) -> list[str]:
        heard = self._received(Kind.SHARES)
        unheard = [a for a in self.roster if a != self.me and a not in heard]
        if unheard:
            self._shares_from_commits(unheard)
        for sender, msg in self._received(Kind.SHARES).items():
            if sender in self._opened:
                continue
            try:
                index = shallow_json(self._fetch(msg))
                entry = index[self.me]
                blob = self.session.store.get(
                    str(entry["cid"]), expected_sha256=bytes.fromhex(str(entry["sha256"])),
                    max_size=MAX_INDEX_BYTES + ENVELOPE_OVERHEAD,
                )  # fmt: skip
                bundle = self._open(blob, sender)
                self.trainer.receive_bundle(sender, bundle)
            except (FedMarketError, ValueError, KeyError, TypeError) as exc:
                log.warning("secagg round %d: shares of %s refused: %s", self.round, sender, exc)
                self.dropped_reasons["bad_shares"] += 1
                continue
            self._opened.add(sender)
            self._bundles[sender] = base64.b64encode(bundle).decode()
            self.journal.record(HELD_KEY, {"held": self._bundles})
        return [a for a in self.roster if a != self.me and a not in self._opened]

    def _mask_and_commit(self, vector: np.ndarray) -> None:
        s = self.session
        if s.market.update_of(s.task_id, self.round, self.me)[0] != bytes(32):
            return  # committed before a restart: the same input, masked the same way
        masked = self.trainer.masked_input(vector, salt=self._salt)
        raw = masked.public.masked_bytes()
        committee = s.members().recipients(trainers=False)  # the oracles alone
        sealed = seal(masked.plaintext, recipients=committee, context=self._env(self.me))
        manifest = Manifest(
            masked_cid=s.store.put(raw), masked_sha256=hashlib.sha256(raw).hexdigest(),
            plaintext_sha256=masked.public.plaintext_sha256.hex(),
            sealed_cid=s.store.put(sealed), sealed_sha256=hashlib.sha256(sealed).hexdigest(),
            commitments=dict(masked.public.commitments), dim=int(vector.shape[0]),
            shares=str((self.journal.get(_message_key(Kind.SHARES)) or {}).get("message", "")),
        )  # fmt: skip
        cid = s.store.put(manifest.to_json())
        binding = bytes.fromhex(masked.public.binding)
        s.market.commit_update(
            s.identity.eth, s.task_id, self.round, cid, binding, self.num_samples
        )

    def _round_closed(self) -> bool:
        info = self.session.info()
        return info.phase_enum != Phase.TRAINING or info.current_round > self.round

    def _load_survivors(self) -> bool:
        """Fetch and check every committed input; ``False`` (retry later) while one is not
        served yet. An input that is malformed or does not match its on-chain digest is left out
        (the same content, so the same verdict, at every peer): its owner counts as dropped."""
        inputs: dict[str, PublicInput] = {}
        for c in self.session.committed(self.round):
            if c.sender not in self.roster:
                continue
            try:
                _, public = fetch_survivor(self.session, c)
            except (CryptoError, DigestMismatchError) as exc:
                log.warning("secagg round %d: input of %s refused: %s", self.round, c.sender, exc)
                continue
            except StorageError as exc:  # not served yet: deciding now could split the peers
                log.info(
                    "secagg round %d: input of %s not fetched yet: %s", self.round, c.sender, exc
                )
                return False
            inputs[c.sender] = public
        self._inputs = inputs
        self.survivors = tuple(sorted(inputs))
        return True

    def _try_sum(self) -> str:
        for sender, msg in self._received(Kind.UNMASK).items():
            if sender not in self._responses:
                try:
                    self._responses[sender] = self._open(self._fetch(msg), sender)
                except CryptoError as exc:
                    log.warning("secagg: unmasking of %s refused: %s", sender, exc)
                    self.dropped_reasons["bad_unmask"] += 1
                except StorageError as exc:
                    log.info("secagg: unmasking of %s not fetched yet: %s", sender, exc)
        if len(self._responses) < self.params.threshold:
            return f"waiting for unmasking ({len(self._responses)}/{self.params.threshold})"
        total = unmask_sum(
            {a.lower(): p for a, p in self._inputs.items()}, list(self._responses.values()),
            roster=list(self.roster), ctx=self.ctx, params=self.params,
        )  # fmt: skip
        self.aggregate = total / len(self.survivors)
        self.stage = Stage.DONE
        return f"aggregated {len(self.survivors)} survivors"
