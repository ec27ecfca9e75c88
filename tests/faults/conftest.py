"""A small marketplace of separate processes for fault injection: Anvil (or the Hardhat node, with
FEDMARKET_TEST_CHAIN=hardhat) behind a cuttable TCP proxy, two Kubo daemons kept peered, and every
peer a ``python -m node`` subprocess.

Two honest trainers (dev 2 on Kubo 0, dev 3 on Kubo 1) and one oracle (dev 6 on Kubo 1) take part
in short tasks (two rounds, one epoch of a small MLP on digits). The peers reach the chain only
through the proxy, so a test can drop the RPC without touching Anvil; Anvil itself listens on a
fixed port so a test can stop it and start a fresh one in its place (``devnet down``/``up``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.deploy import deploy_marketplace, load_deployment, write_deployment
from marketplace.chain.devnet import DevnetProcess, advance_chain_time, free_port, start_devnet
from marketplace.protocol.identity import Identity
from marketplace.storage.kubo_daemon import KuboDaemon, connect_peers, start_kubo
from tests.integration.conftest import (
    STAKE,
    TOKEN,
    FedmarketCli,
    NodeProcess,
    Peer,
    wait_all,
)

from .proxy import CuttableProxy

ROUNDS = 2
BUDGET = 100
RUN_TIMEOUT = 600.0  # bound on one task's processes; nothing asserts on time


@dataclass
class FaultCluster:
    cli: FedmarketCli
    anvil: DevnetProcess
    anvil_port: int
    proxy: CuttableProxy
    kubos: tuple[KuboDaemon, ...]
    deployer: Peer
    requester: Peer
    trainers: tuple[Peer, ...]
    oracle: Peer
    tmp: Path
    chain_kind: str = "anvil"  # or "hardhat" (FEDMARKET_TEST_CHAIN)
    market: Marketplace = field(init=False)

    def observe(self) -> None:
        """(Re)connect the test's read-only view of the market, directly to Anvil."""
        w3 = connect(self.anvil.rpc_url)
        self.market = Marketplace(w3, load_deployment(self.cli.deployments, w3.eth.chain_id))

    def restart_anvil(self) -> None:
        """`devnet down` then `devnet up`: a fresh chain on the same port (same RPC URL)."""
        self.anvil.stop()
        self.anvil = start_devnet(
            self.chain_kind, port=self.anvil_port, log_path=self.tmp / "anvil-2.log"
        )

    def set_up_market(self) -> None:
        """Deploy, fund and register everyone (in-process: the CLI's own paths for these are
        tested elsewhere, and each CLI start costs seconds on a loaded machine); the deployments
        file the peers read is written as `fedmarket deploy` writes it."""
        w3 = connect(self.anvil.rpc_url)
        deployer = Identity.dev(self.deployer.dev)
        deployment = deploy_marketplace(w3, deployer.eth)
        write_deployment(deployment, self.cli.deployments)
        market = Marketplace(w3, deployment)
        requester = Identity.dev(self.requester.dev)
        market.mint(deployer.eth, requester.address, 1000 * TOKEN)
        market.register(requester.eth, Role.REQUESTER, requester.x25519_public, 0)
        for p, role in [*((t, Role.TRAINER) for t in self.trainers), (self.oracle, Role.ORACLE)]:
            ident = Identity.dev(p.dev)
            market.mint(deployer.eth, ident.address, 2 * STAKE * TOKEN)
            market.register(ident.eth, role, ident.x25519_public, STAKE * TOKEN)
        self.observe()


@pytest.fixture(scope="module")
def fault_cluster(
    chain_kind: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultCluster]:
    tmp = tmp_path_factory.mktemp("faults")
    logs = tmp / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        port = free_port()
        anvil = start_devnet(chain_kind, port=port, log_path=tmp / "anvil.log")
        proxy = CuttableProxy(port)
        stack.callback(proxy.close)
        kubos = tuple(stack.enter_context(start_kubo()) for _ in range(2))
        connect_peers(kubos[0], kubos[1])
        connect_peers(kubos[1], kubos[0])
        cli = FedmarketCli(proxy.url, tmp / "deployments", logs)
        stack.callback(cli.stop_all)

        def peer(name: str, dev: int, kubo: int) -> Peer:
            home = tmp / "homes" / name
            home.mkdir(parents=True)
            return Peer(name, dev, home, kubos[kubo].api_multiaddr)

        cluster = FaultCluster(
            cli=cli, anvil=anvil, anvil_port=port, proxy=proxy, kubos=kubos,
            deployer=peer("deployer", 0, 0), requester=peer("requester", 1, 0),
            trainers=(peer("trainer0", 2, 0), peer("trainer1", 3, 1)),
            oracle=peer("oracle", 6, 1), tmp=tmp, chain_kind=chain_kind,
        )  # fmt: skip
        stack.callback(lambda: cluster.anvil.stop())
        # Anvil may be left SIGSTOPped by a failed test: resume it so it can be stopped.
        stack.callback(lambda: _resume(cluster.anvil))
        cluster.set_up_market()
        yield cluster


