"""Gas: the scripted scenario of scripts/gas_snapshot.py, re-measured and compared with the
committed contracts/gas-snapshot.json (fails when a figure grows more than 2%), plus the targets."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _gas_module():
    spec = importlib.util.spec_from_file_location(
        "gas_snapshot", REPO / "scripts" / "gas_snapshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["gas_snapshot"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gas_does_not_grow_and_meets_the_targets(chain):
    # Prepare
    gas = _gas_module()
    committed = json.loads((REPO / "contracts" / "gas-snapshot.json").read_text())
    # Execute
    measured = gas.measure(chain.w3, artifacts=chain.artifacts)
    # Assert
    assert set(measured) == set(committed), "scenario keys changed: rerun scripts/gas_snapshot.py"
    assert gas.compare(measured, committed) == []
    # Consent (issue 10): every seat, the last one (it opens the task) included.
    assert measured["TaskMarket.acceptSeat"] <= 50_000
    assert measured["TaskMarket.acceptSeat[last]"] <= 50_000
    # ... and by signatures the requester submits in one transaction: per oracle (the
    # transaction's gas over its seats) in any batch of 2 or more, the opening seat included.
    for n, variant in ((2, "2"), (2, "2,last"), (3, "3,last")):
        total = measured[f"TaskMarket.acceptSeatsFor[{variant}]"]
        assert measured[f"TaskMarket.acceptSeatsFor[{variant}]/oracle"] == total // n
        assert total // n <= 50_000
    # A batch amortises the base cost: a second seat costs less than a transaction of its own.
    one = measured["TaskMarket.acceptSeatsFor[1]"]
    assert measured["TaskMarket.acceptSeatsFor[2]"] - one < measured["TaskMarket.acceptSeat"]
    assert measured["TaskMarket.claim"] <= 90_000
    assert measured["TaskMarket.commitUpdate"] <= 100_000
    # A batched round costs the same for 8 trainers as for 100 (one bitmap word; only its
    # calldata bytes differ, 12 gas each beyond a zero byte) and fits 8 x 15,000.
    batched = measured["TaskMarket.commitRound"]
    assert batched <= 120_000
    assert abs(measured["TaskMarket.commitRound.100trainers"] - batched) <= 12 * 32
    assert measured["ParticipantRegistry.register"] <= 150_000
    for key in (
        "TaskMarket.commitScore",
        "TaskMarket.revealScore",
        "TaskMarket.revealScore[sameRoot]",
    ):
        assert measured[key] <= 80_000  # equal with 100 trainers up to hash calldata: compare()


def test_compare_flags_growth_and_missed_targets():
    gas = _gas_module()
    base = {
        k: 50_000
        for k in (
            "TaskMarket.commitScore",
            "TaskMarket.revealScore",
            "TaskMarket.revealScore[sameRoot]",
        )
    }
    base |= {k + ".100trainers": v for k, v in base.items()}
    grown = dict(
        base, **{"TaskMarket.commitScore": 51_001, "TaskMarket.commitScore.100trainers": 51_001}
    )
    assert gas.compare(base, base) == []
    problems = gas.compare(grown, base)
    assert len(problems) == 2 and all("TaskMarket.commitScore" in p for p in problems)
    assert gas.compare(dict(base, **{"TaskMarket.claim": 90_001}), base) == [
        "TaskMarket.claim: 90001 gas, target 90000"
    ]


def test_oracle_steps_may_differ_by_hash_calldata_only():
    gas = _gas_module()
    keys = ("TaskMarket.commitScore", "TaskMarket.revealScore", "TaskMarket.revealScore[sameRoot]")
    base = {k: 50_000 for k in keys} | {k + ".100trainers": 50_000 for k in keys}
    # Three more zero bytes in the 100-trainer task's commitment: 36 gas less, calldata only.
    zeros = dict(base, **{"TaskMarket.commitScore.100trainers": 50_000 - 3 * 12})
    assert gas.compare(zeros, base) == []
    # A difference no calldata byte explains is execution that grows with the trainers.
    grows = dict(base, **{"TaskMarket.commitScore.100trainers": 50_100})
    assert gas.compare(grows, base) == [
        "TaskMarket.commitScore differs with 100 trainers: 50000 vs 50100"
    ]
