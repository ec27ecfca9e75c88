"""CLI of sourcing before training: ``task request`` (requester) and ``offer submit|reveal``
(data owners). A thin layer over :mod:`marketplace.protocol.sourcing`; registered by
:func:`register` on the root group (``offer``) and on the ``task`` group (``request``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from web3 import Web3

from marketplace.errors import SourcingError, TransactionRevertedError
from marketplace.jsonlimits import shallow_json
from node.cli.context import CliContext, format_amount, parse_amount
from node.cli.output import emit, json_option, pass_ctx


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    emit(as_json, data, lambda: click.echo(text))


def _client(c: CliContext) -> Any:
    from marketplace.chain.sourcing_client import DataSourcingClient

    return DataSourcingClient(c.w3, c.deployment)


def _offer_file(c: CliContext, chain_id: int, request_id: int, owner: str) -> Path:
    return c.home / "offers" / f"{chain_id}-{request_id}-{owner.lower()}.json"


@click.command("request")
@click.argument("task_id", type=int)
@click.option("--budget", required=True, help="Procurement budget (tokens) paid to the winners.")
@click.option("--oracle", "oracles", multiple=True, required=True, help="Committee member.")
@click.option("--quorum", type=int, default=2, show_default=True)
@click.option(
    "--validation",
    default="digits",
    show_default=True,
    help="Validation set (built-in name or .npz/.csv) whose sketch the offers meet.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Task seed (split, basis).")
@click.option("--directions", type=int, default=9, show_default=True)
@click.option(
    "--window",
    type=int,
    default=3600,
    show_default=True,
    help="Seconds of each phase: offers, reveals, selection commit, selection reveal.",
)
@click.option("--claim-window", type=int, default=7 * 24 * 3600, show_default=True)
@click.option(
    "--offer-bond",
    default=None,
    help="Tokens each offer posts, returned at its reveal and yours if it is never revealed "
    "[default: the protocol minimum, one token].",
)
@json_option
@pass_ctx
def task_request(c: CliContext, task_id: int, budget: str, oracles: tuple[str, ...], quorum: int,
                 validation: str, seed: int, directions: int, window: int, claim_window: int,
                 offer_bond: str | None, as_json: bool) -> None:  # fmt: skip
    """Publish a data request for TASK_ID and escrow its procurement budget.

    The request document fixes the sketch spec (the validation set's discriminant directions)
    and the committee the owners seal their sketches to. Only registered trainers with the
    task's minimum stake free may offer, at most 64, each posting the offer bond. The winners can
    join the task only once the selection is final (the committee reveals it after three --window
    periods), so the task's join window (`task create --join-window`, counted from its committee's
    last seat) must still be open then.

    \b
    Example:
      fedmarket --dev-account 1 task request 1 --budget 300 \\
        --oracle 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc \\
        --oracle 0x976EA74026E726554dB657fA54763abd0C3a0aa9 \\
        --oracle 0x14dC79964da2C08b23698B3D3cc7Ca32193d9955 --window 600
    """
    from marketplace.fl import load_dataset, split_dataset
    from marketplace.fl.data import canonical_digest
    from marketplace.protocol.sourcing import publish_request
    from marketplace.sourcing import SketchSpec, discriminant_basis

    val = split_dataset(load_dataset(validation), seed=seed).validation
    k = val.num_classes
    basis = discriminant_basis(val.x, val.y, num_classes=k, num_directions=directions, seed=seed)
    spec = SketchSpec(task_seed=seed, input_dim=int(val.x.shape[1]), num_classes=k,
                      num_directions=directions, basis=basis)  # fmt: skip
    client = _client(c)
    requester = c.identity().eth
    amount = parse_amount(budget)
    c.market.ensure_allowance(requester, client.address, amount)
    request_id, cid = publish_request(
        client, c.store, requester, task_id=task_id, token=c.market.token.address,
        budget=amount, spec=spec, oracles=tuple(Web3.to_checksum_address(o) for o in oracles),
        quorum=quorum, validation_commitment=bytes.fromhex(canonical_digest(val.x, val.y)),
        window=window, claim_window=claim_window, now=c.market.now(),
        offer_bond=None if offer_bond is None else parse_amount(offer_bond),
    )  # fmt: skip
    bond = client.request(request_id).offer_bond
    out = {"requestId": request_id, "taskId": task_id, "schemaCid": cid, "budget": str(amount),
           "offerBond": str(bond)}  # fmt: skip
    _emit(as_json, out, f"data request {request_id} for task {task_id} ({budget} escrowed)")


@click.group("offer")
def offer() -> None:
    """Offer your data to a task's data request (sealed ask, sample count and sketch)."""


