"""Contract errors and task fields in words: amounts in tokens, times as dates with "in …"."""

from __future__ import annotations

import time

import pytest
from marketkit import Member, market_with
from web3 import Web3

from marketplace.chain.clients import Role, TaskParams
from marketplace.chain.explain import FIX_MARKERS, TEMPLATES, explain, humanize_task
from marketplace.chain.holds import StakeHold, stake_holds
from marketplace.errors import TransactionRevertedError
from marketplace.protocol.identity import Identity
from marketplace.units import describe_time, parse_amount, relative

TOKEN = 10**18


def test_an_unbonding_release_is_a_date_and_a_fix():
    now = time.time()
    text = explain("ParticipantRegistryUnbondingNotReleased", ("0xabc", int(now) + 12 * 60))
    assert text is not None and "released at" in text and "(in 12 min)" in text
    assert "UTC" in text and "`fedmarket withdraw` after that" in text


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


def test_held_stake_names_its_tasks():
    text = explain(
        "ParticipantRegistryInsufficientStake",
        ("0xabc", 90 * TOKEN, 100 * TOKEN),
        [StakeHold(3, 1_796_824_916, "training")],
    )
    assert text is not None and "90 tokens of stake free, 100 tokens asked" in text
    assert text.endswith(f"stake locked until {describe_time(1_796_824_916)} by task 3 (training)")


def test_unstaking_reserved_stake_names_the_task_on_anvil(w3: Web3, chain_snapshot: None) -> None:
    """On Anvil: an oracle that took a seat on task N and a trainer that joined it try to unstake
    everything; the one-line error names task N and its deadline. After the trainer's stake is
    free again elsewhere (another task never joined) nothing names that task."""
    deployer, requester = Identity.dev(0), Identity.dev(1)
    trainer, oracles = Identity.dev(2), [Identity.dev(i) for i in (6, 7, 8)]
    members = [Member.of(requester, Role.REQUESTER, tokens=1_000 * TOKEN)]
    members += [Member.of(trainer, Role.TRAINER, stake=100 * TOKEN, tokens=1_000 * TOKEN)]
    members += [Member.of(o, Role.ORACLE, stake=100 * TOKEN, tokens=1_000 * TOKEN) for o in oracles]
    market = market_with(w3, deployer.eth, members)
    now = int(w3.eth.get_block("latest")["timestamp"])

    def task(max_trainers: int) -> int:
        return market.create_task(requester.eth, TaskParams(
            budget=10 * TOKEN, model_spec_cid="bafy-spec", initial_model_cid="bafy-init",
            initial_model_digest=b"\x01" * 32, config_cid="bafy-config",
            validation_commitment=b"\x02" * 32, rounds=1, min_trainers=1,
            max_trainers=max_trainers, min_stake=5 * TOKEN, join_deadline=now + 3600,
            oracles=tuple(o.address for o in oracles),
        ))  # fmt: skip

    held, idle = task(2), task(3)
    for o in oracles:
        market.accept_seat(o.eth, held)
    market.join(trainer.eth, held)

    holds = stake_holds(market.market.events, market.task, trainer.address)
    assert [h.task_id for h in holds] == [held] and holds[0].phase == "open"
    assert holds[0].until == market.task(held).phase_deadline
    with pytest.raises(TransactionRevertedError) as err:
        market.request_unstake(trainer.eth, 100 * TOKEN)
    text = str(err.value)
    assert "95 tokens of stake free, 100 tokens asked" in text, text
    assert f"stake locked until {describe_time(holds[0].until)[:16]}" in text, text
    assert f"by task {held} (open)" in text and f"task {idle}" not in text, text
    assert err.value.error_name == "ParticipantRegistryInsufficientStake"

    with pytest.raises(TransactionRevertedError) as err:
        market.request_unstake(oracles[0].eth, 100 * TOKEN)
    assert f"by task {held} (open)" in str(err.value), err.value
    market.request_unstake(trainer.eth, 95 * TOKEN)  # the free part goes through


def test_progress_lines_carry_a_timestamp_and_a_waiting_state_is_printed_once(capsys):
    import re

    from node.cli.peer_cli import _step_printer
    from node.peers.base import Step

    on_step = _step_printer(as_json=True)  # progress on stderr, as a node under --json
    for step in (
        Step.waiting("waiting for training to end"),
        Step.waiting("waiting for training to end"),  # the same state: not printed again
        Step.retrying("chain RPC unreachable (refused): retrying in 2s"),
        Step.retrying("chain RPC unreachable (refused): retrying in 4s"),
        Step.acted("committed root 0xabc…"),
    ):
        on_step(step)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4, lines
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in lines), lines
    assert lines[0].endswith("waiting for training to end")


