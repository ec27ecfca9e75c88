#!/usr/bin/env python
"""Wall time, CPU time and peak memory of ``fedmarket demo`` (the README's first command).

Runs the demo as a subprocess with no options (in-process chain and embedded store), or with the
options given after ``--`` (e.g. ``-- --devnet``), and prints ONE JSON object:

* ``wall_seconds``: command start to exit (imports, the run, the table and the plots);
* ``demo_seconds``: the run as the demo reports it (deploy included, imports not);
* ``startup_seconds``: what is not the story: ``wall_seconds - demo_seconds`` (interpreter,
  imports, plots, JSON) plus the deploy (``deploy_seconds``, also given alone);
* ``acts_seconds``: wall seconds of each act (sourcing, training, sale, withdrawal, ...);
* ``cpu_seconds``: user + system CPU time of the demo process (``getrusage`` of the child), the
  load-independent figure on a shared machine, and ``demo_cpu_seconds``, the same for the run
  alone (as the demo reports it, imports excluded); ``load_average`` (1 min) at start and end;
* ``peak_rss_mb``, the accuracy and whether the demo's promises hold (the noisy, shifted and
  overpriced offers not picked; honest trainers paid more than the free rider; poisoner and free
  rider slashed; royalties sum to the trainer share; the withdrawal's version differs).

Goal (issue 18): ``demo_seconds`` ≤ 30 on the 2-core machine.

Usage: ``.venv/bin/python scripts/bench_demo.py [-- demo options]``
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL_SECONDS = 30


def promises(result: dict[str, Any]) -> dict[str, Any]:
    """The outcomes the demo promises, checked on its JSON."""
    by: dict[str, list[dict[str, Any]]] = {}
    for t in result["trainers"]:
        by.setdefault(t["behaviour"], []).append(t)
    kinds = {c["kind"]: c for c in result["sourcing"]["candidates"]}
    sale, versions = result["sale"], result["withdrawal"]["versions"]
    honest_min = min(int(t["payout"]) for t in by["honest"])
    royalties = sum(int(t["royalty"]) for t in result["trainers"])
    return {
        "losers_not_picked": not any(kinds[k]["won"] for k in ("noisy", "shifted", "overpriced")),
        "honest_min_payout": honest_min,
        "free_rider_payout": int(by["free_rider"][0]["payout"]),
        "ordering_holds": honest_min > int(by["free_rider"][0]["payout"]) == 0,
        "slashed": {b: int(by[b][0]["slashed"]) > 0 for b in ("poisoner", "free_rider")},
        "royalties_to_trainer_share": 0
        <= int(sale["trainer_share"]) - royalties
        <= len(result["trainers"]),
        "new_version_differs": versions[1]["digest"] != versions[0]["digest"],
    }


def main() -> None:
    extra = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    load_start = os.getloadavg()[0]
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
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    acts = result.get("timings", {})
    demo_seconds = float(result["seconds"])
    deploy = float(acts.get("deploy", 0.0))
    report = {
        "wall_seconds": round(wall, 2),
        "demo_seconds": demo_seconds,
        "startup_seconds": round(wall - demo_seconds + deploy, 2),
        "deploy_seconds": deploy,
        "acts_seconds": acts,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "demo_cpu_seconds": acts.get("cpu"),
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "cores": os.cpu_count(),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "accuracy": result["accuracy"],
        "options": extra,
        **promises(result),
        "goal_demo_seconds": GOAL_SECONDS,
        "goal_met": demo_seconds <= GOAL_SECONDS,
    }
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
