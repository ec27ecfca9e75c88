"""Updates a peer holds before its round closes, so the close does not fetch and open them again.

Two sources fill it, both off the run loop's thread:

* **delivered** bytes (:meth:`UpdateCache.deliver`): gossip hands over an update it fetched, or
  that came inline, after checking it against the signed digest and CID;
* **prefetched** commitments (:meth:`UpdateCache.prefetch`): a commit seen in the chain's logs
  is fetched by CID (``expected_sha256`` = the committed digest) as soon as it appears.

Each is opened (:meth:`TaskSession.open_update`: decrypted for this peer, validated against the
model's spec and the task's bounds) — delivered bytes on the deliverer's thread (gossip's: they
are in hand, and a small update opens in about what a hand-off to another thread costs),
prefetches on a small worker pool (they wait on the store) — and kept under ``(round, sender,
digest)``. :meth:`get` answers only for a commitment with that very key, so the chain's digest is
what decides: bytes that do not hash to it are never used, whatever gossip said. An update that
fails to open is not kept; the round's close then fetches it and refuses it with the reason.

State older than the previous round is dropped as rounds move on, and at most
:data:`MAX_PER_SENDER` digests per sender and round are opened (a sender commits one), so memory
stays bounded whatever peers announce.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import torch

from marketplace.errors import FedMarketError
from marketplace.protocol.session import ENVELOPE_OVERHEAD, CommittedUpdate, TaskSession
from marketplace.units import checksum_address

log = logging.getLogger(__name__)

MAX_PER_SENDER = 2
Key = tuple[int, str, bytes]  # (round, sender lower-case, envelope digest)


class UpdateCache:
    """Opened updates by ``(round, sender, digest)``; plug into ``session.held_updates``.

    ``stats`` counts ``delivered`` (bytes handed over by gossip), ``fetched`` (store reads made
    here for prefetches), ``opened``, ``failed`` (fetch or open refused), ``hits`` and
    ``misses`` (lookups by the round's close).
    """

    def __init__(self, session: TaskSession, *, workers: int = 2) -> None:
        self._session = session
        self._spec = session.weight_spec()  # built once, on the caller's thread
        self._lock = threading.Lock()
        self._held: dict[Key, Mapping[str, torch.Tensor]] = {}
        self._pending: set[Key] = set()
        self._per_sender: Counter[tuple[int, str]] = Counter()
        self._floor = 0
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="update-cache")
        self.stats: Counter[str] = Counter()

    # --- filling --------------------------------------------------------------------------
    def deliver(self, round_: int, sender: str, digest: bytes, blob: bytes) -> None:
        """Keep an update whose bytes arrived already (gossip). Checked again here: the bytes
        must hash to ``digest``."""
        if hashlib.sha256(blob).digest() != digest:
            log.warning("round %d: delivered update of %s does not hash to its digest; ignored",
                        round_, sender)  # fmt: skip
            return
        key = self._claim(round_, sender, digest, "delivered")
        if key is not None:
            # Opened here, on the deliverer's thread: a small update opens in about the time a
            # hand-off to the pool costs (its bytes are in hand; only reads need the workers).
            self._open(key, lambda: blob)

    def prefetch(self, c: CommittedUpdate) -> None:
        """Fetch and open a commitment seen on-chain (no-op if held or under way)."""
        key = self._claim(c.round, c.sender, c.digest, "prefetches")
        if key is None:
            return

        def read() -> bytes:
            self.stats["fetched"] += 1
            max_size = self._session.doc.max_update_bytes + ENVELOPE_OVERHEAD
            return self._session.store.get(c.cid, expected_sha256=c.digest, max_size=max_size)

        self._submit(key, read)

    def _claim(self, round_: int, sender: str, digest: bytes, what: str) -> Key | None:
        key = (round_, sender.lower(), digest)
        with self._lock:
            if round_ < self._floor or key in self._held or key in self._pending:
                return None
            if self._per_sender[key[:2]] >= MAX_PER_SENDER:
                return None
            self._per_sender[key[:2]] += 1
            self._pending.add(key)
            self.stats[what] += 1
        return key

    def _submit(self, key: Key, read: Callable[[], bytes]) -> None:
        try:
            self._pool.submit(self._open, key, read)
        except RuntimeError:  # closing
            with self._lock:
                self._pending.discard(key)

    def _open(self, key: Key, read: Callable[[], bytes]) -> None:
        round_, sender, _digest = key
        try:
            blob = read()
            delta = self._session.open_update(blob, round_, checksum_address(sender), self._spec)
        except FedMarketError as exc:
            self.stats["failed"] += 1
            log.info("round %d: update of %s not kept early (%s); read at the close",
                     round_, sender, exc)  # fmt: skip
            with self._lock:
                self._pending.discard(key)
            return
        except Exception:
            self.stats["failed"] += 1
            log.exception("round %d: opening the update of %s failed", round_, sender)
            with self._lock:
                self._pending.discard(key)
            return
        with self._lock:
            self._pending.discard(key)
            if round_ >= self._floor:
                self._held[key] = delta
                self.stats["opened"] += 1

    # --- using ----------------------------------------------------------------------------
    def get(self, c: CommittedUpdate) -> Mapping[str, torch.Tensor] | None:
        """The opened delta committed as ``c``, if held (see ``TaskSession.held_updates``)."""
        self.forget_before(c.round)
        key = (c.round, c.sender.lower(), c.digest)
        with self._lock:
            held = self._held.get(key)
        self.stats["hits" if held is not None else "misses"] += 1
        return held

    def forget_before(self, round_: int) -> None:
        """Drop what belongs to rounds before ``round_`` (their models are computed)."""
        with self._lock:
            if round_ <= self._floor:
                return
            self._floor = round_
            self._held = {k: v for k, v in self._held.items() if k[0] >= round_}
            self._per_sender = Counter({k: v for k, v in self._per_sender.items()
                                        if k[0] >= round_})  # fmt: skip

    def held(self) -> int:
        """How many opened updates are kept now."""
        with self._lock:
            return len(self._held)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no fetch or open is under way (tests, shutdown); ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        """Stop the workers (running opens finish; queued ones are dropped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
