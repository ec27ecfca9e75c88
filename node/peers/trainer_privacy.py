"""A trainer node's differential-privacy ledger for one task, kept in its journal.

When the task document has DP terms (``privacy``), every round the trainer trains with them
(:func:`marketplace.fl.dp_rounds.train_private`: record-level DP-SGD, or the trainer-level
``update`` mode) through one accountant calibrated once for the task's planned rounds on the
trainer's rows. The accountant's state after a round is written into that round's ``published``
journal entry — the same write that records the update it protects — so a restarted node resumes
with exactly the ε its released updates spent, never less. A round that would take ε past the
budget (the task's ε, or the node's own lower ``max_epsilon``) is refused before any training,
with a one-line reason, and the refusal is journaled.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from marketplace.errors import ConfigError
from marketplace.fl.dpsgd import DPSGDAccountant, DPSGDResult
from marketplace.fl.privacy import DPTerms
from marketplace.protocol.session import TaskSession
from node.peers.journal import Journal

PUBLISHED = "published"  # the trainer's journal step that records a round's released update
REFUSED = "dp_refused"  # a round the ledger refused to train


class TrainerPrivacy:
    """The DP accountant of one trainer in one task (see the module docstring).

    Parameters
    ----------
    session : TaskSession
        The task; its document's ``privacy`` terms must be set.
    journal : Journal
        The trainer's journal (bound to the task's scope).
    rows : int
        The trainer's local rows (the Poisson rate and steps follow from them).
    max_epsilon : float or None
        This node's own ceiling, below the task's ε: rounds stop when the next would pass it.
        The noise stays the task's (calibrated for the task's ε over all its rounds).
    """

    def __init__(
        self, session: TaskSession, journal: Journal, rows: int, max_epsilon: float | None = None
    ) -> None:
        terms = session.doc.privacy
        if terms is None:
            raise ConfigError(f"task {session.task_id} has no DP terms")
        if max_epsilon is not None and not max_epsilon > 0:
            raise ConfigError(f"--max-epsilon must be positive, got {max_epsilon}")
        self.session = session
        self.journal = journal
        self.rows = rows
        self.terms: DPTerms = terms
        self.max_epsilon = max_epsilon

    @property
    def budget(self) -> float:
        """The ε this node refuses to pass."""
        if self.max_epsilon is None:
            return self.terms.epsilon
        return min(self.terms.epsilon, self.max_epsilon)

    def accountant(self, round_: int) -> DPSGDAccountant:
        """The accountant as it stood before ``round_``: the last one journaled with an earlier
        round's published update, or a fresh calibration for the task's planned rounds."""
        tid = self.session.task_id
        booked = [
            (e.round, e.payload["dp"]["accountant"])
            for e in self.journal.entries(tid)
            if e.step == PUBLISHED and e.round < round_ and "dp" in e.payload
        ]
        if booked:
            return DPSGDAccountant.from_dict(max(booked, key=lambda b: b[0])[1])
        s = self.session
        acc = DPSGDAccountant.calibrate(
            self.terms, rows=self.rows, rounds=s.info().rounds, train=s.doc.train
        )
        if self.budget < self.terms.epsilon:  # same noise, a lower ceiling
            acc = dataclasses.replace(
                acc, terms=dataclasses.replace(self.terms, epsilon=self.budget)
            )
        return acc

    @staticmethod
    def record(result: DPSGDResult, accountant: DPSGDAccountant) -> dict[str, Any]:
        """The ``dp`` part of a round's published journal entry."""
        return {
            "epsilon_round": result.epsilon_round,
            "epsilon_total": result.epsilon_total,
            "accountant": accountant.to_dict(),
        }

    def refuse(self, round_: int, reason: str) -> None:
        self.journal.record(self.session.task_id, round_, REFUSED, {"reason": reason})

    def refused(self, round_: int) -> bool:
        return self.journal.has(self.session.task_id, round_, REFUSED)

    def summary(self) -> dict[str, Any]:
        """What this node spent, round by round (for ``node run --json``)."""
        rounds, refused = [], []
        for e in sorted(self.journal.entries(self.session.task_id), key=lambda e: e.round):
            if e.step == PUBLISHED and "dp" in e.payload:
                dp = e.payload["dp"]
                rounds.append(
                    {
                        "round": e.round,
                        "epsilon_round": round(dp["epsilon_round"], 6),
                        "epsilon_total": round(dp["epsilon_total"], 6),
                    }
                )
            elif e.step == REFUSED:
                refused.append({"round": e.round, "reason": e.payload["reason"]})
        return {
            "mode": self.terms.mode,
            "epsilon": self.terms.epsilon,
            "delta": self.terms.delta,
            "clip_norm": self.terms.clip_norm,
            "max_epsilon": self.max_epsilon,
            "rounds": rounds,
            "epsilon_spent": rounds[-1]["epsilon_total"] if rounds else 0.0,
            "refused": refused,
        }
