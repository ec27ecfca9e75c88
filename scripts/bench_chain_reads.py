#!/usr/bin/env python
"""Micro-benchmark of a peer's chain reads: web3.py's path against the lean one
(``marketplace.chain.lean``), CPU and wall time per read, on a real Anvil started here.

Prints ONE JSON object on stdout (progress goes to stderr). Setting: the marketplace deployed,
a task with 8 trainers that each committed a round-1 update (8 ``UpdateCommitted`` logs in 8
blocks). Reads, each timed over ``--iterations`` runs in alternating batches (so a load on the
machine hits both paths alike), the median batch reported:

* ``view_*``: the ``task(taskId)`` view with a prebuilt ``ContractFunction``: web3's path is
  ``marketplace.chain.tx.call`` (``fn.call`` with reverts decoded: ``Marketplace.call`` before
  the lean path), the lean one ``Marketplace.call``.
* ``events_*``: the incremental ``UpdateCommitted`` scan of the task (``taskId`` filter) over
  the 8 blocks holding its 8 logs: web3's ``get_logs`` against ``LeanReads.logs`` (what
  ``Marketplace.events`` sends when new blocks came in).
* ``task_view_cpu_ms_lean``: ``Marketplace.task`` end to end (building the ``ContractFunction``
  and the ``TaskInfo`` included); ``build_fn_cpu_ms``: building the ``ContractFunction`` alone
  (web3's ABI lookup, which both paths pay in the caller).
* ``eth_call_cpu_ms_provider`` / ``eth_call_cpu_ms_manager``: the bare request through
  ``provider.make_request`` (what the lean path sends) and ``w3.manager.request_blocking``
  (web3's middleware and formatters on top): the floor of any path over HTTP.

Usage: ``.venv/bin/python scripts/bench_chain_reads.py [--iterations 400]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402
from web3.types import RPCEndpoint  # noqa: E402

from marketplace.chain.backend import connect  # noqa: E402
from marketplace.chain.clients import Marketplace, Phase, Role, TaskParams  # noqa: E402
from marketplace.chain.deploy import deploy_marketplace  # noqa: E402
from marketplace.chain.devnet import dev_private_keys, dev_x25519_public, start_anvil  # noqa: E402
from marketplace.chain.lean import MISSING  # noqa: E402
from marketplace.chain.tx import call  # noqa: E402

TRAINERS = 8
E18 = 10**18
BATCHES = 5


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def per_call(read: Callable[[], Any], n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``read`` over ``n`` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        read()
    return (time.process_time() - cpu) * 1e3 / n, (time.perf_counter() - wall) * 1e3 / n


def compare(paths: dict[str, Callable[[], Any]], iterations: int) -> dict[str, float]:
    """Each path's median batch figures, batches of the paths alternating."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for read in paths.values():  # warm up: caches, connections, lazy imports
        for _ in range(5):
            read()
    for _ in range(BATCHES):
        for name, read in paths.items():
            runs[name].append(per_call(read, max(1, iterations // BATCHES)))
    out: dict[str, float] = {}
    for name, figures in runs.items():
        out[f"{name}_cpu_ms"] = round(statistics.median(c for c, _ in figures), 4)
        out[f"{name}_wall_ms"] = round(statistics.median(w for _, w in figures), 4)
    return out


def setup(market: Marketplace) -> tuple[int, int, int]:
    """A task with ``TRAINERS`` trainers, each of which committed round 1; returns the task
    and the block range holding the commits."""
    keys = [Account.from_key(k) for k in dev_private_keys(3 + TRAINERS)]
    deployer, requester, oracle, trainers = keys[0], keys[1], keys[2], keys[3:]
    stake = 100 * E18
    market.mint(deployer, requester.address, 1000 * E18)
    market.register(requester, Role.REQUESTER, dev_x25519_public(1))
    market.mint(deployer, oracle.address, stake)
    market.register(oracle, Role.ORACLE, dev_x25519_public(2), stake)
    for i, t in enumerate(trainers, start=3):
        market.mint(deployer, t.address, stake)
        market.register(t, Role.TRAINER, dev_x25519_public(i), stake)
    task_id = market.create_task(
        requester,
        TaskParams(
            budget=900 * E18, model_spec_cid="bafy-spec", initial_model_cid="bafy-init",
            initial_model_digest=Web3.keccak(text="init"), config_cid="bafy-config",
            validation_commitment=Web3.keccak(text="validation"), rounds=2, min_trainers=2,
            max_trainers=TRAINERS, min_stake=stake // 2, join_deadline=market.now() + 3600,
            oracles=(oracle.address,), oracle_slash=stake // 4,
        ),
    )  # fmt: skip
    market.accept_seat(oracle, task_id)
    for t in trainers:
        market.join(t, task_id)
    if market.task(task_id).phase != Phase.TRAINING:
        market.advance(requester, task_id)
    first = int(market.w3.eth.block_number) + 1
    for i, t in enumerate(trainers):
        digest = bytes(Web3.keccak(text=f"update {i}"))
        market.commit_update(t, task_id, 1, f"bafy-update-{i}", digest, 100 + i)
    return task_id, first, int(market.w3.eth.block_number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=400, help="reads per path")
    args = parser.parse_args()
    with start_anvil() as node:
        w3 = connect(node.rpc_url)
        deployer = Account.from_key(dev_private_keys(1)[0])
        market = Marketplace(w3, deploy_marketplace(w3, deployer))
        log("deployed; 8 trainers join and commit")
        task_id, first, last = setup(market)

        fn = market.market.functions.task(task_id)
        assert market.call(fn) == fn.call()
        view = compare(
            {
                "view_web3": lambda: call(fn, decoder=market.decoder),
                "view_lean": lambda: market.call(fn),
            },
            args.iterations,
        )
        log(f"view: {view}")

        of_task = {"taskId": task_id}
        event = market.market.events.UpdateCommitted

        def web3_logs() -> Any:
            return event.get_logs(from_block=first, to_block=last, argument_filters=of_task)

        def lean_logs() -> Any:
            return market._lean.logs(market.market, "UpdateCommitted", of_task, first, last)

        fresh = lean_logs()
        assert fresh is not MISSING and len(fresh) == TRAINERS and fresh == web3_logs()
        events = compare({"events_web3": web3_logs, "events_lean": lean_logs}, args.iterations)
        log(f"events: {events}")

        raw_tx = [{"to": fn.address, "data": fn._encode_transaction_data()}, "latest"]
        other = compare(
            {
                "task_view_lean": lambda: market.task(task_id),
                "build_fn": lambda: market.market.functions.task(task_id),
                "eth_call_provider": lambda: w3.provider.make_request(
                    RPCEndpoint("eth_call"), raw_tx
                ),
                "eth_call_manager": lambda: w3.manager.request_blocking(
                    RPCEndpoint("eth_call"), raw_tx
                ),
            },
            args.iterations,
        )
    result: dict[str, Any] = {
        "view_cpu_ms_web3": view["view_web3_cpu_ms"],
        "view_cpu_ms_lean": view["view_lean_cpu_ms"],
        "view_wall_ms_web3": view["view_web3_wall_ms"],
        "view_wall_ms_lean": view["view_lean_wall_ms"],
        "events_cpu_ms_web3": events["events_web3_cpu_ms"],
        "events_cpu_ms_lean": events["events_lean_cpu_ms"],
        "events_wall_ms_web3": events["events_web3_wall_ms"],
        "events_wall_ms_lean": events["events_lean_wall_ms"],
        "events_logs": TRAINERS,
        "task_view_cpu_ms_lean": other["task_view_lean_cpu_ms"],
        "build_fn_cpu_ms": other["build_fn_cpu_ms"],
        "eth_call_cpu_ms_provider": other["eth_call_provider_cpu_ms"],
        "eth_call_cpu_ms_manager": other["eth_call_manager_cpu_ms"],
        "iterations": args.iterations,
        "python": platform.python_version(),
        "web3": __import__("web3").__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
