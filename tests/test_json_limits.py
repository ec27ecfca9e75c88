"""``shallow_json``: nesting is measured outside strings.

Every node imports web3, whose ``py_ecc`` raises the recursion limit to 100,000: JSON nested
100,000 deep handed to ``json.loads`` then overflows the C stack (a segmentation fault)."""

from __future__ import annotations

import json

import pytest

from marketplace.jsonlimits import NestingError, _depth, shallow_json

# A string of 100,000 "]" then 100,000 real "[": a depth count that read brackets inside strings
# saw depth 1 and let json.loads recurse 100,000 deep.
HIDDEN = b'["' + b"]" * 100_000 + b'",' + b"[" * 100_000 + b"]" * 100_001


def test_brackets_inside_strings_cannot_hide_nesting() -> None:
    with pytest.raises(NestingError):
        shallow_json(HIDDEN)
    with pytest.raises(NestingError):
        shallow_json(HIDDEN.decode())
    small = b'["' + b"]" * 600 + b'",' + b"[" * 700 + b"]" * 701  # the pure-Python path
    with pytest.raises(NestingError):
        shallow_json(small)
    assert shallow_json(b'["]]]]\\"]]]", {"a": ["[[[[["]}]') == [']]]]"]]]', {"a": ["[[[[["]}]


def _nesting(doc: object) -> int:
    inner = doc.values() if isinstance(doc, dict) else doc if isinstance(doc, list) else None
    return 0 if inner is None else 1 + max((_nesting(x) for x in inner), default=0)


def test_both_depth_counts_measure_the_nesting_outside_strings() -> None:
    docs = [[], {"a": '[\\"]'}, [[[["x\\\\"]]]], {"k": [{"]": "}"}, [1, '\\\\\\"']]}]
    for doc in docs:
        raw = json.dumps(doc).encode()
        padded = raw[:-1] + b" " * 5000 + raw[-1:]  # over SMALL_JSON_BYTES: the numpy count
        assert _depth(raw) == _depth(padded) == _nesting(doc), doc
        assert shallow_json(padded) == doc


def test_utf16_is_refused() -> None:
    with pytest.raises(ValueError):
        shallow_json('["x"]'.encode("utf-16"))
