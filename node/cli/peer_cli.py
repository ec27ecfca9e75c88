"""``fedmarket node run|average`` and ``fedmarket oracle run``: a peer taking part in a task.

Each command opens the task's session and hands it to a peer of :mod:`node.peers` (or, for
``node average``, to the gossip-averaging transport of :mod:`marketplace.gossip`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast

import click

from marketplace.chain.clients import Phase, Role
from marketplace.errors import ConfigError
from node.cli.context import CliContext, format_amount
from node.cli.output import (
    F,
    choice,
    console,
    emit,
    json_option,
    log_step,
    pass_ctx,
    poll_options,
    task_option,
)
from node.cli.params import ADDRESS

if TYPE_CHECKING:  # imported by the commands that run: torch is under them
    from marketplace.fl.data import Dataset
    from marketplace.fl.gossip_averaging import MixingRule
    from node.peers.base import Step


def data_options(fn: F) -> F:
    """``--data``, ``--part``, ``--partition`` and ``--alpha``: a trainer's private rows."""
    for option in reversed(
        (
            click.option(
                "--data", "data", required=True,
                help="Private training data: a .npz/.csv path or a built-in dataset name.",
            ),
            click.option(
                "--part", default=None,
                help="Use part K of N of the data's train split, as K/N (tests, demos).",
            ),
            click.option(
                "--partition", type=choice("marketplace.fl.partition:PARTITIONERS"),
                default="iid", show_default=True, help="How --part splits the data.",
            ),
            click.option(
                "--alpha", type=float, default=0.5, show_default=True,
                help="Dirichlet concentration, with --partition dirichlet.",
            ),
        )
    ):  # fmt: skip
        fn = option(fn)
    return fn


@click.group("node")
def node_group() -> None:
    """Run a trainer's peer node."""


@node_group.command("run")
@task_option
@data_options
@click.option("--behaviour", type=choice("marketplace.fl.attacks:BEHAVIOURS"), default="honest",
              show_default=True, help="For evaluation only: how this trainer behaves.")  # fmt: skip
@poll_options
@click.option("--threads", type=int, default=1, show_default=True,
              help="Torch threads for training.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--gossip/--no-gossip",
    default=True,
    show_default=True,
    help="Announce and pre-fetch updates over Kubo pubsub (needs --ipfs-api).",
)
@click.option("--fanout", type=click.IntRange(min=0), default=None,
              help="Gossip re-announcements per round at most [default: 3; 0 in a "
                   "batched task, whose trainers repeat their leaves instead].")  # fmt: skip
@click.option(
    "--inline/--no-inline",
    default=True,
    show_default=True,
    help="Send small updates inside the gossip announcement (no IPFS round trip).",
)
@click.option(
    "--subscribe/--no-subscribe",
    default=True,
    show_default=True,
    help="React to the task's chain events over the RPC's websocket (else poll only).",
)
@click.option("--max-epsilon", type=float, default=None,
              help="In a DP task: this node's own ε ceiling below the task's; rounds that "
                   "would pass it are refused (the noise stays the task's).")  # fmt: skip
@click.option("--censor", "censor", type=ADDRESS, multiple=True,
              help="For evaluation only: in a batched task, leave this trainer's leaf out of "
                   "the batches this node closes (it must commit directly).")  # fmt: skip
