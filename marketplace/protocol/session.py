"""One peer's view of one task: the document, the members, and every byte exchanged for it.

A :class:`TaskSession` is what trainers and oracles share. It publishes this peer's update
(safetensors → envelope for the task's members → content store → digest), reads the updates the
chain says were committed (digest checked against the chain, envelope opened, weights validated
against the model spec and the task's bounds), and recomputes every round's global model
deterministically from the committed set — so every honest peer derives the same model and no
posted model has to be trusted.

Digests: an update's on-chain digest is the sha256 of its envelope (what IPFS returns must hash to
it); a model's on-chain digest is the sha256 of its plaintext safetensors bytes, because every peer
computes the plaintext independently and envelopes differ per encryption.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from marketplace.chain.clients import Marketplace, TaskView
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.errors import (
    ChainLagError,
    ConfigError,
    ContentNotFoundError,
    ContentUnavailableError,
    CryptoError,
    DigestMismatchError,
    FedMarketError,
    InvalidUpdateError,
    StorageError,
    StoreUnreachableError,
)
from marketplace.fl.data import canonical_digest
from marketplace.fl.models import build_model
from marketplace.fl.serialization import WeightSpec, dump_weights, load_weights
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights, flatten, get_weights, unflatten
from marketplace.protocol.identity import Identity
from marketplace.protocol.members import TaskMembers, load_members
from marketplace.protocol.scope import TaskScope, task_scope
from marketplace.protocol.taskdoc import TaskDocument, ValidationRef
from marketplace.storage.base import ContentStore
from marketplace.units import checksum_address
from marketplace.valuation.merkle import LeafDomain

log = logging.getLogger(__name__)

PRE_TASK = 0  # envelope task id for artifacts published before the task exists (validation set)
FETCH_WORKERS = 4  # updates fetched and opened at once when a round closes
ENVELOPE_OVERHEAD = 1 << 20  # recipients' wrapped keys and the header, generously


@dataclass(frozen=True)
class CommittedUpdate:
    """An ``UpdateCommitted`` event: what the chain says a trainer published."""

    sender: str
    round: int
    cid: str
    digest: bytes
    num_samples: int
    order: int  # position in the chain's commit order for the round (block, log index)


@dataclass(frozen=True)
class RoundUpdates:
    """A round's committed updates, split into usable ones and refused ones (with the reason)."""

    round: int
    committed: tuple[CommittedUpdate, ...]
    valid: tuple[ClientUpdate, ...]  # sorted by sender
    invalid: Mapping[str, str]  # sender -> one-line reason


class HeldUpdates(Protocol):
    """Updates a peer already holds, opened and validated, by commitment (see
    :class:`~marketplace.protocol.update_cache.UpdateCache`)."""

    def get(self, c: CommittedUpdate) -> Mapping[str, torch.Tensor] | None:
        """The delta committed as ``c`` (same round, sender and digest), if held."""
        ...


