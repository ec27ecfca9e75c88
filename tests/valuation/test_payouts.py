"""Payouts: exact integer split, largest remainder, floor, flagged and edge cases."""

from __future__ import annotations

import pytest

from marketplace.errors import ValuationError
from marketplace.valuation import Flag, PayoutConfig, compute_payouts

A = "0x" + "a" * 40
B = "0x" + "b" * 40
C = "0x" + "c" * 40
D = "0x" + "d" * 40


def amounts(table) -> list[int]:  # type: ignore[no-untyped-def]
    return [e.amount for e in table.entries]


def test_budget_is_split_in_proportion_and_sums_exactly() -> None:
    # Execute
    table = compute_payouts(1000, {A: 100, B: 200, C: 700})

    # Assert
    assert amounts(table) == [100, 200, 700]
    assert table.total == 1000 and table.refund == 0
    # relative to the best
    assert [e.score_ppm for e in table.entries] == [142_857, 285_714, 1_000_000]


def test_leftover_units_go_to_the_largest_remainders_then_lowest_address() -> None:
    # Prepare: 10 units over three equal scores: 3.33 each, one unit left over
    # Execute
    table = compute_payouts(10, {C: 1, A: 1, B: 1})

    # Assert: the tie on remainders goes to the lowest address
    assert [(e.account.lower(), e.amount) for e in table.entries] == [(A, 4), (B, 3), (C, 3)]


def test_entries_are_sorted_by_address_and_indexed_in_that_order() -> None:
    table = compute_payouts(5, {D: 1, B: 1, A: 1})
    assert [e.account.lower() for e in table.entries] == [A, B, D]
    assert [e.index for e in table.entries] == [0, 1, 2]


def test_all_zero_scores_pay_nothing_and_refund_the_budget() -> None:
    table = compute_payouts(1000, {A: 0, B: 0})
    assert amounts(table) == [0, 0]
    assert table.refund == 1000


def test_one_positive_trainer_takes_the_whole_budget() -> None:
    table = compute_payouts(12345, {A: 0, B: 5, C: -40})
    assert amounts(table) == [0, 12345, 0]
    assert [e.score_ppm for e in table.entries] == [0, 1_000_000, 0]


def test_negative_scores_earn_nothing_and_do_not_dilute_others() -> None:
    table = compute_payouts(900, {A: 100, B: -500, C: 200})
    assert amounts(table) == [300, 0, 600]


def test_flagged_trainer_gets_nothing_and_its_share_is_redistributed() -> None:
    # Execute
    table = compute_payouts(1000, {A: 100, B: 100, C: 200}, {B: Flag.COPIER})

    # Assert
    assert amounts(table) == [333, 0, 667]
    assert table.total == 1000
    assert table.entries[1].flags == int(Flag.COPIER)
    assert table.entries[1].score_ppm == 0


def test_flagged_share_is_withheld_with_the_refund_policy() -> None:
    # Execute
    table = compute_payouts(
        1000, {A: 100, B: 100, C: 200}, {B: Flag.FREE_RIDER}, config=PayoutConfig(flagged="refund")
    )

    # Assert
    assert amounts(table) == [250, 0, 500]
    assert table.refund == 250


def test_participation_floor_gives_every_eligible_trainer_a_minimum() -> None:
    # Prepare: 10% floor each, the rest (800) in proportion
    config = PayoutConfig(floor_ppm=100_000)

    # Execute
    table = compute_payouts(1000, {A: 1, B: 999, C: 0}, config=config)

    # Assert
    assert amounts(table) == [100 + 1, 100 + 799, 0]
    assert table.total == 1000


def test_floor_is_capped_so_it_never_exceeds_the_budget() -> None:
    table = compute_payouts(10, {A: 1, B: 1, C: 1}, config=PayoutConfig(floor_ppm=1_000_000))
    assert table.total == 10
    assert sorted(amounts(table)) == [3, 3, 4]


def test_payout_sums_hold_for_huge_budgets() -> None:
    budget = 10**30 + 7
    table = compute_payouts(budget, {A: 3, B: 7, C: 11})
    assert table.total == budget


def test_bad_address_is_a_clear_error() -> None:
    with pytest.raises(ValuationError, match="not an Ethereum address"):
        compute_payouts(10, {"alice": 1})


def test_flags_for_unknown_trainers_are_refused() -> None:
    with pytest.raises(ValuationError, match="without a score"):
        compute_payouts(10, {A: 1}, {B: Flag.POISONER})


def test_bad_floor_is_refused() -> None:
    with pytest.raises(ValuationError, match="floor_ppm"):
        PayoutConfig(floor_ppm=2_000_000)
