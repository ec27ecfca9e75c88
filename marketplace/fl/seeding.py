"""Seeds derived from a base seed and labels, so every trainer/round gets its own stream."""

from __future__ import annotations

import hashlib


def derive_seed(base: int, *labels: object) -> int:
    """A 63-bit seed from ``base`` and ``labels`` (sha256 of their text; stable across runs and
    machines, unlike ``hash()``)."""
    text = "/".join([str(base), *(str(x) for x in labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
