"""The update-based poisoner tests (twins, input concentration, input subspace) on small synthetic
rounds, and the input-subspace rule on real federated runs (MLP, PyTorch).

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
    minor_subspace,
    subspace_energy,
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
def _validation_x() -> np.ndarray:
    data = split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)
    return data.validation.x.astype(np.float64)


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
    rounds: Sequence[Sequence[UpdateView]],
    config: FlagConfig = BACKDOOR_RULE,
    x_val: np.ndarray | None = None,
) -> list[Finding]:
    detector = UpdateDetector(config=config, x_val=x_val)
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


# --- the input-subspace rule --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_a_pixel_backdoor_is_flagged_by_the_input_subspace_rule_by_default(kind: str) -> None:
    rounds = _rounds(kind, "backdoor", attackers=(2, 6))

    findings = _detect(rounds, FlagConfig(), x_val=_validation_x())

    assert _flagged(findings) == {"t2": {"input_subspace"}, "t6": {"input_subspace"}}
    assert float(findings[0].evidence["score"]) >= 0.7
    assert findings[0].evidence["window"] == 3 and int(findings[0].evidence["directions"]) > 0


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
@pytest.mark.parametrize("attack", [None, "label_flip"])
def test_the_input_subspace_rule_leaves_trainers_of_the_population_alone(
    kind: str, attack: str | None
) -> None:
    # Honest trainers (and label flippers: their inputs are the population's) stay under it
    rounds = _rounds(kind, attack, attackers=(3,) if attack else ())

    assert _detect(rounds, FlagConfig(), x_val=_validation_x()) == []


def test_the_input_subspace_rule_needs_the_validation_inputs_and_can_be_turned_off() -> None:
    rounds = _rounds("iid", "backdoor", attackers=(2,))

    assert _detect(rounds, FlagConfig()) == []  # no validation inputs given
    off = FlagConfig(subspace_threshold=None)
    assert _detect(rounds, off, x_val=_validation_x()) == []


def test_the_input_subspace_score_needs_a_whole_window_and_a_median() -> None:
    rounds = _rounds("dirichlet", "backdoor", attackers=(2,))
    detector = UpdateDetector(x_val=_validation_x())
    for r, views in enumerate(rounds[:2], start=1):  # two rounds: no 3-round window yet
        detector.observe(r, views, {v.account: v.delta.reshape(CLASSES, FEATURES) for v in views})
    assert detector.subspace_scores() == {}
    detector.observe(3, rounds[2][:2], {})  # too few updates: not an observed round
    assert detector.subspace_scores() == {}
    views = rounds[3]
    detector.observe(4, views, {v.account: v.delta.reshape(CLASSES, FEATURES) for v in views})
    scores = detector.subspace_scores()
    assert set(scores) == {f"t{i}" for i in range(TRAINERS)}
    assert all(first == 1 for _, first in scores.values())  # the window of rounds 1, 2 and 4


def test_minor_subspace_spans_the_least_varying_directions_with_variance() -> None:
    rng = np.random.default_rng(0)
    # Four independent directions with variances 100, 10, 1 and 0.01, and one constant feature
    x = rng.normal(size=(5000, 4)) * np.sqrt([100.0, 10.0, 1.0, 0.01])
    x = np.hstack([x, np.full((5000, 1), 3.0)])

    smallest = minor_subspace(x, 0.001)  # 0.01 of ~111: the last varying direction alone
    two = minor_subspace(x, 0.02)  # 1.01 of ~111

    assert smallest is not None and smallest.shape == (5, 1)
    assert abs(abs(smallest[3, 0]) - 1.0) < 1e-2  # feature 3; the constant one left out
    assert two is not None and two.shape == (5, 2)
    assert minor_subspace(x, 1e-6) is None and minor_subspace(x[:1], 0.5) is None
    inside, total = subspace_energy(np.array([[0.0, 0.0, 0.0, 2.0, 0.0]]), smallest)
    assert total == 4.0 and abs(inside - 4.0) < 1e-3


def test_the_input_subspace_findings_do_not_depend_on_input_order() -> None:
    rounds = _rounds("dirichlet", "backdoor", attackers=(1, 6))
    shuffled = [list(reversed(views)) for views in rounds]

    first = _detect(rounds, FlagConfig(), x_val=_validation_x())
    again = _detect(shuffled, FlagConfig(), x_val=_validation_x())

    assert first and [(f.account, dict(f.evidence)) for f in first] == [
        (f.account, dict(f.evidence)) for f in again
    ]


@pytest.mark.parametrize("kind", ["iid", "dirichlet"])
def test_real_federated_backdoor_runs_flag_exactly_the_attackers(kind: str) -> None:
    """The attack table's set-up (MLP, 10 trainers, 2 local epochs), 12 rounds of real training:
    the 2 backdoor attackers, and no honest trainer, are flagged by the default rules."""
    from marketplace.fl import ModelSpec, TrainConfig, simulate

    torch.set_num_threads(1)
    data = split_dataset(load_dataset("digits"), val_fraction=0.15, test_fraction=0.15, seed=0)
    extra = {"alpha": 0.5} if kind == "dirichlet" else {}
    parts = partition(kind, data.train.y, num_clients=10, seed=1, **extra)
    spec = ModelSpec(arch="mlp", input_dim=64, hidden=(64,), num_classes=10, seed=1)
    attackers = {"t00", "t09"}
    result = simulate(
        model_spec=spec, splits=data, partition=parts, rounds=12,
        train_config=TrainConfig(epochs=2, lr=0.1, batch_size=16),
        behaviours=dict.fromkeys(attackers, "backdoor"), seed=1,
    )  # fmt: skip
    layer = input_layer(spec)
    assert layer is not None
    detector = UpdateDetector(x_val=data.validation.x)
    for rec in result.rounds:
        views = [
            UpdateView(u.sender, np.concatenate([t.numpy().ravel() for t in u.delta.values()]), i)
            for i, u in enumerate(rec.updates)
        ]
        weights = {u.sender: u.delta[layer].double().numpy() for u in rec.updates}
        detector.observe(rec.server_round, views, weights)

    flagged = _flagged(detector.findings())

    assert set(flagged) == attackers, flagged
    assert all("input_subspace" in rules for rules in flagged.values())
