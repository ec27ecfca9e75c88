"""`fedmarket node average`, the unpaid asynchronous gossip-averaging mode, as separate processes.

Four trainers of a task (joined, training started, on three Kubo daemons) each run
``node average --k 2`` with no barrier between them. Every process must mix with neighbours in
every round, pull their snapshots across daemons, refuse nothing, and end with the models it holds
close together (the convergence itself, against k = 0, is tested in tests/fl and tests/node).
"""

from __future__ import annotations

import pytest

from marketplace.chain.clients import Phase

from .conftest import Cluster, wait_all

pytestmark = [pytest.mark.integration, pytest.mark.anvil, pytest.mark.kubo]

ROUNDS = 4


def test_four_trainer_processes_average_by_gossip_and_report_consensus(cluster: Cluster) -> None:
    oracle_args = [arg for o in cluster.oracles for arg in ("--oracle", o.address)]
    created = cluster.cli.run(
        cluster.requester, "task", "create", "--budget", "10", "--rounds", str(ROUNDS),
        *oracle_args, "--min-trainers", "4", "--max-trainers", "4", "--min-stake", "10",
        "--bond", "1", "--join-window", "900", "--round-duration", "900",
        "--phase-duration", "900",
    )  # fmt: skip
    task_id = int(created["taskId"])  # type: ignore[call-overload]
    # Consent: each proposed oracle takes its seat, which opens the task for joining.
    accept = ("oracle", "accept", "--task", str(task_id))
    cluster.cli.run_all([(o, accept) for o in cluster.oracles])
    cluster.cli.run_all([(t, ("task", "join", str(task_id))) for t in cluster.trainers])
    cluster.cli.run(cluster.trainers[0], "task", "advance", str(task_id))
    assert cluster.market.task(task_id).phase_enum == Phase.TRAINING

    procs = [
        cluster.cli.spawn(
            t,
            "node",
            "average",
            "--task",
            str(task_id),
            "--data",
            "digits",
            "--part",
            f"{k}/4",
            "--k",
            "2",
            "--rounds",
            str(ROUNDS),
            "--wait",
            "120",
            "--seed",
            str(k),
            "--json",
            label=f"avg-{t.name}",
        )
        for k, t in enumerate(cluster.trainers)
    ]
    wait_all(procs, timeout=600)

    for p in procs:
        out = p.output_json()
        rounds = out["rounds"]
        assert isinstance(rounds, list) and len(rounds) == ROUNDS, out
        assert all(r["mixed"] >= 1 and not r["refused"] for r in rounds), rounds
        assert rounds[-1]["models_held"] == 4  # its own and the three others' latest
        assert rounds[-1]["local_consensus_relative"] < 0.5, rounds
        stats = out["stats"]
        assert isinstance(stats, dict)
        assert stats["fetched"] >= 1 and stats["published"] >= ROUNDS + 1, stats
        assert not stats["dropped"] and not stats["refused"], stats