def test_log_lines_carry_a_timestamp(tmp_path):
    """A warning the CLI logs (here: a stray file in the keystore) starts with HH:MM:SS."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "keystore").mkdir()
    (tmp_path / "keystore" / "0xbackup-copy.json").write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "FEDMARKET_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "node", "account", "list"], cwd=root, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "0xbackup-copy.json" in line]
    assert warned and re.match(r"\d\d:\d\d:\d\d WARNING ", warned[0]), proc.stderr


def test_an_error_without_a_sentence_still_shows_dates_and_tokens():
    from marketplace.chain.tx import DecodedRevert

    unlock = int(time.time()) + 3 * 3600
    text = str(DecodedRevert("ModelVersionsDepositLocked", (3, unlock), ("taskId", "unlockAt")))
    assert text.startswith("ModelVersionsDepositLocked(taskId=3, unlockAt=20")
    assert "UTC (in 3.0 h)" in text and str(unlock) not in text
    root = bytes(32)
    text = str(
        DecodedRevert(
            "TaskMarketRootStakeTooLow", (1, root, 5 * TOKEN, 10 * TOKEN),
            ("taskId", "root", "stake", "required"),
        )
    )  # fmt: skip
    assert "stake=5 tokens" in text and "required=10 tokens" in text
    text = str(
        DecodedRevert(
            "TaskMarketReputationTooLow", ("0xabc", 400_000, 500_000),
            ("account", "reputationPpm", "required"),
        )
    )  # fmt: skip
    assert "required=500000" in text  # a ppm, not an amount


_TIMES = {"deadline", "notBefore", "notAfter", "expiry", "unlockAt", "releaseAt", "joinDeadline"}
_COUNTS = {"taskId", "requestId", "listingId", "saleId", "offerId", "index", "version", "words",
           "size", "length", "max", "currentNonce", "duration", "cap", "flags"}  # fmt: skip
_NOT_AMOUNTS = _COUNTS | _TIMES


def _plausible(inputs: list[dict], now: int, enum: int) -> tuple[object, ...]:
    """Arguments for an error from its ABI inputs: an address, 5 tokens in wei, a timestamp an
    hour ahead, an id or a count, an enum value (a phase, a role) ``enum``, a digest."""
    out: list[object] = []
    for i in inputs:
        name, kind = i["name"], i["type"]
        if kind == "address":
            out.append("0x" + "ab" * 20)
        elif kind == "bytes32":
            out.append(b"\x11" * 32)
        elif kind == "string":
            out.append("name")
        elif kind == "uint8":
            out.append(enum)
        elif name in _TIMES:
            out.append(now + 3600)
        elif kind == "uint256" and name not in _NOT_AMOUNTS:
            out.append(5 * TOKEN)
        else:
            out.append(7 * 86400 if name in ("duration", "cap") else 6 if name == "flags" else 3)
    return tuple(out)


def test_every_contract_error_has_a_one_line_sentence_with_a_fix():
    """Every custom error of every deployable contract (the packaged ABIs the library decodes
    with) has a sentence; rendered with plausible arguments (each enum value 0..7) it is one
    line, shows no raw epoch seconds and no raw wei, and carries a fix (FIX_MARKERS)."""
    import re

    from marketplace.chain.build import contract_artifacts

    now = int(time.time())
    errors = {
        item["name"]: item["inputs"]
        for artifact in contract_artifacts().values()
        for item in artifact.abi
        if item.get("type") == "error"
    }
    assert len(errors) > 150, len(errors)  # the ABIs were read
    missing = sorted(set(errors) - set(TEMPLATES))
    assert not missing, f"no sentence in marketplace/chain/explain for {missing}"
    bad: list[tuple[str, str, str]] = []  # (error, what is wrong, the text): all at once
    for name, inputs in errors.items():
        names = [i["name"] for i in inputs]
        for enum in range(8):
            args = _plausible(inputs, now, enum)
            text = explain(name, args) or ""
            checks = {
                "no sentence": bool(text),
                "not one line": "\n" not in text and text == text.strip(),
                "raw epoch or wei": str(now + 3600) not in text and not re.search(r"\d{16,}", text),
                "no fix": any(m in text for m in FIX_MARKERS),
                "a time not as a date": "UTC" in text or not set(names) & {"deadline", "notBefore"},
                "an amount not in tokens": "5 tokens" in text
                or not any(
                    i["type"] == "uint256" and i["name"] not in _NOT_AMOUNTS for i in inputs
                ),
            }
            bad += [(name, what, text) for what, ok in checks.items() if not ok]
            if not any(i["type"] == "uint8" for i in inputs):
                break
    assert not bad, "\n".join(map(str, bad))


def test_phases_and_roles_are_named():
    assert "in its committing phase" in (explain("TaskMarketWrongPhase", (3, 2)) or "")
    text = explain("TaskMarketWrongRole", ("0xabc", 1)) or ""
    assert "not registered as trainer" in text and "`fedmarket register trainer" in text
    assert "as auditor" in (explain("ModelMarketWrongRole", ("0xabc", 2)) or "")
    assert "`fedmarket audit register`" in (explain("ModelMarketWrongRole", ("0xabc", 2)) or "")
