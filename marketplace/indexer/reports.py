"""Reading a committee report from the content store without any key.

An oracle's report is either public JSON (a valuation report, see
:mod:`marketplace.valuation.report`) or a FedMarket envelope sealed to the task's members
(:func:`marketplace.protocol.report.seal_report`). The indexer holds no key, so it keeps what it
can read and records the rest by status; nothing here trusts the content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace.crypto.envelope import parse_header
from marketplace.errors import FedMarketError
from marketplace.jsonlimits import shallow_json
from marketplace.storage.base import ContentStore

MAX_REPORT_BYTES = 8 << 20

PUBLIC = "public"  # readable JSON; body holds it
ENCRYPTED = "encrypted"  # a FedMarket envelope: readable by the task's members only
UNREADABLE = "unreadable"  # neither JSON nor an envelope
UNAVAILABLE = "unavailable"  # the store could not give it (bad CID, not found, too large)


@dataclass(frozen=True)
class ReportRead:
    """What the indexer learned from one report CID."""

    status: str
    body: dict[str, Any] | None
    detail: str


def read_report(store: ContentStore | None, cid: str, *, root: str) -> ReportRead:
    """Fetch ``cid`` and classify it; ``root`` is the revealed payout root (0x hex)."""
    if store is None:
        return ReportRead(UNAVAILABLE, None, "no content store configured")
    try:
        blob = store.get(cid, max_size=MAX_REPORT_BYTES)
    except (FedMarketError, ValueError, OSError) as exc:
        return ReportRead(UNAVAILABLE, None, f"{type(exc).__name__}: {exc}"[:300])
    try:
        header = parse_header(blob)
    except FedMarketError:
        header = None
    if header is not None:
        return ReportRead(ENCRYPTED, None, "sealed to the task's members")
    try:
        body = shallow_json(blob, max_depth=16)  # an oracle's: nesting bounded
    except (ValueError, UnicodeDecodeError) as exc:
        return ReportRead(UNREADABLE, None, f"not JSON nor an envelope ({exc})"[:300])
    if not isinstance(body, dict):
        return ReportRead(UNREADABLE, None, "JSON but not an object")
    same = str(body.get("merkle_root", "")).lower() == root.lower()
    return ReportRead(
        PUBLIC, body, "root matches the revealed root" if same else "root differs from the reveal"
    )
