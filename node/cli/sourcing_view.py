"""What ``task show`` and ``sourcing show`` say about a task's data request: its state, every
revealed offer with its value (once the committee's selection is final) and the selection.

:func:`sourcing_section` reads the chain (and the final selection's report from the store) into
one JSON-ready document; :func:`print_sourcing` prints it for people.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from marketplace.errors import DeploymentNotFoundError
from node.cli.context import CliContext, format_amount
from node.cli.output import console, kv_table


def sourcing_section(c: CliContext, task_id: int) -> dict[str, Any] | None:
    """The task's data request, its offers, values and selection; ``None`` when it has none."""
    from marketplace.chain.sourcing_client import DataSourcingClient
    from marketplace.protocol.sourcing import load_selection

    try:
        client = DataSourcingClient(c.w3, c.deployment)
    except DeploymentNotFoundError:
        return None
    request_id = client.request_of_task(task_id)
    if request_id == 0:
        return None
    view = client.request(request_id)
    of_request = {"requestId": request_id}
    committed = c.market.events(client.contract, "OfferCommitted", filters=of_request)
    revealed = c.market.events(client.contract, "OfferRevealed", filters=of_request)
    offers: dict[str, dict[str, Any]] = {}
    for ev in revealed:
        a = ev["args"]
        offers[a["owner"].lower()] = {
            "owner": a["owner"], "ask": str(a["ask"]), "samples": int(a["samples"]),
            "status": "revealed",
        }  # fmt: skip
    out: dict[str, Any] = {
        "requestId": request_id,
        "budget": str(view.budget),
        "paid": str(view.paid),
        "refunded": str(view.refunded),
        "seats": {"accepted": view.accepted, "of": view.committee_size, "quorum": view.quorum},
        "deadlines": {
            "offers": view.offer_deadline,
            "reveals": view.reveal_deadline,
            "selectionCommit": view.select_commit_deadline,
            "selectionReveal": view.select_reveal_deadline,
            "claims": view.claim_deadline,
        },
        "cancelled": view.cancelled,
        "offersCommitted": len(committed),
        "offerBond": str(view.offer_bond),
        "bondsHeld": str(view.bonds_held),
        "selection": None,
    }
    if view.selected:
        _, report = load_selection(client, c.store, request_id)
        for row in report["offers"]:
            offer = offers.setdefault(row["owner"].lower(), {"owner": row["owner"]})
            offer.update(
                {k: row[k] for k in ("value_ppm", "distance_ppm", "standalone_ppm") if k in row}
            )
            offer["payment"] = row["payment"]
            offer["rejected"] = row["rejected"]
            offer["status"] = "won" if row["won"] else "rejected" if row["rejected"] else "lost"
        out["selection"] = {
            "root": "0x" + view.selection_root.hex(),
            "total": str(view.selected_total),
            "branch": report.get("branch"),
            "winners": [r["owner"] for r in report["offers"] if r["won"]],
        }
    out["offers"] = sorted(offers.values(), key=lambda o: o["owner"].lower())
    return out


def print_sourcing(section: dict[str, Any]) -> None:
    """Print :func:`sourcing_section`'s document: the request, then one row per offer."""
    seats = section["seats"]
    selection = section["selection"]
    rows = {
        "budget": format_amount(int(section["budget"])),
        "paid / refunded": f"{format_amount(int(section['paid']))} / "
        f"{format_amount(int(section['refunded']))}",
        "committee": f"{seats['accepted']}/{seats['of']} seats taken, quorum {seats['quorum']}",
        "offers": f"{section['offersCommitted']} committed, {len(section['offers'])} revealed "
        f"(bond {format_amount(int(section['offerBond']))} each, "
        f"{format_amount(int(section['bondsHeld']))} held)",
        "selection": "cancelled"
        if section["cancelled"]
        else "pending"
        if selection is None
        else f"{len(selection['winners'])} winners, {format_amount(int(selection['total']))} "
        f"({selection['branch']})",
    }
    console.print(kv_table(f"Data request {section['requestId']}", rows))
    if not section["offers"]:
        return
    table = Table("owner", "ask", "samples", "value (ppm)", "outcome", title_justify="left")
    for o in section["offers"]:
        status = o["status"]
        if status == "won":
            status = f"won, paid {format_amount(int(o['payment']))}"
        elif status == "rejected":
            status = f"rejected: {o['rejected']}"
        elif status == "lost":
            status = "not selected"
        ask = format_amount(int(o["ask"])) if "ask" in o else "-"
        table.add_row(o["owner"], ask, str(o.get("samples", "-")),
                      str(o.get("value_ppm", "-")), status)  # fmt: skip
    console.print(table)
