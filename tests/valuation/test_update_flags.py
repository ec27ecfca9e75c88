"""The update-based poisoner tests (twins, input concentration) on small synthetic rounds.

Honest updates are real: a few softmax-regression gradient steps on each trainer's part of the
digits data (IID or Dirichlet(0.5)), from a shared model that moves with their mean. Attackers use
the library's own attacks (:mod:`marketplace.fl.attacks`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from marketplace.errors import ValuationError
from marketplace.fl.attacks import RoundContext, get_behaviour
from marketplace.fl.data import load_dataset, split_dataset
from marketplace.fl.partition import partition
from marketplace.valuation.flags import BACKDOOR_RULE, Finding, Flag, FlagConfig, UpdateView
from marketplace.valuation.update_flags import (
    UpdateDetector,
    input_layer,
    input_shares,
    twin_ratios,
)

TRAINERS, ROUNDS, CLASSES, FEATURES = 8, 6, 10, 64
LAYER = "linear.weight"


def _step(
    w: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int = 5, lr: float = 0.5
) -> np.ndarray:
    """The change of softmax-regression weights ``(classes, features)`` after ``steps`` of GD."""
    start = w.copy()
    for _ in range(steps):
        z = x @ w.T  # (rows, classes)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1.0
        w = w - lr * p.T @ x / len(y)
    return w - start


@functools.cache
def _data(kind: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    data = split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)
    x, y = data.train.x.astype(np.float64), data.train.y
    extra = {"alpha": 0.5} if kind == "dirichlet" else {}
    return x, y, list(partition(kind, y, num_clients=TRAINERS, seed=0, **extra))


def _rounds(
    kind: str, attack: str | None = None, attackers: Sequence[int] = ()
) -> list[list[UpdateView]]:
    """``ROUNDS`` rounds of ``TRAINERS`` updates on ``kind`` ("iid"/"dirichlet") parts; the
    trainers in ``attackers`` run ``attack``."""
    x, y, parts = _data(kind)
    names = [f"t{i}" for i in range(TRAINERS)]
    w = np.random.default_rng(0).normal(0.0, 0.01, (CLASSES, FEATURES))
    behaviour = get_behaviour(attack) if attack else None
    out = []
    for r in range(1, ROUNDS + 1):
        deltas = {}
        for i, idx in enumerate(parts):
            xs, ys = x[idx], y[idx]
            if (
                i in attackers
                and behaviour is not None
                and behaviour.name in ("backdoor", "label_flip")
            ):
                xs, ys = behaviour.poison_data(xs, ys, num_classes=CLASSES, seed=r * 100 + i)
                xs = np.asarray(xs, dtype=np.float64)
            deltas[names[i]] = _step(w, xs, ys)
        if behaviour is not None and not behaviour.trains:
            honest = {
                a: {LAYER: torch.from_numpy(d)}
                for a, d in deltas.items()
                if int(a[1:]) not in attackers
            }
            for i in attackers:
                ctx = RoundContext(
                    server_round=r,
                    sender=names[i],
                    global_weights={LAYER: torch.from_numpy(w).float()},
                    honest_deltas=honest,
                    seed=r * 100 + i,
                    num_trainers=TRAINERS,
                    num_attackers=len(attackers),
                )
                crafted = behaviour.craft_update(None, ctx)
                deltas[names[i]] = crafted[LAYER].double().numpy()
        w = w + np.mean([deltas[a] for a in names], axis=0)
        out.append([UpdateView(a, deltas[a].ravel(), i) for i, a in enumerate(names)])
    return out


def _detect(
    rounds: Sequence[Sequence[UpdateView]], config: FlagConfig = BACKDOOR_RULE
) -> list[Finding]:
    detector = UpdateDetector(config=config)
    for r, views in enumerate(rounds, start=1):
        detector.observe(r, views, {v.account: v.delta.reshape(CLASSES, FEATURES) for v in views})
    return detector.findings()


def _flagged(findings: Sequence[Finding]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        assert f.flag == Flag.POISONER
        out.setdefault(f.account, set()).add(str(f.evidence["rule"]))
    return out


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
@pytest.mark.parametrize("attack", ["alie", "ipm", "min_max", "min_sum"])
def test_colluding_adaptive_attackers_are_flagged_as_twins(kind: str, attack: str) -> None:
    rounds = _rounds(kind, attack, attackers=(0, 5))

    flagged = _flagged(_detect(rounds))

    assert flagged == {"t0": {"twin_updates"}, "t5": {"twin_updates"}}


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_a_pixel_backdoor_is_flagged_by_input_concentration(kind: str) -> None:
    rounds = _rounds(kind, "backdoor", attackers=(2,))

    findings = _detect(rounds)

    assert _flagged(findings) == {"t2": {"input_concentration"}}
    assert findings[0].evidence["features"] == [54, 55, 62, 63]  # the trigger's pixels


def test_the_concentration_rule_is_off_by_default() -> None:
    # A flag costs its trainer bond and stake, and the rule false-flags honest non-IID trainers
    # on some seeds: only an explicit config turns it on.
    rounds = _rounds("iid", "backdoor", attackers=(2,))

    assert _detect(rounds, FlagConfig()) == []
    assert _detect(rounds, FlagConfig(concentration_threshold=None)) == []


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_honest_trainers_are_not_flagged(kind: str) -> None:
    assert _detect(_rounds(kind)) == []


def test_label_flipping_is_left_to_the_value_rule() -> None:
    # Flipped labels move the update as honest data does: neither twin nor concentrated. The
    # oracle's Shapley rule flags it (tests/oracle/test_detection.py).
    assert _detect(_rounds("dirichlet", "label_flip", attackers=(3,))) == []


def test_findings_do_not_depend_on_input_order_and_repeat_exactly() -> None:
    rounds = _rounds("dirichlet", "min_max", attackers=(1, 6))
    shuffled = [list(reversed(views)) for views in rounds]

    first, second, third = _detect(rounds), _detect(rounds), _detect(shuffled)

    assert [(f.account, dict(f.evidence)) for f in first] == [
        (f.account, dict(f.evidence)) for f in second
    ]
    assert [(f.account, dict(f.evidence)) for f in first] == [
        (f.account, dict(f.evidence)) for f in third
    ]


def test_twin_ratio_is_nearest_over_median_distance() -> None:
    views = [
        UpdateView("a", np.array([0.0, 0.0]), 0),
        UpdateView("b", np.array([3.0, 4.0]), 1),
        UpdateView("c", np.array([3.0, 4.5]), 2),
    ]

    ratios = twin_ratios(views)

    # pairwise distances 5, sqrt(29.25) ~ 5.408 and 0.5: median 5
    assert ratios["b"] == (0.1, "c") and ratios["c"] == (0.1, "b")
    assert ratios["a"] == (1.0, "b")
    assert twin_ratios(views[:2]) == {}  # too few updates for a median


def test_input_shares_are_column_energy_shares() -> None:
    assert input_shares(np.array([[1.0, 0.0], [1.0, 2.0]])) == [1 / 3, 2 / 3]
    assert input_shares(np.zeros((2, 2))) is None


def test_twin_rule_needs_the_share_of_rounds() -> None:
    rounds = _rounds("iid", "alie", attackers=(0, 5))
    honest = _rounds("iid")
    mixed = [*rounds[:2], *honest[2:]]  # twins in 2 of 6 rounds only

    assert _detect(mixed) == []
    detector = UpdateDetector(config=FlagConfig(twin_share=0.3))
    for r, views in enumerate(mixed, start=1):
        detector.observe(r, views)
    assert {f.account for f in detector.findings()} == {"t0", "t5"}


def test_rounds_must_come_in_order_and_layers_are_known() -> None:
    detector = UpdateDetector()
    detector.observe(2, [])
    with pytest.raises(ValuationError, match="increasing order"):
        detector.observe(1, [])
    from marketplace.fl.models import ModelSpec

    assert input_layer(ModelSpec(arch="mlp", input_dim=64, num_classes=10, hidden=(8,))) == (
        "net.0.weight"
    )
    assert input_layer(ModelSpec(arch="cnn", input_dim=64, num_classes=10)) is None
