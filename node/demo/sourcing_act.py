"""The demo's first act: sourcing before training.

The requester publishes a data request (sketch spec, committee, procurement budget); ten data
owners answer with sealed offers: different sizes, prices and label skews, one with 30% wrong
labels, one whose features are shifted away from the requester's population, one asking far more
than its data is worth. Every oracle opens every sketch, values the offers against the validation
set (class-conditional optimal transport and a scaling law, no training), runs the truthful
budget-feasible mechanism and commits the selection by commit-reveal; the winners prove their
place and only they can join the task (the task's join gate is the sourcing contract).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from marketplace.chain.clients import Marketplace
from marketplace.chain.devnet import advance_chain_time
from marketplace.chain.sourcing_client import DataSourcingClient, SelectionTree
from marketplace.errors import TransactionRevertedError
from marketplace.fl import Dataset, DataSplits, add_label_noise, label_skew, partition
from marketplace.fl.data import canonical_digest
from marketplace.protocol.identity import Identity
from marketplace.protocol.sourcing import (
    collect_offers,
    commit_offer,
    commit_selection,
    committee_selection,
    load_selection,
    prepare_offer,
    publish_request,
    reveal_selection,
    selection_report,
)
from marketplace.sourcing import Offer, SketchSpec, SourcingResult, discriminant_basis
from marketplace.storage.base import ContentStore

TOKEN = 10**18
KINDS = ("honest",) * 5 + ("free_rider", "poisoner", "noisy", "shifted", "overpriced")
"""The candidates. The free rider and the poisoner own good data: sourcing judges data, not
behaviour, so they win here and are caught in training."""
PRICE_PER_ROW = (0.25, 0.26, 0.24, 0.25, 0.26, 0.25, 0.24, 0.25, 0.25, 1.20)
"""Each candidate's asking price, in tokens per row offered."""
NOISE_FRACTION = 0.3
SHIFT = 6.0  # length of the shift of the shifted candidate's features (standardized units)


@dataclass(frozen=True)
class Candidate:
    """A data owner answering the request: its data as it holds it, and its ask."""

    identity: Identity
    kind: str
    data: Dataset
    ask: int
    label_skew: float


def make_candidates(splits: DataSplits, owners: Sequence[Identity], *, seed: int,
                    alpha: float) -> list[Candidate]:  # fmt: skip
    """Split the training rows among ``owners`` (Dirichlet label skew) and corrupt the noisy and
    the shifted candidates' copies."""
    train = splits.train
    parts = partition("dirichlet", train.y, num_clients=len(owners), seed=seed, alpha=alpha)
    skew = label_skew(parts, train.y)
    rng = np.random.default_rng(seed)
    out = []
    for i, (owner, idx) in enumerate(zip(owners, parts, strict=True)):
        kind = KINDS[i % len(KINDS)]
        name = f"{train.name}/{owner.address[:8]}"
        data = train.subset(idx, name=name)
        if kind == "noisy":
            y = add_label_noise(train.y, idx, fraction=NOISE_FRACTION,
                                num_classes=train.num_classes, seed=seed)  # fmt: skip
            data = train.with_labels(y).subset(idx, name=name)
        elif kind == "shifted":
            d = rng.standard_normal(train.x.shape[1])
            data = Dataset(name, data.x + SHIFT * d / np.linalg.norm(d), data.y, data.num_classes)
        ask = round(PRICE_PER_ROW[i % len(PRICE_PER_ROW)] * len(idx) * 100) * TOKEN // 100
        out.append(Candidate(owner, kind, data, ask, round(float(skew.per_client[i]), 3)))
    return out


def sketch_spec(validation: Dataset, seed: int, directions: int = 9) -> SketchSpec:
    """The request's sketch spec: the validation set's discriminant directions (as
    ``fedmarket task request`` fixes it)."""
    basis = discriminant_basis(validation.x, validation.y, num_classes=validation.num_classes,
                               num_directions=directions, seed=seed)  # fmt: skip
    return SketchSpec(task_seed=seed, input_dim=int(validation.x.shape[1]),
                      num_classes=validation.num_classes, num_directions=directions,
                      basis=basis)  # fmt: skip


@dataclass
class SourcingOutcome:
    """What the sourcing act produced, for the table and ``--json``."""

    request_id: int
    budget: int
    branch: str
    winners: tuple[str, ...]
    candidates: list[dict[str, Any]]
    gate: str  # what happened when a losing candidate tried to join

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "budget": self.budget, "branch": self.branch,
                "winners": list(self.winners), "candidates": self.candidates,
                "gate": self.gate}  # fmt: skip


