#!/usr/bin/env python
"""Round wall time of a real task (Anvil + three Kubo daemons, every trainer a separate
``python -m node … node run`` process), side by side with the in-process simulator
(``marketplace.fl.simulate``) and Flower's simulation engine, for 4 and 8 trainers.

Prints ONE JSON object on stdout (logs go to stderr). Per trainer count ``n`` (``"4"``, ``"8"``):

- ``ours_round_durations``: from the moment the task enters round r (round 1: every trainer
  joined) to the moment it enters round r + 1 (or leaves Training). A round here is: notice the
  round closed (chain poll every ``--poll`` s), fetch every committed update from IPFS by CID,
  check digests, decrypt, aggregate, post the model digest, train, encrypt, add to IPFS,
  ``commitUpdate``; the last committer closes the round (``advance``). Timed by this script
  stamping the task's ``PhaseAdvanced`` logs as its websocket subscription delivers them.
- ``simulator_round_durations``, ``flower_round_durations``: the same model, data split, partition,
  local training and rounds in ``simulate`` (one process, sequential) and in Flower 1.41 +
  Ray (one CPU per ClientApp, which trains with our ``train_local``), timed as in bench_fl.py
  from the round-0 evaluation to the last round's.
- ``*_sec_per_round`` is the median of rounds 2+ of each engine (steady state: round 1 carries
  the start-up, Ray's actors or our first fetch and training, and is reported apart as
  ``*_first_round_sec``); ``*_mean_sec_per_round`` the mean over every round; Flower's
  ``flower_startup_sec`` runs from the simulation call to its round-0 evaluation.
- ``flower_ratio`` = ours / flower (goal ≤ 1.3), ``simulator_ratio`` = ours / simulator, both on
  steady-state medians; ``*_ratio_of_means`` on means.
- ``gas_per_trainer_round``: from the receipts of every TaskMarket transaction of the task
  (``commitUpdate`` + ``commitRound`` + ``postModel`` + ``advance``, reverted ones included) /
  (n · rounds);
  ``gas`` breaks it down by function (``join`` is per task and not in the per-round figure).
- ``gossip_messages``, ``gossip_bytes`` per round: pubsub publications on the task's topic seen
  by a wiretap subscriber on one daemon (each publication once, whatever its fan-out).
- ``restarts``: trainer processes that exited with an error during training and were started
  again on the same home (a node is safe to restart); they stretch the measured rounds.

The top-level ``flower_ratio``, ``simulator_ratio``, ``gossip_messages``, ``gossip_bytes`` and
``gas_per_trainer_round`` repeat those figures keyed by ``n``.

With ``--netns``, ``netns`` holds the same task run again with every trainer on a machine of its
own (a network namespace and a Kubo daemon each, 50 ms one way and 10 Mbit/s between machines;
see scripts/netns_round.py), per ``n`` under ``runs``, beside that invocation's run without.

With ``--batch-commits`` (reported as ``batch_commits``) our tasks are created with batched round
commitments: each round the trainers gossip signed leaves and one elected trainer sends one
``commitRound`` (a left-out trainer still ``commitUpdate`` s), in place of a ``commitUpdate`` per
trainer and the round's ``postModel`` and ``advance``.

With ``--repeat k`` each trainer count is measured k times in the same invocation (same devnet
and daemons, a new task each time): every repetition is under ``runs.<n>.repeats`` and the
figures of ``runs.<n>`` (ratios included) are their medians — Flower's steady round jumps between
multiples of its ~0.1 s reply polling from run to run, which alone moves one run's ratio by up
to 2x. Gas and gossip are the first repetition's.

Usage: ``.venv/bin/python scripts/bench_round.py [--rounds 5] [--trainers 4,8] [--poll 0.3]
[--netns] [--batch-commits] [--repeat 1]`` (``--netns`` needs root)

``--gas-only --trainers 8,64``: instead, the gas of batched round commitments (``commitRound``
per round, see scripts/round_gas.py), funded dev accounts driven from one process on a real
Anvil; its JSON has ``gas_per_trainer_round`` keyed by ``n`` (any ``n``, not only ≤ 8).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from flower_env import flower_python
from netns_round import NetnsLab
from round_timing import summarize_rounds

from marketplace import toolchain
from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace, Phase, Role
from marketplace.chain.deploy import deploy_marketplace, write_deployment
from marketplace.chain.devnet import start_anvil
from marketplace.chain.subscription import ChainSubscription, Wakeup, ws_endpoint
from marketplace.chain.task_logs import TaskLogs
from marketplace.fl import ModelSpec, TrainConfig, load_dataset, partition, simulate, split_dataset
from marketplace.fl.data import DataSplits
from marketplace.gossip.topics import task_topic
from marketplace.netns import LinkShape
from marketplace.protocol.identity import Identity
from marketplace.protocol.requester import TaskPlan, create_task
from marketplace.protocol.round_batch import BatchTerms
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon, connect_peers, start_kubo
from marketplace.storage.pubsub import PubsubClient, Subscription

log = logging.getLogger("bench_round")

SEED = 0
TOKEN = 10**18
# The CLI's default task model and the training the task below asks for: every engine runs these.
SPEC = ModelSpec(arch="mlp", input_dim=64, hidden=(32,), num_classes=10, seed=SEED)
LOCAL = TrainConfig(epochs=1, lr=0.1, batch_size=16)
# Dev keys: 1 requests, 2..4 are the committee, 5.. train (Anvil funds DEV_ACCOUNTS of them).
REQUESTER, ORACLES, FIRST_TRAINER, MAX_TRAINERS = 1, (2, 3, 4), 5, 32
DEV_ACCOUNTS = FIRST_TRAINER + MAX_TRAINERS
RUN_TIMEOUT = 900.0
# The per-round TaskMarket calls in gas_per_trainer_round (the final postModel included).
PER_ROUND_CALLS = ("commitUpdate", "commitRound", "postModel", "advance")


def splits() -> DataSplits:
    """The split ``fedmarket node run --data digits --part K/N`` trains on (seed 0)."""
    return split_dataset(load_dataset("digits"), seed=SEED)


# --- the in-process simulator ------------------------------------------------------------
def run_simulator(n: int, rounds: int) -> list[float]:
    data = splits()
    parts = partition("iid", data.train.y, num_clients=n, seed=SEED)
    stamps = [time.perf_counter()]
    simulate(
        model_spec=SPEC,
        splits=data,
        partition=parts,
        rounds=rounds,
        strategy="fedavg",
        train_config=LOCAL,
        seed=SEED,
        on_round=lambda _r: stamps.append(time.perf_counter()),
    )
    return [b - a for a, b in itertools.pairwise(stamps)]


# --- Flower (in a child process: Ray is started and shut down once per run) --------------
def run_flower(n: int, rounds: int) -> tuple[list[float], float]:
    # Ray's raylet, GCS and actor workers outlive the driver when it exits while they are still
    # shutting down (seen twice: ~0.5 GB actors left behind). A private Ray temp dir names every
    # process of this run in its command line, so they can all be reaped afterwards.
    with tempfile.TemporaryDirectory(prefix="fmray-", dir="/tmp") as ray_tmp:
        try:
            out = subprocess.run(
                [flower_python(), __file__, "--flower-worker", str(n), "--rounds", str(rounds)],
                capture_output=True,
                text=True,
                check=False,
                cwd=toolchain.REPO_ROOT,
                env={**os.environ, "RAY_TMPDIR": ray_tmp},
            )
        finally:
            reap_ray_processes(ray_tmp)
    if out.returncode != 0:
        raise SystemExit(f"Flower run with {n} clients failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return list(result["durations"]), float(result["startup"])


def reap_ray_processes(ray_tmp: str) -> None:
    """Kill every process of the Ray run whose temp dir is ``ray_tmp``.

    Ray's daemons name the dir in their command lines; its actors rename themselves
    (``ray::IDLE``) but inherit the driver's environment, ``RAY_TMPDIR`` included.
    """
    import psutil  # Ray's own dependency: present wherever Flower's Ray backend is

    def of_this_run(proc: psutil.Process) -> bool:
        with suppress(psutil.Error):
            if proc.environ().get("RAY_TMPDIR") == ray_tmp:
                return True
            return any(ray_tmp in part for part in proc.cmdline())
        return False

    leftovers = [p for p in psutil.process_iter() if p.pid != os.getpid() and of_this_run(p)]
    for proc in leftovers:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=10)


def flower_worker(n: int, rounds: int) -> None:
    """FedAvg in Flower's simulation engine; ClientApps train with our ``train_local``."""
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from marketplace.fl import build_model, evaluate, get_weights, train_local
    from marketplace.fl.seeding import derive_seed
    from marketplace.fl.weights import apply_delta

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        data = splits()
        part = partition("iid", data.train.y, num_clients=n, seed=SEED)[pid]
        global_w = msg.content["arrays"].to_torch_state_dict()
        global_w = {k: global_w[k].float() for k in sorted(global_w)}
        rnd = int(msg.content["config"]["server-round"])
        local = train_local(
            SPEC,
            global_w,
            data.train.subset(part),
            LOCAL.with_seed(derive_seed(SEED, "train", f"t{pid:02d}", rnd)),
        )
        content = RecordDict(
            {
                "arrays": ArrayRecord(apply_delta(global_w, local.delta)),
                "metrics": MetricRecord({"num-examples": local.num_samples, "loss": local.loss}),
            }
        )
        return Message(content=content, reply_to=msg)

    server_app = ServerApp()
    stamps: list[float] = []

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        data = splits()

        def central_eval(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            w = arrays.to_torch_state_dict()
            acc = evaluate(SPEC, {k: w[k].float() for k in sorted(w)}, data.test.x, data.test.y)
            stamps.append(time.perf_counter())
            return MetricRecord({"accuracy": acc.accuracy})

        FedAvg(
            fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n
        ).start(
            grid=grid,
            initial_arrays=ArrayRecord(get_weights(build_model(SPEC))),
            num_rounds=rounds,
            evaluate_fn=central_eval,
        )

    started = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=n,
        backend_name="ray",
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    durations = [b - a for a, b in itertools.pairwise(stamps)]
    print(json.dumps({"durations": durations, "startup": stamps[0] - started}))


# --- ours: Anvil + Kubo, trainers as processes --------------------------------------------
@dataclass
class Devnet:
    """Anvil, three connected Kubo daemons and the deployed, registered marketplace."""

    market: Marketplace
    rpc_url: str
    deployments: Path
    kubos: tuple[KuboDaemon, ...]
    tmp: Path
    # --netns: where trainer k runs (command prefix, IPFS API); else here, on kubos[dev % 3].
    site: Callable[[int], tuple[list[str], str]] | None = None


def start_devnet(stack: ExitStack, tmp: Path, *, anvil_host: str = "127.0.0.1") -> Devnet:
    anvil = stack.enter_context(
        start_anvil(host=anvil_host, log_path=tmp / "anvil.log", accounts=DEV_ACCOUNTS)
    )
    kubos = tuple(stack.enter_context(start_kubo()) for _ in range(3))
    for i, a in enumerate(kubos):
        connect_peers(a, kubos[(i + 1) % 3])
    w3 = connect(anvil.rpc_url)
    deployer = Identity.dev(0)
    market = Marketplace(w3, deploy_marketplace(w3, deployer.eth, unbonding_delay=60))
    deployments = tmp / "deployments"
    write_deployment(market.deployment, deployments)
    requester = Identity.dev(REQUESTER)
    market.mint(deployer.eth, requester.address, 100_000 * TOKEN)
    market.register(requester.eth, Role.REQUESTER, requester.x25519_public, 0)
    peers = [*range(FIRST_TRAINER, FIRST_TRAINER + MAX_TRAINERS), *ORACLES]
    for dev in peers:
        p = Identity.dev(dev)
        market.mint(deployer.eth, p.address, 1_000 * TOKEN)
        role = Role.ORACLE if dev in ORACLES else Role.TRAINER
        market.register(p.eth, role, p.x25519_public, 100 * TOKEN)
    return Devnet(market, anvil.rpc_url, deployments, kubos, tmp)


class Wiretap:
    """Counts pubsub publications (and their payload bytes) on one topic, from one daemon."""

    def __init__(self, daemon: KuboDaemon, topic: str):
        self.messages = 0
        self.bytes = 0
        self._sub: Subscription = PubsubClient(daemon.api_multiaddr).subscribe(topic)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            for message in self._sub:
                self.messages += 1
                self.bytes += len(message.data)
        except Exception as exc:  # the daemon went away: the counts so far stand
            log.warning("wiretap ended: %s", exc)

    def close(self) -> None:
        self._sub.close()
        self._thread.join(timeout=5)


@dataclass
class Trainer:
    dev: int
    argv: list[str]
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    errors: list[str] = field(default_factory=list)

    def start(self) -> None:
        err = open(self.home / "stderr.log", "ab")  # noqa: SIM115 (the child holds it)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDMARKET_")}
        env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=toolchain.REPO_ROOT
        )
        err.close()

    def last_error(self) -> str:
        lines = (self.home / "stderr.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_ours(
    net: Devnet, n: int, rounds: int, poll: float, *, gossip: bool = True, batches: bool = False
) -> dict[str, Any]:
    market = net.market
    data = splits()
    plan = TaskPlan(
        model=SPEC,
        train=LOCAL,
        budget=1000 * TOKEN,
        rounds=rounds,
        oracles=tuple(Identity.dev(o).address for o in ORACLES),
        min_trainers=n,
        max_trainers=n,
        min_stake=10 * TOKEN,
        trainer_bond=TOKEN,
        oracle_slash=10 * TOKEN,
        dataset={"validation": "digits", "features": 64},
        join_window=3600,
        round_duration=3600,
        commit_duration=3600,
        reveal_duration=3600,
        dispute_duration=3600,
        batches=BatchTerms() if batches else None,  # --batch-commits: one commitRound a round
    )
    store = KuboStore(net.kubos[0].api_multiaddr)
    task_id, _ = create_task(
        market, store, Identity.dev(REQUESTER), plan, data.validation.x, data.validation.y
    )
    for oracle in ORACLES:  # the committee takes its seats: the task opens for joining
        market.accept_seat(Identity.dev(oracle).eth, task_id)
    first_block = market.w3.eth.block_number + 1
    wiretap = Wiretap(
        net.kubos[0], task_topic(market.deployment.chain_id, market.market.address, task_id)
    )
    trainers = []
    for k in range(n):
        dev = FIRST_TRAINER + k
        home = net.tmp / f"task{task_id}" / f"trainer{k}"
        home.mkdir(parents=True)
        prefix, ipfs_api = net.site(k) if net.site else ([], net.kubos[dev % 3].api_multiaddr)
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "node",
            "--chain-rpc",
            net.rpc_url,
            "--deployments",
            str(net.deployments),
            "--home",
            str(home),
            "--ipfs-api",
            ipfs_api,
            "--dev-account",
            str(dev),
            "node",
            "run",
            "--task",
            str(task_id),
            "--data",
            "digits",
            "--part",
            f"{k}/{n}",
            "--poll",
            str(poll),
            "--timeout",
            str(RUN_TIMEOUT),
            "--json",
            "--gossip" if gossip else "--no-gossip",
        ]
        trainers.append(Trainer(dev, argv, home))
    stamps: dict[str, float] = {}
    # Round boundaries as pushed by the chain (the PhaseAdvanced logs, by websocket), stamped on
    # arrival: as precise as the peers' own wake-ups, and no chain poll of ours competing with
    # the peers for the two cores (a 20 ms poll cost ~15% of a core plus Anvil's answers).
    logs = TaskLogs(market, task_id)

    def stamp(raw: Any) -> bool:
        event = logs.decode(raw)
        if event is not None and event["event"] == "PhaseAdvanced":
            to, r = Phase(int(event["args"]["to"])), int(event["args"]["round"])
            if to == Phase.TRAINING:
                stamps.setdefault(f"round{r}", time.perf_counter())
            elif to != Phase.OPEN:
                stamps.setdefault("training_end", time.perf_counter())
        return True

    ws = ws_endpoint(net.rpc_url)
    assert ws is not None, "bench_round needs a devnet with a websocket (Anvil)"
    watcher = ChainSubscription(ws, wakeup=Wakeup(), logs=logs.filter, on_log=stamp).start()
    if not watcher.connected.wait(10):
        raise SystemExit(f"no websocket subscription to {ws}: cannot time the rounds")
    launched = time.perf_counter()
    for t in trainers:
        t.start()
    try:
        deadline = launched + RUN_TIMEOUT
        while True:
            now = time.perf_counter()
            if "training_end" in stamps and market.model_digest(task_id, rounds + 1) != bytes(32):
                break
            for t in trainers:
                assert t.proc is not None
                if t.proc.poll() not in (None, 0):
                    t.restarts += 1
                    t.errors.append(t.last_error())
                    log.warning("trainer dev %d exited (%s); restarting it", t.dev, t.errors[-1])
                    t.start()
            if now > deadline:
                raise SystemExit(
                    f"task {task_id} with {n} trainers did not finish in {RUN_TIMEOUT}s"
                )
            time.sleep(0.25)  # process health and the end only: the rounds are stamped by logs
    finally:
        watcher.stop()
        for t in trainers:
            t.stop()
        wiretap.close()
    last_block = market.w3.eth.block_number
    starts = [stamps[f"round{r}"] for r in range(1, rounds + 1)] + [stamps["training_end"]]
    durations = [b - a for a, b in itertools.pairwise(starts)]
    gas = task_gas(market, first_block, last_block)
    per_round = sum(gas[f]["gas"] for f in PER_ROUND_CALLS if f in gas)
    return {
        "task_id": task_id,
        "round_durations": durations,
        "startup_sec": starts[0] - launched,  # process start-up, joins and the start of training
        "gas": gas,
        "gas_per_trainer_round": per_round / (n * rounds),
        "gossip_messages": wiretap.messages / rounds,
        "gossip_bytes": wiretap.bytes / rounds,
        "restarts": sum(t.restarts for t in trainers),
        "restart_errors": sorted({e for t in trainers for e in t.errors}),
    }


