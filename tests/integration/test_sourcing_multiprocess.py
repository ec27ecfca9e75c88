"""Sourcing before training, by separate processes on a real Anvil and three Kubo daemons.

The requester creates a *sourced* task (its join gate is ``DataSourcing``) and publishes a data
request; three oracle processes (``fedmarket oracle run``) take their seats, and three data owners
(separate ``fedmarket offer submit|reveal`` processes, each on its own home and Kubo daemon) offer:
two clean shards with modest asks and one with half its labels flipped and the highest ask. A
fourth owner's offer is malformed (its sketch counts other rows than it declares): the oracles
must reject it with the reason and go on. One oracle is SIGKILLed after committing the selection
and restarted on the same home: it must reveal from its journal. The committee then agrees on
the two clean owners; only they can register and join the task — ``TaskMarket.join`` asks
``DataSourcing.canJoin`` and refuses the others with ``TaskMarketJoinRefused``. (Training the
sourced task and the winners' threshold-payment claims are covered by the contract tests; here the
oracles are left waiting for training and stopped with the cluster.)

The test process watches the chain and moves the devnet clock past each sourcing deadline (a real
network would wait them out).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from web3 import Web3

from marketplace.chain.devnet import DEV_PRIVATE_KEYS, advance_chain_time
from marketplace.chain.sourcing_client import DataSourcingClient
from marketplace.fl import load_dataset, split_dataset
from marketplace.protocol.sourcing import (
    PreparedOffer,
    commit_offer,
    load_request_document,
    prepare_offer,
)
from marketplace.storage.kubo import KuboStore

from .conftest import CLI_TIMEOUT, TOKEN, Cluster, NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.anvil, pytest.mark.kubo]

WINDOW = 600  # seconds of each sourcing phase; the test moves the clock past each deadline
ASKS = (40, 50, 60)  # owners 0 and 1: clean shards; owner 2: half its labels flipped
BUDGET = 150  # procurement budget: room for two asks, not three
RUN_TIMEOUT = 1200.0  # a generous bound on each wait; no assertion is about time


@dataclasses.dataclass
class SourcedRun:
    task_id: int
    request_id: int
    oracles_alive: dict[str, bool]
    shown: dict[str, Any]
    refused: str


def owner_data(tmp: Path) -> list[Path]:
    """Three owners' shards of the digits train split (the third with half its labels wrong)."""
    train = split_dataset(load_dataset("digits"), seed=0).train
    rng = np.random.default_rng(0)
    paths = []
    for k, rows in enumerate((slice(0, 300), slice(300, 600), slice(600, 900))):
        y = train.y[rows].copy()
        if k == 2:
            flip = rng.random(len(y)) < 0.5
            y[flip] = (y[flip] + rng.integers(1, 10, int(flip.sum()))) % 10
        path = tmp / f"owner{k}.npz"
        np.savez(path, x=train.x[rows], y=y)
        paths.append(path)
    return paths