class _Valuation:
    """The committee's valuation, memoized on a digest of its inputs.

    ``run_sourcing`` is a pure, deterministic function of (spec, validation rows, budget, opened
    offers). In one process the three oracles would compute it three times on identical inputs;
    each oracle still opens every sketch itself, and a digest of what it opened keys the memo, so
    an oracle that opened anything different computes afresh.
    """

    def __init__(self) -> None:
        self.memo: dict[str, SourcingResult] = {}
        self.computed = 0

    def __call__(
        self, offers: list[Offer], *, request_id: int, spec: SketchSpec, validation: Dataset,
        budget: int,
    ) -> tuple[SourcingResult, SelectionTree | None]:  # fmt: skip
        h = hashlib.sha256(json.dumps(spec.as_dict(), sort_keys=True).encode())
        h.update(canonical_digest(validation.x, validation.y).encode())
        h.update(f"{request_id}:{budget}".encode())
        for o in sorted(offers, key=lambda o: o.owner.lower()):
            h.update(f"{o.owner}:{o.ask}:{o.samples}:{o.problem}:".encode())
            h.update(hashlib.sha256(o.sketch).digest())
        key = h.hexdigest()
        if key not in self.memo:
            self.computed += 1
            result, _ = committee_selection(offers, request_id=request_id, spec=spec,
                                            x_val=validation.x, y_val=validation.y,
                                            budget=budget)  # fmt: skip
            self.memo[key] = result
        result = self.memo[key]
        tree = SelectionTree(request_id, list(result.winners), list(result.payments))
        return result, tree if result.winners else None


def run_sourcing_act(
    market: Marketplace,
    client: DataSourcingClient,
    store: ContentStore,
    *,
    task_id: int,
    requester: Identity,
    oracles: Sequence[Identity],
    candidates: Sequence[Candidate],
    validation: Dataset,
    spec: SketchSpec,
    budget: int,
    window: int,
    progress: Callable[[str], None],
) -> SourcingOutcome:
    """Request → sealed offers → committee valuation and selection → winners registered."""
    w3 = market.w3
    chain_id = int(w3.eth.chain_id)

    def warp_past(deadline: int) -> None:
        advance_chain_time(w3, max(1, deadline - market.now() + 1))

    progress(f"data request: {budget / TOKEN:,.0f} tokens to buy data, sketches sealed to the "
             f"{len(oracles)} oracles")  # fmt: skip
    market.ensure_allowance(requester.eth, client.address, budget)
    request_id, _ = publish_request(
        client, store, requester.eth, task_id=task_id, token=market.token.address, budget=budget,
        spec=spec, oracles=tuple(o.address for o in oracles), quorum=2,
        validation_commitment=bytes.fromhex(canonical_digest(validation.x, validation.y)),
        window=window, claim_window=30 * 86400, now=market.now(),
    )  # fmt: skip
    view = client.request(request_id)
    for o in oracles:
        client.accept_seat(o.eth, request_id)
    keys = {o.address: o.x25519_public for o in oracles}
    progress(f"{len(candidates)} data owners send sealed offers (ask, rows, sketch)")
    prepared = []
    for c in candidates:
        offer = prepare_offer(store=store, spec=spec, x=c.data.x, y=c.data.y, ask=c.ask,
                              request_id=request_id, task_id=task_id, chain_id=chain_id,
                              owner=c.identity.address, committee_keys=keys)  # fmt: skip
        commit_offer(client, c.identity.eth, offer)  # approves and posts the offer bond
        prepared.append(offer)
    warp_past(view.offer_deadline)
    for c, offer in zip(candidates, prepared, strict=True):
        client.reveal_offer(c.identity.eth, request_id, ask=offer.ask, samples=offer.samples,
                            sketch_cid=offer.sketch_cid, salt=offer.salt)  # fmt: skip
    warp_past(view.reveal_deadline)

    progress("the committee values every offer against the validation set (no training) and "
             "runs the mechanism")  # fmt: skip
    valuation = _Valuation()
    votes = []
    result: SourcingResult | None = None
    for o in oracles:
        offers = collect_offers(client, store, request_id, task_id=task_id, chain_id=chain_id,
                                oracle=o.address, x25519_private=o.x25519_private)  # fmt: skip
        result, tree = valuation(offers, request_id=request_id, spec=spec, validation=validation,
                                 budget=budget)  # fmt: skip
        if tree is None:
            continue
        report_cid = str(store.put(selection_report(result, request_id)))
        salt = secrets.token_bytes(32)
        commit_selection(client, o.eth, request_id, tree, report_cid, salt)
        votes.append((o, tree, report_cid, salt))
    warp_past(view.select_commit_deadline)
    for o, tree, report_cid, salt in votes:
        reveal_selection(client, o.eth, request_id, tree, report_cid, salt)
    assert result is not None
    final, _report = load_selection(client, store, request_id)
    for c in candidates:
        if c.identity.address in {w for w, _ in final.rows}:
            client.register_winner(c.identity.eth, request_id, final)
    gate = _gate_check(market, task_id, [c for c in candidates if c.identity.address not in
                                         set(result.winners)])  # fmt: skip
    return SourcingOutcome(
        request_id=request_id, budget=budget, branch=result.branch, winners=result.winners,
        candidates=candidate_rows(candidates, result), gate=gate,
    )  # fmt: skip


