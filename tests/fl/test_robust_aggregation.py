"""Centered clipping and bucketing: the math on tiny arrays, and the strategies by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marketplace.errors import ConfigError, InvalidUpdateError
from marketplace.fl import aggregation_math as am
from marketplace.fl.strategy import get_strategy
from marketplace.fl.updates import ClientUpdate


def test_clip_rows_scales_only_rows_above_the_radius() -> None:
    x = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])

    np.testing.assert_allclose(am.clip_rows(x, 1.0), [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    with pytest.raises(InvalidUpdateError, match="positive"):
        am.clip_rows(x, 0.0)


def test_centered_clipping_by_hand_one_step() -> None:
    # Centre 0, tau 1: offsets [[3, 4] -> [0.6, 0.8]], [0.5, 0], [0, 0]; mean = [1.1/3, 0.8/3].
    x = np.array([[3.0, 4.0], [0.5, 0.0], [0.0, 0.0]])

    out = am.centered_clipping(x, 1.0, iters=1, center=np.zeros(2))

    np.testing.assert_allclose(out, [1.1 / 3, 0.8 / 3])


def test_centered_clipping_bounds_an_outliers_pull_where_the_mean_breaks() -> None:
    honest = np.array([[1.0], [1.1], [0.9], [1.0]])
    x = np.vstack([honest, [[1000.0]]])

    out = am.centered_clipping(x)  # adaptive tau, median start

    assert abs(out[0] - 1.0) < 0.2 and x.mean() > 200


def test_bucket_means_are_a_seeded_shuffle_of_the_rows() -> None:
    x = np.arange(5, dtype=np.float64)[:, None]

    a, b = am.bucket_means(x, 2, seed=3), am.bucket_means(x, 2, seed=3)

    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 1) and a.sum() * 2 - a[-1, 0] == pytest.approx(10.0)  # last bucket: 1 row
    assert np.sort(am.bucket_means(x, 1, seed=3).ravel()).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("inner", ["centered_clipping", "median", "trimmed_mean", "multikrum"])
def test_bucketing_strategy_resists_one_huge_update_and_is_order_free(inner: str) -> None:
    g = {"w": torch.zeros(2)}
    ups = [ClientUpdate(f"t{i}", {"w": torch.tensor([1.0, 1.0 + i / 10])}, 10) for i in range(9)]
    ups.append(ClientUpdate("t9", {"w": torch.tensor([1e4, -1e4])}, 10))
    strategy = get_strategy("bucketing", s=2, inner=inner)

    out = strategy.aggregate(g, ups).delta["w"]
    again = strategy.aggregate(g, list(reversed(ups))).delta["w"]

    assert torch.equal(out, again)
    assert float(out.abs().max()) < 100  # FedAvg would give ~1000


def test_the_strategies_are_registered_and_validate_their_parameters() -> None:
    assert get_strategy("centered_clipping", tau=0.5).params()["tau"] == 0.5
    with pytest.raises(ConfigError, match="tau > 0"):
        get_strategy("centered_clipping", tau=-1.0)
    with pytest.raises(ConfigError, match="inner in"):
        get_strategy("bucketing", inner="mean")