@dataclass
class TaskSession:
    """A peer's working state for one task (see the module docstring)."""

    market: Marketplace
    store: ContentStore
    task_id: int
    identity: Identity
    doc: TaskDocument
    created: Mapping[str, object]  # the TaskCreated event's args (CIDs)
    scope: TaskScope | None = None  # which deployment's task this is (keys local state)
    _members: TaskMembers | None = None
    _globals: dict[int, Weights] = field(default_factory=dict)
    _rounds: dict[int, RoundUpdates] = field(default_factory=dict)
    # Secure aggregation: round -> the survivors' mean input (None: no survivor), as unmasked by
    # this peer's SecAggPeer or recomputed by an oracle (see set_round_mean).
    _round_means: dict[int, np.ndarray | None] = field(default_factory=dict)
    # Seconds a committed update may stay unavailable (no IPFS provider serves it) before it is
    # scored as invalid; until then fetching it raises ContentUnavailableError and is retried.
    # An oracle sets this to 0 near the end of the commit phase: it then scores with what is
    # verifiable rather than miss the commit window.
    fetch_patience: float = 180.0
    _unavailable_since: dict[str, float] = field(default_factory=dict)
    # Signed batch leaves this peer received over gossip, by round then sender (used when a
    # closer's published leaf set cannot be fetched; every one is checked before use).
    gossiped_leaves: dict[int, dict[str, UpdateLeaf]] = field(default_factory=dict)
    # Updates already delivered (gossip) or prefetched (commit logs): fetch_update uses them
    # instead of reading the store again. None: every update is fetched at the round's close.
    held_updates: HeldUpdates | None = None
    # This peer's own envelopes by round (what publish_update stored), for inline gossip.
    _own_envelopes: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    # Models this peer put in the store, by round: (cid, plaintext sha256).
    _published_models: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    _weight_spec: WeightSpec | None = None
    _join_order: list[str] | None = None

    # --- loading --------------------------------------------------------------------------
    @classmethod
    def open(
        cls, market: Marketplace, store: ContentStore, task_id: int, identity: Identity
    ) -> TaskSession:
        """Read the task's creation event and its document from the store."""
        events = market.events(market.market, "TaskCreated", filters={"taskId": task_id})
        if not events:
            raise ConfigError(f"no task {task_id} on chain {market.deployment.chain_id}")
        created = dict(events[0]["args"])
        raw = fetch_shared(store, str(created["configCid"]), max_size=1 << 20)
        doc = TaskDocument.from_json(raw)
        if doc.model.digest() != _spec_digest(store, str(created["modelSpecCid"])):
            raise ConfigError(
                f"task {task_id}: the model spec CID does not match the task document's model"
            )
        scope = task_scope(market.deployment.chain_id, market.market.address, task_id, events[0])
        return cls(market, store, task_id, identity, doc, created, scope)

    @property
    def chain_id(self) -> int:
        return self.market.deployment.chain_id

    @property
    def leaf_domain(self) -> LeafDomain:
        """The domain this task's payout leaves are bound to (chain id, TaskMarket, task id)."""
        return LeafDomain(self.chain_id, self.market.market.address, self.task_id)

    def info(self) -> TaskView:
        return self.market.task(self.task_id)

    def members(self, *, refresh: bool = False) -> TaskMembers:
        """The task's members; cached once the trainer set is final (training has started or
        the task was cancelled), read afresh while trainers may still join."""
        if self._members is not None and not refresh:
            return self._members
        final = self._trainers_final()  # read before the logs: a set read after is complete
        members = load_members(self.market, self.task_id)
        if final:
            self._members = members
        return members

    def _trainers_final(self) -> bool:
        """Whether no trainer can join any more (the task has left its join phase)."""
        from marketplace.chain.clients import Phase

        return self.info().phase_enum not in (Phase.FORMING, Phase.OPEN)

    def weight_spec(self) -> WeightSpec:
        """Names, shapes and dtypes of the task's model (built once)."""
        if self._weight_spec is None:
            self._weight_spec = WeightSpec.from_module(build_model(self.doc.model))
        return self._weight_spec

    # --- models ---------------------------------------------------------------------------
    def initial_weights(self) -> Weights:
        """Round 1's global model: fetched by CID, digest checked against the chain."""
        if 1 not in self._globals:
            digest = bytes(self.created["initialModelDigest"])  # type: ignore[call-overload]
            blob = fetch_shared(
                self.store, str(self.created["initialModelCid"]), expected_sha256=digest,
                max_size=self.doc.max_update_bytes,
            )  # fmt: skip
            self._globals[1] = load_weights(
                blob, spec=self.weight_spec(), max_bytes=self.doc.max_update_bytes
            )
        return self._globals[1]

    def global_weights(self, round_: int) -> Weights:
        """The global model that starts ``round_`` (``rounds + 1`` is the final model).

        Round ``r > 1`` is the task's aggregator applied to round ``r - 1``'s valid committed
        updates, recomputed here; with no valid update the model carries over unchanged. Under
        secure aggregation it is ``previous + server_lr · mean``, the mean being the round's
        secure aggregate (:meth:`set_round_mean`) or, when this peer does not hold it, the model
        the survivors posted on-chain (digest checked); :class:`ContentUnavailableError` until
        one of them is known.
        """
        if round_ < 1:
            raise ConfigError(f"rounds start at 1, got {round_}")
        if round_ == 1:
            return self.initial_weights()
        if round_ not in self._globals and self.doc.secagg is not None:
            self._secure_aggregate(round_)
        if round_ not in self._globals:
            previous = self.global_weights(round_ - 1)
            updates = self.round_updates(round_ - 1)
            if updates.valid:
                result = self.doc.strategy().aggregate(previous, list(updates.valid))
                self._globals[round_] = result.weights
            else:
                self._globals[round_] = previous
        return self._globals[round_]

    def speculative_model(self, round_: int, leaves: Sequence[UpdateLeaf]) -> Weights | None:
        """The model that would start ``round_`` if round ``round_ - 1``'s batch holds exactly
        ``leaves`` (their signatures checked by the caller), or ``None`` when this peer does not
        hold every one of their updates yet (gossip's, or its own envelope). Computed as
        :meth:`global_weights` would, from the same checked deltas in the same order; a guess
        made before the batch is on-chain, so a caller uses it only once it equals
        :meth:`global_weights`. Safe from another thread (reads, and one aggregation)."""
        previous = self._globals.get(round_ - 1)
        if previous is None or self.doc.secagg is not None or not leaves:
            return None
        updates: list[ClientUpdate] = []
        for leaf in leaves:
            c = CommittedUpdate(leaf.sender, round_ - 1, leaf.cid, leaf.digest, leaf.num_samples, 0)
            delta = self._held_delta(c)
            if delta is None:
                return None
            updates.append(_client_update(c, delta))
        updates.sort(key=lambda u: u.sender)
        return self.doc.strategy().aggregate(previous, updates).weights

    def _held_delta(self, c: CommittedUpdate) -> Mapping[str, torch.Tensor] | None:
        """``c``'s delta if already held: opened by the update cache, or this peer's own."""
        held = self.held_updates.get(c) if self.held_updates is not None else None
        if held is not None or c.sender != self.identity.address:
            return held
        own = self.own_envelope(c.round, c.digest)
        return None if own is None else self.open_update(own, c.round, c.sender)

    def set_round_mean(self, round_: int, mean: np.ndarray | None) -> None:
        """Record round ``round_``'s secure aggregate (the survivors' mean input, flat float64;
        ``None``: no survivor, the model carries over): the model of ``round_ + 1`` follows."""
        self._round_means[round_] = None if mean is None else np.asarray(mean, dtype=np.float64)
        for later in [r for r in self._globals if r > round_]:
            del self._globals[later]

    def has_round_mean(self, round_: int) -> bool:
        """Whether this peer holds round ``round_``'s secure aggregate."""
        return round_ in self._round_means

    def _secure_aggregate(self, round_: int) -> None:
        previous = self.global_weights(round_ - 1)
        if round_ - 1 not in self._round_means:
            if self.follow_posted_model(round_):
                return
            raise ContentUnavailableError(
                f"round {round_ - 1}'s secure aggregate is not known to this peer yet and no "
                f"model of round {round_} is posted: waiting for the survivors to post it"
            )
        mean = self._round_means[round_ - 1]
        if mean is None:
            self._globals[round_] = previous
            return
        step = self.doc.strategy().server_lr * mean
        self._globals[round_] = unflatten(flatten(previous) + step, previous)

    def model_digest(self, round_: int) -> bytes:
        return hashlib.sha256(dump_weights(self.global_weights(round_))).digest()

    def publish_model(self, round_: int) -> tuple[str, bytes]:
        """Put the global model of ``round_`` in the store (encrypted for members unless the
        task's model is public); returns ``(cid, plaintext sha256)``. The same model is put
        once (a round's closer puts it ahead of its batch, see BatchDuty)."""
        plain = dump_weights(self.global_weights(round_))
        digest = hashlib.sha256(plain).digest()
        done = self._published_models.get(round_)
        if done is not None and done[1] == digest:
            return done
        if self.doc.public_model:
            cid = self.store.put(plain)
        else:
            ctx = self._context(round_)
            cid = self.store.put(seal(plain, recipients=self.members().recipients(), context=ctx))
        self._published_models = {r: v for r, v in self._published_models.items() if r >= round_}
        self._published_models[round_] = (cid, digest)
        return cid, digest

    def follow_posted_model(self, round_: int) -> bool:
        """Adopt the model posted on-chain for ``round_`` in place of this peer's own recompute
        (after a mismatch: this peer most likely missed an update it could not fetch). The posted
        model is fetched by its CID and must hash to the on-chain digest; ``False`` when no such
        readable post exists (the peer then keeps its own model)."""
        onchain = self.market.model_digest(self.task_id, round_)
        events = self.market.events(
            self.market.market, "ModelPosted", filters={"taskId": self.task_id}
        )
        for ev in events:
            args = ev["args"]
            if int(args["round"]) != round_ or bytes(args["digest"]) != onchain:
                continue
            try:
                blob = fetch_shared(
                    self.store,
                    str(args["cid"]),
                    max_size=self.doc.max_update_bytes + ENVELOPE_OVERHEAD,
                )
                plain = blob if self.doc.public_model else open_envelope(
                    blob, recipient_address=self.identity.address,
                    x25519_private=self.identity.x25519_private,
                    expected_context=self._context(
                        round_, sender=checksum_address(args["poster"])
                    ),
                )  # fmt: skip
                if hashlib.sha256(plain).digest() != onchain:
                    continue
                weights = load_weights(
                    plain, spec=self.weight_spec(), max_bytes=self.doc.max_update_bytes
                )
            except FedMarketError as exc:
                log.warning("round %d: posted model %s unreadable: %s", round_, args["cid"], exc)
                continue
            self._globals[round_] = weights
            for later in [r for r in self._globals if r > round_]:
                del self._globals[later]
            return True
        return False

    # --- updates --------------------------------------------------------------------------
    def _context(self, round_: int, sender: str | None = None) -> EnvelopeContext:
        return EnvelopeContext(
            chain_id=self.chain_id, task_id=self.task_id, round=round_,
            sender=sender or self.identity.address,
        )  # fmt: skip

    def publish_update(self, round_: int, delta: Mapping[str, torch.Tensor]) -> tuple[str, bytes]:
        """Encrypt this peer's update for the task's trainers and oracles and store it; returns
        ``(cid, sha256 of the envelope)`` — the digest to commit on-chain."""
        plain = dump_weights(delta)
        blob = seal(plain, recipients=self.members().recipients(), context=self._context(round_))
        cid = self.store.put(blob)
        digest = hashlib.sha256(blob).digest()
        self._own_envelopes = {r: v for r, v in self._own_envelopes.items() if r >= round_ - 1}
        self._own_envelopes[round_] = (digest, blob)
        return cid, digest

    def own_envelope(self, round_: int, digest: bytes) -> bytes | None:
        """The envelope this peer published for ``round_`` with ``digest``, if this process
        still holds it (to send it inline: see :mod:`marketplace.gossip.inline`)."""
        held = self._own_envelopes.get(round_)
        return held[1] if held is not None and held[0] == digest else None

    def direct_commit_logs(self, round_: int) -> list[Any]:
        """The round's ``UpdateCommitted`` logs (direct commits), in chain order."""
        events = self.market.events(
            self.market.market, "UpdateCommitted", filters={"taskId": self.task_id}
        )
        picked = [e for e in events if int(e["args"]["round"]) == round_]
        return sorted(picked, key=lambda e: (e["blockNumber"], e["logIndex"]))

    def committed(self, round_: int) -> tuple[CommittedUpdate, ...]:
        """The round's ``UpdateCommitted`` events, in chain order, then the round's batched
        updates (:func:`~marketplace.protocol.batched_round.usable_leaves`: only leaves signed by
        a trainer of the task, bits set), sorted by sender."""
        picked = self.direct_commit_logs(round_)
        direct = [
            CommittedUpdate(
                sender=checksum_address(e["args"]["trainer"]),
                round=round_,
                cid=str(e["args"]["cid"]),
                digest=bytes(e["args"]["digest"]),
                num_samples=int(e["args"]["numSamples"]),
                order=i,
            )
            for i, e in enumerate(picked)
        ]
        return (*direct, *self._batched(round_, start=len(direct)))

    def join_order(self) -> list[str]:
        """The task's trainers in join order (a trainer's bit in a batch's bitmap); final once
        training started, so read once from then on (one log scan fewer on every round's
        critical path)."""
        if self._join_order is not None:
            return self._join_order
        final = self._trainers_final()  # read before the logs, as in members()
        order = self.market.joined_trainers(self.task_id)
        if final:
            self._join_order = order
        return order

    def _batched(self, round_: int, *, start: int) -> list[CommittedUpdate]:
        from marketplace.chain.batch_client import BatchCommits
        from marketplace.protocol.batched_round import usable_leaves

        batches = BatchCommits(self.market)
        recorded = batches.batches(self.task_id).get(round_)
        if recorded is None:
            return []
        # A leaf set no provider serves yet is waited for (retried) up to fetch_patience, as a
        # missing update is; after that the leaves held from gossip are used.
        try:
            leaves = usable_leaves(
                recorded,
                self.store,
                join_order=self.join_order(),
                chain_id=self.chain_id,
                market_address=self.market.market.address,
                known=dict(self.gossiped_leaves.get(round_, {})),  # a copy: gossip adds to it
                wait_for_set=self._still_waiting(recorded.leaves_cid),
            )
        except ContentUnavailableError:
            self._unavailable_since.setdefault(recorded.leaves_cid, time.monotonic())
            raise
        return [
            CommittedUpdate(leaf.sender, round_, leaf.cid, leaf.digest, leaf.num_samples, start + i)
            for i, leaf in enumerate(leaves)
        ]

    def fetch_update(
        self, c: CommittedUpdate, template: Mapping[str, torch.Tensor]
    ) -> ClientUpdate:
        """Fetch, digest-check, decrypt and validate one committed update.

        Raises a :class:`FedMarketError` naming what is wrong with the update; a store that does
        not answer raises :class:`StoreUnreachableError` (our problem, not the sender's). An
        update in :attr:`held_updates` under the same round, sender and digest, or this peer's
        own envelope of that digest, is not fetched again (it was digest-checked, and is opened
        and validated the same way).
        """
        delta = self._held_delta(c)
        return _client_update(c, delta) if delta is not None else self._fetched(c, template)

    def _fetched(self, c: CommittedUpdate, template: Mapping[str, torch.Tensor]) -> ClientUpdate:
        """``c`` read from the store (digest-checked), decrypted and validated."""
        max_size = self.doc.max_update_bytes + ENVELOPE_OVERHEAD
        blob = self.store.get(c.cid, expected_sha256=c.digest, max_size=max_size)
        delta = self.open_update(blob, c.round, c.sender, WeightSpec.from_state(template))
        return _client_update(c, delta)

    def open_update(
        self, blob: bytes, round_: int, sender: str, spec: WeightSpec | None = None
    ) -> dict[str, torch.Tensor]:
        """Decrypt ``sender``'s envelope for ``round_`` (digest already checked by the caller)
        and validate the delta against the model's spec and the task's bounds."""
        plain = open_envelope(
            blob, recipient_address=self.identity.address,
            x25519_private=self.identity.x25519_private,
            expected_context=self._context(round_, sender=sender),
        )  # fmt: skip
        return load_weights(
            plain, spec=spec or self.weight_spec(), max_bytes=self.doc.max_update_bytes,
            max_total_norm=self.doc.max_update_norm,
        )  # fmt: skip

    def round_updates(self, round_: int) -> RoundUpdates:
        """Every committed update of ``round_`` (cached once the round has ended on-chain)."""
        if round_ in self._rounds:
            return self._rounds[round_]
        template = self.global_weights(round_)
        closed = self._round_closed(round_)  # read before the logs, as members() does
        committed = self.committed(round_)
        if closed:
            self._check_logged(round_)
        valid: list[ClientUpdate] = []
        invalid: dict[str, str] = {}

        def fetch(c: CommittedUpdate, held_only: bool = False) -> ClientUpdate | str | None:
            """``c`` opened, or why it is refused; with ``held_only``, ``None`` when it is not
            held yet (it must be read from the store)."""
            try:
                if held_only:
                    delta = self._held_delta(c)
                    return None if delta is None else _client_update(c, delta)
                return self._fetched(c, template)
            except ContentNotFoundError as exc:
                self._unavailable_since.setdefault(c.cid, time.monotonic())
                if self._still_waiting(c.cid):
                    raise ContentUnavailableError(
                        f"round {round_}: update of {c.sender} ({c.cid}) not available from any "
                        f"IPFS provider yet ({exc}); retrying before counting it as missing"
                    ) from None
                log.warning("round %d: update of %s unavailable, counted missing: %s",
                            round_, c.sender, exc)  # fmt: skip
                return f"{type(exc).__name__}: {exc}"
            except (
                DigestMismatchError, CryptoError, InvalidUpdateError, StorageError,
            ) as exc:  # fmt: skip
                if isinstance(exc, StoreUnreachableError):
                    raise  # our store is down: not the sender's fault
                log.warning("round %d: update of %s refused: %s", round_, c.sender, exc)
                return f"{type(exc).__name__}: {exc}"

        # Held updates (gossip's, this peer's own) first, here; the rest are read from the
        # store, overlapped when several (fetches wait on the store, decryption releases the
        # GIL) — a pool per round only for what is missing, not for every round's close.
        outcomes = [fetch(c, held_only=True) for c in committed]
        missing = [c for c, outcome in zip(committed, outcomes, strict=True) if outcome is None]
        read: list[ClientUpdate | str | None] = []
        if len(missing) == 1:
            read = [fetch(missing[0])]
        elif missing:
            with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(missing))) as pool:
                read = list(pool.map(fetch, missing))
        fetched = iter(read)
        for c, outcome in zip(committed, outcomes, strict=True):
            if outcome is None:
                outcome = next(fetched)
            if isinstance(outcome, str):
                invalid[c.sender] = outcome
            elif outcome is not None:
                valid.append(outcome)
        result = RoundUpdates(
            round=round_,
            committed=committed,
            valid=tuple(sorted(valid, key=lambda u: u.sender)),
            invalid=invalid,
        )
        if closed:
            self._rounds[round_] = result
        return result

    def _check_logged(self, round_: int) -> None:
        """Raise :class:`ChainLagError` when the logs show fewer of the closed round's updates
        than the chain counts: a batch that closes its round changes state and logs in one
        transaction, and a view at the head can show the close before the batch's log is
        readable — an aggregate of what the logs show then would leave the batch out."""
        from marketplace.chain.batch_client import BatchCommits

        counted = self.market.update_count(self.task_id, round_)
        direct = len(self.direct_commit_logs(round_))
        recorded = BatchCommits(self.market).batches(self.task_id).get(round_)
        logged = direct + (recorded.count if recorded is not None else 0)
        if logged < counted:
            raise ChainLagError(
                f"round {round_}: the chain counts {counted} updates but its logs show "
                f"{logged} so far: retrying"
            )

    def _still_waiting(self, cid: str) -> bool:
        """Whether content no provider served yet is still waited for (retried): not seen
        missing before, or for less than :attr:`fetch_patience`."""
        first = self._unavailable_since.get(cid)
        return first is None or time.monotonic() - first < self.fetch_patience

    def _round_closed(self, round_: int) -> bool:
        info = self.info()
        from marketplace.chain.clients import Phase

        phase = info.phase_enum
        return (
            phase not in (Phase.FORMING, Phase.OPEN, Phase.TRAINING) or info.current_round > round_
        )


