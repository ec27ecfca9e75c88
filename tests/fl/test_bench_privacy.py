"""Smoke test: scripts/bench_privacy.py --quick prints one JSON object with the issue's keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "nonprivate_acc",
    "dpsgd_eps8_acc",
    "dpsgd_acc_by_epsilon",
    "trainer_dp_eps8_acc",
    "secagg_bytes_ratio",
    "secagg_extra_cpu_s",
    "secagg_exact_with_3_of_10_dropped",
    "attack_worst_gap_20pct",
    "flag_recall_min",
    "false_flag_max",
    "attack_table",
}


@pytest.mark.slow
def test_quick_bench_prints_one_json_object_with_every_headline_key() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_privacy.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=900,
    )

    report = json.loads(out.stdout)  # exactly one object: json.loads refuses trailing data

    assert set(report) >= KEYS
    assert report["secagg_exact_with_3_of_10_dropped"] is True
    assert report["secagg_bytes_ratio"] > 1  # masks and shares cost something
    assert 0 <= report["flag_recall_min"] <= 1 and 0 <= report["false_flag_max"] <= 1
    row = report["attack_table"]["iid"]["20pct"]["attacks"]["backdoor"]
    assert set(row["acc"]) == {
        "fedavg",
        "median",
        "trimmed_mean",
        "multikrum",
        "centered_clipping",
        "bucketing",
    }
    assert "backdoor_success" in row
