"""A waiting trainer repeats its batch leaf soon, then less often: pubsub may drop a message
(Kubo can lose one of two a daemon publishes at once), and a lost leaf holds up the round."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from node.peers.trainer_batch import RESEND_FIRST_SECONDS, RESEND_MAX_SECONDS, BatchDuty


def test_the_leaf_is_repeated_after_half_a_second_then_doubling_up_to_three() -> None:
    # Prepare: a duty whose node only announces (what _send touches), on a fake clock
    announced: list[int] = []
    sent: list[float] = []
    now = [0.0]
    node = SimpleNamespace(
        session=SimpleNamespace(market=None),
        announce=lambda r, cid, digest: announced.append(r),
    )
    terms = SimpleNamespace(turn_seconds=6.0)
    duty = BatchDuty(node, terms, send_leaf=lambda leaf: sent.append(now[0]))  # type: ignore[arg-type]
    published: dict[str, Any] = {"cid": "bafy", "digest": "00" * 32}
    # Execute: the run loop steps every 0.1 s for 12 s
    while now[0] < 12.0:
        duty._send(4, leaf=None, published=published, now=now[0])  # type: ignore[arg-type]
        now[0] = round(now[0] + 0.1, 1)
    # ... and a duty without a leaf sender (no gossip of leaves) announces the update once
    quiet = BatchDuty(node, terms, send_leaf=None)  # type: ignore[arg-type]
    for t in (0.0, 0.6, 2.0):
        quiet._send(5, leaf=None, published=published, now=t)  # type: ignore[arg-type]
    # Assert: the leaf at 0, 0.5, 1.5, 3.5, 6.5, 9.5 (gaps 0.5, 1, 2, 3, 3); no announcement
    # of its own (send_leaf makes the update reachable: carried with the leaf, or announced)
    assert announced == [5]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(sent)]
    assert gaps == [RESEND_FIRST_SECONDS, 1.0, 2.0, RESEND_MAX_SECONDS, RESEND_MAX_SECONDS]
