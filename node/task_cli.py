"""CLI commands of a task's life: ``task``, ``node run``, ``oracle run`` and ``rewards``.

Registered on the root group by :mod:`node.cli`; each command is a thin layer over
``marketplace.protocol`` and the node state machines.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from web3 import Web3

from marketplace.chain.clients import Phase
from marketplace.errors import ConfigError
from node.context import CliContext, format_amount, parse_amount

pass_ctx = click.make_pass_decorator(CliContext)


def _json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def _emit(as_json: bool, data: Any, human: Any) -> None:
    from node.cli import console

    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human(console)


def _load_splits(source: str, seed: int) -> Any:
    from marketplace.fl import load_dataset, split_dataset

    return split_dataset(load_dataset(source), seed=seed)


# --- task ----------------------------------------------------------------------------------
@click.group()
def task() -> None:
    """Create, inspect and move tasks along (requester and anyone)."""


@task.command("create")
@click.option("--validation", "validation", default="digits", show_default=True,
              help="Validation data for the oracles: a .npz/.csv path or a built-in dataset "
                   "(its validation split).")  # fmt: skip
@click.option("--model", "model",
              default='{"arch": "mlp", "input_dim": 64, "hidden": [32], "num_classes": 10}',
              show_default=True, help="Model spec as JSON, or a path to a JSON file.")  # fmt: skip
@click.option("--budget", required=True, help="Tokens escrowed for the trainers.")
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--oracle", "oracles", multiple=True, required=True,
              help="Committee member (repeat).")  # fmt: skip
@click.option("--min-trainers", type=int, default=2, show_default=True)
@click.option("--max-trainers", type=int, default=16, show_default=True)
@click.option("--min-stake", default="10", show_default=True,
              help="Stake a trainer must hold (tokens).")  # fmt: skip
@click.option("--bond", default="1", show_default=True,
              help="Bond each trainer posts to join (tokens).")  # fmt: skip
@click.option("--oracle-slash", default="10", show_default=True,
              help="Stake an oracle loses for dissent.")  # fmt: skip
@click.option("--aggregator", default="fedavg", show_default=True,
              help="fedavg, fedprox, median, trimmed_mean, krum, multikrum, bulyan.")  # fmt: skip
@click.option("--epochs", type=int, default=2, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--valuation", default="auto", show_default=True,
              help="auto, exact, gtg, monte_carlo, loo.")  # fmt: skip
@click.option("--join-window", type=int, default=3600, show_default=True, help="Seconds to join.")
@click.option("--round-duration", type=int, default=3600, show_default=True)
@click.option("--phase-duration", type=int, default=3600, show_default=True,
              help="Seconds for each of commit, reveal and dispute.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@_json_option
@pass_ctx
def task_create(c: CliContext, validation: str, model: str, budget: str, rounds: int,
                oracles: tuple[str, ...], min_trainers: int, max_trainers: int, min_stake: str,
                bond: str, oracle_slash: str, aggregator: str, epochs: int, lr: float,
                batch_size: int, valuation: str, join_window: int, round_duration: int,
                phase_duration: int, seed: int, as_json: bool) -> None:  # fmt: skip
    """Create a task: encrypt the validation set for the committee, publish the task document,
    the model spec and initial weights, and escrow the budget.

    \b
    Example:
      fedmarket task create --budget 1000 --oracle 0xA… --oracle 0xB… --oracle 0xC…
    """
    from marketplace.fl import ModelSpec, TrainConfig
    from marketplace.protocol.requester import TaskPlan, create_task
    from marketplace.protocol.taskdoc import ValuationConfig

    spec_text = Path(model).read_text() if Path(model).is_file() else model
    try:
        spec = ModelSpec.from_json(spec_text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--model is not a valid model spec: {exc}") from None
    splits = _load_splits(validation, seed) if not Path(validation).is_file() else None
    if splits is not None:
        x_val, y_val = splits.validation.x, splits.validation.y
    else:
        from marketplace.fl import load_dataset

        ds = load_dataset(validation)
        x_val, y_val = ds.x, ds.y
    plan = TaskPlan(
        model=spec, train=TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size),
        budget=parse_amount(budget), rounds=rounds,
        oracles=tuple(Web3.to_checksum_address(o) for o in oracles), min_trainers=min_trainers,
        max_trainers=max_trainers, min_stake=parse_amount(min_stake),
        trainer_bond=parse_amount(bond),
        oracle_slash=parse_amount(oracle_slash), aggregator=aggregator,
        valuation=ValuationConfig(method=valuation, seed=seed),
        dataset={"validation": validation, "features": int(x_val.shape[1])},
        join_window=join_window, round_duration=round_duration, commit_duration=phase_duration,
        reveal_duration=phase_duration, dispute_duration=phase_duration,
    )  # fmt: skip
    requester = c.identity()
    task_id, doc = create_task(c.market, c.store, requester, plan, x_val, y_val)
    out = {"taskId": task_id, "requester": requester.address, "budget": str(plan.budget),
           "validationCommitment": doc.validation.sha256,
           "validationCid": doc.validation.cid}  # fmt: skip
    _emit(as_json, out, lambda con: con.print(f"created task {task_id} (budget {budget} escrowed)"))


@task.command("list")
@_json_option
@pass_ctx
def task_list(c: CliContext, as_json: bool) -> None:
    """List every task on the market with its phase."""
    m = c.market
    rows = []
    for ev in m.events(m.market, "TaskCreated"):
        tid = int(ev["args"]["taskId"])
        info = m.task(tid)
        rows.append({"taskId": tid, "requester": ev["args"]["requester"],
                     "budget": str(info.budget), "phase": info.phase_enum.name.lower(),
                     "round": int(info.current_round), "rounds": int(info.rounds),
                     "trainers": int(info.trainer_count)})  # fmt: skip

    def human(con: Any) -> None:
        table = Table("task", "phase", "round", "trainers", "budget", "requester")
        for r in rows:
            table.add_row(str(r["taskId"]), r["phase"], f"{r['round']}/{r['rounds']}",
                          str(r["trainers"]), format_amount(int(r["budget"])),
                          r["requester"])  # fmt: skip
        con.print(table)

    _emit(as_json, {"tasks": rows}, human)


@task.command("show")
@click.argument("task_id", type=int)
@_json_option
@pass_ctx
def task_show(c: CliContext, task_id: int, as_json: bool) -> None:
    """Show a task's on-chain state."""
    out = c.market.task(task_id).to_json()
    out["oracles"] = list(c.market.call(c.market.market.functions.oracles(task_id)))

    def human(con: Any) -> None:
        from node.cli import kv_table

        con.print(kv_table(f"Task {task_id}", out))

    _emit(as_json, out, human)


