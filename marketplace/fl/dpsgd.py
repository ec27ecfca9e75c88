"""Record-level DP-SGD (Opacus): per-sample clipping, Poisson sampling, and a budget over rounds.

Each trainer protects every record of its own data: every local step samples a Poisson batch
(each row independently with probability ``q``), Opacus computes per-sample gradients, clips each
to ``clip_norm`` and adds ``N(0, (sigma·clip_norm)²)`` noise to their sum. The update that leaves
the node is then ``(ε, δ)``-DP with respect to any one record, whoever sees it (post-processing).

The :class:`DPSGDAccountant` is one trainer's ledger. It is calibrated once, up front, for the
task's planned rounds (``sigma`` from the target ε over ``rounds * steps_per_round`` steps), keeps
the steps actually taken, refuses a round that would take ε past the target
(:class:`~marketplace.errors.PrivacyBudgetError`), and round-trips through JSON (no pickle) so a
node can keep it in its journal.

Example
-------
>>> acc = DPSGDAccountant.calibrate(DPTerms(epsilon=8.0), rows=157, rounds=20, train=config)
>>> result = train_dpsgd(spec, global_weights, dataset, config, acc)
>>> result.epsilon_round, result.epsilon_total
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from torch.nn import functional as F

from marketplace.errors import ConfigError, PrivacyBudgetError
from marketplace.fl.data import Dataset
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.privacy import DPTerms
from marketplace.fl.train import LocalResult, TrainConfig, torch_settings
from marketplace.fl.weights import check_finite, check_same_layout, get_weights, weight_delta
from marketplace.jsonlimits import shallow_json

log = logging.getLogger(__name__)

ACCOUNTANT_FORMAT = "fedmarket-dpsgd-accountant/1"
_EPS_SLACK = 1e-9  # relative: the calibrated plan must pass its own check despite float noise

DPSGD_RECIPE = TrainConfig(epochs=5, lr=0.1, batch_size=16)
"""Local training of a DP-SGD task when the requester gives none (``fedmarket task create --dp
dpsgd`` without ``--epochs/--lr/--batch-size``): plain SGD, 5 local epochs of Poisson batches of
expected size 16, i.e. q = 16 / rows. Chosen on the validation split over several seeds at ε = 8
(docs/benchmarks.md, "Record-level DP-SGD")."""

DPSGD_MODEL_OPTIONS: dict[str, Any] = {"activation": "tanh", "input_clip": 2.0}
"""MLP options of a DP-SGD task's default model (:func:`dpsgd_model`): tanh hidden units (bounded
activations keep per-sample gradients small, so clipping discards less of them) and inputs
clamped to [-2, 2] standard deviations (a fixed per-record function: no privacy cost). Chosen
on the validation split, seeds other than the benchmark's (docs/benchmarks.md)."""


def dpsgd_model(spec: ModelSpec) -> ModelSpec:
    """``spec`` with :data:`DPSGD_MODEL_OPTIONS` if it is an MLP without options of its own;
    any other spec unchanged (what ``fedmarket task create --dp dpsgd`` trains by default)."""
    if spec.arch != "mlp" or spec.kwargs:
        return spec
    return dataclasses.replace(spec, kwargs=dict(DPSGD_MODEL_OPTIONS))


def sampling_plan(rows: int, train: TrainConfig) -> tuple[float, int]:
    """``(q, steps_per_round)``: Poisson rate ``batch_size / rows`` (at most 1) and
    ``epochs · ceil(rows / batch_size)`` steps, so a round sees each row ``epochs`` times on
    average."""
    if rows < 1:
        raise ConfigError("DP-SGD needs at least one local row: this trainer got none")
    q = min(1.0, train.batch_size / rows)
    return q, train.epochs * math.ceil(rows / train.batch_size)


def release_plan(terms: DPTerms, rows: int, train: TrainConfig) -> tuple[float, int]:
    """``(q, releases per round)`` of ``terms.mode``: DP-SGD's :func:`sampling_plan`, or one
    full-participation release (``q = 1``) a round for trainer-level DP (``mode="update"``)."""
    if terms.mode == "update":
        return 1.0, 1
    return sampling_plan(rows, train)