@json_option
@pass_ctx
def node_run(c: CliContext, task_id: int, data: str, part: str | None, partition: str,
             alpha: float, behaviour: str, poll: float, timeout: float | None, threads: int,
             seed: int, gossip: bool, fanout: int | None, inline: bool, subscribe: bool,
             max_epsilon: float | None, censor: tuple[str, ...],
             as_json: bool) -> None:  # fmt: skip
    """Take part in a task as a trainer until it is settled: join, train every round, publish
    encrypted updates, aggregate, post models, claim. Safe to restart after a crash.

    \b
    Example:
      fedmarket --dev-account 2 node run --task 1 --data hospital.npz
    """
    from marketplace.fl import get_behaviour
    from marketplace.gossip.membership import (
        BackgroundAnnouncer,
        ChainMembership,
        open_task_gossip,
    )
    from marketplace.protocol.session import TaskSession
    from marketplace.protocol.task_feed import open_task_feed
    from marketplace.storage.pubsub import PubsubClient
    from node.peers.trainer import TrainerNode

    dataset = _trainer_data(data, part, partition, alpha, seed)
    identity = c.identity()
    session = TaskSession.open(c.market, c.store, task_id, identity)
    from marketplace.fl.data import check_fits

    spec = session.doc.model  # the data must fit the model before any bond is posted
    check_fits(dataset, spec.input_dim, spec.num_classes, task=f"task {task_id}")
    _check_registered(c, identity.address, Role.TRAINER, session.info().min_stake)
    # The task's chain events by websocket (polling --poll as the fallback) and the updates that
    # gossip or the commit logs deliver early, kept for the round's close.
    feed = open_task_feed(session, c.rpc_url, subscribe=subscribe)
    # Gossip is an accelerator over the chain's canonical commit set: without Kubo pubsub the
    # node still fetches every committed update by CID when its round closes.
    # Under secure aggregation no update is announced (peers see only masked inputs); the
    # round's shares and unmasking travel on its own topic instead.
    secagg = session.doc.secagg is not None
    gossip = gossip and not secagg
    peers = None
    if fanout is None:
        # Batched: each trainer repeats its signed leaf (CID and digest) until the batch lands,
        # and a peer fetches by it what it missed, so a re-announcement only costs every peer
        # one more message to check.
        fanout = 0 if session.doc.batches is not None else 3
    if gossip and c.ipfs_api:
        membership = ChainMembership(session)
        feed.on_round = membership.note_round  # gossip's round window moves with pushed logs
        peers = open_task_gossip(
            session, c.ipfs_api, fanout=fanout, on_payload=feed.on_gossip,
            on_leaf=feed.on_leaf, membership=membership,
        )  # fmt: skip
    announcer = (
        BackgroundAnnouncer(peers, payload_for=session.own_envelope if inline else None)
        if peers is not None
        else None
    )
    pubsub = PubsubClient(c.ipfs_api) if secagg and c.ipfs_api else None
    node = TrainerNode(session, dataset, c.journal(f"trainer-{identity.address}-{task_id}"),
                       behaviour=get_behaviour(behaviour), num_threads=threads, seed=seed,
                       announce=announcer, max_epsilon=max_epsilon, pubsub=pubsub,
                       send_leaf=announcer.send_leaf if announcer is not None else None,
                       censor=censor)  # fmt: skip
    if peers is not None:
        peers.start()
    keeper = _peer_keeper(c)
    try:
        result = node.run(
            poll=poll, timeout=timeout, on_step=_step_printer(as_json), sleep=feed.sleep
        )
    finally:
        node.close()
        if node.secagg is not None:
            node.secagg.close()
        if keeper is not None:
            keeper.close()
        if announcer is not None:
            announcer.close()
        if peers is not None:
            peers.stop()
        feed.close()
    gossip_out = None
    if peers is not None and announcer is not None:
        gossip_out = {**dataclasses.asdict(peers.stats()), "announced": announcer.published,
                      "leaves_sent": announcer.leaves_sent,
                      "announce_failed": announcer.failed,
                      "slowest_announce_seconds": round(announcer.slowest_seconds, 3)}  # fmt: skip
    out = {"taskId": task_id, "trainer": identity.address, "result": result.action,
           "claimed": node.claimed, "gossip": gossip_out, "feed": feed.stats(),
           "trained_ahead": dict(node.ahead_counts),
           "privacy": node.privacy.summary() if node.privacy else None}  # fmt: skip
    emit(as_json, out, lambda: console.print(f"task {task_id}: {result.action}"))


@node_group.command("average")
@task_option
@data_options
@click.option("--rounds", type=int, default=None, help="Local rounds to run (default: the task's).")
@click.option("--k", "k", type=int, default=2, show_default=True,
              help="Neighbours mixed per round (0: train alone).")  # fmt: skip
