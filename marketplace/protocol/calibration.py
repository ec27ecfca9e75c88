"""Unlearning over the network: the remaining trainers run the unlearning steps (FedEraser
calibration rounds, or retraining rounds) together, like training rounds, each on its own data.

Per step ``i`` of the :class:`~marketplace.unlearning.plan.UnlearningPlan` (fixed by the chain's
record of who committed in which round, the withdrawals and :func:`protocol_calibration`):

1. every *expected* trainer — a remaining participant of the step's stored round that was not
   dropped earlier — trains the step's epochs on its own data from the step's start model
   ``M'_i``, seals the update to the task's members that have not withdrawn (envelope context:
   chain id, task, ``calibration_context_round(k, round)``, sender), stores it and commits
   ``(cid, sha256 of the envelope)`` on-chain with ``ModelVersions.commitCalibration(task, k,
   round, …)`` — one commit per trainer, round and unlearning, so every peer reads the same set;
2. every peer fetches each committed update, checks it against the committed digest, opens and
   validates it (a bad one is left out, by every honest peer alike), and computes ``M'_{i+1}``
   with :func:`~marketplace.unlearning.plan.apply_step` (stored step lengths and sample counts,
   the task's aggregator, address order): every honest peer derives the same bytes.

**Timeouts, deterministically** (:func:`schedule`): step 0 opens at ``anchor`` = the later of the
last withdrawal's request and the final model's post (block times); step ``i`` closes when every
expected trainer has committed (at the last commit's block time) or, failing that, at
``opens_at + timeout`` once the chain's clock has passed it (``timeout``: the task's round
duration). A commit whose block time is after the deadline does not count. An expected trainer
that missed the deadline is *dropped* for the rest of this unlearning. Step ``i + 1`` opens when
step ``i`` closes. Every input is on-chain, so every peer computes the same participants.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from marketplace.chain.versions_client import CalibrationCommit, VersionsClient
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.errors import (
    ConfigError,
    ContentNotFoundError,
    ContentUnavailableError,
    CryptoError,
    InvalidUpdateError,
    StorageError,
    StoreUnreachableError,
)
from marketplace.fl.serialization import WeightSpec, dump_weights, load_weights
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights
from marketplace.protocol.session import ENVELOPE_OVERHEAD, TaskSession
from marketplace.protocol.withdrawal import history_of, withdrawn_owners
from marketplace.unlearning.federaser import FedEraserConfig
from marketplace.unlearning.history import StoredHistory, weights_digest
from marketplace.unlearning.plan import (
    Method,
    UnlearningPlan,
    UnlearningStep,
    apply_step,
    plan_unlearning,
)
from marketplace.unlearning.retrain import UnlearnResult

log = logging.getLogger(__name__)


def protocol_calibration(epochs: int) -> FedEraserConfig:
    """The calibration every peer of a networked unlearning uses (peers must agree on it): one
    calibration round per stored round, of half the task's local ``epochs`` (at least 1; the
    FedEraser paper's ratio). With 1 epoch, calibrating costs what retraining does, so the
    chooser retrains (exact)."""
    return FedEraserConfig(interval=1, calibration_epochs=max(1, epochs // 2))


def calibration_context_round(excludes: int, round_: int) -> int:
    """The envelope context's round of a calibration update: ``2**64 · k + round``, apart from
    every training round (``1..R+1``) and version envelope (``R + 1 + k``)."""
    return (excludes << 64) + round_


@dataclass(frozen=True)
class StepStatus:
    """One step of a networked unlearning as the chain says it stands."""

    index: int
    step: UnlearningStep
    expected: tuple[str, ...]  # remaining participants of the round not dropped before
    commits: Mapping[str, CalibrationCommit]  # on-time commits of expected trainers
    opens_at: int
    deadline: int
    closed_at: int | None  # None: still open

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def participants(self) -> tuple[str, ...]:
        """Who took part (address order)."""
        return tuple(sorted(self.commits))

    @property
    def missing(self) -> tuple[str, ...]:
        """Expected trainers without an on-time commit (dropped once the step closes)."""
        return tuple(t for t in self.expected if t not in self.commits)


def schedule(
    plan: UnlearningPlan,
    history: StoredHistory,
    *,
    withdrawn: Sequence[str],
    commits: Sequence[CalibrationCommit],
    anchor: int,
    timeout: int,
    now: int,
) -> list[StepStatus]:
    """The steps' status, up to and including the first still open (see the module doc).

    Pure: the same chain record (``commits``, ``anchor``, ``timeout``) and a clock past the same
    deadlines give every peer the same statuses.
    """
    by_round: dict[int, dict[str, CalibrationCommit]] = {}
    for c in commits:
        by_round.setdefault(c.round, {}).setdefault(c.trainer, c)
    dropped: set[str] = set()
    opens_at = anchor
    out: list[StepStatus] = []
    for i, step in enumerate(plan.steps):
        # history's senders are checksum addresses (the chain's record), as are commits'
        expected = tuple(t for t in history.remaining(step.round, withdrawn) if t not in dropped)
        deadline = opens_at + timeout
        found = by_round.get(step.round, {})
        on_time = {
            t: found[t] for t in expected if t in found and found[t].committed_at <= deadline
        }
        closed_at: int | None = None
        if len(on_time) == len(expected):
            closed_at = max([opens_at, *(c.committed_at for c in on_time.values())])
        elif now > deadline:
            closed_at = deadline
        status = StepStatus(i, step, expected, on_time, opens_at, deadline, closed_at)
        out.append(status)
        if closed_at is None:
            break
        dropped.update(status.missing)
        opens_at = closed_at
    return out


@dataclass
class NetworkUnlearning:
    """One peer's view of the networked unlearning of withdrawals ``1..excludes``.

    Built from the chain and the store (:meth:`open`); trainers and oracles alike derive the same
    models from it. Caches the start model of every step it has computed.
    """

    session: TaskSession
    versions: VersionsClient
    excludes: int
    withdrawn: tuple[str, ...]
    history: StoredHistory
    plan: UnlearningPlan
    anchor: int
    timeout: int  # the task's round duration: a calibration round's deadline after it opens
    _models: dict[int, Weights] = field(default_factory=dict)  # step index -> start model
    _refused: dict[tuple[int, str], str] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        session: TaskSession,
        versions: VersionsClient,
        *,
        excludes: int | None = None,
        config: FedEraserConfig | None = None,
        method: Method | Literal["auto"] = "auto",
    ) -> NetworkUnlearning:
        """The unlearning of withdrawals ``1..excludes`` (default: all so far) of the task, with
        ``config`` (default and what nodes use: :func:`protocol_calibration`)."""
        epochs = session.doc.train.epochs
        config = config or protocol_calibration(epochs)
        k, gone = withdrawn_owners(versions, session.task_id, excludes)
        history, final_posted_at = history_of(session)
        if final_posted_at == 0:
            raise ConfigError(
                f"task {session.task_id} has no final model on-chain yet: unlearning starts "
                "once training is over"
            )
        plan = plan_unlearning(
            history, withdrawn=gone, epochs=epochs, config=config, method=method,
        )  # fmt: skip
        requested_at = versions.withdrawal(session.task_id, k).requested_at
        anchor = max(requested_at, final_posted_at)
        timeout = int(session.info().round_duration)
        return cls(session, versions, k, tuple(gone), history, plan, anchor, timeout)

    # --- the chain's record ---------------------------------------------------------------
    def status(self) -> list[StepStatus]:
        """The steps' status now (see :func:`schedule`)."""
        market = self.session.market
        return schedule(
            self.plan, self.history, withdrawn=self.withdrawn,
            commits=self.versions.calibrations(self.session.task_id, self.excludes),
            anchor=self.anchor, timeout=self.timeout, now=market.now(),
        )  # fmt: skip

    # --- publishing -----------------------------------------------------------------------
    def _context(self, round_: int, sender: str) -> EnvelopeContext:
        s = self.session
        return EnvelopeContext(
            s.chain_id, s.task_id, calibration_context_round(self.excludes, round_), sender
        )

    def publish(self, step: UnlearningStep, delta: Mapping[str, torch.Tensor]) -> tuple[str, bytes]:
        """Seal this peer's update of ``step`` to the members that have not withdrawn and store
        it; returns ``(cid, sha256 of the envelope)`` to commit."""
        s = self.session
        gone = set(self.withdrawn)
        recipients = {a: key for a, key in s.members().recipients().items() if a not in gone}
        blob = seal(
            dump_weights(delta), recipients=recipients,
            context=self._context(step.round, s.identity.address),
        )  # fmt: skip
        return s.store.put(blob), hashlib.sha256(blob).digest()

    def fetch(self, commit: CalibrationCommit, template: Weights) -> ClientUpdate | None:
        """A committed update, digest-checked, opened and validated; ``None`` when it is refused
        (the same for every honest peer: bad digest, bad envelope, bad tensors). A store that
        does not answer, or content no provider serves yet, raises (transient: retried)."""
        s = self.session
        key = (commit.round, commit.trainer)
        if key in self._refused:
            return None
        try:
            blob = s.store.get(
                commit.cid, expected_sha256=commit.digest,
                max_size=s.doc.max_update_bytes + ENVELOPE_OVERHEAD,
            )  # fmt: skip
            plain = open_envelope(
                blob, recipient_address=s.identity.address,
                x25519_private=s.identity.x25519_private,
                expected_context=self._context(commit.round, commit.trainer),
            )  # fmt: skip
            delta = load_weights(
                plain, spec=WeightSpec.from_state(template), max_bytes=s.doc.max_update_bytes,
                max_total_norm=s.doc.max_update_norm,
            )  # fmt: skip
        except ContentNotFoundError as exc:
            # Committed but not served yet: transient, the run loop retries (a trainer that
            # commits a CID it never serves stalls the unlearning: docs/design.md, Unlearning).
            raise ContentUnavailableError(
                f"calibration round {commit.round}: update of {commit.trainer} ({commit.cid}) not "
                f"available from any IPFS provider yet ({exc})"
            ) from None
        except StoreUnreachableError:
            raise  # our store is down: not the sender's fault
        except (CryptoError, InvalidUpdateError, StorageError) as exc:
            self._refused[key] = f"{type(exc).__name__}: {exc}"
            log.warning("calibration round %d: update of %s refused: %s", *key, exc)
            return None
        return ClientUpdate(commit.trainer, {k: delta[k] for k in sorted(delta)}, 0)

    # --- deriving -------------------------------------------------------------------------
    def start_model(self, index: int, statuses: Sequence[StepStatus]) -> Weights:
        """The model step ``index`` starts from; every step before it must be closed."""
        if 0 not in self._models:
            self._models[0] = self.history.global_weights(self.plan.first_round)
        done = max(i for i in self._models if i <= index)
        for i in range(done, index):
            status = statuses[i]
            if not status.closed:
                raise ConfigError(f"calibration step {i} is still open: step {index} cannot start")
            start = self._models[i]
            fresh = [
                u
                for t in status.participants
                if (u := self.fetch(status.commits[t], start)) is not None
            ]
            self._models[i + 1] = apply_step(
                self.history, status.step, start, fresh, withdrawn=self.withdrawn,
                strategy=self.session.doc.strategy(),
            )  # fmt: skip
        return self._models[index]

    def result(self, statuses: Sequence[StepStatus] | None = None) -> UnlearnResult | None:
        """The unlearned model once every step is closed, else ``None``."""
        statuses = self.status() if statuses is None else statuses
        n = len(self.plan.steps)
        if len(statuses) < n or not all(s.closed for s in statuses):
            return None
        weights = self.start_model(n, statuses)
        return UnlearnResult(
            weights, weights_digest(weights), self.plan.method, self.plan.first_round,
            self.plan.local_epochs,
        )  # fmt: skip

    @property
    def refused(self) -> dict[tuple[int, str], str]:
        """Updates left out, ``(round, trainer) -> reason``."""
        return dict(self._refused)
