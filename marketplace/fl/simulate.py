"""In-process simulation: N trainers x R rounds with a strategy, a partition, behaviours and DP.

The result keeps every round's starting global weights and every published update, which is what
contribution valuation needs: a coalition's utility is the validation accuracy of
``strategy.aggregate(global_weights, coalition_updates).weights``.

Example
-------
>>> splits = split_dataset(load_dataset("digits"), seed=0)
>>> parts = partition("dirichlet", splits.train.y, num_clients=8, alpha=0.3, seed=0)
>>> result = simulate(model_spec=spec, splits=splits, partition=parts, rounds=20,
...                   strategy="median", behaviours={"t02": "sign_flip"})
>>> result.final_metrics.test_accuracy
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from marketplace.errors import ConfigError
from marketplace.fl.attacks import Behaviour, RoundContext, get_behaviour
from marketplace.fl.data import Dataset, DataSplits
from marketplace.fl.dpsgd import DPSGDAccountant, train_dpsgd
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.privacy import DPTerms, PrivacyAccountant, PrivacyConfig, privatize
from marketplace.fl.seeding import derive_seed
from marketplace.fl.strategy import Strategy, get_strategy
from marketplace.fl.train import TrainConfig, evaluate, train_local
from marketplace.fl.updates import AggregateResult, ClientUpdate
from marketplace.fl.weights import Weights, get_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundMetrics:
    """Global-model quality after a round (round 0: the initial model)."""

    server_round: int
    val_accuracy: float
    val_loss: float
    test_accuracy: float
    test_loss: float
    train_loss: float  # mean local training loss of the trainers that trained (NaN if none)


@dataclass(frozen=True)
class RoundRecord:
    """One round: the global weights it started from, the published updates, the aggregate."""

    server_round: int
    global_weights: Weights
    updates: tuple[ClientUpdate, ...]
    result: AggregateResult
    metrics: RoundMetrics


@dataclass(frozen=True)
class SimulationResult:
    """Everything a simulation produced, enough to recompute any coalition's aggregate."""

    model_spec: ModelSpec
    strategy_name: str
    strategy_params: Mapping[str, Any]
    trainer_ids: tuple[str, ...]
    behaviours: Mapping[str, str]  # trainer -> behaviour name
    num_samples: Mapping[str, int]  # trainer -> rows it holds
    initial_metrics: RoundMetrics
    rounds: tuple[RoundRecord, ...]
    final_weights: Weights
    epsilons: Mapping[str, float]  # DP ε per trainer at the configured δ (empty without DP)

    @property
    def final_metrics(self) -> RoundMetrics:
        """Metrics after the last round."""
        return self.rounds[-1].metrics if self.rounds else self.initial_metrics

    def strategy(self) -> Strategy:
        """A fresh instance of the strategy that was used."""
        return get_strategy(self.strategy_name, **self.strategy_params)

    def accuracy_curve(self, split: str = "test") -> list[float]:
        """Accuracy per round on ``"test"`` or ``"val"``, starting with round 0."""
        attr = "test_accuracy" if split == "test" else "val_accuracy"
        return [getattr(self.initial_metrics, attr)] + [
            getattr(r.metrics, attr) for r in self.rounds
        ]


def default_trainer_ids(n: int) -> list[str]:
    """``t00``, ``t01``, …: sortable ids in the order of the partition."""
    return [f"t{i:02d}" for i in range(n)]