@click.option("--mixing", type=choice("marketplace.fl.gossip_averaging:MIXING_RULES"),
              default="uniform", show_default=True,
              help="Equal weights, or weights by sample count.")  # fmt: skip
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
@json_option
@pass_ctx
def node_average(c: CliContext, task_id: int, data: str, part: str | None, partition: str,
                 alpha: float, rounds: int | None, k: int, mixing: str, staleness_exponent: float,
                 wait_seconds: float, seed: int, as_json: bool) -> None:  # fmt: skip
    """Asynchronous gossip averaging with the task's trainers (no barrier, not paid): each round,
    train locally, mix with K neighbours' latest snapshots, publish. Reports per round the
    consensus distance among the models this node holds. Needs --ipfs-api.

    \b
    Example:
      fedmarket --dev-account 2 node average --task 1 --data hospital.npz --k 2
    """
    from marketplace.fl.gossip_averaging import StepReport, consensus_report
    from marketplace.gossip.snapshot_exchange import open_gossip_averaging
    from marketplace.protocol.session import TaskSession
    from marketplace.storage.pubsub import PubsubClient

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
    node = open_gossip_averaging(
        session, PubsubClient(c.ipfs_api), dataset, k=k, mixing=cast("MixingRule", mixing),
        staleness_exponent=staleness_exponent, seed=seed,
    )  # fmt: skip
    records: list[dict[str, Any]] = []

    def on_step(report: StepReport) -> None:
        dist = consensus_report(node.peer.held_models())
        row = {"round": len(records) + 1, "version": report.version,
               "train_loss": round(report.train_loss, 6), "mixed": len(report.mixed),
               "fetched": len(report.fetched), "refused": dict(report.refused),
               "local_consensus_relative": dist.relative, "local_consensus_mean_sq": dist.mean_sq,
               "models_held": len(node.peer.held_models())}  # fmt: skip
        records.append(row)
        if not as_json:
            log_step(
                f"round {row['round']}: mixed {row['mixed']} neighbours, local consensus "
                f"distance {dist.relative:.4f} (relative), loss {report.train_loss:.4f}"
            )

    node.start()
    try:
        others = len(session.members().trainers) - 1
        if wait_seconds > 0 and others > 0:
            node.wait_for_candidates(others, timeout=wait_seconds)
        node.run(rounds or info.rounds, on_step=on_step)
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
    emit(as_json, out, lambda: console.print(summary))


@click.group("oracle")
def oracle_group() -> None:
    """Run an oracle committee member."""


@oracle_group.command("accept")
@task_option
@json_option
@pass_ctx
def oracle_accept(c: CliContext, task_id: int, as_json: bool) -> None:
    """Take your seat on a task's proposed committee (consent: your stake is reserved for a task
    only once you accept it). `oracle run` also accepts a seat it is proposed for.

    \b
    Example:
      fedmarket --dev-account 5 oracle accept --task 1
    """
    from marketplace.protocol.committee import accept_seat

    identity = c.identity()
    _check_registered(c, identity.address, Role.ORACLE, 0)
    acted, what = accept_seat(c.market, identity.eth, task_id)
    out = {"taskId": task_id, "oracle": identity.address, "accepted": acted, "status": what}
    emit(as_json, out, lambda: console.print(what))


@oracle_group.command("sign-seat")
@task_option
@click.option("--valid-for", "valid_for", type=click.IntRange(min=1), default=86_400,
              show_default=True, help="Seconds (chain time) it stays valid.")  # fmt: skip
@json_option
@pass_ctx
def oracle_sign_seat(c: CliContext, task_id: int, valid_for: int, as_json: bool) -> None:
    """Sign your consent to your seat on a task's proposed committee, offline (no transaction,
    no gas): print a seat signature for the requester to submit with `task seat`, which seats
    several oracles in one transaction. Your stake is reserved when it is submitted.

    \b
    Examples:
      fedmarket --dev-account 5 oracle sign-seat --task 1
      fedmarket --dev-account 6 oracle sign-seat --task 1 --valid-for 3600 --json
    """
    from marketplace.protocol.committee import sign_seat

    signer = c.signer()
    _check_registered(c, signer.address, Role.ORACLE, 0)
    seat = sign_seat(c.market, signer, task_id, valid_for)
    out = {"taskId": task_id, "oracle": seat.oracle, "deadline": seat.deadline,
           "signature": seat.to_text()}  # fmt: skip
    # The bare string on stdout, so that `SIG=$(fedmarket ... oracle sign-seat ...)` works.
    emit(as_json, out, lambda: click.echo(out["signature"]))


