"""A task's consent and retention record, as shown by ``fedmarket task show`` and
``fedmarket data versions``: the data-retention expiry, the withdrawals and the model versions
(digest, CID, parent, reason) from :class:`marketplace.chain.versions_client.VersionsClient`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from marketplace.chain.clients import Marketplace
from marketplace.chain.versions_client import VersionsClient
from marketplace.errors import TransactionRevertedError
from marketplace.units import describe_time
from node.cli.context import format_amount


def when(ts: int) -> str:
    """A chain timestamp for people (``-`` for zero)."""
    return describe_time(ts) if ts else "-"


def retention_record(market: Marketplace, task_id: int) -> dict[str, Any] | None:
    """The task's retention expiry, withdrawals and versions; ``None`` when the deployment has
    no ModelVersions or the task never registered retention terms there."""
    if "ModelVersions" not in market.deployment.contracts:
        return None
    versions = VersionsClient(market)
    try:
        state = versions.state(task_id)
    except TransactionRevertedError as e:
        if e.error_name == "ModelVersionsUnknownTask":
            return None
        raise
    return {
        "retentionExpiry": state.retention_expiry,
        "pendingExpiry": state.pending_expiry,
        "unlearnWindow": state.unlearn_window,
        "depositHeld": str(state.deposit_held),
        "withdrawals": [
            {
                "number": w.number,
                "trainer": w.trainer,
                "requestedAt": w.requested_at,
                "deadline": w.deadline,
                "honoured": versions.is_honoured(task_id, w.number),
                "penaltyPaid": w.penalty_paid,
            }
            for w in versions.withdrawals(task_id)
        ],
        "versions": [
            {
                "number": v.number,
                "parent": v.parent,
                "reason": v.reason.name.lower(),
                "excludes": v.excludes,
                "digest": "0x" + v.digest.hex(),
                "cid": versions.version_cid(task_id, v.number),
                "validated": v.validated,
                "sellable": versions.is_sellable(task_id, v.number),
            }
            for v in versions.versions(task_id)
        ],
    }


def print_retention(con: Console, task_id: int, record: dict[str, Any] | None) -> None:
    """Print :func:`retention_record`'s output: one line of terms, one per withdrawal, a table."""
    if record is None:
        con.print(f"task {task_id}: no retention terms registered (no withdrawals, no versions)")
        return
    con.print(f"task {task_id}: data retained until {when(record['retentionExpiry'])}, deposit "
              f"{format_amount(int(record['depositHeld']))}")  # fmt: skip
    for w in record["withdrawals"]:
        con.print(f"withdrawal {w['number']} by {w['trainer']}, due {when(w['deadline'])}, "
                  f"honoured: {w['honoured']}")  # fmt: skip
    table = Table("version", "parent", "reason", "excludes", "digest", "cid", "sellable")
    for v in record["versions"]:
        table.add_row(str(v["number"]), str(v["parent"]) if v["parent"] else "-", v["reason"],
                      str(v["excludes"]), v["digest"][:18] + "…", v["cid"],
                      str(v["sellable"]))  # fmt: skip
    con.print(table)
