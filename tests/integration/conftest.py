"""A whole marketplace of separate processes: Anvil, three connected Kubo daemons, and every peer
a ``python -m node …`` subprocess with its own ``--home`` and its own ``--ipfs-api``.

The module-scoped :func:`cluster` deploys with ``fedmarket deploy`` and funds and registers a
requester (dev 1), four trainers (dev 2..5) and three oracles (dev 6..8) with ``faucet`` and
``register``, all through the CLI. The test process itself only watches the chain (a read-only
:class:`Marketplace`) and moves the devnet clock. A missing Anvil or Kubo binary is a setup
failure (run scripts/bootstrap), never a skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account import Account

from marketplace import toolchain
from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace
from marketplace.chain.deploy import load_deployment
from marketplace.chain.devnet import DEV_PRIVATE_KEYS, DevnetProcess
from marketplace.storage.kubo_daemon import KuboDaemon, connect_peers, start_kubo

TOKEN = 10**18
STAKE = 100  # tokens each trainer and oracle stakes at registration
CLI_TIMEOUT = 600.0  # one short CLI command (deploy, faucet, register, show): bounds a hang


def dev_address(index: int) -> str:
    """Checksum address of devnet key ``index``."""
    return str(Account.from_key(DEV_PRIVATE_KEYS[index]).address)


@dataclass(frozen=True)
class Peer:
    """One participant: a devnet key, a node directory and the Kubo daemon it talks to."""

    name: str
    dev: int
    home: Path
    ipfs_api: str

    @property
    def address(self) -> str:
        return dev_address(self.dev)


@dataclass
class NodeProcess:
    """A ``fedmarket`` subprocess whose stdout and stderr go to files (never a full pipe)."""

    label: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no journal flush beyond what was already written."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def output_json(self) -> dict[str, object]:
        text = self.out_path.read_text()
        try:
            data: dict[str, object] = json.loads(text)
        except ValueError:
            raise AssertionError(f"{self.label} printed no JSON:\n{text}\n{self.tail()}") from None
        return data

    def tail(self, lines: int = 20) -> str:
        err = self.err_path.read_text(errors="replace").splitlines()[-lines:]
        head = f"--- {self.label} (exit {self.returncode}): {' '.join(self.argv[3:])}"
        return "\n".join([head, *err])


@dataclass
class FedmarketCli:
    """Builds and runs ``python -m node`` command lines against one chain and deployment."""

    rpc_url: str
    deployments: Path
    logs: Path
    started: list[NodeProcess] = field(default_factory=list)

    def argv(self, peer: Peer, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "node",
            "--chain-rpc", self.rpc_url, "--deployments", str(self.deployments),
            "--home", str(peer.home), "--ipfs-api", peer.ipfs_api, "--dev-account", str(peer.dev),
            *args,
        ]  # fmt: skip

    @staticmethod
    def env() -> dict[str, str]:
        # The caller's FEDMARKET_* settings must not leak into the peers; one torch thread each
        # because the machine has two cores for everyone.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDMARKET_")}
        env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200")
        return env

    def spawn(self, peer: Peer, *args: str, label: str | None = None) -> NodeProcess:
        """Start a command in the background; its output goes to ``logs/<label>.{out,err}``."""
        label = label or f"{peer.name}-{args[0]}"
        n = sum(1 for p in self.started if p.label.split("#")[0] == label)
        label = f"{label}#{n}" if n else label
        out_path, err_path = self.logs / f"{label}.out", self.logs / f"{label}.err"
        argv = self.argv(peer, *args)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=err, env=self.env(), cwd=toolchain.REPO_ROOT
            )
        proc = NodeProcess(label, argv, popen, out_path, err_path)
        self.started.append(proc)
        return proc

    def run(self, peer: Peer, *args: str) -> dict[str, object]:
        """Run a short command with ``--json`` and return its document; fail with its stderr."""
        proc = self.spawn(peer, *args, "--json")
        try:
            proc.popen.wait(timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.returncode != 0:
            raise AssertionError(f"command failed\n{proc.tail()}")
        return proc.output_json()

    def run_all(self, calls: Sequence[tuple[Peer, tuple[str, ...]]]) -> list[dict[str, object]]:
        """Run commands of different signers concurrently (no shared nonce between them)."""
        procs = [self.spawn(peer, *args, "--json") for peer, args in calls]
        wait_all(procs, timeout=CLI_TIMEOUT)
        return [p.output_json() for p in procs]

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.popen.poll() is None:
                proc.kill()


def wait_all(
    procs: Sequence[NodeProcess] | Callable[[], Sequence[NodeProcess]],
    *,
    timeout: float,
    on_tick: Callable[[], None] | None = None,
    tick: float = 0.1,
) -> None:
    """Wait until every process exits 0; fail at the first non-zero exit or at ``timeout``,
    showing each process's stderr tail. ``procs`` may be a callable when ``on_tick`` replaces
    processes (a restart after a kill)."""
    current = procs if callable(procs) else (lambda: procs)
    deadline = time.monotonic() + timeout
    while True:
        if on_tick is not None:
            on_tick()
        running = [p for p in current() if p.returncode is None]
        failed = [p for p in current() if p.returncode not in (None, 0)]
        if failed or (running and time.monotonic() > deadline):
            why = "exited with an error" if failed else f"still running after {timeout:.0f}s"
            tails = "\n".join(p.tail() for p in current())
            pytest.fail(f"{', '.join(p.label for p in failed or running)} {why}\n{tails}")
        if not running:
            return
        time.sleep(tick)


@dataclass(frozen=True)
class Cluster:
    """The running marketplace: CLI runner, chain observer and the participants."""

    cli: FedmarketCli
    market: Marketplace
    anvil: DevnetProcess
    kubos: tuple[KuboDaemon, ...]
    deployer: Peer
    requester: Peer
    trainers: tuple[Peer, ...]
    oracles: tuple[Peer, ...]
    tmp: Path


@pytest.fixture(scope="module")
def cluster(
    module_chain: DevnetProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The module's devnet + three Kubo daemons (fully connected), contracts deployed, 8 peers
    registered."""
    tmp = tmp_path_factory.mktemp("integration")
    logs = tmp / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        anvil = module_chain
        kubos = tuple(stack.enter_context(start_kubo()) for _ in range(3))
        for i, a in enumerate(kubos):
            connect_peers(a, kubos[(i + 1) % 3])
        cli = FedmarketCli(anvil.rpc_url, tmp / "deployments", logs)
        stack.callback(cli.stop_all)

        def peer(name: str, dev: int) -> Peer:
            home = tmp / "homes" / name
            home.mkdir(parents=True)
            return Peer(name, dev, home, kubos[dev % 3].api_multiaddr)

        deployer, requester = peer("deployer", 0), peer("requester", 1)
        trainers = tuple(peer(f"trainer{i}", 2 + i) for i in range(4))
        oracles = tuple(peer(f"oracle{i}", 6 + i) for i in range(3))

        cli.run(deployer, "deploy")
        # One signer (the token owner) mints for everyone: these must run one after another.
        cli.run(deployer, "faucet", "6000", "--to", requester.address)  # six tasks' budgets
        for p in (*trainers, *oracles):
            cli.run(deployer, "faucet", str(2 * STAKE), "--to", p.address)
        cli.run_all([
            (requester, ("register", "requester")),
            *((t, ("register", "trainer", "--stake", str(STAKE))) for t in trainers),
            *((o, ("register", "oracle", "--stake", str(STAKE))) for o in oracles),
        ])  # fmt: skip

        w3 = connect(anvil.rpc_url)
        market = Marketplace(w3, load_deployment(cli.deployments, w3.eth.chain_id))
        yield Cluster(cli, market, anvil, kubos, deployer, requester, trainers, oracles, tmp)
