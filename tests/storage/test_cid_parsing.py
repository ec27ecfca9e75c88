"""parse_cid: its fast path for our own CID form accepts only what the general parser accepts."""

from __future__ import annotations

import random

import cid as pycid
import pytest

from marketplace.errors import StorageError
from marketplace.storage.cid import parse_cid, raw_cid

BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def general_parser_accepts(value: str) -> bool:
    try:
        pycid.from_string(value)
    except Exception:
        return False
    return True


def test_our_cids_and_other_valid_forms_are_accepted_unchanged() -> None:
    ours = raw_cid(b"an update")
    v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"  # CIDv0 (base58, dag-pb)
    for value in (ours, v0):
        assert parse_cid(value) == value


@pytest.mark.parametrize("seed", range(4))
def test_a_cid_with_one_character_changed_is_accepted_only_if_the_general_parser_accepts_it(
    seed: int,
) -> None:
    # Prepare: one-character mutations of a CID (case, alphabet, padding, prefix)
    rng = random.Random(seed)
    original = raw_cid(rng.randbytes(64))
    mutants = []
    for _ in range(400):
        chars = list(original)
        chars[rng.randrange(len(chars))] = rng.choice(BASE32 + "ABZ01=89 ")
        mutants.append("".join(chars))
    # Execute / Assert
    for value in mutants:
        try:
            parse_cid(value)
            accepted = True
        except StorageError:
            accepted = False
        assert accepted == general_parser_accepts(value), value


@pytest.mark.parametrize(
    "value", ["", "not-a-cid", "b" + "a" * 58, raw_cid(b"x")[:-1], raw_cid(b"x").upper()[1:]]
)
def test_what_is_not_a_cid_is_refused_with_the_value_named(value: str) -> None:
    with pytest.raises(StorageError, match="not a CID"):
        parse_cid(value)
