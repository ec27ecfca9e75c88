"""The oracle's library part: scoring a task's rounds into a payout root (:mod:`.scoring`).

The peer that follows a task on-chain, commits, reveals and enforces the result is an application
role: :class:`node.peers.oracle.OracleNode`."""

from marketplace.oracle.scoring import (
    AUTO_EXACT_MAX_PLAYERS,
    RoundInput,
    ScoringResult,
    choose_estimator,
    proof_for,
    score_task,
)
from marketplace.valuation.config import ValuationConfig

__all__ = [
    "AUTO_EXACT_MAX_PLAYERS",
    "RoundInput",
    "ScoringResult",
    "ValuationConfig",
    "choose_estimator",
    "proof_for",
    "score_task",
]
