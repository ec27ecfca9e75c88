"""``fedmarket rewards show|claim``: a finalized task's payouts."""

from __future__ import annotations

import click
from rich.table import Table

from marketplace.errors import ConfigError
from node.cli.context import CliContext, format_amount
from node.cli.output import console, emit, json_option, pass_ctx, task_option


@click.group()
def rewards() -> None:
    """Show and claim a finalized task's payouts."""


@rewards.command("show")
@task_option
@json_option
@pass_ctx
def rewards_show(c: CliContext, task_id: int, as_json: bool) -> None:
    """Show the finalized payout table (scores, amounts, flags, claimed or not)."""
    from marketplace.protocol.published_report import entries_of, final_report
    from marketplace.protocol.session import TaskSession

    session = TaskSession.open(c.market, c.store, task_id, c.identity())
    report = final_report(session)
    entries = entries_of(report)
    claimed = [c.market.is_claimed(task_id, e.index) for e in entries]
    rows = [{"index": e.index, "account": e.account, "amount": str(e.amount),
             "score_ppm": e.score_ppm, "flags": e.flags, "claimed": done}
            for e, done in zip(entries, claimed, strict=True)]  # fmt: skip

    def human() -> None:
        table = Table("account", "score (ppm)", "amount", "flags", "claimed")
        for e, done in zip(entries, claimed, strict=True):
            table.add_row(e.account, f"{e.score_ppm:,}", format_amount(e.amount),
                          str(e.flags), "yes" if done else "no")  # fmt: skip
        console.print(table)

    emit(as_json, {"taskId": task_id, "root": report["merkle_root"], "payouts": rows}, human)


@rewards.command("claim")
@task_option
@json_option
@pass_ctx
def rewards_claim(c: CliContext, task_id: int, as_json: bool) -> None:
    """Claim this account's payout with its Merkle proof (bond returned with it)."""
    from marketplace.protocol.published_report import claim_args, final_report
    from marketplace.protocol.session import TaskSession

    identity = c.identity()
    session = TaskSession.open(c.market, c.store, task_id, identity)
    found = claim_args(final_report(session), identity.address, session.leaf_domain)
    if found is None:
        raise ConfigError(f"{identity.address} has no payout in task {task_id}")
    entry, proof = found
    receipt = c.market.claim(identity.eth, task_id, index=entry.index, account=entry.account,
                             amount=entry.amount, score_ppm=entry.score_ppm, flags=entry.flags,
                             proof=proof)  # fmt: skip
    out = {"taskId": task_id, "account": entry.account, "amount": str(entry.amount),
           "flags": entry.flags, "tx": receipt["transactionHash"].hex()}  # fmt: skip
    emit(as_json, out, lambda: console.print(f"claimed {format_amount(entry.amount)}"))