@dataclass
class DPSGDAccountant:
    """One trainer's privacy ledger across the rounds of a task.

    Record-level for ``terms.mode == "dpsgd"`` (a round is ``steps_per_round`` Poisson-sampled
    noisy steps); trainer-level for ``"update"`` (a round is one release of the clipped, noised
    update: ``q = 1``, one step).

    Attributes
    ----------
    terms : DPTerms
        The task's target ``(ε, δ)``, clip norm and accountant (``rdp`` or ``prv``).
    noise_multiplier : float
        ``sigma``, fixed at calibration for the whole task.
    sample_rate : float
        Poisson sampling rate ``q``.
    steps_per_round : int
        Noisy steps one round takes.
    planned_rounds : int
        Rounds the calibration covers.
    history : list of [sigma, q, steps]
        What was spent, one entry per round trained (Opacus' accountant history).
    """

    terms: DPTerms
    noise_multiplier: float
    sample_rate: float
    steps_per_round: int
    planned_rounds: int
    history: list[tuple[float, float, int]] = field(default_factory=list)

    @classmethod
    def calibrate(
        cls, terms: DPTerms, *, rows: int, rounds: int, train: TrainConfig
    ) -> DPSGDAccountant:
        """The smallest ``sigma`` (to Opacus' tolerance) that keeps ``rounds`` rounds of local
        DP-SGD on ``rows`` rows (or ``rounds`` trainer-level releases) within ``terms.epsilon``."""
        if rounds < 1:
            raise ConfigError("DP calibration needs at least one planned round")
        if rows < 1:
            raise ConfigError("DP calibration needs at least one local row: this trainer got none")
        q, steps = release_plan(terms, rows, train)
        sigma = get_noise_multiplier(
            target_epsilon=terms.epsilon,
            target_delta=terms.delta,
            sample_rate=q,
            steps=rounds * steps,
            accountant=terms.accountant,
            epsilon_tolerance=0.01,
        )
        return cls(terms, float(sigma), q, steps, rounds)

    # --- spending ------------------------------------------------------------------------
    def _epsilon(self, history: list[tuple[float, float, int]]) -> float:
        if not history:
            return 0.0
        merged: dict[tuple[float, float], int] = {}  # same (sigma, q): one entry, summed steps
        for sigma, q, steps in history:
            merged[(sigma, q)] = merged.get((sigma, q), 0) + steps
        acc = create_accountant(self.terms.accountant)
        acc.history = [(s, q, n) for (s, q), n in merged.items()]
        return float(acc.get_epsilon(delta=self.terms.delta))

    @property
    def epsilon(self) -> float:
        """ε spent so far at ``terms.delta``."""
        return self._epsilon(self.history)

    @property
    def rounds_trained(self) -> int:
        return len(self.history)

    def epsilon_after_round(self) -> float:
        """ε if one more round were trained now."""
        return self._epsilon([*self.history, self._entry()])

    def _entry(self) -> tuple[float, float, int]:
        return (self.noise_multiplier, self.sample_rate, self.steps_per_round)

    def check_round(self) -> float:
        """ε after one more round; :class:`PrivacyBudgetError` if that exceeds the target."""
        after = self.epsilon_after_round()
        if after > self.terms.epsilon * (1 + _EPS_SLACK):
            raise PrivacyBudgetError(
                f"DP budget exhausted: {self.rounds_trained} rounds spent ε={self.epsilon:.3f}; "
                f"another would reach ε={after:.3f} > {self.terms.epsilon} (planned "
                f"{self.planned_rounds} rounds): stop training for this task"
            )
        return after

    def record_round(self) -> tuple[float, float]:
        """Book one round (after :meth:`check_round`); returns ``(ε spent by it, ε total)``."""
        before = self.epsilon
        after = self.check_round()
        self.history.append(self._entry())
        return after - before, after

    # --- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ACCOUNTANT_FORMAT,
            "terms": self.terms.to_dict(),
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps_per_round": self.steps_per_round,
            "planned_rounds": self.planned_rounds,
            "history": [list(h) for h in self.history],
        }

    def to_json(self) -> str:
        """JSON text for the node journal (floats round-trip exactly through ``repr``)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> DPSGDAccountant:
        """Parse :meth:`to_json` output; :class:`ConfigError` naming what is wrong."""
        try:
            data = shallow_json(text)
        except ValueError as exc:
            raise ConfigError(f"malformed DP-SGD accountant record: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> DPSGDAccountant:
        """Parse :meth:`to_dict` output; :class:`ConfigError` naming what is wrong."""
        try:
            if not isinstance(data, dict) or data.get("format") != ACCOUNTANT_FORMAT:
                found = data.get("format") if isinstance(data, dict) else type(data).__name__
                raise ConfigError(
                    f"not a DP-SGD accountant record (format {found!r}, "
                    f"expected {ACCOUNTANT_FORMAT})"
                )
            history = [(float(s), float(q), int(n)) for s, q, n in data["history"]]
            acc = cls(
                DPTerms.from_dict(data["terms"]),
                float(data["noise_multiplier"]),
                float(data["sample_rate"]),
                int(data["steps_per_round"]),
                int(data["planned_rounds"]),
                history,
            )
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"malformed DP-SGD accountant record: {exc}") from None
        if acc.noise_multiplier <= 0 or not 0 < acc.sample_rate <= 1 or acc.steps_per_round < 1:
            raise ConfigError("DP-SGD accountant record has a non-positive sigma, q or steps")
        return acc


@dataclass(frozen=True)
class DPSGDResult:
    """A DP-SGD round: the local result, and the ε it spent and the total so far."""

    local: LocalResult
    epsilon_round: float
    epsilon_total: float
    noise_multiplier: float


def train_dpsgd(
    model_spec: ModelSpec,
    global_weights: Mapping[str, torch.Tensor],
    dataset: Dataset,
    config: TrainConfig,
    accountant: DPSGDAccountant,
) -> DPSGDResult:
    """One round of record-level DP-SGD from ``global_weights``; books it in ``accountant``.

    Plain SGD with ``config.lr`` (momentum and weight decay apply; FedProx and Adam are refused:
    the proximal term is not per-sample). Deterministic under ``config.seed`` (sampling and noise
    use seeded ``torch.Generator`` s). Raises :class:`PrivacyBudgetError` *before* training if the
    round would exceed the budget.
    """
    if len(dataset) == 0:
        raise ConfigError("cannot train on an empty dataset: this trainer got no rows")
    if accountant.terms.mode != "dpsgd":
        raise ConfigError(
            f"train_dpsgd needs DP mode 'dpsgd', the terms say {accountant.terms.mode!r}"
        )
    if config.optimizer != "sgd" or config.fedprox_mu:
        raise ConfigError("DP-SGD supports optimizer 'sgd' without FedProx: set fedprox_mu=0")
    q, steps = sampling_plan(len(dataset), config)
    if not math.isclose(q, accountant.sample_rate) or steps != accountant.steps_per_round:
        raise ConfigError(
            f"the accountant was calibrated for q={accountant.sample_rate:.4g}, "
            f"{accountant.steps_per_round} steps per round, but this data and config give "
            f"q={q:.4g}, {steps} steps: recalibrate for this trainer's rows and batch size"
        )
    accountant.check_round()  # refuse before spending anything

    model = build_model(model_spec)
    check_same_layout(get_weights(model), global_weights, what="global weights")
    check_finite(global_weights, what="global weights")
    start = {k: global_weights[k].detach().float().clone() for k in sorted(global_weights)}
    model.load_state_dict(start, strict=False)
    x = torch.from_numpy(dataset.x)
    y = torch.from_numpy(dataset.y)
    sampler = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator().manual_seed(config.seed ^ 0x5EED)
    losses: list[float] = []
    with torch_settings(config.num_threads):
        gsm = GradSampleModule(model, loss_reduction="sum")  # exact per-sample grads
        optimizer = DPOptimizer(
            torch.optim.SGD(
                gsm.parameters(),
                lr=config.lr,
                momentum=config.momentum,
                weight_decay=config.weight_decay,
            ),
            noise_multiplier=accountant.noise_multiplier,
            max_grad_norm=accountant.terms.clip_norm,
            expected_batch_size=config.batch_size,
            loss_reduction="mean",  # (clipped sum + noise) / expected batch size
            generator=noise,
        )
        gsm.train()
        for _ in range(steps):
            mask = torch.rand(x.shape[0], generator=sampler) < q  # Poisson sampling
            optimizer.zero_grad(set_to_none=True)
            logits = gsm(x[mask])  # (b, K); b may be 0, Opacus then adds noise only
            loss = F.cross_entropy(logits, y[mask], reduction="sum")
            with warnings.catch_warnings():  # inputs need no grad: Opacus' hooks still fire
                warnings.filterwarnings("ignore", message="Full backward hook")
                loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if int(mask.sum()):
                losses.append(float(loss.detach()) / int(mask.sum()))
        gsm.eval()
        trained = {k: v.detach().clone() for k, v in sorted(gsm._module.state_dict().items())}
    eps_round, eps_total = accountant.record_round()
    delta = weight_delta(trained, start)
    log.debug("DP-SGD round: sigma %.3f, ε +%.4f = %.4f", accountant.noise_multiplier, eps_round,
              eps_total)  # fmt: skip
    return DPSGDResult(
        local=LocalResult(
            delta=delta,
            num_samples=len(dataset),
            loss=float(np.mean(losses)) if losses else float("nan"),
        ),
        epsilon_round=eps_round,
        epsilon_total=eps_total,
        noise_multiplier=accountant.noise_multiplier,
    )
