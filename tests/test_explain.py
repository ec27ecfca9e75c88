"""Contract errors and task fields in words: amounts in tokens, times as dates with "in …"."""

from __future__ import annotations

import time

from marketplace.chain.explain import explain, humanize_task
from marketplace.units import describe_time, parse_amount, relative

TOKEN = 10**18


def test_a_stake_lock_is_a_date_and_a_fix():
    now = time.time()
    text = explain("ParticipantRegistryStakeLocked", ("0xabc", int(now) + 12 * 60))
    assert text is not None and "locked until" in text and "(in 12 min)" in text
    assert "UTC" in text and "wait until then" in text


def test_amounts_are_tokens_and_unknown_errors_fall_back():
    text = explain("TaskMarketStakeTooLow", ("0xabc", 5 * TOKEN, 10 * TOKEN))
    assert text is not None and "5 tokens" in text and "`fedmarket stake 5`" in text
    assert explain("SomethingElse", (1,)) is None
    assert explain("TaskMarketStakeTooLow", ()) is None  # malformed args: no crash


def test_task_fields_for_people():
    now = 1_800_000_000
    out = humanize_task(
        {"phase": 4, "phaseName": "finalized", "budget": str(300 * TOKEN),
         "claimsOpenAt": now + 3600, "disputeDuration": 60, "rounds": 3},
        now=now,
    )  # fmt: skip
    assert out["phase"] == "finalized" and "phaseName" not in out
    assert out["budget"] == "300 tokens"
    assert out["claimsOpenAt"].endswith("(in 60 min)")
    assert out["disputeDuration"] == "1 min" and out["rounds"] == "3"


def test_relative_times_and_exact_amounts():
    assert relative(0.2) == "now" and relative(-7200) == "2.0 h ago"
    assert describe_time(0, now=0).startswith("1970-01-01 00:00 UTC")
    assert parse_amount("99999999999.999999999999999999") == 99999999999999999999999999999
