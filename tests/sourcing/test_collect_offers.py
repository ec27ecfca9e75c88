"""The committee's collection of revealed offers under a flood of sketch CIDs nobody serves.

``commitOffer`` once needed no stake, so a stranger could reveal many offers whose sketches
nobody serves; fetched one after another (~48 s each with Kubo's default), they pushed an oracle
past its selection-commit window. :func:`collect_offers` fetches on a bounded pool, each fetch
with a short timeout, the whole within a time budget: these tests count the store's calls on a
fake clock (no wall-clock assertion) and check that honest offers are still valued and the others
rejected as ``unreachable``. The contract now also caps a request's offers (``MAX_OFFERS``) and
its selection window from below (``MIN_SELECTION_WINDOW``) so that every capped offer is tried.
"""

from __future__ import annotations

import threading
from collections import Counter
from types import SimpleNamespace

import pytest
from web3 import Web3

from marketplace.chain.sourcing_client import MAX_OFFERS, MIN_SELECTION_WINDOW
from marketplace.crypto.envelope import EnvelopeContext, seal
from marketplace.errors import ContentNotFoundError, StoreUnreachableError
from marketplace.fl.data import DataSplits
from marketplace.protocol.identity import Identity
from marketplace.protocol.sourcing import (
    COLLECTION_MARGIN_SECONDS,
    SKETCH_FETCH_TIMEOUT,
    SKETCH_FETCH_WORKERS,
    SOURCING_ROUND,
    collect_offers,
    collection_budget,
)
from marketplace.sourcing import SketchSpec, build_sketch, run_sourcing
from marketplace.storage.kubo import KuboStore

CHAIN, TASK, REQUEST = 31337, 7, 1
ORACLE = Identity.dev(6)


