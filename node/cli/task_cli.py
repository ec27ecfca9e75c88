"""``fedmarket task create|list|show|seat|join|advance|cancel``: a task's life on the market."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click
from rich.table import Table

from marketplace.chain.clients import Phase
from marketplace.errors import ConfigError
from marketplace.protocol.round_batch import DEFAULT_TURN_SECONDS, BatchTerms
from marketplace.valuation.config import METHODS, ValuationConfig, ValuationMethod
from node.cli.context import CliContext, format_amount
from node.cli.output import choice, console, emit, json_option, kv_table, pass_ctx
from node.cli.params import ADDRESS, AMOUNT, TASK_ID
from node.cli.retention import print_retention, retention_record
from node.cli.secagg_options import secagg_options, secagg_terms
from node.cli.sourcing_view import print_sourcing, sourcing_section

if TYPE_CHECKING:
    from marketplace.fl.models import ModelSpec
    from marketplace.fl.privacy import DPMode
    from marketplace.fl.train import TrainConfig


def _load_splits(source: str, seed: int) -> Any:
    from marketplace.fl import load_dataset, split_dataset

    return split_dataset(load_dataset(source), seed=seed)


DEFAULT_MODEL = '{"arch": "mlp", "input_dim": 64, "hidden": [32], "num_classes": 10}'


def task_model(model: str | None, dp_mode: str) -> ModelSpec:
    """The task's model spec: ``--model`` (JSON text or a file) as given, else
    :data:`DEFAULT_MODEL`, which a DP-SGD task trains with the library's DP options
    (:func:`~marketplace.fl.dpsgd.dpsgd_model`)."""
    from marketplace.fl import ModelSpec
    from marketplace.fl.dpsgd import dpsgd_model

    text = DEFAULT_MODEL if model is None else model
    spec_text = Path(text).read_text() if Path(text).is_file() else text
    try:
        spec = ModelSpec.from_json(spec_text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--model is not a valid model spec: {exc}") from None
    return dpsgd_model(spec) if model is None and dp_mode == "dpsgd" else spec


def local_recipe(
    dp_mode: str, *, epochs: int | None, lr: float | None, batch_size: int | None
) -> TrainConfig:
    """The task's local training: the requester's ``--epochs/--lr/--batch-size`` over the
    default recipe, which for a DP-SGD task is the library's tuned
    :data:`~marketplace.fl.dpsgd.DPSGD_RECIPE` (5 epochs, lr 0.1, batch 16) and otherwise
    2 epochs, lr 0.1, batch 16."""
    import dataclasses

    from marketplace.fl.dpsgd import DPSGD_RECIPE
    from marketplace.fl.train import TrainConfig

    base = DPSGD_RECIPE if dp_mode == "dpsgd" else TrainConfig(epochs=2, lr=0.1, batch_size=16)
    return dataclasses.replace(
        base,
        epochs=base.epochs if epochs is None else epochs,
        lr=base.lr if lr is None else lr,
        batch_size=base.batch_size if batch_size is None else batch_size,
    )


def _sourcing_gate(c: CliContext) -> str:
    """The deployment's DataSourcing contract: the join gate of a sourced task."""
    from marketplace.chain.sourcing_client import DataSourcingClient

    return DataSourcingClient(c.w3, c.deployment).address


@click.group()
def task() -> None:
    """Create, inspect and move tasks along (requester and anyone)."""


@task.command("create")
@click.option("--validation", "validation", default="digits", show_default=True,
              help="Validation data for the oracles: a .npz/.csv path or a built-in dataset "
                   "(its validation split).")  # fmt: skip
@click.option("--model", "model", default=None,
              help="Model spec as JSON, or a path to a JSON file [default: " + DEFAULT_MODEL
                   + "; with --dp dpsgd its options are tanh units and inputs clamped to ±2]."
              )  # fmt: skip
@click.option("--budget", type=AMOUNT, required=True, help="Tokens escrowed for the trainers.")
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--oracle", "oracles", type=ADDRESS, multiple=True, required=True,
              help="Committee member (repeat).")  # fmt: skip
@click.option("--min-trainers", type=int, default=2, show_default=True)
@click.option("--max-trainers", type=int, default=16, show_default=True)
@click.option("--min-stake", type=AMOUNT, default="10", show_default=True,
              help="Stake a trainer must hold (tokens).")  # fmt: skip
