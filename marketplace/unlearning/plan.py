"""Unlearning as a sequence of steps, each one round of new local training by the remaining
trainers, so the same steps run in one process (:func:`run_plan`) or over the network (each
trainer trains its part of a step on its own node; :mod:`marketplace.protocol.calibration`).

A :class:`UnlearningPlan` is fixed by the stored record alone (who committed in which round),
the withdrawn trainers, the task's local epochs and the :class:`FedEraserConfig`:

* calibrated retraining (FedEraser): one step per calibration round ``j = f, f + Δt, …`` of
  ``calibration_epochs``, whose updates are scaled to the stored step length of the window
  ``j .. j + Δt - 1`` (see :mod:`.federaser`);
* retraining: one step per stored round ``f..R`` of the task's own epochs, updates unscaled.

:func:`apply_step` is the deterministic part every peer computes from a step's fresh updates:
scale (calibration), stored sample counts, the task's aggregator, in address order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from marketplace.errors import ConfigError
from marketplace.fl.strategy import Strategy
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights
from marketplace.unlearning.federaser import FedEraserConfig, calibrate
from marketplace.unlearning.history import LocalTrainer, StoredHistory, Withdrawn, as_set

Method = Literal["federaser", "retrain"]


@dataclass(frozen=True)
class UnlearningStep:
    """One round of new local training: every remaining trainer of stored round ``round``
    trains ``epochs`` epochs from the step's start model."""

    round: int  # the stored round this step stands in for (its participants, its number)
    epochs: int
    window: tuple[int, ...]  # stored rounds giving the step length; () = unscaled (retraining)


@dataclass(frozen=True)
class UnlearningPlan:
    """What unlearning runs: its method, the checkpoint round and the steps."""

    method: Method
    first_round: int  # the withdrawn trainers' first round: the stored model started from
    steps: tuple[UnlearningStep, ...]

    @property
    def local_epochs(self) -> int:
        """Local epochs per remaining trainer over all steps."""
        return sum(s.epochs for s in self.steps)


def choose_method(first: int, last: int, *, epochs: int, config: FedEraserConfig) -> Method:
    """``"retrain"`` when replaying rounds ``first..last`` costs no more local epochs than
    calibrating them, else ``"federaser"``."""
    retrain_cost = (last - first + 1) * epochs
    return "retrain" if retrain_cost <= config.cost(first, last) else "federaser"


def plan_unlearning(
    history: StoredHistory,
    *,
    withdrawn: Withdrawn,
    epochs: int,
    config: FedEraserConfig | None = None,
    method: Method | Literal["auto"] = "auto",
    start_round: int | None = None,
) -> UnlearningPlan:
    """The steps that forget ``withdrawn`` (``method="auto"``: the cheaper, see
    :func:`choose_method`). ``start_round`` (retraining only) overrides the checkpoint round;
    ``1`` retrains from scratch."""
    cfg = config or FedEraserConfig()
    first = history.first_contribution(withdrawn)
    if first is None:
        raise ConfigError(
            f"{sorted(as_set(withdrawn))} contributed to no round: there is nothing to unlearn"
        )
    last = history.rounds
    chosen: Method = choose_method(first, last, epochs=epochs, config=cfg) if method == "auto" \
        else method  # fmt: skip
    if chosen == "retrain":
        start = first if start_round is None else start_round
        steps = tuple(UnlearningStep(r, epochs, ()) for r in range(start, last + 1))
        return UnlearningPlan("retrain", start, steps)
    if chosen != "federaser":
        raise ConfigError(f"unknown method {method!r}: use 'auto', 'federaser' or 'retrain'")
    calibration = []
    for j in cfg.calibration_rounds(first, last):
        span = 1 if cfg.magnitude == "round" else cfg.interval
        window = tuple(range(j, min(j + span, last + 1)))
        calibration.append(UnlearningStep(j, cfg.calibration_epochs, window))
    return UnlearningPlan("federaser", first, tuple(calibration))


def apply_step(
    history: StoredHistory,
    step: UnlearningStep,
    start: Weights,
    fresh: Sequence[ClientUpdate],
    *,
    withdrawn: Withdrawn,
    strategy: Strategy,
) -> Weights:
    """The model after ``step`` from ``start`` and the remaining trainers' ``fresh`` updates
    (those that took part; any order). Sample counts are the stored ones, never a new claim;
    a sender that is not a remaining participant of the step's round is refused."""
    gone = as_set(withdrawn)
    samples = history.remaining(step.round, gone)
    stored: dict[str, list[ClientUpdate]] = {}
    for r in step.window:
        for u in history.updates(r):
            if u.sender not in gone:
                stored.setdefault(u.sender, []).append(u)
    updates: list[ClientUpdate] = []
    for u in sorted(fresh, key=lambda u: u.sender):
        if u.sender not in samples:
            raise ConfigError(
                f"{u.sender} is not a remaining trainer of round {step.round}: refusing its update"
            )
        update = ClientUpdate(u.sender, u.delta, samples[u.sender])
        if step.window:
            update = calibrate(stored.get(u.sender, []), update, reference=start)
        updates.append(update)
    if not updates:
        return start
    return strategy.aggregate(start, updates).weights


def run_plan(
    history: StoredHistory,
    plan: UnlearningPlan,
    *,
    withdrawn: Withdrawn,
    train: LocalTrainer,
    strategy: Strategy,
) -> Weights:
    """Run every step in this process, each remaining trainer's training through ``train``."""
    weights = history.global_weights(plan.first_round)
    for step in plan.steps:
        fresh = [
            train(t, step.round, weights, step.epochs)
            for t in history.remaining(step.round, withdrawn)
        ]
        weights = apply_step(history, step, weights, fresh, withdrawn=withdrawn, strategy=strategy)
    return weights
