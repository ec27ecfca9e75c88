"""What every peer role shares: the :class:`Step` a turn returns, and the one run loop.

A peer (a trainer, an oracle) is a state machine over the chain: :meth:`Peer.step` reads the
task's state and does the one next thing this peer owes it, then says what kind of turn it was:

* :attr:`StepKind.ACTED` — it did something (a transaction, a publication): step again at once;
* :attr:`StepKind.WAITING` — nothing to do until the chain moves on: sleep one poll interval;
* :attr:`StepKind.DONE` — the task is over for this peer.

The two races every role runs into are handled here, once: moving a task to its next phase
(:meth:`Peer.try_advance`: losing the race to another peer is fine) and claiming a payout leaf
(:meth:`Peer.claim_leaf`: a leaf already claimed by someone else, or by our own earlier run, is
fine).
"""

from __future__ import annotations

import enum
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from eth_account.signers.local import LocalAccount

from marketplace.errors import FedMarketError, TransactionRevertedError
from marketplace.protocol.session import TaskSession
from marketplace.resilience import Backoff, describe, is_transient
from marketplace.valuation.payouts import PayoutEntry
from node.peers.journal import Journal

log = logging.getLogger(__name__)

# Reverts that only mean another peer moved the task first.
LOST_ADVANCE_RACE = ("TaskMarketWrongPhase", "TaskMarketTooEarly")


class StepKind(enum.Enum):
    """What kind of turn a :meth:`Peer.step` was (see the module docstring)."""

    ACTED = "acted"
    WAITING = "waiting"
    DONE = "done"


@dataclass(frozen=True)
class Step:
    """The result of one turn: its ``kind``, what was done (``action``, for people) and an
    optional ``detail`` (e.g. the CID just committed)."""

    kind: StepKind
    action: str
    detail: str = ""

    @classmethod
    def acted(cls, action: str, detail: str = "") -> Step:
        return cls(StepKind.ACTED, action, detail)

    @classmethod
    def waiting(cls, action: str) -> Step:
        return cls(StepKind.WAITING, action)

    @classmethod
    def done(cls, action: str) -> Step:
        return cls(StepKind.DONE, action)

    @classmethod
    def retrying(cls, action: str) -> Step:
        """A transient failure (chain RPC, IPFS) being waited out: a ``WAITING`` step."""
        return cls(StepKind.WAITING, action, detail="retrying")

    @property
    def is_done(self) -> bool:
        return self.kind is StepKind.DONE

    @property
    def is_waiting(self) -> bool:
        return self.kind is StepKind.WAITING


class Peer(ABC):
    """One peer taking part in one task in one role (subclasses: the trainer, the oracle)."""

    role: ClassVar[str]

    def __init__(self, session: TaskSession, journal: Journal) -> None:
        self.session = session
        self.journal = journal
        if session.scope is not None:
            journal.bind(session.scope)  # never resume another deployment's task of the same id
        # How long a connectivity failure is retried before the run gives up (see run()).
        self.backoff = Backoff()

    @property
    def me(self) -> str:
        """This peer's address."""
        return self.session.identity.address

    @property
    def account(self) -> LocalAccount:
        """The key this peer signs its transactions with."""
        return self.session.identity.eth

    @abstractmethod
    def step(self) -> Step:
        """Do the one next thing this peer owes the task (safe to repeat after a crash)."""

    def run(
        self,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_step: Callable[[Step], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Step:
        """Step until the task is over for this peer; returns the last (``DONE``) step.

        Sleeps ``poll`` seconds after each ``WAITING`` step; raises :class:`FedMarketError` when
        still waiting ``timeout`` seconds after the start. A transient failure (chain RPC or
        IPFS unreachable, content not yet available: :func:`marketplace.resilience.is_transient`)
        is retried with :attr:`backoff` and reported to ``on_step`` as a ``retrying`` step.
        """
        start = time.monotonic()
        backoff = self.backoff
        while True:
            try:
                # One block per step: its views are read once, and not at all when no block
                # was mined since the last step (Marketplace.at_head).
                with self.session.market.at_head():
                    step = self.step()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Transient is not invalid: wait it out (visibly), then redo the step, which
                # reads the chain first and so never repeats what already happened.
                delay = backoff.failed(exc)  # raises once the failure outlasts the patience
                # Visible either way: through on_step when there is one, else in the log.
                level = logging.INFO if on_step is not None else logging.WARNING
                log.log(level, "%s: %s; retrying in %.0fs", self.role, describe(exc), delay)
                if on_step is not None:
                    on_step(Step.retrying(f"{describe(exc)}: retrying in {delay:.0f}s"))
                sleep(delay)
                continue
            backoff.succeeded()
            if on_step is not None:
                on_step(step)
            if step.is_done:
                return step
            if step.is_waiting:
                if timeout is not None and time.monotonic() - start > timeout:
                    raise FedMarketError(f"{self.role} {self.me}: timed out ({step.action})")
                sleep(poll)

    # --- the shared races -----------------------------------------------------------------
    def try_advance(self) -> bool:
        """Advance the task's phase; ``False`` when another peer already did (lost race)."""
        try:
            self.session.market.advance(self.account, self.session.task_id)
            return True
        except TransactionRevertedError as exc:
            if exc.error_name in LOST_ADVANCE_RACE:
                return False
            raise

    def claim_leaf(self, entry: PayoutEntry, proof: Sequence[bytes]) -> bool:
        """Claim (or, for a flagged leaf, settle) one payout leaf; ``False`` when it was already
        claimed (by its trainer, another oracle, or an earlier run of this peer)."""
        s = self.session
        if s.market.is_claimed(s.task_id, entry.index):
            return False
        try:
            s.market.claim(
                self.account, s.task_id, index=entry.index, account=entry.account,
                amount=entry.amount, score_ppm=entry.score_ppm, flags=entry.flags, proof=proof,
            )  # fmt: skip
        except TransactionRevertedError as exc:
            if exc.error_name != "TaskMarketAlreadyClaimed":
                raise
            return False
        return True