@offer.command("submit")
@click.option(
    "--task", "task_id", type=int, required=True, help="The task whose request to answer."
)
@click.option("--data", "data", required=True, help="Your data (.npz with x, y, or .csv).")
@click.option("--ask", required=True, help="Your asking price (tokens).")
@json_option
@pass_ctx
def offer_submit(c: CliContext, task_id: int, data: str, ask: str, as_json: bool) -> None:
    """Sketch your data, seal the sketch to the committee and commit a sealed offer.

    You must be a registered trainer whose free stake covers the task's minimum stake (as
    joining it would need). The request's offer bond is approved and posted with the offer: it
    comes back when you reveal, and goes to the requester if you never do. The salt is kept in
    your node's home until `fedmarket offer reveal`.

    \b
    Example:
      fedmarket --dev-account 2 offer submit --task 1 --data hospital.npz --ask 40
    """
    from marketplace.fl import load_dataset
    from marketplace.protocol.sourcing import commit_offer, load_request_document, prepare_offer

    client = _client(c)
    request_id = client.request_of_task(task_id)
    if request_id == 0:
        raise SourcingError(f"task {task_id} has no data request: ask its requester")
    doc = load_request_document(client, c.store, request_id)
    ds = load_dataset(data)
    me = c.identity()
    keys = {o: c.market.participant(o).encryption_key for o in doc.oracles}
    prepared = prepare_offer(
        store=c.store, spec=doc.spec, x=ds.x, y=ds.y, ask=parse_amount(ask),
        request_id=request_id, task_id=task_id, chain_id=c.w3.eth.chain_id, owner=me.address,
        committee_keys=keys,
    )  # fmt: skip
    path = _offer_file(c, c.w3.eth.chain_id, request_id, me.address)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prepared.to_json())
    bond = commit_offer(client, me.eth, prepared)
    out = {"requestId": request_id, "samples": prepared.samples, "sketchCid": prepared.sketch_cid,
           "bond": str(bond)}  # fmt: skip
    text = (
        f"offer committed to request {request_id} ({prepared.samples} rows; bond "
        f"{format_amount(bond)} posted, returned when you run `fedmarket offer reveal`)"
    )
    _emit(as_json, out, text)


@offer.command("reveal")
@click.option(
    "--task", "task_id", type=int, required=True, help="The task whose request to answer."
)
@json_option
@pass_ctx
def offer_reveal(c: CliContext, task_id: int, as_json: bool) -> None:
    """Reveal the offer you committed with `fedmarket offer submit` (after the offer deadline).

    Its offer bond comes back with the reveal; an offer not revealed by the reveal deadline
    forfeits it to the requester.

    \b
    Example:
      fedmarket --dev-account 2 offer reveal --task 1
    """
    from marketplace.protocol.sourcing import PreparedOffer

    client = _client(c)
    request_id = client.request_of_task(task_id)
    me = c.identity()
    path = _offer_file(c, c.w3.eth.chain_id, request_id, me.address)
    if not path.is_file():
        raise SourcingError(f"no saved offer at {path}: run `fedmarket offer submit` first")
    p = PreparedOffer.from_json(path.read_text())
    client.reveal_offer(me.eth, request_id, ask=p.ask, samples=p.samples,
                        sketch_cid=p.sketch_cid, salt=p.salt)  # fmt: skip
    bond = client.request(request_id).offer_bond
    out = {"requestId": request_id, "ask": str(p.ask), "samples": p.samples,
           "bondReturned": str(bond)}  # fmt: skip
    _emit(as_json, out, f"offer revealed to request {request_id}; bond {format_amount(bond)} "
          "returned")  # fmt: skip


@click.group("sourcing")
def sourcing() -> None:
    """The committee's and winners' side of a data request: seats, selection, payments."""


def _request_id(client: Any, task_id: int) -> int:
    request_id = int(client.request_of_task(task_id))
    if request_id == 0:
        raise SourcingError(f"task {task_id} has no data request: ask its requester")
    return request_id


def _vote_file(c: CliContext, chain_id: int, request_id: int, oracle: str) -> Path:
    return c.home / "sourcing" / f"{chain_id}-{request_id}-{oracle.lower()}.json"