def task_gas(market: Marketplace, first: int, last: int) -> dict[str, dict[str, int]]:
    """Gas by TaskMarket function over blocks ``first..last`` (one task's transactions)."""
    out: dict[str, dict[str, int]] = {}
    w3 = market.w3
    for number in range(first, last + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["to"] != market.market.address:
                continue
            fn, _ = market.market.decode_function_input(tx["input"])
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            row = out.setdefault(fn.fn_name, {"count": 0, "gas": 0, "reverted": 0})
            row["count"] += 1
            row["gas"] += int(receipt["gasUsed"])
            row["reverted"] += int(receipt["status"] != 1)
    return out


def measure(net: Devnet, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One side-by-side measurement at ``n`` trainers: our task, the simulator and Flower."""
    load_before = os.getloadavg()[0]
    log.warning("%d trainers: chain + IPFS run", n)
    ours = run_ours(net, n, args.rounds, args.poll, batches=args.batch_commits)
    if args.gossip_off_too:
        log.warning("%d trainers: chain + IPFS run without gossip", n)
        ours["without_gossip"] = run_ours(
            net, n, args.rounds, args.poll, gossip=False, batches=args.batch_commits
        )
    log.warning("%d trainers: simulator", n)
    sim = run_simulator(n, args.rounds)
    engines = {"ours": ours["round_durations"], "simulator": sim}
    flower = not args.no_flower and n <= args.flower_up_to
    if flower:
        log.warning("%d trainers: Flower", n)
        engines["flower"], flower_startup = run_flower(n, args.rounds)
    # The machine is shared: the 1-minute load average around this trainer count's runs.
    row: dict[str, Any] = {"ours": ours, "loadavg": [load_before, os.getloadavg()[0]]}
    if flower:
        row["flower_startup_sec"] = flower_startup
    for name, durations in engines.items():
        timing = summarize_rounds(durations)
        row[f"{name}_round_durations"] = durations
        row[f"{name}_first_round_sec"] = timing["first_round_sec"]
        row[f"{name}_sec_per_round"] = timing["steady_sec_per_round"]
        row[f"{name}_mean_sec_per_round"] = timing["mean_sec_per_round"]
    for name in engines.keys() - {"ours"}:
        # Headline: steady rounds (2+) on both sides. Means also carry one-off costs:
        # the first round's warm-up (Ray actors, first fetch and training), restarts.
        row[f"{name}_ratio"] = row["ours_sec_per_round"] / row[f"{name}_sec_per_round"]
        row[f"{name}_ratio_of_means"] = (
            row["ours_mean_sec_per_round"] / row[f"{name}_mean_sec_per_round"]
        )
    return row


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``--repeat``: every repetition under ``repeats``, and the median of each figure (Flower's
    steady round jumps between multiples of its ~0.1 s reply polling from one run to the next, so
    one run's ratio can be off by 2x); ``ours`` (gas, gossip) is the first repetition's."""
    merged: dict[str, Any] = {"ours": rows[0]["ours"], "repeats": rows}
    for key, value in rows[0].items():
        if key.endswith(("_sec_per_round", "_ratio", "_ratio_of_means", "_sec")) and isinstance(
            value, float
        ):
            merged[key] = statistics.median(r[key] for r in rows)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="measure each trainer count this many times; report the medians (and each run)",
    )  # fmt: skip
    parser.add_argument(
        "--trainers", default="4,8", help=f"comma-separated trainer counts (≤ {MAX_TRAINERS})"
    )
    parser.add_argument("--poll", type=float, default=0.3, help="trainers' chain poll interval (s)")
    parser.add_argument("--no-flower", action="store_true")
    parser.add_argument(
        "--flower-up-to", type=int, default=MAX_TRAINERS,
        help="run Flower only for trainer counts up to this (Ray's actors on a small machine)",
    )  # fmt: skip
    parser.add_argument(
        "--gossip-off-too",
        action="store_true",
        help="also run our side with `node run --no-gossip`, to see what gossip costs",
    )
    parser.add_argument(
        "--netns",
        action="store_true",
        help="also run each task with every trainer in a network namespace of its own (root)",
    )
    parser.add_argument("--netns-delay-ms", type=float, default=50.0, help="one way, per hop")
    parser.add_argument("--netns-rate-mbit", type=float, default=10.0, help="per machine link")
    parser.add_argument("--flower-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--gas-only",
        action="store_true",
        help="only the gas of batched rounds (one process drives funded dev accounts)",
    )
    parser.add_argument(
        "--batch-commits",
        action="store_true",
        help="our `node run` tasks use batched round commitments (`task create --batch-commits`)",
    )
    args = parser.parse_args()
    if args.gas_only:
        from round_gas import batched_gas

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        counts = [int(c) for c in args.trainers.split(",")]
        print(json.dumps(batched_gas(counts, args.rounds), sort_keys=True))
        return
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    torch.set_num_threads(1)
    if args.flower_worker is not None:
        flower_worker(args.flower_worker, args.rounds)
        return
    counts = [int(c) for c in args.trainers.split(",")]
    if any(not 1 <= c <= MAX_TRAINERS for c in counts):
        raise SystemExit(f"--trainers must be between 1 and {MAX_TRAINERS}")
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    report: dict[str, Any] = {
        "rounds": args.rounds,
        "model": SPEC.to_dict(),
        "local": {"epochs": LOCAL.epochs, "lr": LOCAL.lr, "batch_size": LOCAL.batch_size},
        "poll_sec": args.poll,
        "batch_commits": args.batch_commits,
        "repeat": args.repeat,
        "nodes": "a `node run` process per trainer; 3 Kubo daemons; Anvil automine",
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg()[0],
        "runs": {},
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        lab = None
        if args.netns:  # before the devnet: Anvil listens where the namespaces reach it
            shape = LinkShape(args.netns_delay_ms, args.netns_rate_mbit)
            lab = NetnsLab.open(stack, max(counts), shape, tmp)
            report["netns"] = {**lab.setup(), "runs": {}}
        net = start_devnet(stack, tmp, anvil_host=lab.host_address if lab else "127.0.0.1")
        for n in counts:
            rows = [measure(net, n, args) for _ in range(args.repeat)]
            row = rows[0] if args.repeat == 1 else median_row(rows)
            report["runs"][str(n)] = row
            if lab is not None:
                log.warning("%d trainers: chain + IPFS run, each trainer in its own namespace", n)
                placed = replace(net, kubos=(lab.kubo,))  # a daemon the namespaces reach
                report["netns"]["runs"][str(n)] = lab.run(
                    n,
                    args.rounds,
                    lambda site, placed=placed, n=n: run_ours(
                        replace(placed, site=site),
                        n,
                        args.rounds,
                        args.poll,
                        batches=args.batch_commits,
                    ),
                    row["ours_sec_per_round"],
                )
    report["loadavg_end"] = os.getloadavg()[0]
    runs = report["runs"]
    for key in ("flower_ratio", "simulator_ratio"):
        report[key] = {n: r.get(key) for n, r in runs.items()}
    for key in ("gossip_messages", "gossip_bytes", "gas_per_trainer_round"):
        report[key] = {n: r["ours"][key] for n, r in runs.items()}
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