@task.command("join")
@click.argument("task_id", type=int)
@_json_option
@pass_ctx
def task_join(c: CliContext, task_id: int, as_json: bool) -> None:
    """Join a task as a trainer (posts the bond; stake is locked until the task ends)."""
    signer = c.signer()
    receipt = c.market.join(signer, task_id)
    _emit(as_json, {"taskId": task_id, "trainer": signer.address,
                    "tx": receipt["transactionHash"].hex()},
          lambda con: con.print(f"joined task {task_id}"))  # fmt: skip


@task.command("advance")
@click.argument("task_id", type=int)
@_json_option
@pass_ctx
def task_advance(c: CliContext, task_id: int, as_json: bool) -> None:
    """Move a task to its next phase once the current one is over (anyone may)."""
    before = c.market.task(task_id).phase_enum
    c.market.advance(c.signer(), task_id)
    after = c.market.task(task_id)
    out = {"taskId": task_id, "from": before.name.lower(), "to": after.phase_enum.name.lower(),
           "round": int(after.current_round)}  # fmt: skip
    _emit(as_json, out, lambda con: con.print(f"task {task_id}: {out['from']} → {out['to']}"))


@task.command("cancel")
@click.argument("task_id", type=int)
@_json_option
@pass_ctx
def task_cancel(c: CliContext, task_id: int, as_json: bool) -> None:
    """Cancel an open task and take the budget back (requester only)."""
    c.market.cancel(c.signer(), task_id)
    _emit(as_json, {"taskId": task_id, "phase": Phase.CANCELLED.name.lower()},
          lambda con: con.print(f"task {task_id} cancelled; budget refunded"))  # fmt: skip


# --- node / oracle -------------------------------------------------------------------------
@click.group("node")
def node_group() -> None:
    """Run a trainer's peer node."""


@node_group.command("run")
@click.option("--task", "task_id", type=int, required=True)
@click.option(
    "--data",
    "data",
    required=True,
    help="Private training data: a .npz/.csv path or a built-in dataset name.",
)
@click.option(
    "--part", default=None, help="Use part K of N of the data's train split, as K/N (tests, demos)."
)
@click.option("--partition", default="iid", show_default=True,
              help="iid or dirichlet, with --part.")  # fmt: skip
