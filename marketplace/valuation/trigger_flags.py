"""Trigger reverse-engineering on each trainer's local model: an optional pixel-backdoor rule.

Neural Cleanse (Wang et al., 2019) asks, for every output class ``c``: what is the smallest input
mask ``m`` (values in [0, 1], one per input feature) and pattern ``p`` such that stamping them,
``x' = (1 - m) * x + m * p``, sends inputs of every class to ``c``? A model with a backdoor into
``c`` needs an anomalously small mask for ``c`` (its trigger). The committee can run this without
knowing the trigger or the target: it has the round's global model, each trainer's plaintext
update (local model = global + update) and the requester's validation inputs.

Per observed round, for every checked trainer and class, a mask and pattern are optimised with Adam
on the first :attr:`FlagConfig.trigger_rows` validation inputs (all trainers and classes in one
batch), minimising ``cross-entropy(x' -> c) + penalty * |m|_1``; the pattern stays within each
feature's range on the validation set. The trainer's round score is the smallest, over classes, of
``log |m_c|_1`` minus the round's median of it over trainers (a scale-free, cross-trainer
comparison); a trainer whose median score over at least ``trigger_min_rounds`` observed rounds is at
most ``-trigger_threshold`` is flagged POISONER.

**Measured, this rule does not meet the detection goal and is off by default** (``FlagConfig.
trigger_threshold = None``): on digits with Dirichlet(0.5) partitions an honest trainer holding
many rows of one class also needs a small mask for that class (its model leans towards it), as
small as a backdoor attacker's for its target; see docs/benchmarks.md, "Trigger reverse-
engineering". It stays here so the experiment can be re-run and compared.

The optimisation is float32 torch: the same code on the same machine gives the same numbers, but
across CPUs the last bits can differ, so evidence is written with 4 significant digits and a score
within rounding of the threshold could split a committee. Another reason it is not on by default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, vmap

from marketplace.errors import ValuationError
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.weights import Weights
from marketplace.valuation.flags import Finding, Flag, FlagConfig

MIN_TRAINERS = 3
"""A round with fewer checked updates than this is skipped (no meaningful median)."""

NORM_FLOOR = 0.1
"""Mask norms are floored here before the log (a collapsed mask is not infinitely anomalous)."""


def _sig(x: float) -> str:
    return f"{x:.4g}"


def reverse_trigger_norms(
    spec: ModelSpec,
    models: Sequence[Weights],
    x_val: np.ndarray,
    *,
    rows: int = 40,
    steps: int = 200,
    penalty: float = 0.15,
    lr: float = 0.1,
) -> np.ndarray:
    """The L1 norm of the reverse-engineered trigger mask of each model and class.

    Parameters
    ----------
    spec : ModelSpec
        The architecture of every model in ``models``.
    models : sequence of Weights
        Full weights (not deltas), one model each.
    x_val : numpy.ndarray
        ``(n, features)`` validation inputs; the first ``rows`` are stamped, all ``n`` bound the
        pattern (per feature, between its smallest and largest value).
    rows, steps, penalty, lr
        Inputs stamped, Adam steps, L1 weight of the mask, Adam learning rate.

    Returns
    -------
    numpy.ndarray
        ``(len(models), num_classes)`` float64 mask norms.
    """
    if not models:
        return np.zeros((0, spec.num_classes))
    x_all = torch.as_tensor(np.asarray(x_val, dtype=np.float32))
    if x_all.ndim != 2 or len(x_all) == 0:
        raise ValuationError("trigger reverse-engineering needs (rows, features) validation inputs")
    lo, hi = x_all.min(0).values, x_all.max(0).values
    x = x_all[:rows]  # (n, D)
    k, d, m_count, n = spec.num_classes, x.shape[1], len(models), x.shape[0]
    skeleton = build_model(spec)
    stacked = {name: torch.stack([w[name].float() for w in models]) for name in models[0]}

    def forward(params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(skeleton, params, (inputs,))
        return out

    batched: Any = vmap(forward)
    mask_raw = torch.full((m_count, k, d), -3.0, requires_grad=True)  # sigmoid(-3) ~ 0.05
    pattern_raw = torch.zeros((m_count, k, d), requires_grad=True)
    opt = torch.optim.Adam([mask_raw, pattern_raw], lr=lr)
    target = torch.arange(k).repeat_interleave(n).repeat(m_count)  # (M*K*n,)

    def stamped() -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.sigmoid(mask_raw)  # (M, K, D)
        pattern = lo + (hi - lo) * torch.sigmoid(pattern_raw)
        xin = (1 - mask[:, :, None, :]) * x[None, None] + (mask * pattern)[:, :, None, :]
        return mask, xin.reshape(m_count, k * n, d)  # (M, K*n, D)

    for _ in range(steps):
        mask, xin = stamped()
        logits = batched(stacked, xin)  # (M, K*n, K)
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, k), target, reduction="none"
        ).reshape(m_count, k, n)
        loss = (ce.mean(-1) + penalty * mask.sum(-1)).sum()
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    with torch.no_grad():
        norms = torch.sigmoid(mask_raw).sum(-1)
    return np.asarray(norms.double().numpy())


def round_scores(norms: Mapping[str, np.ndarray]) -> dict[str, tuple[float, int]]:
    """Per account: the smallest over classes of ``log(norm)`` minus the round's median over
    accounts for that class, and that class. Empty below :data:`MIN_TRAINERS` accounts."""
    if len(norms) < MIN_TRAINERS:
        return {}
    accounts = sorted(norms, key=str.lower)
    logs = {a: [math.log(max(float(v), NORM_FLOOR)) for v in norms[a]] for a in accounts}
    classes = len(logs[accounts[0]])
    medians = [median(logs[a][c] for a in accounts) for c in range(classes)]
    out = {}
    for a in accounts:
        excess = [logs[a][c] - medians[c] for c in range(classes)]
        c = min(range(classes), key=lambda j: (excess[j], j))
        out[a] = (excess[c], c)
    return out


@dataclass
class _Trainer:
    scores: list[float] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)


class TriggerDetector:
    """Accumulates trigger reverse-engineering over a task's rounds (see the module docstring).

    Call :meth:`observe` once per round in increasing order; rounds whose number is not a multiple
    of ``config.trigger_every`` are skipped (the optimisation costs seconds a round); then
    :meth:`findings`. With ``config.trigger_threshold`` None nothing is computed.
    """

    def __init__(self, spec: ModelSpec, x_val: np.ndarray, *, config: FlagConfig) -> None:
        self.spec = spec
        self.x_val = x_val
        self.config = config
        self._trainers: dict[str, _Trainer] = {}

    @property
    def enabled(self) -> bool:
        """Whether the rule is on (a threshold is set)."""
        return self.config.trigger_threshold is not None

    def observe(self, round: int, global_weights: Weights, deltas: Mapping[str, Weights]) -> None:
        """Add one round: the global model it started from and each checked trainer's update."""
        cfg = self.config
        if not self.enabled or round % max(1, cfg.trigger_every) != 0:
            return
        if len(deltas) < MIN_TRAINERS:
            return
        accounts = sorted(deltas, key=str.lower)
        models = [
            {name: global_weights[name] + deltas[a][name] for name in global_weights}
            for a in accounts
        ]
        norms = reverse_trigger_norms(
            self.spec,
            models,
            self.x_val,
            rows=cfg.trigger_rows,
            steps=cfg.trigger_steps,
            penalty=cfg.trigger_penalty,
        )
        for account, (score, cls) in round_scores(dict(zip(accounts, norms, strict=True))).items():
            t = self._trainers.setdefault(account, _Trainer())
            t.scores.append(score)
            t.classes.append(cls)

    def scores(self) -> dict[str, float]:
        """Per trainer: the median of its round scores (more negative = smaller masks)."""
        return {a: median(t.scores) for a, t in self._trainers.items() if t.scores}

    def findings(self) -> list[Finding]:
        """POISONER findings, sorted by account (none while the rule is off)."""
        cfg = self.config
        threshold = cfg.trigger_threshold
        if threshold is None:
            return []
        out = []
        for account in sorted(self._trainers, key=str.lower):
            t = self._trainers[account]
            if len(t.scores) < max(1, cfg.trigger_min_rounds):
                continue
            score = median(t.scores)
            if score <= -threshold:
                out.append(
                    Finding(
                        account,
                        Flag.POISONER,
                        {
                            "flag": "poisoner",
                            "rule": "reverse_trigger",
                            "score": _sig(score),
                            "threshold": _sig(threshold),
                            "classes": sorted(set(t.classes)),
                            "rounds": len(t.scores),
                        },
                    )
                )
        return out
