"""The demo's table says why each trainer got what it got; the plots number their points."""

from __future__ import annotations

from rich.console import Console

from node.demo.summary import results_table, why, write_plots

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