@click.option("--alpha", type=float, default=0.5, show_default=True)
@click.option("--behaviour", default="honest", show_default=True,
              help="For evaluation only: honest, free_rider, sign_flip, scaled, gaussian_noise, "
                   "label_flip.")  # fmt: skip
@click.option("--poll", type=float, default=1.0, show_default=True,
              help="Seconds between chain polls.")  # fmt: skip
@click.option("--timeout", type=float, default=None,
              help="Give up after this many seconds of waiting.")  # fmt: skip
@click.option("--threads", type=int, default=1, show_default=True,
              help="Torch threads for training.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--gossip/--no-gossip",
    default=True,
    show_default=True,
    help="Announce and pre-fetch updates over Kubo pubsub (needs --ipfs-api).",
)
@click.option("--fanout", type=int, default=3, show_default=True,
              help="Gossip re-announcements per round at most.")  # fmt: skip
@_json_option
@pass_ctx
def node_run(c: CliContext, task_id: int, data: str, part: str | None, partition: str,
             alpha: float, behaviour: str, poll: float, timeout: float | None, threads: int,
             seed: int, gossip: bool, fanout: int, as_json: bool) -> None:  # fmt: skip
    """Take part in a task as a trainer until it is settled: join, train every round, publish
    encrypted updates, aggregate, post models, claim. Safe to restart after a crash.

    \b
    Example:
      fedmarket --ipfs-api /ip4/127.0.0.1/tcp/5001 node run --task 1 --data my.npz
    """
    from marketplace.fl import get_behaviour
    from marketplace.protocol.session import TaskSession
    from node.task_gossip import BackgroundAnnouncer, open_task_gossip
    from node.trainer import TrainerNode

    dataset = _trainer_data(data, part, partition, alpha, seed)
    identity = c.identity()
    session = TaskSession.open(c.market, c.store, task_id, identity)
    _check_registered(c, identity.address, "trainer", session.info().min_stake)
    # Gossip is an accelerator over the chain's canonical commit set: without Kubo pubsub the
    # node still fetches every committed update by CID when its round closes.
    peers = open_task_gossip(session, c.ipfs_api, fanout=fanout) if gossip and c.ipfs_api else None
    announcer = BackgroundAnnouncer(peers) if peers is not None else None
    node = TrainerNode(session, dataset, c.journal(f"trainer-{identity.address}-{task_id}"),
                       behaviour=get_behaviour(behaviour), num_threads=threads, seed=seed,
                       announce=announcer)  # fmt: skip
    log = (lambda r: None) if as_json else (lambda r: _log_step(r.action))
    if peers is not None:
        peers.start()
    try:
        result = node.run(poll=poll, timeout=timeout, on_step=log)
    finally:
        if announcer is not None:
            announcer.close()
        if peers is not None:
            peers.stop()
    gossip_out = None
    if peers is not None and announcer is not None:
        gossip_out = {**dataclasses.asdict(peers.stats()), "announced": announcer.published,
                      "announce_failed": announcer.failed,
                      "slowest_announce_seconds": round(announcer.slowest_seconds, 3)}  # fmt: skip
    out = {"taskId": task_id, "trainer": identity.address, "result": result.action,
           "claimed": node.claimed, "gossip": gossip_out}  # fmt: skip
    _emit(as_json, out, lambda con: con.print(f"task {task_id}: {result.action}"))


@node_group.command("average")
@click.option("--task", "task_id", type=int, required=True)
@click.option("--data", "data", required=True,
              help="Private training data: a .npz/.csv path or a built-in dataset.")  # fmt: skip
@click.option("--part", default=None, help="Use part K of N of the data's train split, as K/N.")
@click.option("--partition", default="iid", show_default=True,
              help="iid or dirichlet, with --part.")  # fmt: skip
@click.option("--alpha", type=float, default=0.5, show_default=True)
@click.option("--rounds", type=int, default=None, help="Local rounds to run (default: the task's).")
@click.option("--k", "k", type=int, default=2, show_default=True,
              help="Neighbours mixed per round (0: train alone).")  # fmt: skip
@click.option("--mixing", type=click.Choice(["uniform", "samples"]), default="uniform",
              show_default=True, help="Equal weights, or weights by sample count.")  # fmt: skip
@click.option("--staleness-exponent", type=float, default=0.0, show_default=True,
              help="Down-weight a snapshot s versions behind by (1+s)^-x.")  # fmt: skip
