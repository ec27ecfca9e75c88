"""Template filters: token amounts, hashes, times (all output is escaped by the templates)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

TOKEN_DECIMALS = 18


def token(value: Any, decimals: int = TOKEN_DECIMALS) -> str:
    """Wei as a token amount, exact, without trailing zeros (``"—"`` when unknown)."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(int(value)) / (Decimal(10) ** decimals)
    except (TypeError, ValueError):
        return str(value)
    text = f"{amount:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def short(value: Any, keep: int = 10) -> str:
    """A long hex string or CID shortened for a table cell (the full value goes in ``title``)."""
    text = str(value or "")
    return text if len(text) <= 2 * keep + 1 else f"{text[:keep]}…{text[-6:]}"


def ppm(value: Any) -> str:
    if value is None:
        return "—"
    return f"{int(value) / 10_000:.2f}%"


def when(value: Any) -> str:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return "—"
    if seconds <= 0:
        return "—"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
