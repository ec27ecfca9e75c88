"""The sourcing steps of each party, over the chain client and the content store.

* a data owner — a registered trainer with the task's minimum stake free, as the contract
  insists — sketches its data, seals the sketch to the committee (X25519 envelopes bound to
  chain, task and round 0 — sourcing precedes round 1 — and the owner), stores it, and commits
  its offer with the request's offer bond (:func:`prepare_offer`, then :func:`commit_offer`,
  then ``reveal_offer`` of the client, which returns the bond);
* every oracle collects the revealed offers from the chain's events, opens each sketch (a sketch
  it cannot fetch or open is rejected with the reason), runs the deterministic
  :func:`~marketplace.sourcing.run_sourcing`, and commits the selection's Merkle root
  (:func:`committee_selection`, :func:`commit_selection`, :func:`reveal_selection`).
"""

from __future__ import annotations

import heapq
import json
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.chain.sourcing_client import (
    MIN_SELECTION_WINDOW,
    DataSourcingClient,
    RequestParams,
    SelectionTree,
    offer_commitment,
    selection_commitment,
)
from marketplace.crypto.envelope import EnvelopeContext, open_envelope, seal
from marketplace.errors import (
    ConfigError,
    CryptoError,
    DigestMismatchError,
    SourcingError,
    StorageError,
    StoreUnreachableError,
)
from marketplace.jsonlimits import shallow_json
from marketplace.sourcing import Offer, SketchSpec, SourcingResult, build_sketch, run_sourcing
from marketplace.sourcing.sketch import MAX_SKETCH_BYTES, check_basis
from marketplace.storage.base import ContentStore

SOURCING_ROUND = 0
"""The envelope round of sketches: sourcing happens before round 1."""


MAX_REQUEST_DOC_BYTES = 1 << 20


