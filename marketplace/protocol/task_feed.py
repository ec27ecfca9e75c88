"""What a peer hears about its task between its own chain reads: pushed, not polled.

:func:`open_task_feed` wires three things to one :class:`~marketplace.protocol.session.
TaskSession`:

* a :class:`~marketplace.chain.subscription.ChainSubscription` to the task's TaskMarket logs
  (when the chain serves a websocket), which wakes the run loop (``feed.sleep`` replaces its
  fixed poll sleep) on every event of the task but a commit — a commit is what the committer
  itself acts on, while every other peer only needs its bytes;
* an :class:`~marketplace.protocol.update_cache.UpdateCache` installed as the session's
  ``held_updates``: each ``UpdateCommitted`` log starts fetching that update at once (not at the
  round's close), and so does a ``RoundCommitted`` (a batch) for each leaf gossip delivered;
  this peer's own commit is kept from the envelope it just sealed, and gossip hands over what it
  delivered (:meth:`TaskFeed.on_gossip`, for ``on_payload``);
* polling as the fallback: without a websocket, or while it is down, ``sleep`` waits the full
  poll interval and the round's close fetches what is missing, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marketplace.chain.subscription import ChainSubscription, Wakeup, ws_endpoint
from marketplace.chain.task_logs import TaskLogs
from marketplace.crypto.announce import UpdateRef
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.protocol.session import CommittedUpdate, TaskSession
from marketplace.protocol.update_cache import UpdateCache
from marketplace.units import checksum_address

log = logging.getLogger(__name__)


@dataclass
class TaskFeed:
    """A task's pushed events and early updates (see the module docstring)."""

    session: TaskSession
    wakeup: Wakeup
    cache: UpdateCache
    logs: TaskLogs
    subscription: ChainSubscription | None = None
    #: Called with the task's round from each pushed ``PhaseAdvanced`` log (e.g. gossip's
    #: :meth:`~marketplace.gossip.membership.ChainMembership.note_round`).
    on_round: Callable[[int], None] | None = None

    def sleep(self, seconds: float) -> None:
        """The run loop's sleep: up to ``seconds``, cut short by the task's next event."""
        self.wakeup.wait(seconds)

    def on_gossip(self, ref: UpdateRef, payload: bytes) -> None:
        """Gossip's ``on_payload``: keep an update gossip fetched, or received inline (in its
        announcement or with its leaf)."""
        self.cache.deliver(ref.round, ref.sender, ref.digest, payload)

    def on_leaf(self, leaf: UpdateLeaf) -> None:
        """Gossip's ``on_leaf``: keep a batch leaf (checked by gossip; checked again before
        use) for the round's closer and as the fallback when a leaf set cannot be fetched, and
        wake the run loop once the round's leaves are all in (the closer may now send the
        batch; a wake-up per leaf cost every peer a round of chain reads per leaf)."""
        held = self.session.gossiped_leaves.setdefault(leaf.round, {})
        held.setdefault(leaf.sender, leaf)
        for old in [r for r in self.session.gossiped_leaves if r < leaf.round - 1]:
            self.session.gossiped_leaves.pop(old, None)
        if len(held) >= len(self.session.members().trainers):
            self.wakeup.set()

    def on_log(self, raw: Any) -> bool:
        """The subscription's ``on_log``: prefetch commits; whether the log wakes the loop."""
        event = self.logs.decode(raw)
        if event is None:
            return False
        if event["event"] == "RoundCommitted":
            self._keep_batched(int(event["args"]["round"]))
            return True
        if event["event"] == "PhaseAdvanced" and self.on_round is not None:
            self.on_round(int(event["args"]["round"]))
        if event["event"] != "UpdateCommitted":
            return True
        args = event["args"]
        c = CommittedUpdate(
            sender=checksum_address(args["trainer"]), round=int(args["round"]),
            cid=str(args["cid"]), digest=bytes(args["digest"]),
            num_samples=int(args["numSamples"]), order=-1,
        )  # fmt: skip
        if c.sender == self.session.identity.address:
            own = self.session.own_envelope(c.round, c.digest)
            if own is not None:
                self.cache.deliver(c.round, c.sender, c.digest, own)
            return False
        self.cache.prefetch(c)
        return False

    def _keep_batched(self, round_: int) -> None:
        """A round's batch landed: keep this peer's own update and start fetching those it
        holds gossiped leaves of (keyed by the leaf's digest: which leaves count is decided by
        the recorded batch when the round's updates are read)."""
        me = self.session.identity.address
        for leaf in list(self.session.gossiped_leaves.get(round_, {}).values()):
            own = self.session.own_envelope(round_, leaf.digest) if leaf.sender == me else None
            if own is not None:
                self.cache.deliver(round_, me, leaf.digest, own)
                continue
            self.cache.prefetch(
                CommittedUpdate(leaf.sender, round_, leaf.cid, leaf.digest, leaf.num_samples, -1)
            )

    @property
    def subscribed(self) -> bool:
        """Whether the websocket subscription is live now."""
        return self.subscription is not None and self.subscription.connected.is_set()

    def stats(self) -> dict[str, int]:
        """Counters for a node's report: notifications, wakes, drops, cache use."""
        sub = self.subscription
        return {
            "notifications": sub.notifications if sub else 0,
            "wakes": self.wakeup.wakes,
            "subscription_drops": sub.drops if sub else 0,
            **{f"cache_{k}": v for k, v in sorted(self.cache.stats.items())},
        }

    def close(self) -> None:
        """Stop the subscription and the cache's workers."""
        if self.subscription is not None:
            self.subscription.stop()
        self.cache.close()


def open_task_feed(
    session: TaskSession, rpc_url: str | None, *, subscribe: bool = True
) -> TaskFeed:
    """A started :class:`TaskFeed` for ``session``; subscribes over ``rpc_url``'s websocket when
    there is one (``subscribe=False``, the in-process EVM or an HTTP-only node: polling only).
    Installs its cache as ``session.held_updates``. Close it when the peer stops."""
    wakeup = Wakeup()
    cache = UpdateCache(session)
    session.held_updates = cache
    feed = TaskFeed(session, wakeup, cache, TaskLogs(session.market, session.task_id))
    url = ws_endpoint(rpc_url) if (rpc_url and subscribe) else None
    if url is None:
        log.info("task %d: no chain websocket; polling the chain", session.task_id)
        return feed
    feed.subscription = ChainSubscription(
        url, wakeup=wakeup, logs=feed.logs.filter, on_log=feed.on_log
    ).start()
    return feed
