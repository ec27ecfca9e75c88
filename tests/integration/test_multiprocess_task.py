"""A whole task run by separate processes: a requester, four trainers (one poisoner) and three
oracles, each a ``python -m node`` subprocess on its own Kubo daemon, over a real Anvil.

The first run must finalize with every honest peer deriving the same models, the poisoner flagged
and slashed, and the honest trainers paid the whole budget. The second run is the same task again
with one honest trainer SIGKILLed in the middle of round 2 and restarted on the same home: it must
resume from its journal, commit each round exactly once, and the payouts must equal the first
run's (same data, seeds and model: the same amounts, trainer by trainer).

The test process only watches the chain and, once a task is finalized, moves the devnet clock past
the dispute window (a real network would wait it out).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from marketplace.chain.batch_client import BatchCommits
from marketplace.chain.clients import Phase
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.subscription import ChainSubscription, Wakeup, ws_endpoint
from marketplace.chain.task_logs import TaskLogs
from marketplace.protocol.round_batch import bitmap_members

from .conftest import TOKEN, Cluster, NodeProcess, Peer, wait_all

pytestmark = [pytest.mark.integration, pytest.mark.anvil, pytest.mark.kubo]

ROUNDS = 3
BUDGET = 1000
POISONER = 3  # trainers[3] is dev 5: sends sign-flipped updates
VICTIM = 0  # trainers[0] is dev 2: honest, SIGKILLed in round 2 of the second run
RUN_TIMEOUT = 600.0  # generous bound on one task's processes; no assertion is about time
MIN_STAKE = 10


@dataclass
class TaskRun:
    """What one task run left on the chain and what the peers printed."""

    task_id: int
    balances_before: dict[str, int]
    stakes_before: dict[str, int]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    killed: dict[str, Any] = field(default_factory=dict)


def create_task(cluster: Cluster, *extra: str) -> int:
    oracle_args = [arg for o in cluster.oracles for arg in ("--oracle", o.address)]
    out = cluster.cli.run(
        cluster.requester, "task", "create", "--budget", str(BUDGET), "--rounds", str(ROUNDS),
        *oracle_args, "--min-trainers", "4", "--max-trainers", "4", "--epochs", "1",
        "--min-stake", str(MIN_STAKE), "--bond", "1",
        # Long windows: rounds and phases close early once everyone has acted, so these only
        # bound a stuck run; the dispute window is skipped by moving the devnet clock.
        "--join-window", "900", "--round-duration", "900", "--phase-duration", "900", *extra,
    )  # fmt: skip
    return int(out["taskId"])  # type: ignore[call-overload]


def trainer_args(task_id: int, k: int, *extra: str) -> tuple[str, ...]:
    behaviour = ("--behaviour", "sign_flip") if k == POISONER else ()
    return ("node", "run", "--task", str(task_id), "--data", "digits", "--part", f"{k}/4",
            "--poll", "0.3", "--timeout", str(RUN_TIMEOUT), *behaviour, *extra,
            "--json")  # fmt: skip


def oracle_args(task_id: int) -> tuple[str, ...]:
    return ("oracle", "run", "--task", str(task_id), "--poll", "0.3", "--timeout", str(RUN_TIMEOUT),
            "--json")  # fmt: skip


def run_task(
    cluster: Cluster,
    *,
    kill_victim: bool,
    task_extra: tuple[str, ...] = (),
    trainer_extra: Callable[[int], tuple[str, ...]] = lambda k: (),
) -> TaskRun:
    """Create a task (``task_extra``: more ``task create`` options), run all seven peers as
    subprocesses (``trainer_extra(k)``: more ``node run`` options of trainer ``k``) until they
    exit, return the record."""
    market, cli = cluster.market, cluster.cli
    task_id = create_task(cluster, *task_extra)
    everyone = (*cluster.trainers, *cluster.oracles)
    run = TaskRun(
        task_id=task_id,
        balances_before={p.address: market.balance_of(p.address) for p in cluster.trainers},
        stakes_before={p.address: market.participant(p.address).stake for p in everyone},
    )
    procs: dict[str, NodeProcess] = {}
    for k, t in enumerate(cluster.trainers):
        procs[t.name] = cli.spawn(
            t, *trainer_args(task_id, k, *trainer_extra(k)), label=f"t{task_id}-{t.name}"
        )
    for o in cluster.oracles:
        procs[o.name] = cli.spawn(o, *oracle_args(task_id), label=f"t{task_id}-{o.name}")
    victim = cluster.trainers[VICTIM]
    # The kill lands as round 2 starts: the websocket thread freezes the victim (SIGSTOP) the
    # moment the chain pushes the round's PhaseAdvanced log, and the next tick SIGKILLs it (a
    # round lasts a fraction of a second, less than a chain poll: polling let it commit first).
    round_two = threading.Event()
    logs = TaskLogs(market, task_id)

    def on_log(raw: Any) -> bool:
        event = logs.decode(raw)
        if (
            event is not None
            and event["event"] == "PhaseAdvanced"
            and Phase(int(event["args"]["to"])) == Phase.TRAINING
            and int(event["args"]["round"]) == 2
            and not round_two.is_set()
        ):
            procs[victim.name].popen.send_signal(signal.SIGSTOP)  # its exit code stays unset
            round_two.set()
        return False

    subscription = None
    if kill_victim:
        ws = ws_endpoint(cluster.cli.rpc_url)
        assert ws is not None, "Anvil serves websockets on its RPC port"
        subscription = ChainSubscription(ws, wakeup=Wakeup(), logs=logs.filter, on_log=on_log)
        assert subscription.start().connected.wait(10), f"no websocket subscription to {ws}"

    def watch() -> None:
        info = market.task(task_id)
        if kill_victim and not run.killed and round_two.is_set():
            procs[victim.name].kill()  # SIGKILL ends a stopped process too
            assert _victim_due(cluster, task_id, market.task(task_id), victim)
            committed_r2 = (victim.address.lower(), 2) in round_commits(cluster, task_id)
            run.killed = {"round": 2, "committed_round_2": committed_r2,
                          "returncode": procs[victim.name].returncode}  # fmt: skip
            # The same command line on the same home: the journal there is what it resumes from.
            procs[victim.name] = cli.spawn(victim, *trainer_args(task_id, VICTIM,
                                                                 *trainer_extra(VICTIM)),
                                           label=f"t{task_id}-{victim.name}-restarted")  # fmt: skip
        if info.phase_enum == Phase.FINALIZED:
            now = int(market.w3.eth.get_block("latest")["timestamp"])
            if now < info.claims_open_at:
                advance_chain_time(market.w3, info.claims_open_at - now + 1)

    try:
        wait_all(lambda: list(procs.values()), timeout=RUN_TIMEOUT, on_tick=watch)
    finally:
        if subscription is not None:
            subscription.stop()
    run.outputs = {name: p.output_json() for name, p in procs.items()}
    return run


def _victim_due(cluster: Cluster, task_id: int, info: Any, victim: Peer) -> bool:
    """Round 2 is under way and the victim's round-1 update is on-chain (directly or batched)."""
    return (
        info.phase_enum == Phase.TRAINING
        and info.current_round == 2
        and (victim.address.lower(), 1) in round_commits(cluster, task_id)
    )


