"""A secure-aggregation task run by separate processes: four ``node run`` trainers and three
``oracle run`` oracles, each a ``python -m node`` subprocess on its own Kubo daemon, over a real
Anvil; one trainer is SIGKILLed in the middle of round 1 and restarted later.

The task is created with ``task create --secure-aggregation`` (threshold: 3 of 4). In round 1
the victim is killed right after its masked input is committed on-chain — before it can send its
unmasking response — so the three live trainers must rebuild its self-mask from their Shamir
shares to finish the round. It is restarted on the same home only once the survivors have posted
round 2's model: it must resume from its journal (no second commit, the same seeds), follow that
model, and take part in round 2 and the payouts.

Exactness is checked from outside the nodes: the test opens every committed plaintext with an
oracle's key (the plaintexts are sealed to the committee), sums the fixed-point values as
integers, and rebuilds each round's next model from the posted previous one; its sha256 must be
the digest on-chain, bit for bit, and no trainer may have reported a different model.
"""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from marketplace.chain.clients import Phase
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.subscription import ChainSubscription, Wakeup, ws_endpoint
from marketplace.chain.task_logs import TaskLogs
from marketplace.crypto.envelope import EnvelopeContext, open_envelope
from marketplace.crypto.secagg import committee_check
from marketplace.fl.serialization import dump_weights
from marketplace.fl.weights import flatten, unflatten
from marketplace.protocol.identity import Identity
from marketplace.protocol.secagg_exchange import Manifest, round_context, round_params
from marketplace.protocol.session import TaskSession
from marketplace.storage.kubo import KuboStore

from .conftest import TOKEN, Cluster, NodeProcess, wait_all
from .test_multiprocess_task import event_args, payouts

pytestmark = [pytest.mark.integration, pytest.mark.anvil, pytest.mark.kubo]

ROUNDS = 2
BUDGET = 1000
VICTIM = 1  # trainers[1] (dev 3): killed mid-round 1, restarted once round 2's model is posted
RUN_TIMEOUT = 900.0  # a generous bound on the run; no assertion is about time
SALT = 16  # bytes of salt before the fixed-point values in a sealed plaintext


@dataclass
class SecAggRun:
    task_id: int
    created: dict[str, Any]
    balances_before: dict[str, int]
    killed: dict[str, Any] = field(default_factory=dict)
    restarted: bool = False
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def journal_steps(home: Path, round_: int) -> set[str]:
    """The journal steps a node wrote for ``round_`` (read-only, from the test process)."""
    steps: set[str] = set()
    for path in (home / "journal").glob("trainer-*.sqlite"):
        db = sqlite3.connect(path)
        try:
            rows = db.execute("SELECT step FROM entries WHERE round=?", (round_,)).fetchall()
        except sqlite3.OperationalError:
            rows = []
        finally:
            db.close()
        steps.update(str(r[0]) for r in rows)
    return steps


def trainer_args(task_id: int, k: int) -> tuple[str, ...]:
    return ("node", "run", "--task", str(task_id), "--data", "digits", "--part", f"{k}/4",
            "--poll", "0.3", "--timeout", str(RUN_TIMEOUT), "--json")  # fmt: skip


def oracle_args(task_id: int) -> tuple[str, ...]:
    return ("oracle", "run", "--task", str(task_id), "--poll", "0.3", "--timeout", str(RUN_TIMEOUT),
            "--json")  # fmt: skip


@pytest.fixture(scope="module")
def secagg_run(cluster: Cluster) -> SecAggRun:
    market, cli = cluster.market, cluster.cli
    oracle_flags = [arg for o in cluster.oracles for arg in ("--oracle", o.address)]
    created = cli.run(
        cluster.requester, "task", "create", "--budget", str(BUDGET), "--rounds", str(ROUNDS),
        *oracle_flags, "--min-trainers", "4", "--max-trainers", "4", "--epochs", "1",
        "--min-stake", "10", "--bond", "1", "--secure-aggregation", "--secagg-clip", "2.0",
        "--join-window", "900", "--round-duration", "900", "--phase-duration", "900",
    )  # fmt: skip
    task_id = int(created["taskId"])  # type: ignore[call-overload]
    run = SecAggRun(task_id, created, {t.address: market.balance_of(t.address)
                                       for t in cluster.trainers})  # fmt: skip
    procs: dict[str, NodeProcess] = {}
    for k, t in enumerate(cluster.trainers):
        procs[t.name] = cli.spawn(t, *trainer_args(task_id, k), label=f"s{task_id}-{t.name}")
    for o in cluster.oracles:
        procs[o.name] = cli.spawn(o, *oracle_args(task_id), label=f"s{task_id}-{o.name}")
    victim = cluster.trainers[VICTIM]
    # The kill lands right after the victim's round-1 commit: the websocket thread freezes it
    # (SIGSTOP) the moment the chain pushes its UpdateCommitted log, before it can see the round
    # close and unmask, and the next tick SIGKILLs it. (A tick's chain poll came too late: the
    # last commit closes the round at once, and the run went on without a kill.)
    committed = threading.Event()
    logs = TaskLogs(market, task_id)

    def on_log(raw: Any) -> bool:
        event = logs.decode(raw)
        if (
            event is not None
            and event["event"] == "UpdateCommitted"
            and int(event["args"]["round"]) == 1
            and str(event["args"]["trainer"]).lower() == victim.address.lower()
            and not committed.is_set()
        ):
            procs[victim.name].popen.send_signal(signal.SIGSTOP)  # its exit code stays unset
            committed.set()
        return False

    ws = ws_endpoint(cli.rpc_url)
    assert ws is not None, "Anvil serves websockets on its RPC port"
    subscription = ChainSubscription(ws, wakeup=Wakeup(), logs=logs.filter, on_log=on_log)
    assert subscription.start().connected.wait(10), f"no websocket subscription to {ws}"

    def watch() -> None:
        info = market.task(task_id)
        if not run.killed and committed.is_set():
            killed = procs.pop(victim.name)  # out of the watched set until it is restarted
            killed.kill()  # SIGKILL ends a stopped process too
            run.killed = {"round": 1, "commits": info.round_commits,
                          "returncode": killed.returncode,
                          "steps": journal_steps(victim.home, 1)}  # fmt: skip
        if run.killed and not run.restarted and market.model_digest(task_id, 2) != bytes(32):
            # The survivors finished round 1 without it: bring it back on the same home.
            procs[victim.name] = cli.spawn(victim, *trainer_args(task_id, VICTIM),
                                           label=f"s{task_id}-{victim.name}-restarted")  # fmt: skip
            run.restarted = True
        if info.phase_enum == Phase.FINALIZED:
            now = int(market.w3.eth.get_block("latest")["timestamp"])
            if now < info.claims_open_at:
                advance_chain_time(market.w3, info.claims_open_at - now + 1)

    try:
        wait_all(lambda: list(procs.values()), timeout=RUN_TIMEOUT, on_tick=watch)
    finally:
        subscription.stop()
    run.outputs = {name: p.output_json() for name, p in procs.items()}
    return run