@sourcing.command("accept")
@click.option("--task", "task_id", type=int, required=True, help="The task of the request.")
@json_option
@pass_ctx
def sourcing_accept(c: CliContext, task_id: int, as_json: bool) -> None:
    """Accept your committee seat on a task's data request (before the offer deadline).

    \b
    Example:
      fedmarket --dev-account 5 sourcing accept --task 1
    """
    client = _client(c)
    request_id = _request_id(client, task_id)
    client.accept_seat(c.identity().eth, request_id)
    _emit(as_json, {"requestId": request_id, "accepted": True},
          f"seat accepted on request {request_id}")  # fmt: skip


@sourcing.command("select")
@click.option("--task", "task_id", type=int, required=True, help="The task of the request.")
@click.option(
    "--validation",
    default="digits",
    show_default=True,
    help="The validation set the request was made with.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@pass_ctx
def sourcing_select(c: CliContext, task_id: int, validation: str, seed: int,
                    as_json: bool) -> None:  # fmt: skip
    """Oracle: open the revealed offers' sketches, value them against the validation set, run
    the mechanism, store the report and commit the selection (after the reveal deadline).

    \b
    Example:
      fedmarket --dev-account 5 sourcing select --task 1 --validation digits
    """
    import secrets

    from marketplace.fl import load_dataset, split_dataset
    from marketplace.fl.data import canonical_digest
    from marketplace.protocol.sourcing import (
        commit_selection,
        load_request_document,
        oracle_selection,
    )

    client = _client(c)
    request_id = _request_id(client, task_id)
    view = client.request(request_id)
    val = split_dataset(load_dataset(validation), seed=seed).validation
    if bytes.fromhex(canonical_digest(val.x, val.y)) != view.validation_commitment:
        raise SourcingError(
            "this validation set is not the one the request committed to: pass its --validation "
            "and --seed"
        )
    doc = load_request_document(client, c.store, request_id)
    me = c.identity()
    chain_id = c.w3.eth.chain_id
    result, tree, report_cid = oracle_selection(
        client, c.store, request_id, task_id=task_id, chain_id=chain_id, oracle=me.address,
        x25519_private=me.x25519_private, spec=doc.spec, x_val=val.x, y_val=val.y,
        budget=view.budget,
    )  # fmt: skip
    if tree is None or report_cid is None:
        raise SourcingError(f"no offer of request {request_id} can be selected: nothing to commit")
    salt = secrets.token_bytes(32)
    path = _vote_file(c, chain_id, request_id, me.address)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"reportCid": report_cid, "salt": salt.hex()}))
    commit_selection(client, me.eth, request_id, tree, report_cid, salt)
    out = shallow_json(c.store.get(report_cid))
    out["reportCid"] = report_cid
    lines = [f"{o['owner']}  ask {o['ask']}  value {o.get('value_ppm', '-')}  "
             f"{'WON ' + o['payment'] if o['won'] else o['rejected'] or 'not selected'}"
             for o in out["offers"]]  # fmt: skip
    _emit(as_json, out, "\n".join([f"selection committed ({result.branch})", *lines]))


@sourcing.command("reveal")
@click.option("--task", "task_id", type=int, required=True, help="The task of the request.")
@json_option
@pass_ctx
def sourcing_reveal(c: CliContext, task_id: int, as_json: bool) -> None:
    """Oracle: reveal the selection committed by `fedmarket sourcing select`.

    \b
    Example:
      fedmarket --dev-account 5 sourcing reveal --task 1
    """
    from marketplace.chain.sourcing_client import SelectionTree
    from marketplace.protocol.sourcing import reveal_selection

    client = _client(c)
    request_id = _request_id(client, task_id)
    me = c.identity()
    path = _vote_file(c, c.w3.eth.chain_id, request_id, me.address)
    if not path.is_file():
        raise SourcingError(f"no committed selection at {path}: run `fedmarket sourcing select`")
    saved = shallow_json(path.read_text())
    report = shallow_json(c.store.get(saved["reportCid"]))
    won = [r for r in report["offers"] if r["won"]]
    tree = SelectionTree(request_id, [r["owner"] for r in won], [int(r["payment"]) for r in won])
    reveal_selection(client, me.eth, request_id, tree, saved["reportCid"],
                     bytes.fromhex(saved["salt"]))  # fmt: skip
    final = client.request(request_id).selected
    _emit(as_json, {"requestId": request_id, "revealed": True, "final": final},
          f"selection revealed{' and final' if final else ''}")  # fmt: skip