@click.option(
    "--wait",
    "wait_seconds",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for every other trainer's first snapshot (0: no wait).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@_json_option
@pass_ctx
def node_average(c: CliContext, task_id: int, data: str, part: str | None, partition: str,
                 alpha: float, rounds: int | None, k: int, mixing: str, staleness_exponent: float,
                 wait_seconds: float, seed: int, as_json: bool) -> None:  # fmt: skip
    """Asynchronous gossip averaging with the task's trainers (no barrier, not paid): each round,
    train locally, mix with K neighbours' latest snapshots, publish. Reports per round the
    consensus distance among the models this node holds. Needs --ipfs-api.

    \b
    Example:
      fedmarket --ipfs-api /ip4/127.0.0.1/tcp/5001 node average --task 1 --data my.npz --k 2
    """
    from marketplace.fl.gossip_averaging import consensus_report
    from marketplace.protocol.session import TaskSession
    from marketplace.storage.pubsub import PubsubClient
    from node.gossip_averaging import open_gossip_averaging

    if not c.ipfs_api:
        raise ConfigError(
            "gossip averaging exchanges snapshots between Kubo daemons: pass --ipfs-api ADDR"
        )
    dataset = _trainer_data(data, part, partition, alpha, seed)
    identity = c.identity()
    session = TaskSession.open(c.market, c.store, task_id, identity)
    info = session.info()
    if info.phase_enum in (Phase.OPEN, Phase.CANCELLED):
        raise ConfigError(
            f"task {task_id} is {info.phase_enum.name.lower()}: its trainer set is final only once "
            "training has started; join and wait (`fedmarket task show`)"
        )
    if not session.members().is_trainer(identity.address):
        raise ConfigError(f"{identity.address} is not a trainer of task {task_id}")
    node = open_gossip_averaging(session, PubsubClient(c.ipfs_api), dataset, k=k,
                                 mixing=mixing, staleness_exponent=staleness_exponent,  # type: ignore[arg-type]
                                 seed=seed)  # fmt: skip
    records: list[dict[str, Any]] = []

    def on_step(report: Any) -> None:
        dist = consensus_report(node.peer.held_models())
        row = {"round": len(records) + 1, "version": report.version,
               "train_loss": round(report.train_loss, 6), "mixed": len(report.mixed),
               "fetched": len(report.fetched), "refused": dict(report.refused),
               "local_consensus_relative": dist.relative, "local_consensus_mean_sq": dist.mean_sq,
               "models_held": len(node.peer.held_models())}  # fmt: skip
        records.append(row)
        if not as_json:
            _log_step(
                f"round {row['round']}: mixed {row['mixed']} neighbours, local consensus "
                f"distance {dist.relative:.4f} (relative), loss {report.train_loss:.4f}"
            )

    node.start()
    try:
        others = len(session.members().trainers) - 1
        if wait_seconds > 0 and others > 0:
            node.wait_for_candidates(others, timeout=wait_seconds)
        node.run(rounds or int(info.rounds), on_step=on_step)
    finally:
        node.stop()
    out = {"taskId": task_id, "trainer": identity.address, "k": k, "mixing": mixing,
           "rounds": records, "stats": dataclasses.asdict(node.stats())}  # fmt: skip
    summary = (
        f"task {task_id}: {len(records)} gossip-averaging rounds; local consensus distance "
        f"{records[-1]['local_consensus_relative']:.4f}"
        if records
        else f"task {task_id}: no rounds"
    )
    _emit(as_json, out, lambda con: con.print(summary))


def _trainer_data(
    source: str, part: str | None, partition_name: str, alpha: float, seed: int
) -> Any:
    from marketplace.fl import load_dataset, partition

    if part is None:
        return load_dataset(source)
    try:
        k, n = (int(v) for v in part.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--part must be K/N with 0 <= K < N, got {part!r}") from None
    splits = _load_splits(source, seed)
    parts = partition(partition_name, splits.train.y, num_clients=n, seed=seed, alpha=alpha)
    return splits.train.subset(parts[k], name=f"{source}/{k}of{n}")


def _check_registered(c: CliContext, address: str, role: str, min_stake: int) -> None:
    p = c.market.participant(address)
    if p.role.name.lower() != role:
        raise ConfigError(
            f"{address} is registered as {p.role.name.lower()}, not {role}: run "
            f"`fedmarket register {role} --stake N` first"
        )
    if p.stake < min_stake:
        raise ConfigError(
            f"{address} stakes {format_amount(p.stake)}, "
            f"the task needs {format_amount(min_stake)}: "
            f"run `fedmarket stake {format_amount(min_stake - p.stake)}`"
        )


def _log_step(action: str) -> None:
    from node.cli import console

    if not action.startswith("waiting"):
        console.print(f"[dim]·[/] {action}")


@click.group("oracle")
def oracle_group() -> None:
    """Run an oracle committee member."""


@oracle_group.command("run")
@click.option("--task", "task_id", type=int, required=True)
@click.option("--poll", type=float, default=1.0, show_default=True)
@click.option("--timeout", type=float, default=None)
@_json_option
@pass_ctx
def oracle_run(
    c: CliContext, task_id: int, poll: float, timeout: float | None, as_json: bool
) -> None:
    """Score a task and take part in commit-reveal; then enforce the result (slash dissenting
    oracles, settle flagged trainers). Safe to restart: it never commits twice.

    \b
    Example:
      fedmarket --ipfs-api /ip4/127.0.0.1/tcp/5001 oracle run --task 1
    """
    from marketplace.oracle.service import OracleNode
    from marketplace.protocol.session import TaskSession

    identity = c.identity()
    session = TaskSession.open(c.market, c.store, task_id, identity)
    _check_registered(c, identity.address, "oracle", 0)
    node = OracleNode(session, c.journal(f"oracle-{identity.address}-{task_id}"))
    log = (lambda a: None) if as_json else _log_step
    result = node.run(poll=poll, timeout=timeout, on_step=log)
    root = node.journal.get(task_id, 0, "score")
    _emit(as_json, {"taskId": task_id, "oracle": identity.address, "result": result,
                    "committed": root},
          lambda con: con.print(f"task {task_id}: {result}"))  # fmt: skip


# --- rewards -------------------------------------------------------------------------------
@click.group()
def rewards() -> None:
    """Show and claim a finalized task's payouts."""


@rewards.command("show")
@click.option("--task", "task_id", type=int, required=True)
@_json_option
@pass_ctx
def rewards_show(c: CliContext, task_id: int, as_json: bool) -> None:
    """Show the finalized payout table (scores, amounts, flags, claimed or not)."""
    from marketplace.protocol.report import entries_of, final_report
    from marketplace.protocol.session import TaskSession

    session = TaskSession.open(c.market, c.store, task_id, c.identity())
    report = final_report(session)
    fn = c.market.market.functions
    rows = [{"index": e.index, "account": e.account, "amount": str(e.amount),
             "score_ppm": e.score_ppm, "flags": e.flags,
             "claimed": bool(c.market.call(fn.isClaimed(task_id, e.index)))}
            for e in entries_of(report)]  # fmt: skip

    def human(con: Any) -> None:
        table = Table("account", "score (ppm)", "amount", "flags", "claimed")
        for r in rows:
            table.add_row(r["account"], f"{r['score_ppm']:,}", format_amount(int(r["amount"])),
                          str(r["flags"]), "yes" if r["claimed"] else "no")  # fmt: skip
        con.print(table)

    _emit(as_json, {"taskId": task_id, "root": report["merkle_root"], "payouts": rows}, human)


@rewards.command("claim")
@click.option("--task", "task_id", type=int, required=True)
@_json_option
@pass_ctx
def rewards_claim(c: CliContext, task_id: int, as_json: bool) -> None:
    """Claim this account's payout with its Merkle proof (bond returned with it)."""
    from marketplace.protocol.report import claim_args, final_report
    from marketplace.protocol.session import TaskSession

    identity = c.identity()
    session = TaskSession.open(c.market, c.store, task_id, identity)
    found = claim_args(final_report(session), identity.address)
    if found is None:
        raise ConfigError(f"{identity.address} has no payout in task {task_id}")
    entry, proof = found
    receipt = c.market.claim(identity.eth, task_id, index=entry.index, account=entry.account,
                             amount=entry.amount, score_ppm=entry.score_ppm, flags=entry.flags,
                             proof=proof)  # fmt: skip
    out = {"taskId": task_id, "account": entry.account, "amount": str(entry.amount),
           "flags": entry.flags, "tx": receipt["transactionHash"].hex()}  # fmt: skip
    _emit(as_json, out, lambda con: con.print(f"claimed {format_amount(entry.amount)}"))


COMMANDS = (task, node_group, oracle_group, rewards)