def event_args(cluster: Cluster, event: str, task_id: int) -> list[dict[str, Any]]:
    m = cluster.market
    logs = m.events(m.market, event, from_block=m.deployment.block, filters={"taskId": task_id})
    return [dict(ev["args"]) for ev in logs]


def peer_warnings(cluster: Cluster, task_id: int) -> str:
    """The warnings the task's peers logged (the explanation of a failed check)."""
    lines = []
    for path in sorted((cluster.tmp / "logs").glob(f"t{task_id}-*.err")):
        text = path.read_text(errors="replace").splitlines()
        lines += [f"{path.stem}: {line}" for line in text if "WARNING" in line or "ERROR" in line]
    return "\n".join(lines[-60:]) or "no peer logged a warning"


def round_commits(cluster: Cluster, task_id: int) -> list[tuple[str, int]]:
    """(trainer lower-case, round) of every commit: direct ones, then batched ones."""
    direct = event_args(cluster, "UpdateCommitted", task_id)
    out = [(a["trainer"].lower(), int(a["round"])) for a in direct]
    batches = BatchCommits(cluster.market)
    order = batches.join_order(task_id)
    for b in batches.batches(task_id).values():
        out += [(t.lower(), b.round) for t in bitmap_members(b.included, order)]
    return out


def payouts(cluster: Cluster, task_id: int) -> dict[str, dict[str, Any]]:
    out = cluster.cli.run(cluster.requester, "rewards", "show", "--task", str(task_id))
    rows = out["payouts"]
    assert isinstance(rows, list)
    return {r["account"].lower(): r for r in rows}