def simulate(
    *,
    model_spec: ModelSpec,
    splits: DataSplits,
    partition: Sequence[np.ndarray],
    rounds: int,
    strategy: Strategy | str = "fedavg",
    train_config: TrainConfig | None = None,
    behaviours: Mapping[str, Behaviour | str] | None = None,
    privacy: PrivacyConfig | None = None,
    dpsgd: DPTerms | None = None,
    trainer_ids: Sequence[str] | None = None,
    seed: int = 0,
    initial_weights: Weights | None = None,
    keep_history: bool = True,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> SimulationResult:
    """Run federated training in one process.

    Parameters
    ----------
    model_spec : ModelSpec
        The model; its seed fixes the initial weights unless ``initial_weights`` is given.
    splits : DataSplits
        ``train`` rows are split by ``partition``; ``validation``/``test`` measure the global model.
    partition : sequence of index arrays
        One array of ``splits.train`` row indices per trainer.
    rounds : int
        Number of rounds.
    strategy : Strategy or str
        Aggregation strategy (a name uses default parameters).
    train_config : TrainConfig
        Local training; its seed is replaced per trainer and round by one derived from ``seed``.
    behaviours : mapping trainer id -> Behaviour or name
        Trainers not listed are honest.
    privacy : PrivacyConfig or None
        If set, every trainer that trains clips and noises its delta before publishing it, and
        the accountant reports its ε.
    dpsgd : DPTerms or None
        If set (mode ``dpsgd``), every trainer trains with record-level DP-SGD, its own
        accountant calibrated for ``rounds`` rounds on its rows; ``epsilons`` reports ε spent.
    trainer_ids : sequence of str
        Ids in partition order (default ``t00``, ``t01``, …); updates are ordered by id.
    seed : int
        Base of every derived seed (shuffling, noise, attacks).
    keep_history : bool
        Keep every round's global weights and updates (``False`` keeps only the metrics and the
        aggregate of each round, with empty ``updates``).
    on_round : callable
        Called with each finished ``RoundRecord`` (progress display).
    """
    if rounds < 1:
        raise ConfigError("rounds must be at least 1")
    if not partition:
        raise ConfigError("the partition is empty: give at least one trainer some rows")
    ids = list(trainer_ids) if trainer_ids is not None else default_trainer_ids(len(partition))
    if len(ids) != len(partition) or len(set(ids)) != len(ids):
        raise ConfigError("trainer_ids must be unique and one per partition part")
    unknown = set(behaviours or {}) - set(ids)
    if unknown:
        raise ConfigError(f"behaviours name unknown trainers {sorted(unknown)}: ids are {ids}")
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    config = train_config or TrainConfig()
    roles: dict[str, Behaviour] = {}
    for tid in ids:
        b = (behaviours or {}).get(tid, "honest")
        roles[tid] = get_behaviour(b) if isinstance(b, str) else b

    local_data = _local_datasets(splits.train, partition, ids, roles, seed)
    weights = (
        initial_weights if initial_weights is not None else get_weights(build_model(model_spec))
    )
    accountant = PrivacyAccountant(delta=privacy.delta) if privacy else None
    ledgers: dict[str, DPSGDAccountant] = {}
    if dpsgd is not None:
        ledgers = {
            t: DPSGDAccountant.calibrate(
                dpsgd, rows=len(local_data[t]), rounds=rounds, train=config
            )
            for t in ids
            if roles[t].trains
        }
    initial = _metrics(0, model_spec, weights, splits, float("nan"))
    records: list[RoundRecord] = []

    for rnd in range(1, rounds + 1):
        round_config = strat.configure_train(rnd, config)
        published: dict[str, Weights] = {}
        losses: list[float] = []
        for tid in ids:  # honest training first: copiers need this round's honest deltas
            if not roles[tid].trains:
                continue
            tid_config = round_config.with_seed(derive_seed(seed, "train", tid, rnd))
            if tid in ledgers:
                local = train_dpsgd(
                    model_spec, weights, local_data[tid], tid_config, ledgers[tid]
                ).local
            else:
                local = train_local(model_spec, weights, local_data[tid], tid_config)
            losses.append(local.loss)
            delta = local.delta
            if privacy is not None and accountant is not None:
                delta = privatize(delta, privacy, seed=derive_seed(seed, "dp", tid, rnd))
                if privacy.noise_multiplier > 0:
                    accountant.step(tid, noise_multiplier=privacy.noise_multiplier)
            published[tid] = delta
        honest = {t: d for t, d in published.items() if roles[t].honest}
        updates = []
        for tid in ids:
            ctx = RoundContext(
                rnd,
                tid,
                weights,
                honest,
                derive_seed(seed, "attack", tid, rnd),
                num_trainers=len(ids),
                num_attackers=sum(not roles[t].honest for t in ids),
            )
            delta = roles[tid].craft_update(published.get(tid), ctx)
            updates.append(ClientUpdate(tid, delta, len(local_data[tid])))
        result = strat.aggregate(weights, updates)
        train_loss = float(np.mean(losses)) if losses else float("nan")
        metrics = _metrics(rnd, model_spec, result.weights, splits, train_loss)
        record = RoundRecord(
            server_round=rnd,
            global_weights=weights if keep_history else {},
            updates=tuple(sorted(updates, key=lambda u: u.sender)) if keep_history else (),
            result=result,
            metrics=metrics,
        )
        records.append(record)
        log.info(
            "round %d/%d: val acc %.4f, test acc %.4f, accepted %d/%d",
            rnd,
            rounds,
            metrics.val_accuracy,
            metrics.test_accuracy,
            len(result.accepted),
            len(updates),
        )
        if on_round is not None:
            on_round(record)
        weights = result.weights

    return SimulationResult(
        model_spec=model_spec,
        strategy_name=strat.name,
        strategy_params=strat.params(),
        trainer_ids=tuple(ids),
        behaviours={t: roles[t].name for t in ids},
        num_samples={t: len(local_data[t]) for t in ids},
        initial_metrics=initial,
        rounds=tuple(records),
        final_weights=weights,
        epsilons=(
            accountant.epsilons()
            if accountant
            else {t: ledgers[t].epsilon for t in sorted(ledgers)}
        ),
    )


def _local_datasets(
    train: Dataset,
    parts: Sequence[np.ndarray],
    ids: Sequence[str],
    roles: Mapping[str, Behaviour],
    seed: int,
) -> dict[str, Dataset]:
    """Each trainer's rows, after its behaviour's data poisoning (label flip)."""
    out: dict[str, Dataset] = {}
    for tid, idx in zip(ids, parts, strict=True):
        local = train.subset(idx, name=f"{train.name}/{tid}")
        x, y = roles[tid].poison_data(
            local.x, local.y, num_classes=train.num_classes, seed=derive_seed(seed, "data", tid)
        )
        out[tid] = Dataset(local.name, x, y, train.num_classes)
    return out


def _metrics(
    rnd: int, spec: ModelSpec, weights: Weights, splits: DataSplits, train_loss: float
) -> RoundMetrics:
    val = evaluate(spec, weights, splits.validation.x, splits.validation.y)
    test = evaluate(spec, weights, splits.test.x, splits.test.y)
    return RoundMetrics(rnd, val.accuracy, val.loss, test.accuracy, test.loss, train_loss)
