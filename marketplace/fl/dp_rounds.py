"""A task's DP mode, round by round: train one private round, and the ε ledger of a task.

Both of a task's DP modes (:class:`~marketplace.fl.privacy.DPTerms`) go through one
:class:`~marketplace.fl.dpsgd.DPSGDAccountant` per trainer, calibrated once for the task's planned
rounds on the trainer's rows:

* ``"dpsgd"``: record-level DP-SGD (:func:`~marketplace.fl.dpsgd.train_dpsgd`);
* ``"update"``: trainer-level DP: ordinary local training, then the whole delta clipped to
  ``clip_norm`` and noised once (:func:`~marketplace.fl.privacy.privatize`); far costlier in
  accuracy (docs/benchmarks.md, "Privacy and robustness").

:func:`epsilon_ledger` recomputes, from public facts only (the task's terms and recipe, its
planned rounds, and the row counts trainers committed on-chain), the ε each trainer's accountant
books after each round — what an oracle publishes in its report. It cannot see the noise: a
trainer that skips it is not caught by this (see docs/security.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from marketplace.errors import ConfigError
from marketplace.fl.data import Dataset
from marketplace.fl.dpsgd import DPSGDAccountant, DPSGDResult, train_dpsgd
from marketplace.fl.models import ModelSpec
from marketplace.fl.privacy import DPTerms, PrivacyConfig, privatize
from marketplace.fl.train import TrainConfig, train_local

_UPDATE_NOISE_SALT = 0x0DDBA11  # the update-mode noise seed differs from the shuffling seed


def train_private(
    model_spec: ModelSpec,
    global_weights: Mapping[str, torch.Tensor],
    dataset: Dataset,
    config: TrainConfig,
    accountant: DPSGDAccountant,
) -> DPSGDResult:
    """One round in the accountant's DP mode, booked in it; refuses (before training, with
    :class:`~marketplace.errors.PrivacyBudgetError`) a round that would pass the budget."""
    terms = accountant.terms
    if terms.mode == "dpsgd":
        return train_dpsgd(model_spec, global_weights, dataset, config, accountant)
    accountant.check_round()
    local = train_local(model_spec, global_weights, dataset, config)
    noisy = privatize(
        local.delta,
        PrivacyConfig(terms.clip_norm, accountant.noise_multiplier, terms.delta),
        seed=config.seed ^ _UPDATE_NOISE_SALT,
    )
    eps_round, eps_total = accountant.record_round()
    return DPSGDResult(
        local=type(local)(delta=noisy, num_samples=local.num_samples, loss=local.loss),
        epsilon_round=eps_round,
        epsilon_total=eps_total,
        noise_multiplier=accountant.noise_multiplier,
    )


def epsilon_ledger(
    terms: DPTerms,
    train: TrainConfig,
    planned_rounds: int,
    rows_by_round: Mapping[int, Mapping[str, int]],
) -> dict[int, dict[str, float]]:
    """ε booked by each trainer after each round it released an update in.

    ``rows_by_round[r][trainer]`` is the row count the trainer committed with its round-``r``
    update; each trainer's accountant is calibrated as the trainer's own (same terms, recipe,
    planned rounds and rows). Returns ``{round: {trainer: ε total after that round}}``.
    """
    if planned_rounds < 1:
        raise ConfigError("the ε ledger needs at least one planned round")
    calibrated: dict[int, DPSGDAccountant] = {}  # by row count: calibration is the slow part
    ledgers: dict[str, DPSGDAccountant] = {}
    out: dict[int, dict[str, float]] = {}
    for r in sorted(rows_by_round):
        out[r] = {}
        for trainer, rows in sorted(rows_by_round[r].items()):
            if rows not in calibrated:
                calibrated[rows] = DPSGDAccountant.calibrate(
                    terms, rows=rows, rounds=planned_rounds, train=train
                )
            plan = calibrated[rows]
            acc = ledgers.setdefault(trainer, dataclasses.replace(plan, history=[]))
            acc.history.append((plan.noise_multiplier, plan.sample_rate, plan.steps_per_round))
            out[r][trainer] = acc.epsilon
    return out


def privacy_report(
    terms: DPTerms,
    train: TrainConfig,
    planned_rounds: int,
    rows_by_round: Mapping[int, Mapping[str, int]],
) -> dict[str, Any]:
    """The ``privacy`` section of an oracle's report: the terms, and per round the ε each
    trainer's accountant booked (after the round, and by it), as 6-decimal strings (the report
    carries no floats; every oracle computes the same strings)."""
    ledger = epsilon_ledger(terms, train, planned_rounds, rows_by_round)
    before: dict[str, float] = {}
    rounds = []
    for r, spent in sorted(ledger.items()):
        rounds.append(
            {
                "round": r,
                "epsilon_total": {t: f"{e:.6f}" for t, e in spent.items()},
                "epsilon_round": {t: f"{e - before.get(t, 0.0):.6f}" for t, e in spent.items()},
            }
        )
        before.update(spent)
    return {
        "mode": terms.mode,
        "epsilon": f"{terms.epsilon:g}",
        "delta": f"{terms.delta:g}",
        "clip_norm": f"{terms.clip_norm:g}",
        "accountant": terms.accountant,
        "planned_rounds": planned_rounds,
        "basis": "the task's terms and recipe and each trainer's committed row count; "
        "the noise itself is not verifiable",
        "rounds": rounds,
    }