@dataclass(frozen=True)
class RequestDocument:
    """What a data request publishes off-chain (its CID is the request's ``schemaCid``): the
    sketch spec (feature space, label set, basis) and the committee the sketches are sealed to."""

    spec: SketchSpec
    oracles: tuple[str, ...]

    def to_json(self) -> bytes:
        """Canonical JSON."""
        doc = {"version": 1, "spec": self.spec.as_dict(), "oracles": list(self.oracles)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> RequestDocument:
        """Parse and check a request document."""
        try:
            doc = shallow_json(blob)
            raw: dict[str, Any] = dict(doc["spec"])
            basis = raw.pop("basis")
            spec = SketchSpec(
                **{k: int(v) for k, v in raw.items()},
                basis=None if basis is None else tuple(tuple(int(x) for x in r) for r in basis),
            )
            oracles = tuple(Web3.to_checksum_address(o) for o in doc["oracles"])
        except (ValueError, KeyError, TypeError, ConfigError) as exc:
            raise SourcingError(f"the data request's document is malformed ({exc})") from None
        return cls(spec, oracles)


def publish_request(
    client: DataSourcingClient,
    store: ContentStore,
    requester: LocalAccount,
    *,
    task_id: int,
    token: str,
    budget: int,
    spec: SketchSpec,
    oracles: tuple[str, ...],
    quorum: int,
    validation_commitment: bytes,
    window: int,
    claim_window: int,
    now: int | None = None,
    offer_bond: int | None = None,
) -> tuple[int, str]:
    """Store the request document and create the request (budget approved beforehand).

    Each phase (offers, reveals, selection commit, selection reveal) lasts ``window`` seconds
    (at least ``MIN_SELECTION_WINDOW``: the committee must be able to try every offer);
    winners may claim for ``claim_window`` seconds after that. Each offer posts ``offer_bond``
    (default: the protocol minimum, one whole token), returned at its reveal. Returns (request
    id, document CID).
    """
    if window < MIN_SELECTION_WINDOW:
        raise ConfigError(
            f"a sourcing window of {window} s is too short: the committee needs "
            f"{MIN_SELECTION_WINDOW} s to fetch every offer's sketch; use --window "
            f"{MIN_SELECTION_WINDOW} or more"
        )
    bond = client.min_offer_bond(token) if offer_bond is None else offer_bond
    cid = str(store.put(RequestDocument(spec, oracles).to_json()))
    start = int(time.time()) if now is None else now
    params = RequestParams(
        task_id=task_id,
        token=token,
        budget=budget,
        offer_bond=bond,
        schema_cid=cid,
        validation_commitment=validation_commitment,
        oracles=oracles,
        quorum=quorum,
        offer_deadline=start + window,
        reveal_deadline=start + 2 * window,
        select_commit_deadline=start + 3 * window,
        select_reveal_deadline=start + 4 * window,
        claim_deadline=start + 4 * window + claim_window,
    )
    return client.create_request(requester, params), cid


def load_request_document(
    client: DataSourcingClient, store: ContentStore, request_id: int, *, from_block: int = 0
) -> RequestDocument:
    """The request's document, found through its ``RequestCreated`` event."""
    logs = client.contract.events.RequestCreated().get_logs(
        from_block=from_block, argument_filters={"requestId": request_id}
    )
    if not logs:
        raise SourcingError(f"no data request {request_id} on this chain: check the task id")
    cid = logs[0]["args"]["schemaCid"]
    return RequestDocument.from_json(store.get(cid, max_size=MAX_REQUEST_DOC_BYTES))


@dataclass(frozen=True)
class PreparedOffer:
    """What a data owner commits now and reveals later (keep ``salt`` secret until then)."""

    request_id: int
    ask: int
    samples: int
    sketch_cid: str
    salt: bytes

    def commitment(self, owner: str) -> bytes:
        """The on-chain commitment of this offer by ``owner``."""
        return offer_commitment(
            self.request_id, owner, self.ask, self.samples, self.sketch_cid, self.salt
        )

    def to_json(self) -> str:
        """For the owner's local file (the salt is secret until the reveal)."""
        doc = asdict(self)
        doc["salt"] = self.salt.hex()
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreparedOffer:
        """Read :meth:`to_json`'s output."""
        try:
            doc = shallow_json(text)
            doc["salt"] = bytes.fromhex(doc["salt"])
            return cls(**doc)
        except (ValueError, KeyError, TypeError) as exc:
            raise SourcingError(f"the saved offer is unreadable ({exc})") from None


def prepare_offer(
    *,
    store: ContentStore,
    spec: SketchSpec,
    x: np.ndarray,
    y: np.ndarray,
    ask: int,
    request_id: int,
    task_id: int,
    chain_id: int,
    owner: str,
    committee_keys: Mapping[str, bytes],
) -> PreparedOffer:
    """Sketch ``(x, y)``, seal the sketch to the committee, store it; return the offer to commit.

    Refuses a request whose basis could make the sketch reveal rows
    (:func:`~marketplace.sourcing.sketch.check_basis`).
    """
    check_basis(spec)
    sketch = build_sketch(x, y, spec)
    context = EnvelopeContext(chain_id, task_id, SOURCING_ROUND, owner)
    sealed = seal(sketch.to_json(), recipients=committee_keys, context=context)
    cid = store.put(sealed)
    return PreparedOffer(request_id, ask, sketch.num_samples, str(cid), secrets.token_bytes(32))


def commit_offer(client: DataSourcingClient, owner: LocalAccount, prepared: PreparedOffer) -> int:
    """Approve the request's offer bond and commit ``prepared``; returns the bond posted (it
    comes back at the reveal, and goes to the requester if the offer is never revealed)."""
    bond = client.approve_offer_bond(owner, prepared.request_id)
    client.commit_offer(owner, prepared.request_id, prepared.commitment(owner.address))
    return bond


SKETCH_FETCH_WORKERS = 8
"""Sketches fetched at once by :func:`collect_offers` (a bounded pool)."""
SKETCH_FETCH_TIMEOUT = 10.0
"""Seconds one fetch of a sketch may take (the store is told so: Kubo gives up on a CID nobody
serves after 8 s, instead of ~48 s with the store's default 60 s). A sketch is at most 2 MiB
sealed, so a served one arrives well within it."""
COLLECTION_MARGIN_SECONDS = 60
"""The committee stops fetching sketches this many chain seconds before the selection-commit
deadline, as the training oracle stops waiting for updates ``COMMIT_MARGIN_SECONDS`` (60) before
its commit deadline: the rest is for the selection itself (~4 s for 200 offers, docs/benchmarks.md),
storing the report and the commit transaction."""


def collection_budget(select_commit_deadline: int, now: int) -> float:
    """Seconds :func:`collect_offers` may spend fetching sketches at chain time ``now``: up to
    :data:`COLLECTION_MARGIN_SECONDS` before the selection-commit deadline, and at least one
    fetch timeout (an oracle that starts late still tries every sketch once)."""
    return float(
        max(select_commit_deadline - now - COLLECTION_MARGIN_SECONDS, SKETCH_FETCH_TIMEOUT)
    )


def collect_offers(
    client: DataSourcingClient,
    store: ContentStore,
    request_id: int,
    *,
    task_id: int,
    chain_id: int,
    oracle: str,
    x25519_private: X25519PrivateKey,
    from_block: int = 0,
    budget_seconds: float | None = None,
    fetch_timeout: float = SKETCH_FETCH_TIMEOUT,
    workers: int = SKETCH_FETCH_WORKERS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Offer]:
    """Every revealed offer of ``request_id`` with its opened sketch (or the problem opening it).

    Sketches are fetched ``workers`` at a time, each fetch bounded by ``fetch_timeout``
    (:meth:`ContentStore.with_timeout`), the whole collection by ``budget_seconds`` (default:
    :func:`collection_budget` of the request's selection-commit deadline at the chain's time).
    A sketch that is not served is retried — every offer's first attempt comes before anyone's
    retry, and one offer at most once per ``fetch_timeout`` — until the budget is spent; then the
    offer is rejected as ``unreachable``. A sketch that arrives but cannot be opened (wrong
    digest, not sealed to this oracle) is rejected at once: its content will not change.
    """
    logs = client.contract.events.OfferRevealed().get_logs(
        from_block=from_block, argument_filters={"requestId": request_id}
    )
    if budget_seconds is None:
        deadline = client.request(request_id).select_commit_deadline
        budget_seconds = collection_budget(deadline, client.now())
    bounded = store.with_timeout(fetch_timeout)
    revealed = [(Web3.to_checksum_address(log["args"]["owner"]), log["args"]) for log in logs]

    def fetch(i: int) -> bytes:
        owner, args = revealed[i]
        sealed = bounded.get(args["sketchCid"], max_size=2 * MAX_SKETCH_BYTES)
        return open_envelope(
            sealed,
            recipient_address=oracle,
            x25519_private=x25519_private,
            expected_context=EnvelopeContext(chain_id, task_id, SOURCING_ROUND, owner),
        )

    fetched = _fetch_all(fetch, len(revealed), budget=budget_seconds, retry_after=fetch_timeout,
                         workers=workers, clock=clock, sleep=sleep)  # fmt: skip
    if fetched and all(isinstance(exc, StoreUnreachableError) for _, exc, _ in fetched):
        # Not one sketch, and this oracle's own store never answered: its daemon is down, which
        # is no owner's fault — raised (retried by the node) rather than rejecting every offer.
        raise next(exc for _, exc, _ in fetched if exc is not None)
    offers = []
    for (owner, args), (sketch, exc, attempts) in zip(revealed, fetched, strict=True):
        cid, problem = args["sketchCid"], None
        if sketch is None and isinstance(exc, (CryptoError, DigestMismatchError)):
            problem = f"sketch {cid} could not be read: {exc}"
        elif sketch is None:
            problem = (
                f"unreachable: sketch {cid} was not fetched within the committee's "
                f"{budget_seconds:.0f} s ({attempts} attempts; last: {exc or 'still running'})"
            )
        offers.append(Offer(owner, int(args["ask"]), int(args["samples"]), sketch or b"", problem))
    return offers


def _fetch_all(
    fetch: Callable[[int], bytes],
    n: int,
    *,
    budget: float,
    retry_after: float,
    workers: int,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> list[tuple[bytes | None, BaseException | None, int]]:
    """``fetch(0..n-1)`` on a pool of ``workers`` threads within ``budget`` seconds of ``clock``:
    for each, (its bytes or ``None``, the last error, the number of attempts started). A
    :class:`StorageError` other than a digest mismatch is retried (not before ``retry_after``
    seconds since the attempt began; every first attempt is due at the start, so before any
    retry); a :class:`CryptoError` or digest
    mismatch is final. Attempts still running at the deadline are abandoned (not waited for)."""
    start = clock()
    deadline = start + budget
    got: list[bytes | None] = [None] * n
    errors: list[BaseException | None] = [None] * n
    attempts = [0] * n
    started = [start] * n
    due = [(start, 0, i) for i in range(n)]  # (not before, attempts so far, index): a heap
    running: dict[Future[bytes], int] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sketch-fetch")
    try:
        while due or running:
            now = clock()
            if now >= deadline:
                break
            while due and due[0][0] <= now and len(running) < workers:
                _, _, i = heapq.heappop(due)
                attempts[i] += 1
                started[i] = now
                running[pool.submit(fetch, i)] = i
            if not running:
                sleep(min(due[0][0], deadline) - now)
                continue
            wake = deadline if not due or len(running) >= workers else min(due[0][0], deadline)
            done, _ = wait(running, timeout=max(0.0, wake - now), return_when=FIRST_COMPLETED)
            for future in done:
                i = running.pop(future)
                try:
                    got[i] = future.result()
                except (CryptoError, DigestMismatchError) as exc:
                    errors[i] = exc  # the content is what its CID says: it will not change
                except StorageError as exc:
                    errors[i] = exc
                    heapq.heappush(due, (started[i] + retry_after, attempts[i], i))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [(got[i], errors[i], attempts[i]) for i in range(n)]


def committee_selection(
    offers: list[Offer],
    *,
    request_id: int,
    spec: SketchSpec,
    x_val: np.ndarray,
    y_val: np.ndarray,
    budget: int,
) -> tuple[SourcingResult, SelectionTree | None]:
    """Value the offers and select; the tree is ``None`` when nobody wins."""
    result = run_sourcing(spec=spec, x_val=x_val, y_val=y_val, budget=budget, offers=offers)
    if not result.winners:
        return result, None
    return result, SelectionTree(request_id, list(result.winners), list(result.payments))


def oracle_selection(
    client: DataSourcingClient,
    store: ContentStore,
    request_id: int,
    *,
    task_id: int,
    chain_id: int,
    oracle: str,
    x25519_private: X25519PrivateKey,
    spec: SketchSpec,
    x_val: np.ndarray,
    y_val: np.ndarray,
    budget: int,
    budget_seconds: float | None = None,
) -> tuple[SourcingResult, SelectionTree | None, str | None]:
    """What one oracle decides: open the revealed offers (:func:`collect_offers`, within
    ``budget_seconds``), value and select them (:func:`committee_selection`) and store the
    report. Returns the result, the tree and the report's CID (both ``None`` when nobody wins)."""
    offers = collect_offers(client, store, request_id, task_id=task_id, chain_id=chain_id,
                            oracle=oracle, x25519_private=x25519_private,
                            budget_seconds=budget_seconds)  # fmt: skip
    result, tree = committee_selection(offers, request_id=request_id, spec=spec, x_val=x_val,
                                       y_val=y_val, budget=budget)  # fmt: skip
    if tree is None:
        return result, None, None
    return result, tree, str(store.put(selection_report(result, request_id)))


def commit_selection(
    client: DataSourcingClient,
    oracle: LocalAccount,
    request_id: int,
    tree: SelectionTree,
    report_cid: str,
    salt: bytes,
) -> None:
    """Commit the oracle's selection (root, total and report, salted)."""
    c = selection_commitment(
        request_id, oracle.address, tree.root_bytes(), tree.total, report_cid, salt
    )
    client.commit_selection(oracle, request_id, c)


def reveal_selection(
    client: DataSourcingClient,
    oracle: LocalAccount,
    request_id: int,
    tree: SelectionTree,
    report_cid: str,
    salt: bytes,
) -> None:
    """Reveal what :func:`commit_selection` committed."""
    client.reveal_selection(
        oracle,
        request_id,
        root=tree.root_bytes(),
        total=tree.total,
        report_cid=report_cid,
        salt=salt,
    )


def selection_report(result: SourcingResult, request_id: int) -> bytes:
    """The committee's report of a selection (canonical JSON): every offer's value or rejection
    reason, the winners and their payments. Its CID is committed with the selection root."""
    rows = []
    for o in result.outcomes:
        row: dict[str, Any] = {"owner": o.owner, "ask": str(o.ask), "won": o.won,
                               "payment": str(o.payment), "rejected": o.rejected}  # fmt: skip
        if o.value is not None:
            row.update(
                distance_ppm=o.value.distance_ppm,
                standalone_ppm=o.value.standalone_ppm,
                value_ppm=o.value.value_ppm,
            )
        rows.append(row)
    doc = {"version": 1, "requestId": request_id, "branch": result.branch,
           "budget": str(result.budget), "offers": rows}  # fmt: skip
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def load_selection(
    client: DataSourcingClient, store: ContentStore, request_id: int, *, from_block: int = 0
) -> tuple[SelectionTree, dict[str, Any]]:
    """The final selection's tree and report, from a reveal of the finalized root."""
    view = client.request(request_id)
    if not view.selected:
        raise SourcingError(f"request {request_id} has no final selection yet: wait for quorum")
    logs = client.contract.events.SelectionRevealed().get_logs(
        from_block=from_block, argument_filters={"requestId": request_id}
    )
    for log in logs:
        if bytes(log["args"]["root"]) != view.selection_root:
            continue
        try:
            report = shallow_json(
                store.get(log["args"]["reportCid"], max_size=MAX_REQUEST_DOC_BYTES)
            )
            won = [r for r in report["offers"] if r["won"]]
            tree = SelectionTree(
                request_id, [r["owner"] for r in won], [int(r["payment"]) for r in won]
            )
        except (StorageError, ValueError, KeyError, TypeError, SourcingError):
            continue  # an unreadable report: try another oracle's
        if tree.root_bytes() == view.selection_root:
            return tree, report
    raise SourcingError(
        f"no readable report of request {request_id} matches its selection root: "
        "check the content store (--ipfs-api)"
    )