@oracle_group.command("run")
@task_option
@poll_options
@json_option
@pass_ctx
def oracle_run(
    c: CliContext, task_id: int, poll: float, timeout: float | None, as_json: bool
) -> None:
    """Score a task and take part in commit-reveal; then enforce the result (slash dissenting
    oracles, settle flagged trainers). Safe to restart: it never commits twice.

    \b
    Example:
      fedmarket --dev-account 5 oracle run --task 1
    """
    from marketplace.protocol.session import TaskSession
    from node.peers.oracle import SCORE_STEP, OracleNode

    identity = c.identity()
    session = TaskSession.open(c.market, c.store, task_id, identity)
    _check_registered(c, identity.address, Role.ORACLE, 0)
    node = OracleNode(session, c.journal(f"oracle-{identity.address}-{task_id}"))
    keeper = _peer_keeper(c)
    try:
        result = node.run(poll=poll, timeout=timeout, on_step=_step_printer(as_json))
    finally:
        if keeper is not None:
            keeper.close()
    root = node.journal.get(task_id, 0, SCORE_STEP)
    out = {"taskId": task_id, "oracle": identity.address, "result": result.action,
           "committed": root}  # fmt: skip
    emit(as_json, out, lambda: console.print(f"task {task_id}: {result.action}"))


# --- helpers ---------------------------------------------------------------------------------
def _step_printer(as_json: bool) -> Any:
    """The ``on_step`` hook: print what a peer did (nothing with --json)."""

    last_waiting: list[str] = [""]

    def on_step(step: Step) -> None:
        # Waiting states are printed once each, when they change; retries every time.
        if step.is_waiting and step.detail != "retrying":
            if step.action == last_waiting[0]:
                return
            last_waiting[0] = step.action
        else:
            last_waiting[0] = ""
        if as_json:  # stdout holds the one JSON document: progress goes to stderr
            click.echo(f"{_stamp()} {step.action}", err=True)
        else:
            log_step(f"{_stamp()} {step.action}")

    return on_step


def _peer_keeper(c: CliContext) -> Any:
    """Keep this node's Kubo daemon connected to the peers it has (see storage.peering)."""
    if not c.ipfs_api:
        return None
    from marketplace.storage.peering import PeerKeeper

    return PeerKeeper(c.ipfs_api).start()


def _stamp() -> str:
    import time

    return time.strftime("%H:%M:%S")


def _trainer_data(
    source: str, part: str | None, partition_name: str, alpha: float, seed: int
) -> Dataset:
    from marketplace.fl import load_dataset, partition, split_dataset

    if part is None:
        return load_dataset(source)
    try:
        k, n = (int(v) for v in part.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--part must be K/N with 0 <= K < N, got {part!r}") from None
    splits = split_dataset(load_dataset(source), seed=seed)
    parts = partition(partition_name, splits.train.y, num_clients=n, seed=seed, alpha=alpha)
    return splits.train.subset(parts[k], name=f"{source}/{k}of{n}")


def _check_registered(c: CliContext, address: str, role: Role, min_stake: int) -> None:
    p = c.market.participant(address)
    name = role.name.lower()
    if p.role != role:
        raise ConfigError(
            f"{address} is registered as {p.role.name.lower()}, not {name}: run "
            f"`fedmarket register {name} --stake N` first"
        )
    if p.stake < min_stake:
        raise ConfigError(
            f"{address} stakes {format_amount(p.stake)}, "
            f"the task needs {format_amount(min_stake)}: "
            f"run `fedmarket stake {format_amount(min_stake - p.stake)}`"
        )