@click.option("--bond", type=AMOUNT, default="1", show_default=True,
              help="Bond each trainer posts to join (tokens).")  # fmt: skip
@click.option("--oracle-slash", type=AMOUNT, default="10", show_default=True,
              help="Stake an oracle loses for dissent.")  # fmt: skip
@click.option("--aggregator", type=choice("marketplace.fl.strategy:STRATEGIES"), default="fedavg",
              show_default=True, help="How each round's updates are combined.")  # fmt: skip
@click.option("--epochs", type=int, default=None,
              help="Local epochs a round [default: 2; 5 with --dp dpsgd].")  # fmt: skip
@click.option("--lr", type=float, default=None, help="Local SGD learning rate [default: 0.1].")
@click.option("--batch-size", type=int, default=None,
              help="Local batch size (DP-SGD: expected Poisson batch) [default: 16].")  # fmt: skip
@click.option("--valuation", type=choice(METHODS), default="auto", show_default=True,
              help="How the oracles value contributions (auto: exact Shapley up to 12 trainers "
                   "a round, budgeted GTG above).")  # fmt: skip
@click.option("--join-window", type=int, default=3600, show_default=True, help="Seconds to join.")
@click.option("--round-duration", type=int, default=3600, show_default=True)
@click.option("--phase-duration", type=int, default=3600, show_default=True,
              help="Seconds for each of commit, reveal and dispute.")  # fmt: skip
@click.option("--validation-submissions", "k", type=int, default=None,
              help="K: model submissions the committee evaluates after training, the final "
                   "aggregate included (needs `fedmarket model deploy`).")  # fmt: skip
@click.option("--auditors", "m", type=int, default=0, show_default=True,
              help="M: auditor attestations required before the model is approved.")  # fmt: skip
@click.option("--pass-threshold", type=float, default=0.5, show_default=True,
              help="Validation accuracy (0..1) a submission must reach.")  # fmt: skip
@click.option("--bounty", type=AMOUNT, default="0", show_default=True,
              help="Tokens for the first passing submission's developer (escrowed).")  # fmt: skip
@click.option("--auditor-fee", type=AMOUNT, default="0", show_default=True,
              help="Tokens per required attestation (escrowed).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sourced", is_flag=True,
              help="Only winners of the data request may join (`task request`).")  # fmt: skip
@click.option(
    "--dp",
    "dp_mode",
    type=choice("marketplace.fl.privacy:DP_MODES", before=("none",)),
    default="none",
    show_default=True,
    help="Differential privacy: record-level DP-SGD on each trainer's data, or "
    "trainer-level (whole update noised; far costlier in accuracy).",
)
@click.option(
    "--dp-epsilon",
    type=float,
    default=8.0,
    show_default=True,
    help="Each trainer's ε over the whole task.",
)
@click.option("--dp-delta", type=float, default=1e-5, show_default=True)
@click.option("--dp-clip", type=float, default=1.0, show_default=True,
              help="Per-sample (dpsgd) or per-update (update) L2 clip.")  # fmt: skip
@secagg_options
@click.option(
    "--batch-commits/--no-batch-commits", default=False, show_default=True,
    help="Batched round commitments: trainers sign leaves, one elected trainer commits each "
         "round's set in one transaction (a left-out trainer commits directly).",
)  # fmt: skip
@click.option("--batch-turn", type=float, default=DEFAULT_TURN_SECONDS, show_default=True,
              help="Seconds of one closer's turn, with --batch-commits.")  # fmt: skip
