"""`fedmarket demo`, as a newcomer runs it: in-process by default, and on real Anvil + Kubo with
--devnet. The outcome the marketplace promises is asserted, not just that it ran."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from marketplace.valuation.flags import Flag

HONEST, FREE_RIDER, POISONER, NOISY = "honest", "free_rider", "poisoner", "noisy"


def run_demo_cli(tmp_path, *extra: str) -> dict:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "node", "--home", str(tmp_path / "home"), "demo", "--json",
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert json.loads((out / "result.json").read_text()) == result
    return result


def check_outcome(result: dict) -> None:
    by = {}
    for t in result["trainers"]:
        by.setdefault(t["behaviour"], []).append(t)
    assert len(result["trainers"]) == 8
    assert {b: len(v) for b, v in by.items()} == {HONEST: 5, FREE_RIDER: 1, POISONER: 1, NOISY: 1}
    worst_honest = min(t["payout"] for t in by[HONEST])
    assert worst_honest > by[FREE_RIDER][0]["payout"]
    assert worst_honest > by[NOISY][0]["payout"]
    assert by[POISONER][0]["payout"] == 0
    assert by[POISONER][0]["slashed"] > 0 and by[POISONER][0]["flags"] & Flag.POISONER
    assert by[FREE_RIDER][0]["slashed"] > 0
    assert all(t["slashed"] == 0 for t in by[HONEST])
    assert sum(t["payout"] for t in result["trainers"]) == 1000 * 10**18  # the whole budget
    assert all(o["slashed"] == 0 for o in result["oracles"])  # the committee agreed
    assert result["accuracy"] > 0.8
    assert result["rounds"][-1]["round"] == 8
    # Reputation (an EMA starting at 500,000 ppm) rises for the best contributor, falls for
    # cheaters.
    assert (
        max(t["reputation_ppm"] for t in by[HONEST]) > 500_000 > by[POISONER][0]["reputation_ppm"]
    )


def test_demo_in_process_pays_honest_trainers_and_slashes_cheaters(tmp_path):
    result = run_demo_cli(tmp_path)
    check_outcome(result)
    assert result["chain"].startswith("in-process")
    assert result["storage"].startswith("embedded")
    for path in result["plots"].values():
        with Image.open(path) as img:  # a real PNG, not an empty file
            assert img.format == "PNG" and img.size[0] > 300


@pytest.mark.kubo
def test_demo_on_devnet_uses_real_anvil_and_kubo(tmp_path):
    result = run_demo_cli(tmp_path, "--devnet")
    check_outcome(result)
    assert result["chain"].startswith("http://127.0.0.1:")
    assert result["storage"].startswith("kubo(/ip4/127.0.0.1/")


def test_demo_is_deterministic_in_its_payouts(tmp_path):
    """Same seed, same data: the oracles' payout root does not depend on the run."""
    from node.demo.scenario import DemoConfig, run_demo

    first = run_demo(config=DemoConfig(rounds=2)).to_json()
    second = run_demo(config=DemoConfig(rounds=2)).to_json()
    assert first["report_root"] == second["report_root"]
    assert [t["payout"] for t in first["trainers"]] == [t["payout"] for t in second["trainers"]]