class FakeClock:
    """Monotonic seconds that move only when the collector sleeps (fetches take no time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
        self.slept += seconds


class StubStore:
    """Serves ``served``; every other CID fails as Kubo does when no provider has it (or, with
    ``block``, hangs until the event is set, ignoring any timeout)."""

    def __init__(self, served: dict[str, bytes], block: threading.Event | None = None) -> None:
        self.served = served
        self.block = block
        self.calls: Counter[str] = Counter()
        self.timeouts: list[float] = []
        self.lock = threading.Lock()

    def with_timeout(self, seconds: float) -> StubStore:
        self.timeouts.append(seconds)
        return self

    def get(self, cid: str, *, max_size: int | None = None) -> bytes:
        with self.lock:
            self.calls[cid] += 1
        if cid in self.served:
            return self.served[cid]
        if self.block is not None:
            self.block.wait()
        raise ContentNotFoundError(f"no content under {cid} within 8s")


def owner(i: int) -> str:
    return Web3.to_checksum_address(f"0x{i:040x}")


def chain_of(offers: list[tuple[str, str]]) -> SimpleNamespace:
    """A sourcing client whose chain holds these revealed (owner, sketch CID) offers."""
    logs = [
        {"args": {"owner": o, "sketchCid": cid, "ask": 10**18, "samples": 60, "requestId": REQUEST}}
        for o, cid in offers
    ]
    event = SimpleNamespace(get_logs=lambda **_: logs)
    return SimpleNamespace(
        contract=SimpleNamespace(events=SimpleNamespace(OfferRevealed=lambda: event))
    )


def sealed_sketch(digits: DataSplits, spec: SketchSpec, who: str, k: int, to: Identity) -> bytes:
    rows = slice(60 * k, 60 * (k + 1))
    sketch = build_sketch(digits.train.x[rows], digits.train.y[rows], spec)
    context = EnvelopeContext(CHAIN, TASK, SOURCING_ROUND, who)
    return seal(sketch.to_json(), recipients={to.address: to.x25519_public}, context=context)


def collect(client, store, **kw):
    return collect_offers(client, store, REQUEST, task_id=TASK, chain_id=CHAIN,
                          oracle=ORACLE.address, x25519_private=ORACLE.x25519_private,
                          **kw)  # fmt: skip


def test_a_flood_of_unserved_sketches_costs_a_bounded_number_of_fetches(digits, spec) -> None:
    # 20 offers with CIDs nobody serves, revealed before 3 honest ones and one sealed to
    # another oracle; 8 workers, budget 100 s, 10 s per fetch.
    served, offers = {}, []
    for i in range(20):
        offers.append((owner(100 + i), f"bafkreiunserved{i}"))
    for k in range(3):
        who = owner(k + 1)
        served[f"bafkreihonest{k}"] = sealed_sketch(digits, spec, who, k, ORACLE)
        offers.append((who, f"bafkreihonest{k}"))
    stranger = owner(50)
    served["bafkreinotforus"] = sealed_sketch(digits, spec, stranger, 3, Identity.dev(7))
    offers.append((stranger, "bafkreinotforus"))
    store, clock = StubStore(served), FakeClock()
    result = collect(chain_of(offers), store, budget_seconds=100.0, fetch_timeout=10.0,
                     workers=8, clock=clock, sleep=clock.sleep)  # fmt: skip

    assert store.timeouts == [10.0]  # each fetch is bounded, not the store's 60 s default
    assert clock.now - 1000.0 <= 100.0  # the collection ended within its budget
    by_owner = {o.owner: o for o in result}
    # Honest offers: fetched once, opened and valued.
    for k in range(3):
        assert store.calls[f"bafkreihonest{k}"] == 1
        assert by_owner[owner(k + 1)].problem is None and by_owner[owner(k + 1)].sketch
    # Not sealed to this oracle: rejected at once, never retried (its content cannot change).
    assert store.calls["bafkreinotforus"] == 1
    assert "could not be read" in str(by_owner[stranger].problem)
    # Unserved: retried once per fetch timeout until the budget is spent, then "unreachable".
    for i in range(20):
        assert store.calls[f"bafkreiunserved{i}"] == 10  # at 0, 10, ..., 90 s
        problem = str(by_owner[owner(100 + i)].problem)
        assert (
            problem.startswith("unreachable: sketch bafkreiunserved") and "10 attempts" in problem
        )
    assert sum(store.calls.values()) == 20 * 10 + 3 + 1

    # The selection values the honest offers and rejects the rest with their reasons.
    v = digits.validation
    sel = run_sourcing(spec=spec, x_val=v.x, y_val=v.y, budget=3 * 10**18, offers=result)
    valued = {o.owner for o in sel.outcomes if o.value is not None}
    assert valued == {owner(k + 1) for k in range(3)}
    unreachable = [o for o in sel.outcomes if o.rejected and o.rejected.startswith("unreachable")]
    assert len(unreachable) == 20 and not any(o.won for o in unreachable)


def test_a_store_that_hangs_cannot_hold_the_collection_past_its_budget(digits, spec) -> None:
    # A store that ignores its timeout and never answers for 5 CIDs (fewer than the 8 workers):
    # the collection returns at its (real, short) budget, the hung fetches abandoned.
    release = threading.Event()
    served, offers = {}, [(owner(200 + i), f"bafkreihung{i}") for i in range(5)]
    for k in range(2):
        served[f"bafkreihonest{k}"] = sealed_sketch(digits, spec, owner(k + 1), k, ORACLE)
        offers.append((owner(k + 1), f"bafkreihonest{k}"))
    store = StubStore(served, block=release)
    out: list[object] = []
    worker = threading.Thread(target=lambda: out.append(collect(
        chain_of(offers), store, budget_seconds=3.0, fetch_timeout=0.1, workers=8)))  # fmt: skip
    worker.start()
    worker.join(timeout=60)
    try:
        assert not worker.is_alive(), "the collection waited for a store that never answers"
        result = out[0]
        assert isinstance(result, list)
        problems = {o.owner: o.problem for o in result}
        assert problems[owner(1)] is None and problems[owner(2)] is None
        for i in range(5):
            assert "still running" in str(problems[owner(200 + i)])
            assert store.calls[f"bafkreihung{i}"] == 1  # hung: no second attempt piles up
    finally:
        release.set()


def test_an_oracle_whose_own_store_is_down_raises_instead_of_rejecting_everyone() -> None:
    class DownStore(StubStore):
        def get(self, cid: str, *, max_size: int | None = None) -> bytes:
            raise StoreUnreachableError("IPFS daemon at /ip4/127.0.0.1/tcp/5001 is unreachable")

    clock = FakeClock()
    with pytest.raises(StoreUnreachableError):
        collect(chain_of([(owner(1), "bafkreia"), (owner(2), "bafkreib")]), DownStore({}),
                budget_seconds=30.0, clock=clock, sleep=clock.sleep)  # fmt: skip


def test_the_budget_ends_the_margin_before_the_selection_commit_deadline() -> None:
    assert COLLECTION_MARGIN_SECONDS == 60
    assert collection_budget(10_000, 10_000 - 600) == 540.0  # a 600 s selection-commit window
    assert collection_budget(10_000, 9_990) == SKETCH_FETCH_TIMEOUT  # late: one try each


def test_every_capped_offer_gets_a_fetch_within_the_shortest_selection_window(digits, spec) -> None:
    """The contract's cap and shortest selection window fit this collector: MAX_OFFERS sketches
    nobody serves, each attempt as long as a bounded ``stat`` and a bounded ``cat`` (2 fetch
    timeouts), all get a first attempt within the budget of an oracle that starts at the reveal
    deadline; and on the fake clock a full cap of unserved offers and an honest one revealed
    last are all attempted, the honest one valued."""
    worst = MAX_OFFERS * 2 * SKETCH_FETCH_TIMEOUT / SKETCH_FETCH_WORKERS
    reveal = 50_000
    budget = collection_budget(reveal + MIN_SELECTION_WINDOW, reveal)
    assert budget == MIN_SELECTION_WINDOW - COLLECTION_MARGIN_SECONDS
    assert worst <= budget, (worst, budget)
    offers = [(owner(300 + i), f"bafkreiflood{i}") for i in range(MAX_OFFERS - 1)]
    served = {"bafkreilast": sealed_sketch(digits, spec, owner(1), 0, ORACLE)}
    offers.append((owner(1), "bafkreilast"))
    store, clock = StubStore(served), FakeClock()
    result = collect(chain_of(offers), store, budget_seconds=budget, clock=clock,
                     sleep=clock.sleep)  # fmt: skip
    assert all(store.calls[cid] >= 1 for _, cid in offers)
    assert {o.owner: o.problem for o in result}[owner(1)] is None


def test_kubo_view_with_a_shorter_timeout_leaves_the_store_alone() -> None:
    store = KuboStore("/ip4/127.0.0.1/tcp/5001")
    view = store.with_timeout(SKETCH_FETCH_TIMEOUT)
    assert view.timeout == 10.0 and view._kubo_timeout() == "8000ms"
    assert store.timeout == 60.0 and view._session is store._session