@pytest.fixture(scope="module")
def first_run(cluster: Cluster) -> TaskRun:
    return run_task(cluster, kill_victim=False)


@pytest.fixture(scope="module")
def second_run(cluster: Cluster, first_run: TaskRun) -> TaskRun:
    return run_task(cluster, kill_victim=True)


def assert_settled_correctly(cluster: Cluster, run: TaskRun) -> dict[str, dict[str, Any]]:
    """Every check both runs share; returns the payout table by lower-case address."""
    market, tid = cluster.market, run.task_id
    shown = cluster.cli.run(cluster.requester, "task", "show", str(tid))
    assert shown["phaseName"] == "finalized", shown
    # Every round's next model was posted and no peer reported a different one.
    for r in range(2, ROUNDS + 2):
        assert market.model_digest(tid, r) != bytes(32), f"no model posted for round {r}"
    assert event_args(cluster, "ModelMismatchReported", tid) == [], peer_warnings(cluster, tid)
    # Each trainer committed exactly once per round (directly or in the round's batch).
    per_round = sorted(round_commits(cluster, tid))
    rounds = range(1, ROUNDS + 1)
    assert per_round == sorted((t.address.lower(), r) for t in cluster.trainers for r in rounds)

    table = payouts(cluster, tid)
    poisoner = cluster.trainers[POISONER]
    honest = [t for k, t in enumerate(cluster.trainers) if k != POISONER]
    assert table[poisoner.address.lower()]["flags"] != 0
    assert table[poisoner.address.lower()]["amount"] == "0"
    assert sum(int(r["amount"]) for r in table.values()) == BUDGET * TOKEN
    for t in honest:
        row = table[t.address.lower()]
        assert row["flags"] == 0 and int(row["amount"]) > 0 and row["claimed"], row
        # The bond went out at join and came back with the claim: the balance grew by the payout.
        assert market.balance_of(t.address) == run.balances_before[t.address] + int(row["amount"])
        assert run.outputs[t.name]["claimed"] == {"amount": int(row["amount"]), "flags": 0}
    slashed = run.stakes_before[poisoner.address] - market.participant(poisoner.address).stake
    assert slashed == MIN_STAKE * TOKEN  # a flagged trainer loses up to the task's minimum stake
    for o in cluster.oracles:
        assert market.participant(o.address).stake == run.stakes_before[o.address]
        assert run.outputs[o.name]["result"] == "task finalized"
    assert event_args(cluster, "OracleSlashed", tid) == []
    return table


def test_seven_peer_processes_finalize_a_task_pay_the_honest_and_slash_the_poisoner(
    cluster: Cluster, first_run: TaskRun
) -> None:
    assert_settled_correctly(cluster, first_run)
    # Updates also travelled over pubsub across the three daemons: every trainer gossiped, the
    # peers pulled each other's announced updates, and nothing a member sent was refused.
    stats = [first_run.outputs[t.name]["gossip"] for t in cluster.trainers]
    assert all(s is not None for s in stats), stats
    assert sum(s["accepted"] for s in stats) > 0, stats
    for s in stats:
        bad_drops = {"bad_signature", "not_member", "malformed", "fetch_failed"}
        assert not set(s["dropped"]) & bad_drops, s


def assert_resumed_with_the_same_payouts(
    cluster: Cluster, first_run: TaskRun, killed_run: TaskRun, *, before_commit: bool = True
) -> None:
    # The kill landed in round 2, after the victim's round-1 commit (and, unbatched, before its
    # round-2 one: a batched round lasts about a second, so the kill lands anywhere in it).
    assert killed_run.killed["round"] == 2 and killed_run.killed["returncode"] == -9
    if before_commit:
        assert killed_run.killed["committed_round_2"] is False
    table = assert_settled_correctly(cluster, killed_run)
    first = payouts(cluster, first_run.task_id)
    same_fields = ("amount", "score_ppm", "flags")
    assert {a: [r[f] for f in same_fields] for a, r in table.items()} == {
        a: [r[f] for f in same_fields] for a, r in first.items()
    }