def committee_mean(session: TaskSession, round_: int) -> tuple[np.ndarray, list[str]]:
    """The survivors' mean input of ``round_``, from the plaintexts sealed to the committee."""
    ctx, params = round_context(session, round_), round_params(session)
    total: np.ndarray | None = None
    senders = []
    for c in session.committed(round_):
        manifest = Manifest.from_json(session.store.get(c.cid))
        sealed = session.store.get(manifest.sealed_cid)
        plain = open_envelope(
            sealed, recipient_address=session.identity.address,
            x25519_private=session.identity.x25519_private,
            expected_context=EnvelopeContext(ctx.chain_id, ctx.task_id, round_, c.sender),
        )  # fmt: skip
        masked = session.store.get(manifest.masked_cid)
        check = committee_check(ctx, c.sender, masked=masked, plaintext=plain,
                                binding=c.digest.hex(), params=params)  # fmt: skip
        assert check.ok, (c.sender, check)
        fixed = np.frombuffer(plain[SALT:], dtype="<i4").astype(np.int64)
        total = fixed if total is None else total + fixed
        senders.append(c.sender)
    assert total is not None
    return (total.astype(np.float64) / 2.0**params.frac_bits) / len(senders), senders


def test_task_create_records_the_secure_aggregation_term(secagg_run: SecAggRun) -> None:
    assert secagg_run.created["secureAggregation"] == {
        "clip_norm": 2.0, "frac_bits": 16, "threshold": None,
    }  # fmt: skip


def test_a_secure_aggregation_task_survives_a_killed_trainer_with_exact_aggregates_and_pays(
    cluster: Cluster, secagg_run: SecAggRun
) -> None:
    market, tid = cluster.market, secagg_run.task_id
    victim = cluster.trainers[VICTIM]
    # The kill landed mid-round: its masked input committed, its unmasking response never sent.
    assert secagg_run.killed["returncode"] == -9 and secagg_run.restarted
    steps = secagg_run.killed["steps"]
    assert {"published", "secagg_secrets", "secagg_message_shares"} <= steps, steps
    assert "secagg_message_unmask" not in steps, "the victim unmasked before the kill: no dropout"

    # Every round's next model is the exact mean of its survivors, as the committee sees them.
    oracle = cluster.oracles[0]
    session = TaskSession.open(
        market, KuboStore(oracle.ipfs_api), tid, Identity.dev(oracle.dev)
    )  # fmt: skip
    strategy = session.doc.strategy()
    for r in range(1, ROUNDS + 1):
        mean, senders = committee_mean(session, r)
        assert sorted(senders) == sorted(t.address for t in cluster.trainers)
        previous = session.global_weights(r)  # round 1: initial; then the posted model
        expected = unflatten(flatten(previous) + strategy.server_lr * mean, previous)
        digest = hashlib.sha256(dump_weights(expected)).digest()
        assert market.model_digest(tid, r + 1) == digest, f"round {r + 1}'s model is not exact"
    assert event_args(cluster, "ModelMismatchReported", tid) == []

    # Each trainer committed once per round, the victim included (no second commit on resume).
    commits = event_args(cluster, "UpdateCommitted", tid)
    per_round = sorted((a["trainer"].lower(), int(a["round"])) for a in commits)
    rounds = range(1, ROUNDS + 1)
    assert per_round == sorted((t.address.lower(), r) for t in cluster.trainers for r in rounds)

    # The task finalized and paid the whole budget to the four trainers, none flagged.
    shown = cluster.cli.run(cluster.requester, "task", "show", str(tid))
    assert shown["phaseName"] == "finalized", shown
    table = payouts(cluster, tid)
    assert sum(int(r["amount"]) for r in table.values()) == BUDGET * TOKEN
    for t in cluster.trainers:
        row = table[t.address.lower()]
        assert row["flags"] == 0 and int(row["amount"]) > 0 and row["claimed"], row
        assert market.balance_of(t.address) == secagg_run.balances_before[t.address] + int(
            row["amount"]
        )
    assert secagg_run.outputs[victim.name]["claimed"] == {
        "amount": int(table[victim.address.lower()]["amount"]), "flags": 0,
    }  # fmt: skip
    for o in cluster.oracles:
        assert secagg_run.outputs[o.name]["result"] == "task finalized"