@json_option
@pass_ctx
def task_create(c: CliContext, validation: str, model: str | None, budget: int, rounds: int,
                oracles: tuple[str, ...], min_trainers: int, max_trainers: int, min_stake: int,
                bond: int, oracle_slash: int, aggregator: str, epochs: int | None,
                lr: float | None, batch_size: int | None, valuation: str, join_window: int,
                round_duration: int, phase_duration: int, k: int | None, m: int,
                pass_threshold: float, bounty: int, auditor_fee: int, seed: int, sourced: bool,
                dp_mode: str, dp_epsilon: float, dp_delta: float, dp_clip: float,
                secure_aggregation: bool, secagg_clip: float, secagg_threshold: int | None,
                batch_commits: bool, batch_turn: float, as_json: bool) -> None:  # fmt: skip
    """Create a task: encrypt the validation set for the committee, publish the task document,
    the model spec and initial weights, and escrow the budget. With --validation-submissions K
    the task also fixes, on ModelMarket, K submissions (the final aggregate is #1), M required
    auditor attestations, the pass threshold, and escrows the bounty and the M auditor fees.

    \b
    Example:
      fedmarket --dev-account 1 task create --budget 1000 \\
        --oracle 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc \\
        --oracle 0x976EA74026E726554dB657fA54763abd0C3a0aa9 \\
        --oracle 0x14dC79964da2C08b23698B3D3cc7Ca32193d9955 \\
        --validation-submissions 3 --auditors 2
    """
    from marketplace.fl.privacy import DPTerms
    from marketplace.protocol.requester import TaskPlan, create_task

    if not 0 <= pass_threshold <= 1:
        raise ConfigError(f"--pass-threshold is an accuracy within 0..1, got {pass_threshold}")
    spec = task_model(model, dp_mode)
    splits = _load_splits(validation, seed) if not Path(validation).is_file() else None
    if splits is not None:
        x_val, y_val = splits.validation.x, splits.validation.y
    else:
        from marketplace.fl import load_dataset

        ds = load_dataset(validation)
        x_val, y_val = ds.x, ds.y
    plan = TaskPlan(
        model=spec, train=local_recipe(dp_mode, epochs=epochs, lr=lr, batch_size=batch_size),
        budget=budget, rounds=rounds, oracles=oracles, min_trainers=min_trainers,
        max_trainers=max_trainers, min_stake=min_stake, trainer_bond=bond,
        oracle_slash=oracle_slash, aggregator=aggregator,
        valuation=ValuationConfig(method=cast(ValuationMethod, valuation), seed=seed),
        dataset={"validation": validation, "features": int(x_val.shape[1])},
        join_window=join_window, round_duration=round_duration, commit_duration=phase_duration,
        reveal_duration=phase_duration, dispute_duration=phase_duration,
        validation_submissions=k, auditors=m, pass_threshold_ppm=round(pass_threshold * 1e6),
        bounty=bounty, auditor_fee=auditor_fee,
        join_gate=_sourcing_gate(c) if sourced else None,
        privacy=None if dp_mode == "none" else DPTerms(
            mode=cast("DPMode", dp_mode), epsilon=dp_epsilon, delta=dp_delta, clip_norm=dp_clip
        ),
        secagg=secagg_terms(secure_aggregation, secagg_clip, secagg_threshold),
        batches=BatchTerms(turn_seconds=batch_turn) if batch_commits else None,
    )  # fmt: skip
    requester = c.identity()
    task_id, doc = create_task(c.market, c.store, requester, plan, x_val, y_val)
    out = {"taskId": task_id, "requester": requester.address, "budget": str(plan.budget),
           "validationCommitment": doc.validation.sha256,
           "validationCid": doc.validation.cid, "validationSubmissions": k,
           "auditors": m if k is not None else None,
           "privacy": None if doc.privacy is None else doc.privacy.to_dict(),
           "train": doc.to_dict()["train"],
           "secureAggregation": None if doc.secagg is None else doc.secagg.to_dict(),
           "batches": None if doc.batches is None else doc.batches.to_dict()}  # fmt: skip
    emit(
        as_json,
        out,
        lambda: console.print(f"created task {task_id} (budget {format_amount(budget)} escrowed)"),
    )


@task.command("list")
@json_option
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
                     "round": info.current_round, "rounds": info.rounds,
                     "trainers": info.trainer_count})  # fmt: skip

    def human() -> None:
        table = Table("task", "phase", "round", "trainers", "budget", "requester")
        for r in rows:
            table.add_row(str(r["taskId"]), r["phase"], f"{r['round']}/{r['rounds']}",
                          str(r["trainers"]), format_amount(int(r["budget"])),
                          r["requester"])  # fmt: skip
        console.print(table)

    emit(as_json, {"tasks": rows}, human)


