"""The demo's table says why each trainer got what it got; the plots number their points."""

from __future__ import annotations

from rich.console import Console

from node.demo.summary import (
    results_table,
    sale_line,
    sourcing_table,
    versions_table,
    why,
    write_plots,
)

TOKEN = 10**18


def _row(behaviour, payout, flags=(), slashed=0, score=0):
    return {
        "address": "0x" + "ab" * 20, "samples": 100, "label_skew": 0.5, "behaviour": behaviour,
        "score_ppm": score, "payout": payout, "flags": 0, "flag_names": list(flags),
        "slashed": slashed, "reputation_ppm": 450_000, "reputation_before_ppm": 500_000,
        "budget": 1000 * TOKEN, "loo_utility": 0.01, "stake_before": 100 * TOKEN,
        "stake_after": 100 * TOKEN - slashed,
    }  # fmt: skip


def test_why_names_the_flag_the_loss_and_the_share():
    rider = why(_row("free_rider", 0, ["free_rider"], slashed=50 * TOKEN, score=78_650))
    assert "flagged free rider" in rider and "paid nothing" in rider
    assert "slashed 50.00" in rider and "reputation 0.500 → 0.450" in rider
    withheld = why({**_row("poisoner", 0, ["poisoner"]), "data_payment_withheld": 30 * TOKEN})
    assert "data payment 30.00 withheld (returns to the requester)" in withheld
    honest = why(_row("honest", 150 * TOKEN, score=150_000))
    assert "15.0% of the 1,000.00 budget" in honest
    low = why(_row("noisy", 0))
    assert "below the floor" in low and "not flagged" in low


def test_the_table_has_a_why_column_and_row_numbers_the_plots_use(tmp_path):
    result = {
        "task_id": 1, "accuracy": 0.9, "centralized_accuracy": 0.95,
        "trainers": [_row("honest", 10 * TOKEN, score=1), _row("poisoner", 0, ["poisoner"])],
        "rounds": [{"round": 1, "test_accuracy": 0.5}, {"round": 2, "test_accuracy": 0.9}],
    }  # fmt: skip
    console = Console(record=True, width=250)
    console.print(results_table(result))
    text = console.export_text()
    assert "why" in text and "flagged poisoner" in text
    paths = write_plots(result, tmp_path)
    assert all((tmp_path / p).exists() for p in paths.values())


def _candidate(kind, won, reason, distance=500_000):
    return {
        "address": "0x" + "cd" * 20, "kind": kind, "samples": 120, "label_skew": 0.2,
        "ask": 30 * TOKEN, "won": won, "payment": 35 * TOKEN if won else 0, "rejected": None,
        "value_ppm": 90_000, "distance_ppm": distance, "standalone_ppm": 700_000,
        "reason": reason,
    }  # fmt: skip


def test_the_sourcing_table_says_why_each_offer_was_or_was_not_picked():
    from node.demo.sourcing_act import selection_reason

    winner = _candidate("honest", True, "")
    noisy = _candidate("noisy", False, "", distance=1_000_000)
    winner["reason"] = selection_reason(winner, [winner], 270 * TOKEN)
    noisy["reason"] = selection_reason(noisy, [winner], 270 * TOKEN)
    assert winner["reason"].startswith("picked") and "threshold 35.00" in winner["reason"]
    assert "far from the requester's data" in noisy["reason"]
    assert "budget share B·v/V = 135.00" in noisy["reason"]  # 270 · 90k / (90k + 90k)
    sourcing = {"request_id": 1, "budget": 270 * TOKEN, "branch": "proportional_share",
                "winners": [winner["address"]], "candidates": [winner, noisy],
                "gate": "refused"}  # fmt: skip
    console = Console(record=True, width=300)
    console.print(sourcing_table(sourcing))
    text = console.export_text()
    assert "1 of 2 offers picked" in text and "not picked" in text and "noisy" in text


def test_the_sale_line_and_the_versions_table_show_royalties_and_the_new_version():
    sale = {"score_ppm": 800_000, "auditors": ["a", "b"], "listing_id": 1, "sales": 2,
            "price": 50 * TOKEN, "downloads_verified": 2, "gross": 100 * TOKEN,
            "requester_share": 10 * TOKEN, "auditor_share": 5 * TOKEN,
            "trainer_share": 85 * TOKEN}  # fmt: skip
    line = sale_line(sale)
    assert "2 auditors attested" in line and "2 downloads digest-checked" in line
    assert "trainers 85.00" in line
    withdrawal = {"trainer": "0x" + "ef" * 20, "method": "federaser", "first_round": 1,
                  "versions": [
                      {"number": 1, "reason": "trained", "parent": 0, "digest": "0x" + "11" * 32,
                       "validated": True, "test_accuracy": 0.9, "sellable_after_deadline": False},
                      {"number": 2, "reason": "unlearned", "parent": 1, "digest": "0x" + "22" * 32,
                       "validated": True, "test_accuracy": 0.88, "sellable_after_deadline": True},
                  ]}  # fmt: skip
    console = Console(record=True, width=250)
    console.print(versions_table(withdrawal))
    text = console.export_text()
    assert "unlearned" in text and "0x2222" in text and "federaser" in text
    row = _row("honest", 150 * TOKEN, score=150_000)
    row["withdrew"] = True
    assert "withdrew consent after the sale" in why(row)
