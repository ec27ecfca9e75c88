"""CLI commands of a data owner's consent and a task's retention: ``fedmarket data …``.

Registered on the root group by :mod:`node.cli`; each command is a thin layer over
:class:`marketplace.chain.versions_client.VersionsClient`.
"""

from __future__ import annotations

from typing import Any

import click

from marketplace.chain.versions_client import RetentionTerms, VersionsClient
from node.cli.context import CliContext, format_amount, parse_amount
from node.cli.output import console, emit, json_option, pass_ctx, poll_options, task_option
from node.cli.peer_cli import data_options
from node.cli.retention import print_retention, retention_record, when


@click.group("data")
def data() -> None:
    """Consent and retention of a task's data: withdraw, register terms, list versions."""


@data.command("withdraw")
@click.option("--task", "task_id", type=int, required=True, help="The task you trained in.")
@json_option
@pass_ctx
def data_withdraw(c: CliContext, task_id: int, as_json: bool) -> None:
    """Withdraw consent to the use of your data in a task (as one of its trainers).

    The network must record a committee-validated version without your data before the
    deadline; otherwise you may collect the requester's penalty.

    \b
    Example:
      fedmarket --dev-account 3 data withdraw --task 1
    """
    versions = VersionsClient(c.market)
    w = versions.request_withdrawal(c.signer(), task_id)
    out = {"taskId": task_id, "withdrawal": w.number, "trainer": w.trainer,
           "deadline": w.deadline}  # fmt: skip
    emit(as_json, out, lambda: console.print(
        f"withdrawal {w.number} recorded for task {task_id}; unlearned version due by "
        f"{when(w.deadline)}"
    ))  # fmt: skip


@data.command("unlearn")
@task_option
@data_options
@poll_options
@click.option("--threads", type=int, default=1, show_default=True,
              help="Torch threads for training.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--wait-validated/--no-wait-validated", default=True, show_default=True,
              help="Wait for the committee to attest the unlearned version.")  # fmt: skip
@json_option
@pass_ctx
def data_unlearn(
    c: CliContext, task_id: int, data: str, part: str | None, partition: str, alpha: float,
    poll: float, timeout: float | None, threads: int, seed: int, wait_validated: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Take part, as a remaining trainer, in unlearning a withdrawn owner's data: train each
    calibration round on your data (the same --data as `node run`) with the other remaining
    trainers, publish and commit your updates, derive the unlearned model, record it as a new
    version and wait for the committee (`oracle run`) to attest it. Safe to restart; a trainer
    that misses a round's deadline (the task's round duration) is left out of the rest.

    \b
    Example:
      fedmarket --dev-account 2 data unlearn --task 1 --data hospital.npz
    """
    from marketplace.protocol.session import TaskSession
    from node.cli.peer_cli import _peer_keeper, _step_printer, _trainer_data
    from node.peers.unlearner import UnlearningNode

    dataset = _trainer_data(data, part, partition, alpha, seed)
    identity = c.identity()
    session = TaskSession.open(c.market, c.store, task_id, identity)
    node = UnlearningNode(
        session, dataset, c.journal(f"trainer-{identity.address}-{task_id}"),
        num_threads=threads, seed=seed, wait_validated=wait_validated,
    )  # fmt: skip
    keeper = _peer_keeper(c)
    try:
        result = node.run(poll=poll, timeout=timeout, on_step=_step_printer(as_json))
    finally:
        if keeper is not None:
            keeper.close()
    digest = node.derived_digest
    out = {"taskId": task_id, "trainer": identity.address, "result": result.action,
           "version": node.recorded,
           "derivedDigest": None if digest is None else "0x" + digest.hex()}  # fmt: skip
    emit(as_json, out, lambda: console.print(f"task {task_id}: {result.action}"))


@data.command("register")
@click.option("--task", "task_id", type=int, required=True, help="Your task (as its requester).")
@click.option("--retention-days", type=float, required=True, help="Data retention term.")
@click.option("--quorum", type=int, required=True, help="Committee attestations per version.")
@click.option("--window-hours", type=float, default=168.0, show_default=True,
              help="Time to record an unlearned version after a withdrawal.")  # fmt: skip
@click.option("--deposit", default="0", show_default=True, help="Tokens posted now.")
@click.option("--penalty", default="0", show_default=True,
              help="Tokens paid to an owner whose withdrawal deadline is missed.")  # fmt: skip
@json_option
@pass_ctx
def data_register(
    c: CliContext, task_id: int, retention_days: float, quorum: int, window_hours: float,
    deposit: str, penalty: str, as_json: bool,
) -> None:  # fmt: skip
    """Register a task's retention term, unlearning window and deposit (its requester).

    \b
    Example:
      fedmarket --dev-account 1 data register --task 1 --retention-days 365 --quorum 2 \\
          --deposit 50 --penalty 10
    """
    now = c.market.now()
    terms = RetentionTerms(
        retention_expiry=now + int(retention_days * 86400), quorum=quorum,
        unlearn_window=int(window_hours * 3600), deposit=parse_amount(deposit),
        miss_penalty=parse_amount(penalty),
    )  # fmt: skip
    VersionsClient(c.market).register_task(c.signer(), task_id, terms)
    out = {"taskId": task_id, "retentionExpiry": terms.retention_expiry,
           "unlearnWindow": terms.unlearn_window, "deposit": str(terms.deposit)}  # fmt: skip
    emit(as_json, out, lambda: console.print(
        f"task {task_id} registered: retention until {when(terms.retention_expiry)}, "
        f"deposit {format_amount(terms.deposit)}"
    ))  # fmt: skip


@data.command("versions")
@click.option("--task", "task_id", type=int, required=True)
@json_option
@pass_ctx
def data_versions(c: CliContext, task_id: int, as_json: bool) -> None:
    """Show a task's retention expiry, withdrawals and model versions (sellable or not)."""
    VersionsClient(c.market).state(task_id)  # a one-line error for an unregistered task
    out: dict[str, Any] = {"taskId": task_id, **(retention_record(c.market, task_id) or {})}
    emit(as_json, out, lambda: print_retention(console, task_id, out))