def _resume(anvil: DevnetProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(anvil.pid, signal.SIGCONT)


@dataclass
class FaultRun:
    """One task run under a fault, and what it left on the chain."""

    task_id: int
    balances_before: dict[str, int]
    stakes_before: dict[str, int]
    procs: dict[str, NodeProcess] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def create_task(cluster: FaultCluster) -> int:
    out = cluster.cli.run(
        cluster.requester, "task", "create", "--budget", str(BUDGET), "--rounds", str(ROUNDS),
        "--oracle", cluster.oracle.address, "--min-trainers", "2", "--max-trainers", "2",
        "--epochs", "1", "--min-stake", "10", "--bond", "1",
        # Rounds and phases close early once everyone has acted: these only bound a stuck run.
        "--join-window", "900", "--round-duration", "900", "--phase-duration", "900",
    )  # fmt: skip
    return int(out["taskId"])  # type: ignore[call-overload]


def spawn_trainer(cluster: FaultCluster, run: FaultRun, k: int, suffix: str = "") -> None:
    t = cluster.trainers[k]
    run.procs[t.name] = cluster.cli.spawn(
        t, "node", "run", "--task", str(run.task_id), "--data", "digits", "--part", f"{k}/2",
        "--poll", "0.3", "--timeout", str(RUN_TIMEOUT), "--json",
        label=f"t{run.task_id}-{t.name}{suffix}",
    )  # fmt: skip


def spawn_oracle(cluster: FaultCluster, run: FaultRun, suffix: str = "") -> None:
    o = cluster.oracle
    run.procs[o.name] = cluster.cli.spawn(
        o, "oracle", "run", "--task", str(run.task_id), "--poll", "0.3",
        "--timeout", str(RUN_TIMEOUT), "--json", label=f"t{run.task_id}-{o.name}{suffix}",
    )  # fmt: skip


def run_task(
    cluster: FaultCluster, fault: Callable[[FaultCluster, FaultRun, Any], None]
) -> FaultRun:
    """Create a task, run the three peers until they exit; ``fault(cluster, run, info)`` is
    called on every tick with the task's on-chain state (it injects the fault once)."""
    market = cluster.market
    task_id = create_task(cluster)
    everyone = (*cluster.trainers, cluster.oracle)
    run = FaultRun(
        task_id=task_id,
        balances_before={p.address: market.balance_of(p.address) for p in cluster.trainers},
        stakes_before={p.address: market.participant(p.address).stake for p in everyone},
    )
    for k in range(len(cluster.trainers)):
        spawn_trainer(cluster, run, k)
    spawn_oracle(cluster, run)

    def tick() -> None:
        try:
            info = cluster.market.task(task_id)
        except Exception:  # the test's own view may be cut off too (Anvil paused)
            return
        fault(cluster, run, info)
        if info.phase_enum == Phase.FINALIZED:
            # The dispute window: a real network waits it out; the devnet clock is moved.
            now = cluster.market.now()
            if now < int(info.claims_open_at):
                advance_chain_time(cluster.market.w3, int(info.claims_open_at) - now + 1)

    wait_all(lambda: list(run.procs.values()), timeout=RUN_TIMEOUT, on_tick=tick, tick=0.2)
    run.outputs = {name: p.output_json() for name, p in run.procs.items()}
    return run


def assert_no_honest_work_unpaid(cluster: FaultCluster, run: FaultRun) -> dict[str, Any]:
    """The goal of every fault case, read from the chain: finalized, every honest trainer
    claimed a payout > 0 with no flag, the claims add up to the budget, each trainer's balance grew
    by exactly its payout (bond returned), no stake was lost, and the oracle saw the end."""
    market, tid = cluster.market, run.task_id
    info = market.task(tid)
    assert info.phase_enum in (Phase.FINALIZED, Phase.CLOSED), info.phase_enum
    claims = market.events(market.market, "Claimed", filters={"taskId": tid})
    rows = {str(e["args"]["account"]).lower(): dict(e["args"]) for e in claims}
    assert sum(int(r["amount"]) for r in rows.values()) == BUDGET * TOKEN
    for t in cluster.trainers:
        row = rows.get(t.address.lower())
        assert row is not None, f"{t.name} did not claim: {rows}"
        assert int(row["flags"]) == 0 and int(row["amount"]) > 0, row
        assert run.outputs[t.name]["claimed"] == {"amount": int(row["amount"]), "flags": 0}
        assert market.balance_of(t.address) == run.balances_before[t.address] + int(row["amount"])
        assert market.participant(t.address).stake == run.stakes_before[t.address]
    oracle = cluster.oracle.address
    assert market.participant(oracle).stake == run.stakes_before[oracle]
    assert run.outputs[cluster.oracle.name]["result"] == "task finalized"
    return rows


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
