"""Unlearning by separate processes: four trainers (``node run``) and three oracles (``oracle run``)
train a task, one trainer withdraws consent (``data withdraw``), and the three others each run
``data unlearn`` — a ``python -m node`` subprocess with its own home and Kubo daemon and its own
part of the data — while the oracles run ``oracle run`` again. The calibration rounds go through
the chain and IPFS only; every trainer process must print the digest of the recorded version,
which the committee attests.

The task is registered for retention only after training, when the oracles' first `oracle run`
has ended: their second run records the trained model as version 1 and attests it (the unlearned
version's parent) before re-validating. The test process only watches the chain and moves the
devnet clock past the dispute window.
"""

from __future__ import annotations

import pytest

from marketplace.chain.clients import Phase
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.versions_client import Reason, VersionsClient

from .conftest import Cluster, NodeProcess, wait_all

pytestmark = [pytest.mark.integration, pytest.mark.anvil, pytest.mark.kubo]

ROUNDS = 2
RUN_TIMEOUT = 600.0  # a bound on a stuck run; no assertion is about time


def _task(cluster: Cluster) -> int:
    oracle_args = [arg for o in cluster.oracles for arg in ("--oracle", o.address)]
    out = cluster.cli.run(
        cluster.requester, "task", "create", "--budget", "100", "--rounds", str(ROUNDS),
        *oracle_args, "--min-trainers", "4", "--max-trainers", "4", "--epochs", "2",
        "--min-stake", "10", "--bond", "1", "--join-window", "900", "--round-duration", "900",
        "--phase-duration", "900",
    )  # fmt: skip
    return int(out["taskId"])  # type: ignore[call-overload]


def _run_all(cluster: Cluster, procs: list[NodeProcess], task_id: int) -> None:
    market = cluster.market

    def watch() -> None:
        info = market.task(task_id)
        if info.phase_enum == Phase.FINALIZED and market.now() < info.claims_open_at:
            advance_chain_time(market.w3, info.claims_open_at - market.now() + 1)

    wait_all(procs, timeout=RUN_TIMEOUT, on_tick=watch)


def test_remaining_trainer_processes_unlearn_and_oracle_processes_attest(cluster: Cluster) -> None:
    # Prepare: a task trained by 4 `node run` and 3 `oracle run` processes, then registered.
    cli, market = cluster.cli, cluster.market
    task_id = _task(cluster)
    parts = {t.name: f"{k}/4" for k, t in enumerate(cluster.trainers)}
    procs = [
        cli.spawn(t, "node", "run", "--task", str(task_id), "--data", "digits", "--part",
                  parts[t.name], "--poll", "0.3", "--json", label=f"u{task_id}-{t.name}")
        for t in cluster.trainers
    ] + [
        cli.spawn(o, "oracle", "run", "--task", str(task_id), "--poll", "0.3", "--json",
                  label=f"u{task_id}-{o.name}")
        for o in cluster.oracles
    ]  # fmt: skip
    _run_all(cluster, procs, task_id)
    cli.run(cluster.requester, "data", "register", "--task", str(task_id), "--retention-days",
            "30", "--quorum", "2")  # fmt: skip
    versions = VersionsClient(market)
    assert versions.versions(task_id) == []
    leaver, remaining = cluster.trainers[3], cluster.trainers[:3]
    cli.run(leaver, "data", "withdraw", "--task", str(task_id))

    # Execute: each remaining trainer runs `data unlearn`; the committee runs `oracle run`.
    unlearners = [
        cli.spawn(t, "data", "unlearn", "--task", str(task_id), "--data", "digits", "--part",
                  parts[t.name], "--poll", "0.3", "--json", label=f"u{task_id}-{t.name}-unlearn")
        for t in remaining
    ]  # fmt: skip
    oracles = [
        cli.spawn(o, "oracle", "run", "--task", str(task_id), "--poll", "0.3", "--json",
                  label=f"u{task_id}-{o.name}-revalidate")
        for o in cluster.oracles
    ]  # fmt: skip
    _run_all(cluster, [*unlearners, *oracles], task_id)

    # Assert: the committee's root version (the final model), one unlearned version, validated,
    # and every trainer process derived its digest.
    # (A root another member recorded in the same moment stays unattested: one is validated.)
    (root,) = [v for v in versions.versions(task_id) if v.reason == Reason.TRAINED and v.validated]
    (version,) = [v for v in versions.versions(task_id) if v.reason == Reason.UNLEARNED]
    assert root.parent == 0
    assert root.digest == market.model_digest(task_id, ROUNDS + 1)
    assert version.reason == Reason.UNLEARNED and version.validated
    assert version.parent == root.number and version.excludes == 1
    outputs = [p.output_json() for p in unlearners]
    assert {o["derivedDigest"] for o in outputs} == {"0x" + version.digest.hex()}
    commits = versions.calibrations(task_id, 1)
    assert {c.trainer for c in commits} == {t.address for t in remaining}
    assert len(commits) == 3 * ROUNDS  # every remaining trainer in every calibration round
    assert versions.is_honoured(task_id, 1)