def test_a_trainer_killed_in_round_two_resumes_from_its_journal_with_the_same_payouts(
    cluster: Cluster, first_run: TaskRun, second_run: TaskRun
) -> None:
    assert_resumed_with_the_same_payouts(cluster, first_run, second_run)


# --- batched round commitments: gossip and batches on -----------------------------------------
BATCHED = ("--batch-commits", "--batch-turn", "30")
CENSORED = 1  # trainers[1]: honest; the others, as closers, leave its leaf out of their batches


@pytest.fixture(scope="module")
def batched_run(cluster: Cluster) -> TaskRun:
    return run_task(cluster, kill_victim=False, task_extra=BATCHED)


@pytest.fixture(scope="module")
def censored_run(cluster: Cluster) -> TaskRun:
    censored = cluster.trainers[CENSORED].address
    return run_task(
        cluster,
        kill_victim=False,
        task_extra=BATCHED,
        trainer_extra=lambda k: () if k == CENSORED else ("--censor", censored),
    )


@pytest.fixture(scope="module")
def batched_killed_run(cluster: Cluster) -> TaskRun:
    return run_task(cluster, kill_victim=True, task_extra=BATCHED)


def test_batched_rounds_over_gossip_commit_each_round_in_one_transaction_and_pay_the_same(
    cluster: Cluster, first_run: TaskRun, batched_run: TaskRun
) -> None:
    tid = batched_run.task_id
    table = assert_settled_correctly(cluster, batched_run)
    # One batch per round; the leaves travelled over gossip between the three daemons.
    batches = BatchCommits(cluster.market).batches(tid)
    assert sorted(batches) == list(range(1, ROUNDS + 1))
    direct = event_args(cluster, "UpdateCommitted", tid)
    assert len(direct) < ROUNDS * len(cluster.trainers), direct  # batches carried the rounds
    stats = [batched_run.outputs[t.name]["gossip"] for t in cluster.trainers]
    assert sum(s["leaves"] for s in stats) > 0, stats
    for s in stats:
        assert not set(s["dropped"]) & {"bad_signature", "not_member", "malformed"}, s
        assert s["republished"] == 0, s  # batched: the leaves are repeated, not announcements
    # Rounds were trained ahead of their batch (from the gossiped leaves) and those updates
    # used; the payouts below being the unbatched run's shows they are the same updates.
    ahead = [batched_run.outputs[t.name]["trained_ahead"] for t in cluster.trainers]
    assert sum(a.get("used", 0) for a in ahead) > 0, ahead
    # The same data, seeds and model as the unbatched run: the same payouts.
    first = payouts(cluster, first_run.task_id)
    same_fields = ("amount", "score_ppm", "flags")
    assert {a: [r[f] for f in same_fields] for a, r in table.items()} == {
        a: [r[f] for f in same_fields] for a, r in first.items()
    }


def test_a_trainer_left_out_of_the_batch_commits_directly_and_is_still_paid(
    cluster: Cluster, censored_run: TaskRun
) -> None:
    tid = censored_run.task_id
    assert_settled_correctly(cluster, censored_run)  # the censored trainer is paid and claimed
    victim = cluster.trainers[CENSORED].address
    batches = BatchCommits(cluster.market)
    order = batches.join_order(tid)
    direct = {int(a["round"]) for a in event_args(cluster, "UpdateCommitted", tid)
              if a["trainer"] == victim}  # fmt: skip
    left_out = set()
    for r, b in batches.batches(tid).items():
        if b.closer != victim:  # a censoring closer: the victim's bit is never set
            assert victim not in bitmap_members(b.included, order), b
        if victim not in bitmap_members(b.included, order):
            left_out.add(r)
    assert left_out, "no round was closed by a censoring closer"
    assert direct == left_out  # each left-out round committed directly, no other


def test_a_batched_trainer_killed_in_round_two_resumes_from_its_journal_with_the_same_payouts(
    cluster: Cluster, first_run: TaskRun, batched_killed_run: TaskRun
) -> None:
    # The restarted trainer re-sends its journalled leaf (the same one) or, left out, commits
    # directly: each round exactly once either way, and the payouts are the unbatched run's.
    assert_resumed_with_the_same_payouts(
        cluster, first_run, batched_killed_run, before_commit=False
    )
