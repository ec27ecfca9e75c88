"""Turn-taking for a task-wide chore any of several peers may do (the oracles' ``advance``).

Each redundant ``advance`` costs gas, and a lost race still pays it (before turns, up to 2 of 3
oracles' calls reverted per phase). So the peers, sorted by address, take turns as the trainers
already do for their chores: the holder of the chore's seat acts at once, the others only when
the chore is still undone ``grace`` seconds after they first noticed it (by the local or the
chain clock). A holder that missed its last ``MISSES_TO_SKIP`` turns is skipped: the seat passes
to the next peer in order that has not, so a crashed member does not delay every phase by the
grace; after :data:`SKIPS_BEFORE_RETRY` skipped seats it is given one turn again (a miss then
skips it again, a turn kept restores it). Each peer judges misses from what it saw itself (a
chore it had to take over); views may differ for a moment, and the worst outcome is one
redundant call that loses the race.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

MISSES_TO_SKIP = 2
SKIPS_BEFORE_RETRY = 4  # a skipped member gets a turn again after this many skipped seats


@dataclass
class ChoreTurns:
    """Whose turn a chore is, for one peer (``me``)."""

    me: str
    chain_now: Callable[[], int]
    grace: float = 10.0
    clock: Callable[[], float] = time.monotonic
    # chore -> (holder, local time, chain time) when first seen due
    _pending: dict[Hashable, tuple[str, float, int]] = field(default_factory=dict)
    _missed: dict[str, int] = field(default_factory=dict)  # holder -> consecutive missed turns
    _skipped: dict[str, int] = field(default_factory=dict)  # member -> seats skipped since

    def holder(self, members: Sequence[str], seat: int) -> str:
        """The member holding ``seat`` (members sorted by address, rotated by seat), skipping
        members that missed their last :data:`MISSES_TO_SKIP` turns (unless all did)."""
        order = sorted(members, key=str.lower)
        for k in range(len(order)):
            candidate = order[(seat + k) % len(order)]
            key = candidate.lower()
            if self._missed.get(key, 0) < MISSES_TO_SKIP:
                return candidate
            self._skipped[key] = self._skipped.get(key, 0) + 1
            if self._skipped[key] > SKIPS_BEFORE_RETRY:  # one more chance: a miss skips it again
                self._missed[key] = MISSES_TO_SKIP - 1
                self._skipped[key] = 0
                return candidate
        return order[seat % len(order)]

    def my_turn(self, chore: Hashable, members: Sequence[str], seat: int) -> bool:
        """Whether this peer should do ``chore`` (due now) now."""
        self._settle_others(chore)
        now, now_chain = self.clock(), self.chain_now()
        if chore not in self._pending:
            self._pending[chore] = (self.holder(members, seat), now, now_chain)
        holder, seen_at, seen_chain = self._pending[chore]
        if holder.lower() == self.me.lower():
            return True
        late = now - seen_at >= self.grace or now_chain - seen_chain >= self.grace
        if late:
            self._missed[holder.lower()] = self._missed.get(holder.lower(), 0) + 1
            self._pending[chore] = (self.me, seen_at, seen_chain)  # counted once: ours now
        return late

    def missed(self, member: str) -> int:
        """Consecutive turns ``member`` missed, as this peer saw it."""
        return self._missed.get(member.lower(), 0)

    def _settle_others(self, current: Hashable) -> None:
        """Chores no longer asked about were done: their holders kept their turns."""
        for chore in [c for c in self._pending if c != current]:
            holder, _, _ = self._pending.pop(chore)
            if holder.lower() != self.me.lower():
                self._missed.pop(holder.lower(), None)