def wait_for(what: str, condition: Any, procs: list[NodeProcess]) -> None:
    """Poll ``condition`` until true; fail early (with their stderr) if a process died."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while not condition():
        dead = [p for p in procs if p.returncode is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(p.tail() for p in procs)
            pytest.fail(
                f"waiting for {what}: {'a process exited' if dead else 'timed out'}\n{tails}"
            )
        time.sleep(0.3)


def submit_malformed_offer(cluster: Cluster, client: DataSourcingClient, task_id: int) -> str:
    """Dev 5 commits an offer whose sealed sketch counts 100 rows while it declares 101."""
    request_id = client.request_of_task(task_id)
    store = KuboStore(cluster.kubos[2].api_multiaddr)
    doc = load_request_document(client, store, request_id)
    owner = Account.from_key(DEV_PRIVATE_KEYS[5])
    keys = {o: cluster.market.participant(o).encryption_key for o in doc.oracles}
    train = split_dataset(load_dataset("digits"), seed=0).train
    prepared = prepare_offer(
        store=store, spec=doc.spec, x=train.x[900:1000], y=train.y[900:1000], ask=1,
        request_id=request_id, task_id=task_id, chain_id=client.w3.eth.chain_id,
        owner=owner.address, committee_keys=keys,
    )  # fmt: skip
    lying = dataclasses.replace(prepared, samples=prepared.samples + 1)
    commit_offer(client, owner, lying)  # a registered, staked trainer: it posts the bond
    (cluster.tmp / "malformed-offer.json").write_text(lying.to_json())
    return str(owner.address)


def reveal_malformed_offer(cluster: Cluster, client: DataSourcingClient) -> None:
    lying = PreparedOffer.from_json((cluster.tmp / "malformed-offer.json").read_text())
    owner = Account.from_key(DEV_PRIVATE_KEYS[5])
    client.reveal_offer(owner, lying.request_id, ask=lying.ask, samples=lying.samples,
                        sketch_cid=lying.sketch_cid, salt=lying.salt)  # fmt: skip


def oracle_args(task_id: int) -> tuple[str, ...]:
    return ("oracle", "run", "--task", str(task_id), "--poll", "0.3",
            "--timeout", str(RUN_TIMEOUT), "--json")  # fmt: skip


@pytest.fixture(scope="module")
def sourced(cluster: Cluster) -> SourcedRun:
    cli, market = cluster.cli, cluster.market
    owners = cluster.trainers[:3]
    client = DataSourcingClient(market.w3, market.deployment)
    oracle_flags = [a for o in cluster.oracles for a in ("--oracle", o.address)]
    task = cli.run(
        cluster.requester, "task", "create", "--sourced", "--budget", "100", "--rounds", "1",
        *oracle_flags, "--min-trainers", "2", "--max-trainers", "2", "--epochs", "1",
        "--min-stake", "10", "--bond", "1", "--join-window", str(8 * WINDOW),
        "--round-duration", "900", "--phase-duration", "900",
    )  # fmt: skip
    task_id = int(task["taskId"])
    req = cli.run(cluster.requester, "task", "request", str(task_id), "--budget", str(BUDGET),
                  *oracle_flags, "--window", str(WINDOW))  # fmt: skip
    request_id = int(req["requestId"])

    oracles = {o.name: cli.spawn(o, *oracle_args(task_id), label=f"s{task_id}-{o.name}")
               for o in cluster.oracles}  # fmt: skip

    def running() -> list[NodeProcess]:
        return list(oracles.values())

    wait_for("the oracles' seats", lambda: client.request(request_id).accepted == 3, running())
    paths = owner_data(cluster.tmp)
    cli.run_all([
        (o, ("offer", "submit", "--task", str(task_id), "--data", str(p), "--ask", str(a)))
        for o, p, a in zip(owners, paths, ASKS, strict=True)
    ])  # fmt: skip
    submit_malformed_offer(cluster, client, task_id)
    view = client.request(request_id)
    assert (view.offer_count, view.bonds_held) == (4, 4 * view.offer_bond)  # one bond per offer
    advance_chain_time(market.w3, view.offer_deadline - market.now() + 1)
    cli.run_all([(o, ("offer", "reveal", "--task", str(task_id))) for o in owners])
    reveal_malformed_offer(cluster, client)
    assert client.request(request_id).bonds_held == 0  # every offer revealed: every bond back
    advance_chain_time(market.w3, view.reveal_deadline - market.now() + 1)

    def commits() -> int:
        logs = client.contract.events.SelectionCommitted().get_logs(
            from_block=market.deployment.block, argument_filters={"requestId": request_id}
        )
        return len(logs)

    wait_for("three selection commits", lambda: commits() == 3, running())
    # Kill one oracle after its commit; the same command on the same home resumes and reveals.
    victim = cluster.oracles[0]
    oracles[victim.name].kill()
    oracles[victim.name] = cli.spawn(victim, *oracle_args(task_id), label=f"s{task_id}-restart")
    advance_chain_time(market.w3, view.select_commit_deadline - market.now() + 1)

    def reveals() -> int:
        logs = client.contract.events.SelectionRevealed().get_logs(
            from_block=market.deployment.block, argument_filters={"requestId": request_id}
        )
        return len(logs)

    wait_for("three selection reveals", lambda: reveals() == 3, running())
    shown = cli.run(cluster.requester, "task", "show", str(task_id))

    # Only winners may join: the loser's join is refused by the gate, naming the error.
    loser = owners[2]
    refused = cli.spawn(loser, "task", "join", str(task_id), label=f"s{task_id}-loser-join")
    refused.popen.wait(timeout=CLI_TIMEOUT)
    assert refused.returncode == 1, refused.tail()
    cli.run_all([(o, ("sourcing", "register", "--task", str(task_id))) for o in owners[:2]])
    cli.run_all([(o, ("task", "join", str(task_id))) for o in owners[:2]])
    # No oracle process stopped along the way (the malformed offer included): all still run,
    # now waiting for the winners to train.
    alive = {name: p.returncode is None for name, p in oracles.items()}
    return SourcedRun(task_id, request_id, alive, shown,
                      refused.err_path.read_text() + refused.out_path.read_text())  # fmt: skip


def test_oracle_processes_select_the_two_clean_owners_and_reject_the_malformed_offer(
    cluster: Cluster, sourced: SourcedRun
) -> None:
    s = sourced.shown["sourcing"]
    assert s["requestId"] == sourced.request_id
    winners = {cluster.trainers[0].address, cluster.trainers[1].address}
    assert set(s["selection"]["winners"]) == winners
    assert int(s["selection"]["total"]) <= BUDGET * TOKEN
    by_owner = {o["owner"]: o for o in s["offers"]}
    assert len(by_owner) == 4
    assert by_owner[cluster.trainers[2].address]["status"] == "lost"
    malformed = by_owner[cluster.trainers[3].address]
    assert malformed["status"] == "rejected" and "declares 101" in malformed["rejected"]
    for w in winners:
        # a threshold payment: at least the ask, and the values came from the sketches
        assert int(by_owner[w]["payment"]) >= int(by_owner[w]["ask"]) and by_owner[w]["value_ppm"]
    # All three oracles revealed the same root (one after a SIGKILL and a restart).
    client = DataSourcingClient(cluster.market.w3, cluster.market.deployment)
    logs = client.contract.events.SelectionRevealed().get_logs(
        from_block=cluster.market.deployment.block,
        argument_filters={"requestId": sourced.request_id},
    )
    assert len({bytes(ev["args"]["root"]) for ev in logs}) == 1 and len(logs) == 3
    committed = client.contract.events.SelectionCommitted().get_logs(
        from_block=cluster.market.deployment.block,
        argument_filters={"requestId": sourced.request_id},
    )
    assert len(committed) == 3  # the restarted oracle did not commit twice
    assert all(sourced.oracles_alive.values()), sourced.oracles_alive


def test_only_the_registered_winners_can_join_the_sourced_task(
    cluster: Cluster, sourced: SourcedRun
) -> None:
    m, tid = cluster.market, sourced.task_id
    assert "TaskMarketJoinRefused" in sourced.refused and "Traceback" not in sourced.refused
    assert m.task(tid).join_gate == DataSourcingClient(m.w3, m.deployment).address
    assert not m.is_trainer(tid, cluster.trainers[2].address)
    for w in cluster.trainers[:2]:
        assert m.is_trainer(tid, w.address)
    client = DataSourcingClient(m.w3, m.deployment)
    for w in cluster.trainers[:2]:
        payment, claimed = client.winner(sourced.request_id, w.address)
        assert payment > 0 and not claimed  # paid once they have trained every round
    shown = {o["owner"]: o for o in cluster.cli.run(
        cluster.requester, "sourcing", "show", "--task", str(tid))["offers"]}  # fmt: skip
    assert {Web3.to_checksum_address(a) for a, o in shown.items() if o["status"] == "won"} == {
        w.address for w in cluster.trainers[:2]
    }
    assert json.dumps(shown)  # the document is JSON-ready