def _client_update(c: CommittedUpdate, delta: Mapping[str, torch.Tensor]) -> ClientUpdate:
    """``c``'s delta as an aggregator takes it (tensors in name order)."""
    return ClientUpdate(c.sender, {k: delta[k] for k in sorted(delta)}, c.num_samples)


def _spec_digest(store: ContentStore, cid: str) -> str:
    from marketplace.fl.models import ModelSpec

    return ModelSpec.from_json(fetch_shared(store, cid, max_size=1 << 20)).digest()


def fetch_shared(store: ContentStore, cid: str, **kwargs: object) -> bytes:
    """``store.get`` for content the whole task depends on (its document, the initial model,
    the validation set, a report): content no provider serves *now* is not anyone's fault, so
    it raises :class:`ContentUnavailableError`, which peers retry (see marketplace.resilience)."""
    try:
        return store.get(cid, **kwargs)  # type: ignore[arg-type]
    except ContentUnavailableError:
        raise
    except ContentNotFoundError as exc:
        raise ContentUnavailableError(
            f"{cid} is not available from any IPFS provider yet ({exc}); retrying"
        ) from None


# --- requester-side artifacts ---------------------------------------------------------------
def initial_model_blob(doc: TaskDocument) -> tuple[bytes, bytes]:
    """The initial weights built from the spec's seed, as safetensors, and their sha256.

    They carry no data (a seeded random init), so they are published unencrypted.
    """
    blob = dump_weights(get_weights(build_model(doc.model)))
    return blob, hashlib.sha256(blob).digest()


