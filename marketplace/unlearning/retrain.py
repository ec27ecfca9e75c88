"""Retraining from the last checkpoint before the withdrawn trainer's first update, the chooser
between it and calibrated retraining, and :func:`unlearn`, which runs the chosen one.

Retraining replays rounds ``f..R`` (``f``: the withdrawn trainer's first round) from the stored
global model ``M_f`` with the remaining trainers of each round, at the original local epochs: it
is exact (the model the task would have produced without that trainer, up to the trainers'
seeds) and costs ``R - f + 1`` rounds. Calibrated retraining costs
``ceil((R - f + 1) / Δt)`` rounds of fewer epochs but only approximates it. The chooser takes the
cheaper in local epochs, and retraining on a tie (exact for the same price): a trainer that joined
in the last round or two is forgotten by retraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from marketplace.fl.strategy import Strategy
from marketplace.fl.weights import Weights
from marketplace.unlearning.federaser import FedEraserConfig
from marketplace.unlearning.history import LocalTrainer, StoredHistory, Withdrawn, weights_digest
from marketplace.unlearning.plan import Method, choose_method, plan_unlearning, run_plan

__all__ = ["Method", "UnlearnResult", "choose_method", "federaser", "retrain", "unlearn"]


@dataclass(frozen=True)
class UnlearnResult:
    """The unlearned model, its digest (sha256 of its safetensors bytes) and how it was made."""

    weights: Weights
    digest: bytes
    method: Method
    first_round: int  # the withdrawn trainer's first round: the checkpoint started from
    local_epochs: int  # local epochs per remaining trainer that the method ran


def federaser(
    history: StoredHistory,
    *,
    withdrawn: Withdrawn,
    train: LocalTrainer,
    strategy: Strategy,
    config: FedEraserConfig | None = None,
) -> Weights:
    """The final model of ``history`` without the data of ``withdrawn`` (one trainer or several),
    by calibrated retraining.

    Returns the unlearned trajectory's model after round ``R``; raises :class:`ConfigError` if
    ``withdrawn`` never contributed (there is nothing to unlearn).
    """
    epochs = (config or FedEraserConfig()).calibration_epochs  # unused by a calibration plan
    plan = plan_unlearning(
        history, withdrawn=withdrawn, epochs=epochs, config=config, method="federaser"
    )
    return run_plan(history, plan, withdrawn=withdrawn, train=train, strategy=strategy)


def retrain(
    history: StoredHistory,
    *,
    withdrawn: Withdrawn,
    train: LocalTrainer,
    strategy: Strategy,
    epochs: int,
    start_round: int | None = None,
) -> Weights:
    """Replay rounds ``start_round..R`` without ``withdrawn`` from the stored global model.

    ``start_round`` defaults to ``withdrawn``'s first round; ``1`` retrains from scratch.
    """
    plan = plan_unlearning(
        history, withdrawn=withdrawn, epochs=epochs, method="retrain", start_round=start_round
    )
    return run_plan(history, plan, withdrawn=withdrawn, train=train, strategy=strategy)


def unlearn(
    history: StoredHistory,
    *,
    withdrawn: Withdrawn,
    train: LocalTrainer,
    strategy: Strategy,
    epochs: int,
    config: FedEraserConfig | None = None,
    method: Method | Literal["auto"] = "auto",
) -> UnlearnResult:
    """Forget ``withdrawn`` by the cheaper method (or the one named) and digest the result.

    Parameters
    ----------
    history : StoredHistory
        The task's stored rounds.
    withdrawn : str or collection of str
        The trainer(s) (addresses) whose data is withdrawn; several are forgotten together.
    train : LocalTrainer
        Runs a remaining trainer's local training (deterministic).
    strategy : Strategy
        The task's aggregator.
    epochs : int
        The task's local epochs per round (what retraining runs).
    config : FedEraserConfig
        Calibrated retraining's interval and epochs.
    method : {"auto", "federaser", "retrain"}
        ``"auto"`` applies :func:`choose_method`.
    """
    plan = plan_unlearning(
        history, withdrawn=withdrawn, epochs=epochs, config=config, method=method
    )
    weights = run_plan(history, plan, withdrawn=withdrawn, train=train, strategy=strategy)
    return UnlearnResult(
        weights, weights_digest(weights), plan.method, plan.first_round, plan.local_epochs
    )
