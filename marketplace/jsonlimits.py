"""JSON from peers, read without letting its nesting crash the process.

``json.loads`` recurses once per level of nested arrays or objects. Processes that import
``py_ecc`` (through web3: every node) run with a recursion limit of 100,000, so a document of
64 KiB of ``[`` overflows the C stack and kills the process (a segmentation fault, not a
``RecursionError``). :func:`shallow_json` counts the depth on the raw bytes before decoding.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

MAX_JSON_DEPTH = 8
"""Deepest nesting of arrays and objects read from a peer (a sketch nests 4 deep, an envelope
header 3)."""


class NestingError(ValueError):
    """JSON nested deeper than its reader allows."""


def shallow_json(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of untrusted bytes whose arrays and objects nest at most ``max_depth`` deep.

    Brackets inside strings count too (this only refuses more). Raises :class:`NestingError` (a
    ``ValueError``) or the decoder's own errors.
    """
    b = np.frombuffer(raw, dtype=np.uint8)
    step = ((b == 0x5B) | (b == 0x7B)).astype(np.int64) - ((b == 0x5D) | (b == 0x7D))  # [{ ]}
    if b.size and int(np.cumsum(step).max()) > max_depth:
        raise NestingError(f"nests deeper than {max_depth} levels")
    return json.loads(raw)
