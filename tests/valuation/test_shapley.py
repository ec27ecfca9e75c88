"""Shapley axioms, a hand-computed game, and agreement of the estimators with exact values."""

from __future__ import annotations

from fractions import Fraction

import pytest

from marketplace.errors import ValuationError
from marketplace.valuation import (
    ExactShapley,
    FunctionUtility,
    GTGShapley,
    LeaveOneOut,
    MonteCarloShapley,
)

from .games import additive_game, concave_game, hand_game

WEIGHTS = [0.30, 0.05, 0.20, 0.10, 0.0, 0.15]


def test_exact_matches_the_hand_computed_three_player_game() -> None:
    # Execute
    result = ExactShapley().estimate(hand_game())

    # Assert
    assert result.values == (Fraction(2), Fraction(3), Fraction(4))
    assert result.evaluations == 8
    assert result.values_ppm == (2_000_000, 3_000_000, 4_000_000)


def test_exact_is_efficient_sum_equals_grand_minus_empty() -> None:
    # Prepare
    game = concave_game(WEIGHTS)

    # Execute
    values = ExactShapley().estimate(game).values

    # Assert: equality on the 1e-12 grid every utility is quantized to
    grand = round(Fraction(game(frozenset(range(6)))) * 10**12)
    assert sum(values) == Fraction(grand, 10**12)


def test_exact_gives_symmetric_players_equal_values() -> None:
    # Prepare: players 1 and 3 have equal weights
    game = concave_game([0.3, 0.1, 0.2, 0.1, 0.25])

    # Execute
    values = ExactShapley().estimate(game).values

    # Assert
    assert values[1] == values[3]
    assert values[0] > values[4] > values[2] > values[1]


def test_exact_gives_a_null_player_zero() -> None:
    # Execute: player 4 has weight 0 and so adds nothing to any coalition
    values = ExactShapley().estimate(concave_game(WEIGHTS)).values

    # Assert
    assert values[4] == 0


def test_exact_is_additive_over_two_games() -> None:
    # Prepare
    a = concave_game(WEIGHTS)
    b = additive_game([0.5, 0.1, 0.0, 0.2, 0.3, 0.05])
    both = FunctionUtility(6, lambda s: a(s) + b(s))

    # Execute
    va, vb, vab = (ExactShapley().estimate(g).values for g in (a, b, both))

    # Assert: exact up to the 1e-12 quantization of each of the 64 coalition values
    for x, y, z in zip(va, vb, vab, strict=True):
        assert abs(x + y - z) <= Fraction(64, 10**12)


def test_additive_game_values_are_the_weights_for_every_estimator() -> None:
    # Prepare
    game = additive_game([0.5, 0.1, 0.0, 0.2])
    estimators = [
        ExactShapley(),
        MonteCarloShapley(permutations=5, eps=0),
        GTGShapley(eps=0, round_threshold=-1),
        LeaveOneOut(),
    ]

    # Execute / Assert: marginals are constant, so every estimate is exact
    for est in estimators:
        assert est.estimate(game, seed=3).values_ppm == (500_000, 100_000, 0, 200_000), est.method


@pytest.mark.parametrize(
    ("estimator", "tolerance"),
    [
        (GTGShapley(eps=0, round_threshold=-1), 0.03),  # stops at 5% mean relative change
        (MonteCarloShapley(permutations=400, eps=0), 0.01),
    ],
)
def test_sampling_estimators_agree_with_exact_on_small_games(
    estimator: GTGShapley | MonteCarloShapley, tolerance: float
) -> None:
    # Prepare
    game = concave_game(WEIGHTS)
    exact = ExactShapley().estimate(game).as_floats()

    # Execute
    approx = estimator.estimate(game, seed=11).as_floats()

    # Assert
    assert max(abs(a - e) for a, e in zip(approx, exact, strict=True)) < tolerance
    assert sorted(range(6), key=lambda i: approx[i]) == sorted(range(6), key=lambda i: exact[i])