@task.command("show")
@click.argument("task_id", type=TASK_ID)
@json_option
@pass_ctx
def task_show(c: CliContext, task_id: int, as_json: bool) -> None:
    """Show a task's on-chain state."""
    out = c.market.task(task_id).to_json()
    out["oracles"] = list(c.market.oracles(task_id))
    out["retention"] = retention_record(c.market, task_id)
    out["sourcing"] = sourcing_section(c, task_id)  # the data request: offers, values, selection

    def human() -> None:
        from marketplace.chain.explain import humanize_task

        task_rows = {k: v for k, v in out.items() if k not in ("retention", "sourcing")}
        console.print(kv_table(f"Task {task_id}", humanize_task(task_rows, now=c.market.now())))
        print_retention(console, task_id, out["retention"])
        if out["sourcing"] is not None:
            print_sourcing(out["sourcing"])

    emit(as_json, out, human)


@task.command("seat")
@click.argument("task_id", type=TASK_ID)
@click.argument("signatures", nargs=-1, required=True)
@json_option
@pass_ctx
def task_seat(c: CliContext, task_id: int, signatures: tuple[str, ...], as_json: bool) -> None:
    """Seat oracles of a Forming task with the signatures they made with `oracle sign-seat`,
    all in one transaction (its base cost paid once; anyone may send it, the requester
    usually does). All or nothing: one expired, forged or already seated signature refuses
    the whole batch. The last seat opens the task for trainers.

    \b
    Example:
      S5=$(fedmarket --dev-account 5 oracle sign-seat --task 1)
      S6=$(fedmarket --dev-account 6 oracle sign-seat --task 1 --json | jq -r .signature)
      fedmarket --dev-account 1 task seat 1 "$S5" "$S6"
    """
    from marketplace.protocol.committee import parse_seat_signature, seat_signed

    seats = [parse_seat_signature(text) for text in signatures]
    receipt = seat_signed(c.market, c.signer(), task_id, seats)
    info = c.market.task(task_id)
    out = {"taskId": task_id, "seated": [s.oracle for s in seats], "tx":
           receipt["transactionHash"].hex(), "accepted": info.accepted_count,
           "committee": info.committee_size, "phase": info.phase_enum.name.lower()}  # fmt: skip
    emit(as_json, out, lambda: console.print(
        f"task {task_id}: seated {len(seats)} oracle(s), {out['accepted']}/{out['committee']} "
        f"seats taken; {out['phase']}"))  # fmt: skip


@task.command("join")
@click.argument("task_id", type=TASK_ID)
@json_option
@pass_ctx
def task_join(c: CliContext, task_id: int, as_json: bool) -> None:
    """Join a task as a trainer (posts the bond; stake is locked until the task ends)."""
    signer = c.signer()
    receipt = c.market.join(signer, task_id)
    emit(as_json, {"taskId": task_id, "trainer": signer.address,
                    "tx": receipt["transactionHash"].hex()},
          lambda: console.print(f"joined task {task_id}"))  # fmt: skip


@task.command("advance")
@click.argument("task_id", type=TASK_ID)
@json_option
@pass_ctx
def task_advance(c: CliContext, task_id: int, as_json: bool) -> None:
    """Move a task to its next phase once the current one is over (anyone may)."""
    before = c.market.task(task_id).phase_enum
    c.market.advance(c.signer(), task_id)
    after = c.market.task(task_id)
    out = {"taskId": task_id, "from": before.name.lower(), "to": after.phase_enum.name.lower(),
           "round": after.current_round}  # fmt: skip
    emit(as_json, out, lambda: console.print(f"task {task_id}: {out['from']} → {out['to']}"))


@task.command("cancel")
@click.argument("task_id", type=TASK_ID)
@json_option
@pass_ctx
def task_cancel(c: CliContext, task_id: int, as_json: bool) -> None:
    """Cancel an open task and take the budget back (requester only)."""
    c.market.cancel(c.signer(), task_id)
    emit(as_json, {"taskId": task_id, "phase": Phase.CANCELLED.name.lower()},
          lambda: console.print(f"task {task_id} cancelled; budget refunded"))  # fmt: skip


def _add_request() -> None:
    """`task request` (a data request, before training) lives with the sourcing commands."""
    from node.cli.sourcing_cli import task_request

    task.add_command(task_request)


_add_request()
