"""The run loop waits out transient failures (visibly) and gives up only after its patience."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import pytest

from marketplace.errors import (
    ContentUnavailableError,
    FedMarketError,
    RpcUnreachableError,
    StoreUnreachableError,
)
from marketplace.resilience import Backoff, is_transient
from node.peers.base import Peer, Step


class _Flaky(Peer):
    role = "trainer"

    def __init__(self, failures: list[BaseException]) -> None:  # no chain: the loop only
        self.session = SimpleNamespace(market=SimpleNamespace(at_head=nullcontext))  # type: ignore[assignment]
        self.failures = failures
        self.backoff = Backoff(initial=1.0, maximum=4.0, patience=None)

    def step(self) -> Step:
        if self.failures:
            raise self.failures.pop(0)
        return Step.done("finished")


def test_transient_failures_are_retried_with_backoff_and_reported():
    failures: list[BaseException] = [
        RpcUnreachableError("rpc down"), StoreUnreachableError("ipfs down"),
        ContentUnavailableError("not yet"), RpcUnreachableError("still down"),
    ]  # fmt: skip
    peer = _Flaky(failures)
    seen: list[Step] = []
    slept: list[float] = []
    last = peer.run(on_step=seen.append, sleep=slept.append)
    assert last.action == "finished"
    assert slept == [1.0, 2.0, 4.0, 4.0]  # doubling, capped
    retries = [s for s in seen if s.detail == "retrying"]
    assert len(retries) == 4 and all(s.is_waiting for s in retries)
    assert "chain RPC unreachable" in retries[0].action
    assert "IPFS daemon unreachable" in retries[1].action


def test_a_fault_of_the_task_is_not_retried():
    peer = _Flaky([FedMarketError("bad update")])
    with pytest.raises(FedMarketError, match="bad update"):
        peer.run(sleep=lambda _: None)
    assert not is_transient(FedMarketError("x"))


def test_the_backoff_gives_up_after_its_patience_with_a_one_line_error():
    now = [0.0]
    backoff = Backoff(initial=1.0, maximum=8.0, patience=30.0, clock=lambda: now[0])
    for _ in range(4):  # failing for 0, 8, 16, 24 s: within the patience
        backoff.failed(RpcUnreachableError("down"))
        now[0] += 8.0
    with pytest.raises(FedMarketError) as err:
        backoff.failed(RpcUnreachableError("down"))
    assert "\n" not in str(err.value) and "resumes" in str(err.value)
    backoff.succeeded()
    assert backoff.failed(RpcUnreachableError("down")) == 1.0
