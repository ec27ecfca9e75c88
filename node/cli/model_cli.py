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

from marketplace.chain.deploy import deploy_product, write_deployment
from marketplace.chain.model_market_client import (
    ListingParams,
    ModelMarketClient,
    ProductParams,
    SaleStatus,
)
from marketplace.errors import ConfigError
from marketplace.protocol.model_evaluation import seal_submission
from marketplace.protocol.model_sale import (
    buy_model,
    deliver_sale,
    download_model,
    publish_model,
)
from node.cli.context import CliContext, format_amount, parse_amount

pass_ctx = click.make_pass_decorator(CliContext)
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def _emit(as_json: bool, data: Any, title: str) -> None:
    from node.cli.output import console, kv_table

    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=_jsonable))
    else:
        console.print(kv_table(title, {k: _jsonable(v) for k, v in data.items()}))


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
@_json_option
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
@_json_option
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
@_json_option
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
@_json_option
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
    committee = c.market.call(c.market.market.functions.oracles(task_id))
    recipients = {
        o: bytes(c.market.call(c.market.registry.functions.encryptionKeyOf(o))) for o in committee
    }
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
@_json_option
@pass_ctx
def model_list(c: CliContext, as_json: bool) -> None:
    """Every listing: task, price, expiry, sales.

    \b
    Example:
      fedmarket model list
    """
    from node.cli.output import console

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
@_json_option
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
@_json_option
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
    now = int(c.w3.eth.get_block("latest")["timestamp"])
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
@_json_option
@pass_ctx
def model_deliver(c: CliContext, listing_id: int, as_json: bool) -> None:
    """Key holder: seal the content key to every paid, undelivered sale of a listing.

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
            done[str(sale_id)] = deliver_sale(
                client, c.store, c.signer(), sale_id, model_cid=keys["modelCid"],
                content_key=bytes.fromhex(keys["contentKey"]),
            )  # fmt: skip
    _emit(as_json, {"delivered": done}, f"Listing {listing_id}")


@model.command("buy")
@click.argument("listing_id", type=int)
@_json_option
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
@_json_option
@pass_ctx
def model_download(c: CliContext, sale_id: int, out: Path, as_json: bool) -> None:
    """Open your delivery, fetch and decrypt the model, check its digest, write it.

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


# --- audit -------------------------------------------------------------------------------------
@click.group()
def audit() -> None:
    """Independent audits of a submitted model (EIP-712 attestations)."""


@audit.command("attest")
@click.option("--task", "task_id", type=int, required=True)
@click.option("--submission", type=int, required=True)
@click.option("--report-cid", required=True, help="CID of your audit report.")
@click.option("--approve/--reject", "approved", default=True, show_default=True)
@_json_option
@pass_ctx
def audit_attest(
    c: CliContext, task_id: int, submission: int, report_cid: str, approved: bool, as_json: bool
) -> None:
    """Sign an attestation of a submission's model and post it (register as auditor first).

    \b
    Example:
      fedmarket --dev-account 9 audit attest --task 1 --submission 1 \\
          --report-cid QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn
    """
    client = _client(c)
    me = c.signer()
    digest = client.submission(task_id, submission).digest
    sig = client.sign_attestation(me, task_id, digest, report_cid, approved)
    client.attest(me, task_id, submission, digest, report_cid, approved, sig)
    _emit(as_json, {"task": task_id, "submission": submission, "approved": approved,
                    "signature": sig}, "Attested")  # fmt: skip


@audit.command("register")
@_json_option
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
