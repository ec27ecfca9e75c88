"""Each flag detected on crafted updates, and nothing flagged on honest ones."""

from __future__ import annotations

import json

import numpy as np

from marketplace.valuation import (
    Flag,
    UpdateView,
    copier_findings,
    free_rider_findings,
    invalid_findings,
    merge_findings,
    poisoner_findings,
)


def honest_updates(n: int = 5, dim: int = 200, seed: int = 0) -> list[UpdateView]:
    rng = np.random.default_rng(seed)
    return [UpdateView(f"t{i}", rng.normal(size=dim), commit_order=i) for i in range(n)]


def test_honest_updates_raise_no_flags() -> None:
    # Prepare
    updates = honest_updates()

    # Execute
    findings = free_rider_findings(updates, round=1) + copier_findings(updates, round=1)

    # Assert
    assert findings == []


def test_zero_update_is_a_free_rider_by_norm() -> None:
    # Prepare
    updates = [*honest_updates(), UpdateView("lazy", np.zeros(200), commit_order=9)]

    # Execute
    findings = free_rider_findings(updates, round=3)

    # Assert
    assert [(f.account, f.flag) for f in findings] == [("lazy", Flag.FREE_RIDER)]
    assert findings[0].evidence["rule"] == "norm"
    assert findings[0].evidence["round"] == 3


def test_tiny_noise_update_is_a_free_rider() -> None:
    noise = np.random.default_rng(1).normal(scale=1e-6, size=200)
    updates = [*honest_updates(), UpdateView("lazy", noise, commit_order=9)]
    assert [f.account for f in free_rider_findings(updates, round=1)] == ["lazy"]


def test_replaying_the_last_global_change_is_free_riding() -> None:
    # Prepare
    global_delta = np.random.default_rng(7).normal(size=200)
    updates = [*honest_updates(), UpdateView("replay", 0.5 * global_delta, commit_order=9)]

    # Execute
    findings = free_rider_findings(updates, round=2, global_delta=global_delta)

    # Assert
    assert [(f.account, f.evidence["rule"]) for f in findings] == [
        ("replay", "replays_global_delta")
    ]


def test_later_exact_copy_is_flagged_and_the_original_keeps_credit() -> None:
    # Prepare
    updates = honest_updates()
    copy = UpdateView("copycat", updates[2].delta.copy(), commit_order=10)

    # Execute
    findings = copier_findings([*updates, copy], round=1)

    # Assert
    assert [(f.account, f.flag) for f in findings] == [("copycat", Flag.COPIER)]
    assert findings[0].evidence["copied"] == "t2"


def test_near_copy_with_tiny_noise_is_flagged() -> None:
    updates = honest_updates()
    noisy = updates[0].delta + np.random.default_rng(3).normal(scale=1e-4, size=200)
    findings = copier_findings([*updates, UpdateView("sneaky", noisy, commit_order=6)], round=1)
    assert [f.account for f in findings] == ["sneaky"]


def test_commit_order_decides_who_is_the_copier() -> None:
    # Prepare: "a-first" committed after "z-second" although it sorts first by name
    delta = np.arange(1.0, 51.0)
    updates = [
        UpdateView("a-first", delta.copy(), commit_order=5),
        UpdateView("z-second", delta.copy(), commit_order=2),
    ]

    # Execute
    findings = copier_findings(updates, round=1)

    # Assert
    assert [f.account for f in findings] == ["a-first"]


def test_large_negative_total_is_a_poisoner_by_mad() -> None:
    # Prepare
    totals = {"a": 100_000, "b": 90_000, "c": 110_000, "d": 95_000, "evil": -60_000}

    # Execute
    findings = poisoner_findings(totals)

    # Assert
    assert [(f.account, f.evidence["rule"]) for f in findings] == [("evil", "mad")]


def test_small_negative_total_within_the_spread_is_not_a_poisoner() -> None:
    totals = {"a": 100_000, "b": 20_000, "c": 60_000, "d": 5_000, "meh": -3_000}
    assert poisoner_findings(totals) == []


def test_absolute_threshold_flags_a_poisoner_even_with_zero_spread() -> None:
    totals = {"a": 0, "b": 0, "c": 0, "evil": -15_000}
    findings = poisoner_findings(totals)
    assert [(f.account, f.evidence["rule"]) for f in findings] == [("evil", "absolute")]


def test_invalid_updates_are_flagged_with_the_callers_reason() -> None:
    findings = invalid_findings({"x": "digest mismatch"}, round=4)
    assert findings[0].flag == Flag.INVALID
    assert findings[0].evidence == {"flag": "invalid", "round": 4, "reason": "digest mismatch"}


def test_merged_flags_or_the_bits_and_evidence_is_canonical_json() -> None:
    # Prepare
    lazy = UpdateView("lazy", np.zeros(200), commit_order=9)
    r1 = free_rider_findings([*honest_updates(), lazy], round=1)
    r2 = free_rider_findings([*honest_updates(seed=1), lazy], round=2)
    findings = [*r2, *invalid_findings({"lazy": "NaN in update"}, round=3), *r1]

    # Execute
    records = merge_findings(findings)

    # Assert
    record = records["lazy"]
    assert record.flags == Flag.FREE_RIDER | Flag.INVALID
    assert [e["round"] for e in record.evidence] == [1, 2, 3]
    assert all(not isinstance(v, float) for e in record.evidence for v in e.values())
    json.dumps([dict(e) for e in record.evidence], allow_nan=False)  # JSON-able


def test_flag_bits_match_the_contract() -> None:
    assert (Flag.INVALID, Flag.POISONER, Flag.FREE_RIDER, Flag.COPIER) == (1, 2, 4, 8)
