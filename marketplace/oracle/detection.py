"""The oracle's flags, measured as a detector of attackers on a simulated task.

:func:`evaluate_flags` runs the oracle's own scoring (:func:`marketplace.oracle.scoring.score_task`:
per-round Shapley values, then the invalid / poisoner / free-rider / copier rules and the
update rules of :mod:`marketplace.valuation.update_flags`) on the rounds of
a :class:`~marketplace.fl.simulate.SimulationResult` whose behaviours are known, and reports the
share of attackers flagged (recall) and of honest trainers flagged (false-flag rate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from marketplace.errors import ValuationError
from marketplace.fl.simulate import SimulationResult
from marketplace.fl.updates import ClientUpdate
from marketplace.oracle.scoring import RoundInput, score_task
from marketplace.valuation.config import ValuationConfig
from marketplace.valuation.flags import FlagConfig
from marketplace.valuation.merkle import SIMULATION_DOMAIN


@dataclass(frozen=True)
class DetectionResult:
    """Who the flags caught: ``recall`` over attackers (1.0 if none), ``false_flag_rate`` over
    honest trainers, and each flagged trainer's flag bits."""

    recall: float
    false_flag_rate: float
    flagged: Mapping[str, int]  # trainer id -> Flag bits


def simulated_address(trainer_id: str) -> str:
    """A stable stand-in Ethereum address for a simulated trainer id."""
    return "0x" + hashlib.sha256(f"fedmarket/sim/{trainer_id}".encode()).hexdigest()[:40]


def evaluate_flags(
    result: SimulationResult,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    config: ValuationConfig | None = None,
    flag_config: FlagConfig | None = None,
) -> DetectionResult:
    """Score ``result`` as the oracles would (its strategy, ``config``'s estimator, the flag
    rules' ``flag_config``) and compare the flags with the behaviours. Needs
    ``keep_history=True`` in the simulation."""
    if not result.rounds or not result.rounds[0].updates:
        raise ValuationError(
            "flag evaluation needs the rounds' updates: simulate(keep_history=True)"
        )
    address = {t: simulated_address(t) for t in result.trainer_ids}
    back = {a.lower(): t for t, a in address.items()}
    rounds = []
    for rec in result.rounds:
        updates = [ClientUpdate(address[u.sender], u.delta, u.num_samples) for u in rec.updates]
        order = {address[u.sender]: i for i, u in enumerate(rec.updates)}
        rounds.append(RoundInput(rec.server_round, rec.global_weights, updates, commit_order=order))
    scored = score_task(
        domain=SIMULATION_DOMAIN,
        model_spec=result.model_spec,
        strategy=result.strategy(),
        rounds=rounds,
        x_val=x_val,
        y_val=y_val,
        validation_digest="0x" + "00" * 32,
        budget=10**6,
        trainers=list(address.values()),
        config=config or ValuationConfig(),
        flag_config=flag_config,
    )
    flagged = {back[e.account.lower()]: e.flags for e in scored.table.entries if e.flags}
    attackers = [t for t in result.trainer_ids if result.behaviours[t] != "honest"]
    honest = [t for t in result.trainer_ids if result.behaviours[t] == "honest"]
    caught = sum(1 for t in attackers if flagged.get(t, 0))
    wrong = sum(1 for t in honest if flagged.get(t, 0))
    return DetectionResult(
        recall=caught / len(attackers) if attackers else 1.0,
        false_flag_rate=wrong / len(honest) if honest else 0.0,
        flagged=dict(sorted(flagged.items())),
    )
