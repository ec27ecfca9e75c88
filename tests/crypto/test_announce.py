"""Signed announcements: verify who signed; refuse forged, replayed and malformed messages."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from eth_account import Account

from marketplace.chain.devnet import DEV_PRIVATE_KEYS
from marketplace.crypto.announce import (
    MAX_ANNOUNCEMENT_BYTES,
    Announcement,
    sign_announcement,
    verify_announcement,
)
from marketplace.errors import SignatureError

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_MARKET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
CID = "bafkreifjde7jmcmm6pow6bnrpbinseecfmmozn57xbumhhh5u55pnfifx4"
DIGEST = hashlib.sha256(b"encrypted update").digest()
EXPECTED = {"expected_chain_id": 31337, "expected_task_id": 7, "expected_round": 3}


@pytest.fixture
def signed(sender) -> Announcement:
    return sign_announcement(
        sender, chain_id=31337, task_id=7, round=3, cid=CID, digest=DIGEST, market_address=MARKET
    )


def test_signed_announcement_verifies_to_its_sender(signed, sender) -> None:
    # Execute
    who = verify_announcement(signed, market_address=MARKET, **EXPECTED)
    # Assert
    assert who == sender.address


def test_wire_form_round_trips_and_verifies(signed, sender) -> None:
    # Prepare
    wire = signed.to_json()
    # Execute
    parsed = Announcement.from_json(wire)
    who = verify_announcement(wire, market_address=MARKET, **EXPECTED)
    # Assert
    assert parsed == signed
    assert who == sender.address
    assert json.loads(wire)["digest"] == "0x" + DIGEST.hex()


@pytest.mark.parametrize(
    ("field", "value"),
    [("cid", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
     ("digest", hashlib.sha256(b"other").digest()), ("nonce", 12345)],
)  # fmt: skip
def test_altered_field_is_detected_as_forged(signed, field, value) -> None:
    # Prepare
    altered = dataclasses.replace(signed, **{field: value})
    # Execute / Assert
    with pytest.raises(SignatureError, match="forged or altered"):
        verify_announcement(altered, market_address=MARKET, **EXPECTED)


def test_sender_claiming_another_address_is_detected(signed) -> None:
    # Prepare: a valid signature by account 1, relabelled as coming from account 5
    victim = Account.from_key(DEV_PRIVATE_KEYS[5]).address
    forged = dataclasses.replace(signed, sender=victim)
    # Execute / Assert
    with pytest.raises(SignatureError, match=f"claims sender {victim}"):
        verify_announcement(forged, market_address=MARKET, **EXPECTED)


@pytest.mark.parametrize(
    "expected",
    [{**EXPECTED, "expected_chain_id": 1}, {**EXPECTED, "expected_task_id": 8},
     {**EXPECTED, "expected_round": 4}],
)  # fmt: skip
def test_replay_on_another_chain_task_or_round_is_refused(signed, expected) -> None:
    # Execute / Assert
    with pytest.raises(SignatureError, match="replay refused"):
        verify_announcement(signed, market_address=MARKET, **expected)


def test_replay_to_another_market_contract_fails_verification(signed) -> None:
    # Execute / Assert
    with pytest.raises(SignatureError, match="forged or altered"):
        verify_announcement(signed, market_address=OTHER_MARKET, **EXPECTED)


def test_replay_with_rewritten_round_fails_verification(signed) -> None:
    # Prepare: the attacker edits the round to match the receiver's expectation
    moved = dataclasses.replace(signed, round=4)
    # Execute / Assert
    with pytest.raises(SignatureError, match="forged or altered"):
        verify_announcement(moved, market_address=MARKET, **{**EXPECTED, "expected_round": 4})


def test_unsigned_announcement_is_refused(signed) -> None:
    # Execute / Assert
    with pytest.raises(SignatureError, match="is not signed"):
        verify_announcement(dataclasses.replace(signed, signature=b""), market_address=MARKET,
                            **EXPECTED)  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("nonce"), "expected fields"),
        (lambda o: o.update(extra=1), "expected fields"),
        (lambda o: o.update(round=-1), "round must be a uint256"),
        (lambda o: o.update(round=True), "round must be a uint256"),
        (lambda o: o.update(taskId="7"), "task_id must be a uint256"),
        (lambda o: o.update(digest="0x1234"), "digest must be 32 bytes"),
        (lambda o: o.update(digest="abcd"), "digest must be 0x-prefixed hex"),
        (lambda o: o.update(sender="0xnothex"), "is not an address"),
        (lambda o: o.update(cid="not-a-cid"), "not a CID"),
        (lambda o: o.update(signature="0x" + "11" * 64), "signature must be 65 bytes"),
    ],
)
def test_malformed_wire_messages_are_refused(signed, mutate, message) -> None:
    # Prepare
    obj = json.loads(signed.to_json())
    mutate(obj)
    # Execute / Assert
    with pytest.raises(SignatureError, match=message):
        verify_announcement(json.dumps(obj), market_address=MARKET, **EXPECTED)


def test_garbage_signature_is_refused(signed) -> None:
    # Prepare
    obj = json.loads(signed.to_json())
    obj["signature"] = "0x" + "ff" * 65
    # Execute / Assert
    with pytest.raises(SignatureError, match="signature is malformed"):
        verify_announcement(json.dumps(obj), market_address=MARKET, **EXPECTED)


def test_oversize_and_non_json_messages_are_refused_before_parsing() -> None:
    # Execute / Assert
    with pytest.raises(SignatureError, match=f"exceeds {MAX_ANNOUNCEMENT_BYTES}"):
        Announcement.from_json(b"{" + b" " * MAX_ANNOUNCEMENT_BYTES + b"}")
    with pytest.raises(SignatureError, match="not JSON"):
        Announcement.from_json(b"\xff\xfe")
    with pytest.raises(SignatureError, match="expected fields"):
        Announcement.from_json(b"[1, 2]")