@sourcing.command("register")
@click.option("--task", "task_id", type=int, required=True, help="The task of the request.")
@json_option
@pass_ctx
def sourcing_register(c: CliContext, task_id: int, as_json: bool) -> None:
    """Winner: prove your place in the final selection, so you may join the task.

    \b
    Example:
      fedmarket --dev-account 2 sourcing register --task 1
    """
    from marketplace.protocol.sourcing import load_selection

    client = _client(c)
    request_id = _request_id(client, task_id)
    tree, _ = load_selection(client, c.store, request_id)
    me = c.identity()
    client.register_winner(me.eth, request_id, tree)
    payment, _ = client.winner(request_id, me.address)
    out = {"requestId": request_id, "taskId": task_id, "payment": str(payment)}
    _emit(
        as_json, out, f"registered as a winner of request {request_id}: you may join task {task_id}"
    )


@sourcing.command("claim")
@click.option("--task", "task_id", type=int, required=True, help="The task of the request.")
@json_option
@pass_ctx
def sourcing_claim(c: CliContext, task_id: int, as_json: bool) -> None:
    """Winner: claim your threshold payment once the task is scored (after its dispute window).

    Your row of the task's final payout table is read and proven the way `fedmarket rewards
    claim` does it; a row the oracles flagged (free rider, poisoner, invalid update, copier) is
    not paid: its payment returns to the requester. If scoring failed, you are paid for having
    trained the last round.

    \b
    Example:
      fedmarket --dev-account 2 sourcing claim --task 1
    """
    from marketplace.protocol.published_report import sourcing_claim_args
    from marketplace.protocol.session import TaskSession

    client = _client(c)
    request_id = _request_id(client, task_id)
    me = c.identity()
    leaf, proof = sourcing_claim_args(TaskSession.open(c.market, c.store, task_id, me))
    if leaf is not None and leaf.flags:
        raise SourcingError(
            f"the oracles flagged {me.address} in task {task_id} (flags {leaf.flags}): "
            "no data payment; it returns to the requester"
        )
    client.claim_payment(me.eth, request_id, leaf, proof)
    payment, _ = client.winner(request_id, me.address)
    _emit(as_json, {"requestId": request_id, "paid": str(payment)},
          f"paid {payment} for request {request_id}")  # fmt: skip


@sourcing.command("refund")
@click.option("--task", "task_id", type=int, required=True, help="The task of the request.")
@json_option
@pass_ctx
def sourcing_refund(c: CliContext, task_id: int, as_json: bool) -> None:
    """Return the unspent (or, after the claim deadline, unclaimed) budget to the requester,
    with the bonds of offers never revealed (forfeited once the reveal deadline is past).

    \b
    Example:
      fedmarket --dev-account 1 sourcing refund --task 1
    """
    client = _client(c)
    request_id = _request_id(client, task_id)
    me = c.identity().eth
    before = client.request(request_id)
    forfeited = 0
    if before.bonds_held and c.market.now() >= before.reveal_deadline:
        client.forfeit_bonds(me, request_id)  # no reveal can come any more
        forfeited = before.bonds_held
    try:
        client.refund(me, request_id)
    except TransactionRevertedError as exc:
        # Having sent the forfeited bonds is enough: the budget may have nothing due yet.
        nothing = ("DataSourcingNothingToRefund", "DataSourcingNotSelected")
        if not forfeited or exc.error_name not in nothing:
            raise
    view = client.request(request_id)
    out = {"requestId": request_id, "refunded": str(view.refunded),
           "bondsForfeited": str(forfeited)}  # fmt: skip
    text = f"refunded; request {request_id} has returned {view.refunded} in total"
    if forfeited:
        text += f" and {format_amount(forfeited)} of unrevealed offers' bonds"
    _emit(as_json, out, text)


@sourcing.command("show")
@click.option("--task", "task_id", type=int, required=True, help="The task of the request.")
@json_option
@pass_ctx
def sourcing_show(c: CliContext, task_id: int, as_json: bool) -> None:
    """A data request's state, its offers and, once final, their values and the selection.

    \b
    Example:
      fedmarket sourcing show --task 1
    """
    from node.cli.sourcing_view import print_sourcing, sourcing_section

    section = sourcing_section(c, task_id)
    if section is None:
        raise SourcingError(f"task {task_id} has no data request: ask its requester")
    emit(as_json, section, lambda: print_sourcing(section))
