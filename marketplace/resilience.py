"""Transient is not invalid: which failures a peer waits out, and how long.

A chain RPC that stops answering (Anvil paused, restarted, a dropped connection), an IPFS daemon
that restarts, content that no provider serves *right now*: none of these say anything about the
task or about another peer, so a peer retries them with backoff — saying so, with the cause —
instead of exiting or scoring an honest trainer's update as invalid. Only failures that persist
beyond a patience bound become errors.

:func:`is_transient` classifies an exception; :class:`Backoff` spaces the retries and gives up
(with a one-line :class:`~marketplace.errors.FedMarketError`) once failures have lasted
``patience`` seconds without a success in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from marketplace.errors import (
    ChainLagError,
    ContentUnavailableError,
    FedMarketError,
    RpcUnreachableError,
    StoreUnreachableError,
)

TRANSIENT: tuple[type[BaseException], ...] = (
    RpcUnreachableError,
    ChainLagError,
    StoreUnreachableError,
    ContentUnavailableError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a connectivity failure worth retrying (not a fault of the task)."""
    return isinstance(exc, TRANSIENT)


def describe(exc: BaseException) -> str:
    """A short one-line cause for a retry message."""
    if isinstance(exc, RpcUnreachableError | requests.RequestException):
        what = "chain RPC unreachable"
    elif isinstance(exc, ChainLagError):
        what = "chain logs behind its state"
    elif isinstance(exc, StoreUnreachableError):
        what = "IPFS daemon unreachable"
    elif isinstance(exc, ContentUnavailableError):
        what = "content not available yet"
    else:
        what = "connection lost"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{what} ({text[:160]})"


@dataclass
class Backoff:
    """Exponential backoff between ``initial`` and ``maximum`` seconds; gives up after failures
    that have lasted ``patience`` seconds (``None``: never)."""

    initial: float = 1.0
    maximum: float = 15.0
    patience: float | None = 900.0
    clock: Callable[[], float] = time.monotonic
    _failing_since: float | None = field(default=None, init=False)
    _next: float = field(default=0.0, init=False)
    attempts: int = field(default=0, init=False)

    def succeeded(self) -> None:
        self._failing_since = None
        self._next = self.initial
        self.attempts = 0

    def failed(self, exc: BaseException) -> float:
        """Record a transient failure; the seconds to wait before retrying.

        Raises :class:`FedMarketError` once failures have lasted ``patience`` seconds.
        """
        now = self.clock()
        if self._failing_since is None:
            self._failing_since = now
            self._next = self.initial
        elapsed = now - self._failing_since
        if self.patience is not None and elapsed > self.patience:
            raise FedMarketError(
                f"gave up after {elapsed:.0f}s of retries: {describe(exc)}; check the chain RPC "
                "and the IPFS daemon, then run the same command again (it resumes)"
            )
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        self.attempts += 1
        return delay
