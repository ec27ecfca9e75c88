"""The pure aggregation math on tiny hand-checked arrays."""

from __future__ import annotations

import numpy as np
import pytest

from marketplace.errors import InvalidUpdateError
from marketplace.fl import aggregation_math as am


def test_weighted_mean_weighs_rows_by_sample_count() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]])

    out = am.weighted_mean(x, np.array([1.0, 3.0]))

    np.testing.assert_array_equal(out, [2.5, 3.5])


def test_coordinate_median_odd_and_even_counts() -> None:
    odd = np.array([[1.0, -1.0], [5.0, 0.0], [3.0, 100.0]])
    even = np.array([[1.0], [2.0], [10.0], [20.0]])

    np.testing.assert_array_equal(am.coordinate_median(odd), [3.0, 0.0])
    np.testing.assert_array_equal(am.coordinate_median(even), [6.0])


def test_trimmed_mean_drops_extremes_per_coordinate() -> None:
    # Per column: drop one smallest and one largest of five values (beta 0.2 -> k = 1).
    x = np.array([[1.0, 50.0], [2.0, -9.0], [3.0, 10.0], [4.0, 20.0], [100.0, 30.0]])

    out = am.trimmed_mean(x, 0.2)

    np.testing.assert_allclose(out, [3.0, 20.0])


def test_trimmed_mean_with_beta_zero_is_the_mean() -> None:
    x = np.array([[1.0], [2.0], [6.0]])

    np.testing.assert_allclose(am.trimmed_mean(x, 0.0), [3.0])


@pytest.mark.parametrize("beta", [-0.1, 0.5, 0.9])
def test_trimmed_mean_refuses_beta_outside_half_open_interval(beta: float) -> None:
    with pytest.raises(InvalidUpdateError, match="beta"):
        am.trimmed_mean(np.ones((4, 2)), beta)


def test_pairwise_distances_are_exact_and_symmetric() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])

    d = am.pairwise_sq_distances(x)

    np.testing.assert_array_equal(d, [[0, 25, 100], [25, 0, 25], [100, 25, 0]])


def test_krum_scores_match_hand_computation() -> None:
    # Points 0, 1, 2, 10 on a line, f = 0: each score sums the n - f - 2 = 2 nearest sq. distances.
    x = np.array([[0.0], [1.0], [2.0], [10.0]])

    scores = am.krum_scores(x, 0)

    np.testing.assert_array_equal(scores, [5.0, 2.0, 5.0, 145.0])


def _honest_and_byzantine() -> tuple[np.ndarray, set[int]]:
    rng = np.random.default_rng(0)
    honest = 1.0 + 0.1 * rng.standard_normal((5, 4))
    attackers = np.full((2, 4), -10.0)
    x = np.vstack([attackers[:1], honest[:3], attackers[1:], honest[3:]])
    return x, {1, 2, 3, 5, 6}


def test_krum_picks_an_honest_update() -> None:
    x, honest = _honest_and_byzantine()

    chosen = am.krum_select(x, f=2, m=1)

    assert int(chosen[0]) in honest


def test_multikrum_keeps_exactly_the_honest_updates() -> None:
    x, honest = _honest_and_byzantine()

    aggregate, chosen = am.multikrum(x, f=2, m=5)

    assert set(chosen.tolist()) == honest
    np.testing.assert_allclose(aggregate, x[sorted(honest)].mean(axis=0))


def test_krum_refuses_too_few_updates_for_f() -> None:
    with pytest.raises(InvalidUpdateError, match="at least 7 updates"):
        am.krum_scores(np.ones((6, 2)), f=2)


def test_bulyan_ignores_an_outlier() -> None:
    x = np.array([[1.0], [1.1], [0.9], [1.0], [1.2], [0.8], [1000.0]])

    aggregate, chosen = am.bulyan(x, f=1)

    assert 6 not in chosen.tolist()
    assert 0.8 <= aggregate[0] <= 1.2


def test_bulyan_refuses_fewer_than_4f_plus_3() -> None:
    with pytest.raises(InvalidUpdateError, match="Bulyan"):
        am.bulyan(np.ones((6, 2)), f=1)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: am.weighted_mean(x, np.ones(x.shape[0])),
        am.coordinate_median,
        lambda x: am.trimmed_mean(x, 0.1),
        lambda x: am.krum_scores(x, 0),
    ],
)
def test_math_refuses_nan_and_empty_input(fn: object) -> None:
    bad = np.array([[1.0, np.nan], [1.0, 2.0], [0.0, 0.0]])

    with pytest.raises(InvalidUpdateError):
        fn(bad)  # type: ignore[operator]
    with pytest.raises(InvalidUpdateError):
        fn(np.zeros((0, 3)))  # type: ignore[operator]