def seal_validation_set(
    x: np.ndarray, y: np.ndarray, *, oracles: Mapping[str, bytes], chain_id: int, requester: str
) -> tuple[bytes, ValidationRef]:
    """Encrypt the validation set for the oracle committee; returns the envelope and a
    :class:`ValidationRef` without its CID (store the envelope, then ``replace(ref, cid=…)``)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype="<f4"))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype="<i8"))
    plain = dump_weights({"x": xt, "y": yt})
    ctx = EnvelopeContext(chain_id=chain_id, task_id=PRE_TASK, round=0, sender=requester)
    blob = seal(plain, recipients=dict(oracles), context=ctx)
    return blob, ValidationRef(cid="", sha256=canonical_digest(x, y), samples=len(y))


def open_validation_set(session: TaskSession) -> tuple[np.ndarray, np.ndarray]:
    """Fetch and decrypt the validation set (oracles only) and check it against the commitment
    stored on-chain; refuses to return data that does not match."""
    ref = session.doc.validation
    requester = session.members().requester
    blob = fetch_shared(session.store, ref.cid, max_size=session.doc.max_update_bytes * 64)
    plain = open_envelope(
        blob, recipient_address=session.identity.address,
        x25519_private=session.identity.x25519_private,
        expected_context=EnvelopeContext(
            chain_id=session.chain_id, task_id=PRE_TASK, round=0, sender=requester
        ),
    )  # fmt: skip
    n, d = ref.samples, session.doc.model.input_dim
    spec = WeightSpec.from_state({"x": torch.zeros(n, d), "y": torch.zeros(n, dtype=torch.int64)})
    arrays = load_weights(plain, spec=spec, max_bytes=len(plain))
    x, y = arrays["x"].numpy(), arrays["y"].numpy()
    onchain = bytes(session.info().validation_commitment).hex()
    actual = canonical_digest(x, y)
    if actual != onchain or actual != ref.sha256:
        raise FedMarketError(
            f"task {session.task_id}: the validation set hashes to {actual}, not the on-chain "
            f"commitment {onchain}; refusing to score — ask the requester for the committed set"
        )
    return x, y
