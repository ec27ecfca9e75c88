"""Adaptive attacks: each crafts what its paper says from the honest deltas it sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marketplace.fl.attacks import (
    ALIE,
    IPM,
    MinMax,
    MinSum,
    PixelBackdoor,
    RoundContext,
    alie_z,
    apply_trigger,
    backdoor_success_rate,
    get_behaviour,
    min_max_gamma,
    min_sum_gamma,
)
from marketplace.fl.weights import flatten

GLOBAL = {"w": torch.zeros(2)}
HONEST = {
    "t00": {"w": torch.tensor([1.0, 0.0])},
    "t01": {"w": torch.tensor([3.0, 2.0])},
}  # mean [2, 1], std [1, 1]


def _ctx(seed: int = 0, n: int = 10, f: int = 2) -> RoundContext:
    return RoundContext(1, "t09", GLOBAL, HONEST, seed, num_trainers=n, num_attackers=f)


def test_alie_shifts_the_mean_by_z_standard_deviations() -> None:
    out = ALIE(z=1.5, jitter=0.0).craft_update(None, _ctx())

    np.testing.assert_allclose(flatten(out), [0.5, -0.5])
    # n = 10, f = 2: s = 6 - 2 = 4 supporters, z = Phi^-1(6/10) ~= 0.2533.
    assert alie_z(10, 2) == pytest.approx(0.2533, abs=1e-4)
    np.testing.assert_allclose(
        flatten(ALIE(jitter=0.0).craft_update(None, _ctx())), [2 - 0.2533, 1 - 0.2533], atol=1e-4
    )


def test_ipm_sends_minus_epsilon_times_the_honest_mean() -> None:
    out = IPM(epsilon=0.5, jitter=0.0).craft_update(None, _ctx())

    np.testing.assert_allclose(flatten(out), [-1.0, -0.5])


def test_jitter_is_seeded_per_attacker_so_copies_differ() -> None:
    a = flatten(IPM().craft_update(None, _ctx(seed=1)))
    b = flatten(IPM().craft_update(None, _ctx(seed=1)))
    c = flatten(IPM().craft_update(None, _ctx(seed=2)))

    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(a, [-1.0, -0.5], atol=0.5)


def test_min_max_and_min_sum_stay_exactly_on_their_bounds() -> None:
    honest = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    mean, p = honest.mean(axis=0), np.array([-1.0, 0.0])

    g_max = min_max_gamma(honest, mean, p)
    g_sum = min_sum_gamma(honest, mean, p)

    far = max(np.linalg.norm(mean + g_max * p - h) for h in honest)
    assert far == pytest.approx(np.sqrt(8.0), rel=1e-6)  # largest honest pairwise distance
    total = sum(np.sum((mean + g_sum * p - h) ** 2) for h in honest)
    assert total == pytest.approx(12.0, rel=1e-6)  # largest honest sum: 4 + 8 from (2, 0)
    assert g_max > 0 and g_sum > 0


def test_min_max_and_min_sum_publish_mean_plus_gamma_times_minus_std() -> None:
    mm = flatten(MinMax(jitter=0.0).craft_update(None, _ctx()))
    ms = flatten(MinSum(jitter=0.0).craft_update(None, _ctx()))

    # Both move along -std = [-1, -1] from the mean [2, 1].
    for out in (mm, ms):
        assert out[0] - 2.0 == pytest.approx(out[1] - 1.0) and out[0] < 2.0


def test_backdoor_adds_triggered_copies_labelled_with_the_target() -> None:
    x = np.zeros((10, 64), dtype=np.float32)
    y = np.arange(10, dtype=np.int64)

    px, py = PixelBackdoor(target=7, fraction=0.5).poison_data(x, y, num_classes=10, seed=0)

    assert px.shape == (15, 64) and (py[10:] == 7).all()
    assert (px[10:, [54, 55, 62, 63]] == 3.0).all() and (px[:10] == 0).all()
    always_seven = backdoor_success_rate(lambda xs: np.full(len(xs), 7), x, y, target=7)
    reads_trigger = backdoor_success_rate(
        lambda xs: np.where(xs[:, 63] == 3.0, 0, 1), x, y, target=0
    )
    assert always_seven == 1.0 and reads_trigger == 1.0
    assert apply_trigger(x)[:, 54].tolist() == [3.0] * 10


def test_the_new_attacks_are_registered_by_name_and_marked_dishonest() -> None:
    for name in ("alie", "ipm", "min_max", "min_sum", "backdoor"):
        assert not get_behaviour(name).honest
    assert not get_behaviour("alie").trains and get_behaviour("backdoor").trains