def _gate_check(market: Marketplace, task_id: int, losers: Sequence[Candidate]) -> str:
    """A losing candidate tries to join: the task's gate must refuse it."""
    if not losers:
        return "every candidate won"
    loser = losers[0]
    try:
        market.join(loser.identity.eth, task_id)
    except TransactionRevertedError as exc:
        return f"{loser.kind} candidate {loser.identity.address[:10]}… refused: {exc}"
    return f"{loser.kind} candidate {loser.identity.address[:10]}… JOINED (the gate is open)"


def candidate_rows(candidates: Sequence[Candidate], result: SourcingResult) -> list[dict[str, Any]]:
    """One row per candidate: size, skew, ask, value, payment and why it was or was not picked."""
    by_owner = {o.owner: o for o in result.outcomes}
    rows = []
    for c in candidates:
        o = by_owner[c.identity.address]
        row: dict[str, Any] = {
            "address": c.identity.address, "kind": c.kind, "samples": len(c.data),
            "label_skew": c.label_skew, "ask": c.ask, "won": o.won, "payment": o.payment,
            "rejected": o.rejected,
        }  # fmt: skip
        if o.value is not None:
            row.update(value_ppm=o.value.value_ppm, distance_ppm=o.value.distance_ppm,
                       standalone_ppm=o.value.standalone_ppm)  # fmt: skip
        rows.append(row)
    winners = [r for r in rows if r["won"]]
    for row in rows:
        row["reason"] = selection_reason(row, winners, result.budget)
    return rows


def _per_token(row: dict[str, Any]) -> float:
    """Predicted accuracy (ppm) bought per token of the ask."""
    return max(int(row["value_ppm"]), 0) / max(int(row["ask"]) / TOKEN, 1e-9)


def selection_reason(row: dict[str, Any], winners: list[dict[str, Any]], budget: int) -> str:
    """Why the mechanism picked this offer or not, in words (proportional share: offers in
    decreasing value per token, while each ask stays within its share B·v/V of the budget)."""
    if row["rejected"]:
        return f"offer rejected: {row['rejected']}"
    vpt = _per_token(row)
    if row["won"]:
        return (f"picked: {vpt:,.0f} ppm per token; its threshold "
                f"{int(row['payment']) / TOKEN:,.2f} (≥ its ask) is paid unless the oracles "
                "flag its training")  # fmt: skip
    value = max(int(row["value_ppm"]), 0)
    total = sum(max(int(w["value_ppm"]), 0) for w in winners) + value
    share = budget * value // total if total else 0
    words = []
    far = max((int(w["distance_ppm"]) for w in winners), default=0)
    if winners and int(row["distance_ppm"]) > far:
        words.append(f"far from the requester's data (OT distance "
                     f"{int(row['distance_ppm']) / 1e6:.2f} > {far / 1e6:.2f}, the farthest "
                     f"winner)")  # fmt: skip
    low = min((_per_token(w) for w in winners), default=0.0)
    words.append(f"{vpt:,.0f} ppm per token < {low:,.0f} (the winners' lowest)")
    return (
        f"not picked: {'; '.join(words)}; ask {int(row['ask']) / TOKEN:,.2f} > its budget "
        f"share B·v/V = {share / TOKEN:,.2f}"
    )
