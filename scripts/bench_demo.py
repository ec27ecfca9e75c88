#!/usr/bin/env python
"""Wall time and peak memory of ``fedmarket demo`` (the README's first command, after setup).

Runs the demo as a subprocess with no options (in-process chain and embedded store), or with the
options given after ``--`` (e.g. ``-- --devnet``), and prints ONE JSON object: ``wall_seconds``
(command start to exit: imports, the run, the table and the plots), ``demo_seconds`` (the run as
the demo reports it), ``peak_rss_mb`` of the demo process, the accuracy, and whether the
ordering the demo promises holds (honest > noisy > free rider = 0, poisoner and free rider
slashed). Goal (issue 7): ≤ 180 s on the 2-core machine.

Usage: ``.venv/bin/python scripts/bench_demo.py [-- demo options]``
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    extra = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plots"
        argv = [sys.executable, "-m", "node", "--home", str(Path(tmp) / "home"), "demo", "--json",
                "--out", str(out), *extra]  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"demo failed: {proc.stderr.strip()[-2000:]}")
        result = json.loads(proc.stdout)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    by = {t["behaviour"]: [] for t in result["trainers"]}
    for t in result["trainers"]:
        by[t["behaviour"]].append(t)
    honest_min = min(int(t["payout"]) for t in by["honest"])
    noisy, free_rider = int(by["noisy"][0]["payout"]), int(by["free_rider"][0]["payout"])
    report = {
        "wall_seconds": round(wall, 2),
        "demo_seconds": result.get("seconds"),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "accuracy": result["accuracy"],
        "options": extra,
        "honest_min_payout": honest_min,
        "noisy_payout": noisy,
        "free_rider_payout": free_rider,
        "ordering_holds": honest_min > noisy > free_rider == 0,
        "slashed": {b: int(by[b][0]["slashed"]) > 0 for b in ("poisoner", "free_rider")},
        "goal_wall_seconds": 180,
    }
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
