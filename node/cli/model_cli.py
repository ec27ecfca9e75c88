"""CLI commands of a model's life after training: ``model …`` and ``audit attest``.

A thin layer over :mod:`marketplace.chain.model_market_client` and
:mod:`marketplace.protocol.model_sale`; registered on the root group by :mod:`node.cli`.
The key holder's content keys live in ``HOME/product/<chainId>-<ModelMarket>.json`` (local state
keyed by deployment), never on the chain or in the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from web3 import Web3

from marketplace.chain.deploy import deploy_product, write_deployment
from marketplace.chain.model_market_client import (
    ListingParams,
    ModelMarketClient,
    ProductParams,
    ProductRole,
    SaleStatus,
)
from marketplace.errors import ConfigError
from marketplace.protocol.model_sale import (
    buy_model,
    deliver_sale,
    download_model,
    publish_model,
)
from node.cli.context import CliContext, format_amount, parse_amount
from node.cli.output import console, emit, json_option, kv_table, pass_ctx, task_option

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _emit(as_json: bool, data: Any, title: str) -> None:
    rows = {k: _jsonable(v) for k, v in data.items()}
    emit(as_json, _hex_bytes(data), lambda: console.print(kv_table(title, rows)))


def _hex_bytes(v: Any) -> Any:
    """``v`` with every ``bytes`` inside written ``0x…`` (JSON has no bytes)."""
    if isinstance(v, bytes):
        return "0x" + v.hex()
    if isinstance(v, dict):
        return {k: _hex_bytes(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_hex_bytes(x) for x in v]
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return "0x" + v.hex()
    if isinstance(v, SaleStatus):
        return v.name.lower()
    return v


def _client(c: CliContext) -> ModelMarketClient:
    return ModelMarketClient(c.w3, c.deployment)


def _keys_path(c: CliContext, client: ModelMarketClient) -> Path:
    return c.home / "product" / f"{client.chain_id}-{client.address}.json"


def _load_keys(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ConfigError(f"{path} is corrupt ({exc}): restore it from a backup") from None


# --- model -------------------------------------------------------------------------------------
@click.group()
def model() -> None:
    """Validation submissions, listings, sales and downloads of trained models."""


@model.command("deploy")
@json_option
@pass_ctx
def model_deploy(c: CliContext, as_json: bool) -> None:
    """Add ModelMarket and EfficacyMarket to this chain's deployment.

    \b
    Example:
      fedmarket --dev-account 0 model deploy
    """
    dep = deploy_product(c.w3, c.signer(), c.deployment)
    path = write_deployment(dep, c.deployments_dir)
    data = {n: dep.address(n) for n in ("ModelMarket", "EfficacyMarket")} | {"file": str(path)}
    _emit(as_json, data, "Deployed")


@model.command("register")
@json_option
@pass_ctx
def model_register(c: CliContext, as_json: bool) -> None:
    """Register as a developer with your X25519 key (needed to submit revisions).

    \b
    Example:
      fedmarket --dev-account 8 model register
    """
    from marketplace.chain.model_market_client import ProductRole

    me = c.identity()
    _client(c).register(me.eth, ProductRole.DEVELOPER, me.x25519_public)
    _emit(as_json, {"developer": me.address}, "Registered")


@model.command("configure")
@click.option("--task", "task_id", type=int, required=True)
@click.option("--validation-submissions", "k", type=int, required=True,
              help="K: submissions allowed, final aggregate included (fixed).")  # fmt: skip
@click.option("--threshold", type=float, required=True, help="Pass threshold, accuracy 0..1.")
@click.option("--auditors", "m", type=int, default=0, show_default=True,
              help="M: approving attestations needed before approval.")  # fmt: skip
@click.option("--bounty", default="0", show_default=True, help="Tokens for the first pass.")
@click.option("--auditor-fee", default="0", show_default=True, help="Tokens per attestation.")
@click.option("--window", type=int, default=3600, show_default=True,
              help="Seconds of the committee's commit window (and reveal window).")  # fmt: skip
@json_option
@pass_ctx
def model_configure(
    c: CliContext, task_id: int, k: int, threshold: float, m: int, bounty: str,
    auditor_fee: str, window: int, as_json: bool,
) -> None:  # fmt: skip
    """Requester: fix K, the threshold, the bounty and M for a task; escrow bounty + M fees.

    \b
    Example:
      fedmarket --dev-account 1 model configure --task 2 --validation-submissions 3 \\
          --threshold 0.85 --auditors 2 --bounty 50 --auditor-fee 5
    """
    if not 0 <= threshold <= 1:
        raise ConfigError("--threshold is an accuracy between 0 and 1")
    params = ProductParams(
        max_submissions=k, threshold_ppm=round(threshold * 1_000_000),
        bounty=parse_amount(bounty), required_attestations=m,
        auditor_fee=parse_amount(auditor_fee), eval_commit_duration=window,
        eval_reveal_duration=window,
    )  # fmt: skip
    client = _client(c)
    client.configure(c.signer(), task_id, params)
    _emit(as_json, dataclasses.asdict(client.product(task_id)), f"Task {task_id}")


@model.command("submit")
@click.option("--task", "task_id", type=int, required=True)
@click.option("--model", "model_path", type=_FILE, required=True,
              help="The model's weights (safetensors).")  # fmt: skip
@click.option("--final", is_flag=True, help="Requester: submit the task's final aggregate (#1).")
@json_option
@pass_ctx
def model_submit(c: CliContext, task_id: int, model_path: Path, final: bool, as_json: bool) -> None:
    """Submit a model for evaluation on the hidden validation set (sealed to the committee).

    \b
    Example:
      fedmarket --dev-account 8 model submit --task 1 --model revised.safetensors
    """
    client = _client(c)
    me = c.identity()
    blob = model_path.read_bytes()
    digest = hashlib.sha256(blob).digest()
    recipients = {o: c.market.participant(o).encryption_key for o in c.market.oracles(task_id)}
    from marketplace.protocol.model_evaluation import seal_submission  # torch is under it

    sealed = seal_submission(
        blob, recipients=recipients, chain_id=client.chain_id, task_id=task_id,
        developer=me.address,
    )  # fmt: skip
    cid = str(c.store.put(sealed))
    if final:
        number = client.submit_final_model(me.eth, task_id, cid)
    else:
        number = client.submit(me.eth, task_id, cid, digest)
    _emit(as_json, {"task": task_id, "submission": number, "cid": cid, "digest": digest},
          "Submitted")  # fmt: skip


@model.command("list")
@json_option
@pass_ctx
def model_list(c: CliContext, as_json: bool) -> None:
    """Every listing: task, price, expiry, sales.

    \b
    Example:
      fedmarket model list
    """
    client = _client(c)
    events = client.contract.events.Listed().get_logs(from_block=c.deployment.block)
    rows = []
    for ev in events:
        info = client.listing(int(ev["args"]["listingId"]))
        rows.append({
            "listing": int(ev["args"]["listingId"]), "task": info.task_id,
            "submission": info.submission, "price": format_amount(info.price),
            "expiry": info.expiry, "sales": info.sales, "license": ev["args"]["licenseCid"],
        })  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    table = Table(title="Listings", title_justify="left")
    for col in ("listing", "task", "submission", "price", "expiry", "sales", "license"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[k]) for k in ("listing", "task", "submission", "price", "expiry",
                                              "sales", "license")))  # fmt: skip
    console.print(table)


@model.command("show")
@click.argument("listing_id", type=int)
@json_option
@pass_ctx
def model_show(c: CliContext, listing_id: int, as_json: bool) -> None:
    """One listing's on-chain state and the model's evaluated digest and score.

    \b
    Example:
      fedmarket model show 1
    """
    client = _client(c)
    info = client.listing(listing_id)
    sub = client.submission(info.task_id, info.submission)
    extra = {"digest": sub.digest, "score_ppm": sub.score_ppm}
    data = dataclasses.asdict(info) | extra | {"trainer_gross": client.trainer_gross(listing_id)}
    _emit(as_json, data, f"Listing {listing_id}")


@model.command("sell")
@click.option("--task", "task_id", type=int, required=True)
@click.option("--submission", type=int, default=1, show_default=True)
@click.option("--model", "model_path", type=_FILE, required=True,
              help="The approved model's weights (must match its digest).")  # fmt: skip
@click.option("--price", required=True, help="Tokens per sale.")
@click.option("--license-cid", required=True, help="CID of the licence terms.")
@click.option("--days", type=int, default=30, show_default=True, help="Days until expiry.")
@click.option("--requester-bps", type=int, default=1000, show_default=True)
@click.option("--developer-bps", type=int, default=0, show_default=True)
@click.option("--auditor-bps", type=int, default=0, show_default=True)
@json_option
@pass_ctx
def model_sell(
    c: CliContext, task_id: int, submission: int, model_path: Path, price: str, license_cid: str,
    days: int, requester_bps: int, developer_bps: int, auditor_bps: int, as_json: bool,
) -> None:  # fmt: skip
    """Requester: encrypt the approved model once, store it, and list it (you hold its key).

    \b
    Example:
      fedmarket --dev-account 1 model sell --task 1 --model final.safetensors --price 10 \\
          --license-cid QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn
    """
    client = _client(c)
    me = c.identity()
    blob = model_path.read_bytes()
    expected = client.submission(task_id, submission).digest
    if hashlib.sha256(blob).digest() != expected:
        raise ConfigError(f"{model_path} is not submission {submission}'s model (digest differs)")
    model_cid, key = publish_model(c.store, blob, chain_id=client.chain_id, task_id=task_id)
    now = c.market.now()
    listing_id = client.list_model(me.eth, ListingParams(
        task_id=task_id, submission=submission, price=parse_amount(price),
        license_cid=license_cid, expiry=now + days * 86400, delivery_window=86400,
        royalty_window=30 * 86400, key_holder=me.address, requester_bps=requester_bps,
        developer_bps=developer_bps, auditor_bps=auditor_bps,
    ))  # fmt: skip
    path = _keys_path(c, client)
    keys = _load_keys(path)
    keys[str(listing_id)] = {"modelCid": model_cid, "contentKey": key.hex()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys, indent=2))
    path.chmod(0o600)
    _emit(as_json, {"listing": listing_id, "model_cid": model_cid}, "Listed")


@model.command("deliver")
@click.option("--listing", "listing_id", type=int, required=True)
@json_option
@pass_ctx
def model_deliver(c: CliContext, listing_id: int, as_json: bool) -> None:
    """Key holder: seal the content key to every paid, undelivered sale of a listing.

    Each envelope is recorded on-chain (the Delivered event); the output maps each sale to the
    envelope's keccak256, as the sale stores it.

    \b
    Example:
      fedmarket --dev-account 1 model deliver --listing 1
    """
    client = _client(c)
    keys = _load_keys(_keys_path(c, client)).get(str(listing_id))
    if keys is None:
        raise ConfigError(f"no content key for listing {listing_id} in {c.home}: sell from here")
    events = client.contract.events.Purchased().get_logs(
        from_block=c.deployment.block, argument_filters={"listingId": listing_id}
    )
    done = {}
    for ev in events:
        sale_id = int(ev["args"]["saleId"])
        if client.sale(sale_id).status is SaleStatus.PAID:
            envelope = deliver_sale(
                client, c.signer(), sale_id, model_cid=keys["modelCid"],
                content_key=bytes.fromhex(keys["contentKey"]),
            )  # fmt: skip
            done[str(sale_id)] = bytes(Web3.keccak(envelope))  # the sale's sealedKeyHash
    _emit(as_json, {"delivered": done}, f"Listing {listing_id}")


@model.command("buy")
@click.argument("listing_id", type=int)
@json_option
@pass_ctx
def model_buy(c: CliContext, listing_id: int, as_json: bool) -> None:
    """Pay for a listing in one transaction (permit); the key comes sealed to your X25519 key.

    \b
    Example:
      fedmarket --dev-account 11 model buy 1
    """
    me = c.identity()
    sale_id = buy_model(_client(c), me.eth, listing_id, me.x25519_public)
    _emit(as_json, {"sale": sale_id, "listing": listing_id}, "Bought")


@model.command("download")
@click.argument("sale_id", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@json_option
@pass_ctx
def model_download(c: CliContext, sale_id: int, out: Path, as_json: bool) -> None:
    """Open your delivery (read from the chain), fetch and decrypt the model, check its digest.

    \b
    Example:
      fedmarket --dev-account 11 model download 1 --out model.safetensors
    """
    me = c.identity()
    blob = download_model(
        _client(c), c.store, buyer=me.address, buyer_private=me.x25519_private, sale_id=sale_id
    )
    out.write_bytes(blob)
    digest = hashlib.sha256(blob).digest()
    _emit(as_json, {"sale": sale_id, "file": str(out), "sha256": digest}, "Downloaded")


# --- money out: refunds, royalties, shares, bounty, escrow, sweep ------------------------------
def _paid(
    as_json: bool, client: ModelMarketClient, receipt: Any, event: str, field: str,
    data: dict[str, Any], title: str,
) -> None:  # fmt: skip
    """Print what ``event`` of ``receipt`` moved (``field``, in tokens) with ``data``."""
    amount = int(client._event(client.contract, receipt, event)[field])
    tx = "0x" + bytes(receipt["transactionHash"]).hex()
    _emit(as_json, data | {"amount": format_amount(amount), "tx": tx}, title)


@model.command("refund")
@click.argument("sale_id", type=int)
@json_option
@pass_ctx
def model_refund(c: CliContext, sale_id: int, as_json: bool) -> None:
    """Buyer: take your payment back for a sale the key holder did not deliver in time.

    Possible once the sale's delivery deadline has passed with no delivery recorded.

    \b
    Example:
      fedmarket --dev-account 11 model refund 1
    """
    client = _client(c)
    receipt = client.refund(c.signer(), sale_id)
    _paid(as_json, client, receipt, "Refunded", "amount", {"sale": sale_id}, "Refunded")


@model.command("claim")
@click.option("--listing", "listing_id", type=int, required=True)
@json_option
@pass_ctx
def model_claim(c: CliContext, listing_id: int, as_json: bool) -> None:
    """Trainer: claim your royalties on a listing with your payout leaf of the listing's task.

    The leaf and its Merkle proof come from the task's published valuation report, as
    `fedmarket rewards claim` finds them.

    \b
    Example:
      fedmarket --dev-account 2 model claim --listing 1
    """
    from marketplace.protocol.published_report import claim_args, final_report_of
    from marketplace.units import describe_time
    from marketplace.valuation.merkle import LeafDomain

    client = _client(c)
    me = c.identity()
    info = client.listing(listing_id)
    if info.price == 0:
        raise ConfigError(f"there is no listing {listing_id}: see `fedmarket model list`")
    task_id = info.task_id
    domain = LeafDomain(client.chain_id, c.market.market.address, task_id)
    found = None
    if c.market.is_trainer(task_id, me.address):  # nobody else can open the report
        found = claim_args(final_report_of(c.market, c.store, me, task_id), me.address, domain)
    if found is None:
        raise ConfigError(f"{me.address} has no payout leaf in task {task_id}: only its "
                          f"trainers earn royalties on listing {listing_id}")  # fmt: skip
    entry, proof = found
    if entry.flags != 0:
        raise ConfigError(f"{me.address}'s payout leaf in task {task_id} is flagged "
                          f"({entry.flags}): a flagged trainer earns no royalties")  # fmt: skip
    if client.now() > info.royalty_deadline:
        closed = describe_time(info.royalty_deadline)
        raise ConfigError(f"listing {listing_id}'s royalty window closed at {closed}: nothing "
                          "can be claimed now")  # fmt: skip
    accrued, paid = client.royalty_of(listing_id, entry.index, entry.score_ppm)
    if accrued <= paid:
        versions = Web3.to_checksum_address(info.versions)
        if int(versions, 16) != 0 and client.withdrawal_of(versions, task_id, me.address) != 0:
            raise ConfigError(
                f"{me.address} withdrew its data from task {task_id}: its royalties on "
                f"listing {listing_id} stopped there and {format_amount(paid)} tokens are "
                "claimed; nothing more is due"
            )
        if paid:
            raise ConfigError(
                f"{me.address} already claimed its {format_amount(paid)} tokens of royalties on "
                f"listing {listing_id}: nothing more is due until the next delivered sale"
            )
        raise ConfigError(f"no royalties on listing {listing_id} yet: they accrue as sales "
                          f"are delivered (see `fedmarket model show {listing_id}`)")  # fmt: skip
    receipt = client.claim_royalty(me.eth, listing_id, entry.claim_values(), proof)
    _paid(as_json, client, receipt, "RoyaltyClaimed", "amount",
          {"listing": listing_id, "task": task_id, "index": entry.index,
           "account": entry.account}, "Royalties claimed")  # fmt: skip


@model.command("claim-share")
@click.option("--listing", "listing_id", type=int, required=True)
@json_option
@pass_ctx
def model_claim_share(c: CliContext, listing_id: int, as_json: bool) -> None:
    """Requester, developer or approving auditor: claim your share of a listing's sales.

    Whichever of these roles the account holds on the listing is paid (all of them, if several).

    \b
    Example:
      fedmarket --dev-account 1 model claim-share --listing 1
    """
    client = _client(c)
    receipt = client.claim_share(c.signer(), listing_id)
    _paid(as_json, client, receipt, "ShareClaimed", "amount", {"listing": listing_id},
          "Share claimed")  # fmt: skip


@model.command("claim-bounty")
@task_option
@json_option
@pass_ctx
def model_claim_bounty(c: CliContext, task_id: int, as_json: bool) -> None:
    """Pay a task's bounty to the developer of its first passing submission (anyone may send).

    \b
    Example:
      fedmarket --dev-account 8 model claim-bounty --task 1
    """
    client = _client(c)
    receipt = client.claim_bounty(c.signer(), task_id)
    event = client._event(client.contract, receipt, "BountyPaid")
    _paid(as_json, client, receipt, "BountyPaid", "amount",
          {"task": task_id, "submission": int(event["submission"]),
           "developer": str(event["developer"])}, "Bounty paid")  # fmt: skip


@model.command("reclaim")
@task_option
@json_option
@pass_ctx
def model_reclaim(c: CliContext, task_id: int, as_json: bool) -> None:
    """Return a task's unused product escrow to its requester: the unpaid auditor fees once a
    submission is approved, and the bounty too if all K submissions failed.

    \b
    Example:
      fedmarket --dev-account 1 model reclaim --task 1
    """
    client = _client(c)
    receipt = client.reclaim(c.signer(), task_id)
    _paid(as_json, client, receipt, "EscrowReclaimed", "amount", {"task": task_id}, "Reclaimed")


@model.command("sweep")
@click.option("--listing", "listing_id", type=int, required=True)
@json_option
@pass_ctx
def model_sweep(c: CliContext, listing_id: int, as_json: bool) -> None:
    """After a listing's royalty window: send its unclaimed royalties to the requester
    (anyone may send it).

    \b
    Example:
      fedmarket --dev-account 1 model sweep --listing 1
    """
    client = _client(c)
    receipt = client.sweep_royalties(c.signer(), listing_id)
    _paid(as_json, client, receipt, "RoyaltiesSwept", "amount", {"listing": listing_id}, "Swept")


# --- audit -------------------------------------------------------------------------------------
@click.group()
def audit() -> None:
    """Independent audits of a submitted model (EIP-712 attestations)."""


@audit.command("package")
@click.option("--task", "task_id", type=int, required=True)
@click.option("--submission", type=int, required=True)
@click.option("--model", "model_path", type=_FILE, required=True,
              help="The submission's model (must match its on-chain digest).")  # fmt: skip
@click.option("--validation", required=True,
              help="The validation source `task create` was given (dataset or file).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="As given to `task create`.")
@click.option("--auditor", "auditors", multiple=True, required=True,
              help="A registered auditor's address (repeat).")  # fmt: skip
@json_option
@pass_ctx
def audit_package(
    c: CliContext, task_id: int, submission: int, model_path: Path, validation: str, seed: int,
    auditors: tuple[str, ...], as_json: bool,
) -> None:  # fmt: skip
    """Requester: seal the model and the committed validation set to the auditors' keys.

    \b
    Example:
      fedmarket --dev-account 1 audit package --task 1 --submission 1 --model final.safetensors \\
          --validation digits --auditor 0xa0Ee7A142d267C1f36714E4a8F75612F20a79720 \\
          --auditor 0xBcd4042DE499D14e55001CcbB24a551F3b954096
    """
    from marketplace.fl import canonical_bytes, load_dataset, split_dataset
    from marketplace.protocol.audit import AuditPackage, audit_context, seal_audit_package

    client = _client(c)
    me = c.identity()
    blob = model_path.read_bytes()
    if hashlib.sha256(blob).digest() != client.submission(task_id, submission).digest:
        raise ConfigError(f"{model_path} is not submission {submission}'s model (digest differs)")
    if Path(validation).is_file():
        ds = load_dataset(validation)
    else:
        ds = split_dataset(load_dataset(validation), seed=seed).validation
    data = canonical_bytes(ds.x, ds.y)
    if hashlib.sha256(data).digest() != client.validation_commitment(task_id):
        raise ConfigError(
            f"--validation {validation} (--seed {seed}) is not task {task_id}'s committed "
            "validation set: give what `task create` was given"
        )
    keys = {}
    for a in auditors:
        if client.role_of(a) is not ProductRole.AUDITOR:
            raise ConfigError(f"{a} is not a registered auditor (`fedmarket audit register`)")
        keys[a] = bytes(client.call(client.fn.encryptionKeyOf(a)))
    ctx = audit_context(client.chain_id, task_id, submission, me.address)
    cid = str(c.store.put(seal_audit_package(AuditPackage(blob, data), auditors=keys, context=ctx)))
    _emit(as_json, {"task": task_id, "submission": submission, "package": cid}, "Audit package")


@audit.command("attest")
@click.option("--task", "task_id", type=int, required=True)
@click.option("--submission", type=int, required=True)
@click.option("--package", "package_cid", required=True,
              help="CID of the package the requester sealed to you (`audit package`).")  # fmt: skip
@click.option("--report", "report_path", type=_FILE, default=None,
              help="Your audit report (any file): stored in IPFS, its CID attested.")  # fmt: skip
@click.option("--report-cid", default=None,
              help="Instead of --report: the CID of your report, stored already.")  # fmt: skip
@click.option("--approve/--reject", "approved", default=True, show_default=True)
@json_option
@pass_ctx
def audit_attest(
    c: CliContext, task_id: int, submission: int, package_cid: str, report_path: Path | None,
    report_cid: str | None, approved: bool, as_json: bool,
) -> None:  # fmt: skip
    """Open your audit package, check the model against the submission's digest and the
    validation set against the task's commitment, then sign an attestation and post it.

    The package is the CID the requester's `audit package` printed (and sent you).

    \b
    Example:
      PACKAGE=$(fedmarket --dev-account 1 audit package --task 1 --submission 1 \\
          --model final.safetensors --validation digits \\
          --auditor 0xa0Ee7A142d267C1f36714E4a8F75612F20a79720 \\
          --auditor 0xBcd4042DE499D14e55001CcbB24a551F3b954096 --json | jq -r .package)
      fedmarket --dev-account 9 audit attest --task 1 --submission 1 --package $PACKAGE \\
          --report report.json
    """
    from marketplace.protocol.audit import audit_context, open_audit_package

    if (report_path is None) == (report_cid is None):
        raise ConfigError("give your audit report: --report FILE, or --report-cid CID")
    client = _client(c)
    me_keys = c.identity()
    digest = client.submission(task_id, submission).digest
    requester = client.task_requester(task_id)
    open_audit_package(
        c.store.get(package_cid), auditor=me_keys.address, x25519_private=me_keys.x25519_private,
        context=audit_context(client.chain_id, task_id, submission, requester),
        model_digest=digest, validation_commitment=client.validation_commitment(task_id),
    )  # fmt: skip
    if report_path is not None:  # stored only once the package checked out
        report_cid = str(c.store.put(report_path.read_bytes()))
    assert report_cid is not None
    me = c.signer()
    sig = client.sign_attestation(me, task_id, digest, report_cid, approved)
    client.attest(me, task_id, submission, digest, report_cid, approved, sig)
    _emit(as_json, {"task": task_id, "submission": submission, "approved": approved,
                    "reportCid": report_cid, "signature": sig}, "Attested")  # fmt: skip


@audit.command("register")
@json_option
@pass_ctx
def audit_register(c: CliContext, as_json: bool) -> None:
    """Register as an auditor with your X25519 key (models are sealed to it).

    \b
    Example:
      fedmarket --dev-account 9 audit register
    """
    from marketplace.chain.model_market_client import ProductRole

    me = c.identity()
    _client(c).register(me.eth, ProductRole.AUDITOR, me.x25519_public)
    _emit(as_json, {"auditor": me.address}, "Registered")


COMMANDS = (model, audit)