def test_permutation_estimators_stay_efficient_without_truncation() -> None:
    # Prepare: without truncation every permutation's marginals telescope to v(N) - v(empty)
    game = concave_game(WEIGHTS)
    exact_sum = sum(ExactShapley().estimate(game).values)

    # Execute
    gtg = GTGShapley(eps=0, round_threshold=-1).estimate(game, seed=5)
    mc = MonteCarloShapley(permutations=17, eps=0).estimate(game, seed=5)

    # Assert
    assert sum(gtg.values) == exact_sum
    assert sum(mc.values) == exact_sum


def test_gtg_gives_everyone_zero_when_the_round_gain_is_below_the_threshold() -> None:
    # Prepare: the grand coalition improves the utility by only 0.005
    game = FunctionUtility(4, lambda s: 0.5 + 0.005 * len(s) / 4)

    # Execute
    result = GTGShapley(round_threshold=0.01).estimate(game, seed=0)

    # Assert
    assert result.round_truncated
    assert result.values_ppm == (0, 0, 0, 0)
    assert result.evaluations == 2


def test_gtg_within_round_truncation_skips_evaluations() -> None:
    # Prepare: one player carries the whole gain, so after it the prefix equals v(N)
    game = FunctionUtility(8, lambda s: 0.9 if 0 in s else 0.1)

    # Execute
    truncated = GTGShapley(eps=0.001, round_threshold=-1).estimate(game, seed=1)
    full = GTGShapley(eps=0, round_threshold=-1).estimate(game, seed=1)

    # Assert
    assert truncated.evaluations < full.evaluations
    assert truncated.values_ppm == full.values_ppm == (800_000, 0, 0, 0, 0, 0, 0, 0)


def test_gtg_never_exceeds_its_evaluation_budget() -> None:
    # Prepare
    game = concave_game([0.1 * (i + 1) for i in range(10)])

    # Execute
    result = GTGShapley(eps=0, max_evaluations=100).estimate(game, seed=2)

    # Assert
    assert 90 <= result.evaluations <= 100
    assert result.permutations > 0


def test_gtg_refuses_a_budget_too_small_for_one_permutation() -> None:
    with pytest.raises(ValuationError, match="raise it"):
        GTGShapley(max_evaluations=5).estimate(concave_game(WEIGHTS), seed=0)


def test_leave_one_out_uses_n_plus_one_evaluations() -> None:
    # Execute
    result = LeaveOneOut().estimate(hand_game())

    # Assert: v(N) - v(N \ i) = 9 - 6, 9 - 5, 9 - 4
    assert result.values == (Fraction(3), Fraction(4), Fraction(5))
    assert result.evaluations == 4


def test_exact_refuses_more_players_than_its_limit() -> None:
    with pytest.raises(ValuationError, match="max_players"):
        ExactShapley(max_players=4).estimate(concave_game(WEIGHTS))


def test_a_nan_utility_is_a_clear_error() -> None:
    game = FunctionUtility(2, lambda s: float("nan") if len(s) == 2 else 0.0)
    with pytest.raises(ValuationError, match="NaN"):
        ExactShapley().estimate(game)


def test_exact_handles_utilities_too_large_for_int64_sums() -> None:
    # Prepare: utilities near 1e9 overflow the int64 fast path at n=6
    game = additive_game([1e9, 2e9, 0.0, 3e9, 1.0, 5e8])

    # Execute
    values = ExactShapley().estimate(game).values

    # Assert
    assert values == tuple(Fraction(int(w)) for w in [1e9, 2e9, 0.0, 3e9, 1.0, 5e8])


class CountingBatchGame:
    """A BatchUtility: records how many coalitions each batch call received."""

    def __init__(self, weights: list[float]) -> None:
        self.inner = concave_game(weights)
        self.batches: list[int] = []

    @property
    def n(self) -> int:
        return self.inner.n

    def __call__(self, coalition: frozenset[int]) -> float:
        return self.inner(coalition)

    def evaluate_many(self, coalitions: list[frozenset[int]]) -> list[float]:
        self.batches.append(len(coalitions))
        return [self.inner(c) for c in coalitions]


def test_exact_evaluates_a_batch_utility_in_batches_with_the_same_result() -> None:
    # Prepare
    batch_game = CountingBatchGame(WEIGHTS)

    # Execute
    batched = ExactShapley().estimate(batch_game)
    plain = ExactShapley().estimate(concave_game(WEIGHTS))

    # Assert
    assert batch_game.batches == [64]
    assert batched.values == plain.values
