"""JSON from peers, read without letting its nesting crash the process.

``json.loads`` recurses once per level of nested arrays or objects. Processes that import
``py_ecc`` (through web3: every node) run with a recursion limit of 100,000, so a document of
64 KiB of ``[`` overflows the C stack and kills the process (a segmentation fault, not a
``RecursionError``). :func:`shallow_json` measures the depth on the raw bytes before decoding.

Every ``json.loads`` of bytes a peer, requester, oracle or buyer controls goes through it;
``tests/test_json_limits.py`` fails on a ``json.loads`` anywhere else in ``marketplace/`` or
``node/`` outside an allowlist of modules that read only the local operator's own files.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import numpy as np

MAX_JSON_DEPTH = 8
"""Deepest nesting of arrays and objects read from a peer unless the reader says otherwise (a
sketch nests 4 deep, an envelope header 3, an update header 3, an announcement 1, a leaf set 2)."""

SMALL_JSON_BYTES = 2048
"""Up to this size the depth is counted in pure Python (a 413-byte announcement: ~3-5 µs against
~19 µs for numpy's fixed cost); larger documents use numpy (an 80 KB leaf set: ~50 µs against
~380 µs)."""

# A JSON string as the decoder reads it, or an unterminated one up to the end of the input
# (possessive: linear time, no backtracking on a run of escaped quotes).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = {0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}


class NestingError(ValueError):
    """JSON nested deeper than its reader allows."""


def shallow_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of untrusted JSON whose arrays and objects nest at most ``max_depth`` deep.

    Brackets inside strings do not count (a string of ``]`` cannot hide deeper nesting after
    it). Bytes must be UTF-8 (the depth is counted on them; UTF-16/32 could disguise brackets).
    Raises :class:`NestingError` (a ``ValueError``), ``UnicodeError`` (also a ``ValueError``) or
    the decoder's own ``JSONDecodeError``.
    """
    if isinstance(raw, str):
        text, data = raw, raw.encode("utf-8", "surrogatepass")
    else:
        text, data = bytes(raw).decode("utf-8"), bytes(raw)
    if _depth(data) > max_depth:
        raise NestingError(f"nests deeper than {max_depth} levels")
    return json.loads(text)


def _depth(data: bytes) -> int:
    """The deepest bracket nesting outside strings (at least the decoder's, on any input: in
    UTF-8 no multi-byte character contains a quote, backslash or bracket byte)."""
    if len(data) <= SMALL_JSON_BYTES:
        brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
        return max(accumulate(_STEP[c] for c in brackets), default=0)
    b = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(b == 0x22)
    slashes = np.flatnonzero(b == 0x5C)
    if slashes.size and quotes.size:  # a quote after an odd run of backslashes is escaped
        breaks = np.flatnonzero(np.diff(slashes) != 1)
        starts = slashes[np.r_[0, breaks + 1]]
        ends = slashes[np.r_[breaks, slashes.size - 1]]
        run = np.minimum(np.searchsorted(ends, quotes - 1), ends.size - 1)
        escaped = (ends[run] == quotes - 1) & ((ends[run] - starts[run]) % 2 == 0)
        quotes = quotes[~escaped]
    opening = (b == 0x5B) | (b == 0x7B)
    at = np.flatnonzero(opening | (b == 0x5D) | (b == 0x7D))
    outside = np.searchsorted(quotes, at) % 2 == 0  # an even number of quotes before it
    steps = np.where(opening[at], 1, -1)[outside]
    return int(np.cumsum(steps).max()) if steps.size else 0
