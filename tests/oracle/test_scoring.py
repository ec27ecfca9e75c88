"""``score_task``: from reconstructed rounds to the payout table, root and report to commit."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from web3 import Web3

from marketplace.errors import ConfigError, ValuationError
from marketplace.fl import ClientUpdate
from marketplace.oracle import (
    AUTO_EXACT_MAX_PLAYERS,
    RoundInput,
    ScoringResult,
    ValuationConfig,
    choose_estimator,
    proof_for,
    score_task,
)
from marketplace.toolchain import REPO_ROOT
from marketplace.valuation import (
    PAYOUT_LEAF_TYPES,
    ExactShapley,
    Flag,
    LeafDomain,
    canonical_bytes,
    verify,
)
from marketplace.valuation.round_utility import RoundUtility

from .conftest import COPIER, FLIPPER, FREE_RIDER, HONEST
from .federation import SPEC, Federation, simulate

BUDGET = 10**21 + 7  # an odd budget: rounding must still add up exactly
DOMAIN = LeafDomain(chain_id=31337, market="0x" + "11" * 20, task_id=3)


def score(
    fed: Federation,
    rounds: list[RoundInput] | None = None,
    config: ValuationConfig | None = None,
    trainers: tuple[str, ...] | None = None,
) -> ScoringResult:
    return score_task(
        domain=DOMAIN,
        model_spec=SPEC,
        strategy=fed.sim.strategy(),
        rounds=fed.rounds() if rounds is None else rounds,
        x_val=fed.splits.validation.x,
        y_val=fed.splits.validation.y,
        validation_digest=fed.splits.validation.sha256(),
        budget=BUDGET,
        trainers=fed.trainers if trainers is None else trainers,
        config=config or ValuationConfig(),
    )


def flags_of(result: ScoringResult) -> dict[str, int]:
    return {e.account: e.flags for e in result.table.entries}


def paid(result: ScoringResult) -> dict[str, int]:
    return {e.account: e.amount for e in result.table.entries}


@pytest.fixture(scope="module")
def result(federation: Federation) -> ScoringResult:
    return score(federation)


# --- determinism -------------------------------------------------------------------------------
def test_two_runs_give_identical_report_bytes_and_root(federation: Federation) -> None:
    # Execute
    first, second = score(federation), score(federation)

    # Assert
    assert first.report_bytes == second.report_bytes
    assert first.root == second.root
    assert len(first.root) == 32
    assert first.report["merkle_root"] == "0x" + first.root.hex()
    assert first.report_bytes == canonical_bytes(first.report)


def test_round_order_and_address_case_do_not_change_the_result(
    federation: Federation, result: ScoringResult
) -> None:
    # Prepare: rounds reversed, every address lower-cased, trainers shuffled
    lowered = [
        RoundInput(
            round=ri.round,
            global_weights=ri.global_weights,
            updates=[type(u)(u.sender.lower(), u.delta, u.num_samples) for u in ri.updates[::-1]],
            invalid={a.lower(): why for a, why in ri.invalid.items()},
            commit_order={a.lower(): o for a, o in ri.commit_order.items()},
            refs=ri.refs,
        )
        for ri in reversed(federation.rounds())
    ]

    # Execute
    again = score(federation, lowered, trainers=tuple(t.lower() for t in federation.trainers[::-1]))

    # Assert
    assert again.report_bytes == result.report_bytes


SUBPROCESS = """
import torch
torch.set_num_threads(1)
from tests.oracle.federation import simulate, SPEC
from marketplace.oracle import score_task
from marketplace.valuation import LeafDomain
fed = simulate(6, behaviours={3: "free_rider", 4: "copier", 5: "sign_flip"}, absent=1)
result = score_task(domain=LeafDomain(31337, "0x" + "11" * 20, 1), model_spec=SPEC,
    strategy=fed.sim.strategy(),
    rounds=fed.rounds(), x_val=fed.splits.validation.x, y_val=fed.splits.validation.y,
    validation_digest="00", budget=10**18, trainers=fed.trainers)
import hashlib
print(result.root.hex(), hashlib.sha256(result.report_bytes).hexdigest())
"""


def test_two_processes_commit_the_same_root() -> None:
    # Execute: fresh interpreters with different hash seeds (set or dict order would show)
    outputs = []
    for hash_seed in ("0", "31337"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", SUBPROCESS], capture_output=True, text=True, cwd=REPO_ROOT,
            env=env, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout.strip())

    # Assert
    assert outputs[0] == outputs[1]
    assert len(outputs[0].split()[0]) == 64


# --- who is in the table ----------------------------------------------------------------------
def test_every_joined_trainer_has_exactly_one_entry_in_address_order(
    federation: Federation, result: ScoringResult
) -> None:
    # Assert
    accounts = [e.account for e in result.table.entries]
    assert sorted(accounts) == sorted(federation.trainers)
    assert accounts == sorted(accounts, key=lambda a: int(a, 16))
    assert [e.index for e in result.table.entries] == list(range(len(accounts)))


def test_trainer_that_never_committed_is_flagged_free_rider_for_each_round(
    federation: Federation, result: ScoringResult
) -> None:
    # Prepare
    absent = federation.trainers[-1]

    # Assert
    assert absent not in federation.committers
    assert flags_of(result)[absent] == Flag.FREE_RIDER
    assert paid(result)[absent] == 0
    evidence = result.report["flags"][absent]["evidence"]
    assert [e["reason"] for e in evidence] == [
        "no update committed in round 1",
        "no update committed in round 2",
    ]


def test_trainer_missing_one_round_is_valued_on_the_others_and_not_flagged(
    federation: Federation,
) -> None:
    # Prepare
    skipper = federation.trainers[HONEST[0]]

    # Execute
    result = score(federation, federation.rounds(drop=[(2, skipper)]))

    # Assert
    assert flags_of(result)[skipper] == 0
    rounds = {r["round"]: r["values_ppm"] for r in result.report["rounds"]}
    assert skipper in rounds[1] and skipper not in rounds[2]
    assert result.report["totals_ppm"][skipper] == rounds[1][skipper]


def test_invalid_update_is_flagged_with_its_reason_and_left_out_of_the_game(
    federation: Federation,
) -> None:
    # Prepare
    bad = federation.trainers[HONEST[1]]
    reason = "DigestMismatchError: content hashes to 0x12, not the committed 0x34"

    # Execute
    result = score(federation, federation.rounds(invalid={(2, bad): reason}))

    # Assert
    assert flags_of(result)[bad] & Flag.INVALID
    assert paid(result)[bad] == 0
    evidence = result.report["flags"][bad]["evidence"]
    assert {"flag": "invalid", "round": 2, "reason": reason} in evidence
    round2 = next(r for r in result.report["rounds"] if r["round"] == 2)
    assert bad not in round2["values_ppm"]


def test_round_without_any_valid_update_is_still_reported(federation: Federation) -> None:
    # Prepare: every round-2 update refused
    refused = {(2, t): "InvalidUpdateError: NaN in fc1.weight" for t in federation.committers}

    # Execute
    result = score(federation, federation.rounds(invalid=refused))

    # Assert
    round2 = next(r for r in result.report["rounds"] if r["round"] == 2)
    assert round2["values_ppm"] == {} and round2["evaluations"] == 0
    assert len(round2["updates"]) == len(federation.committers)
    assert round2["model"]["digest"].startswith("0x")
    assert all(flags_of(result)[t] & Flag.INVALID for t in federation.committers)


def test_cheaters_are_flagged_and_honest_trainers_share_the_whole_budget(
    federation: Federation, result: ScoringResult
) -> None:
    # Prepare
    ids = federation.trainers  # index i: the trainer given behaviour i

    # Assert
    flags = flags_of(result)
    assert flags[ids[FREE_RIDER]] & Flag.FREE_RIDER
    assert flags[ids[COPIER]] & Flag.COPIER
    assert flags[ids[FLIPPER]] & Flag.POISONER
    honest = [ids[i] for i in HONEST]
    assert all(flags[h] == 0 for h in honest)
    amounts = paid(result)
    assert all(amounts[h] > 0 for h in honest)
    assert sum(amounts[h] for h in honest) == BUDGET
    assert result.table.total == BUDGET and result.table.refund == 0
    scores = {e.account: e.score_ppm for e in result.table.entries}
    assert all(0 < scores[h] <= 10**6 for h in honest)  # reputation samples of the paid
    assert all(scores[a] == 0 for a in scores if a not in honest)


def test_refund_policy_withholds_flagged_positive_shares(federation: Federation) -> None:
    # Execute
    redistribute = score(federation)
    refund = score(federation, config=ValuationConfig(flagged="refund"))

    # Assert
    assert refund.table.total + refund.table.refund == BUDGET
    assert refund.table.total <= redistribute.table.total == BUDGET
    assert refund.report["refund"] == str(refund.table.refund)


# --- estimator choice ----------------------------------------------------------------------------
def test_auto_is_exact_up_to_12_players_and_budgeted_gtg_above() -> None:
    # Execute
    small = choose_estimator("auto", max_players=AUTO_EXACT_MAX_PLAYERS, budget_fraction=0.25)
    large = choose_estimator("auto", max_players=AUTO_EXACT_MAX_PLAYERS + 1, budget_fraction=0.25)

    # Assert
    assert small.method == "exact"
    assert large.method == "gtg"
    assert large.params()["budget_fraction"] == 0.25
    assert large.budget(13) == 2048 and large.budget(3) == 4  # type: ignore[attr-defined]


def test_auto_scores_13_trainers_with_gtg_within_the_evaluation_budget() -> None:
    # Prepare
    fed = simulate(13, rounds=1, seed=3)

    # Execute
    result = score(fed, config=ValuationConfig(gtg_budget_fraction=0.05, seed=9))

    # Assert
    assert result.report["method"] == "gtg"
    (round1,) = result.report["rounds"]
    assert 0 < round1["evaluations"] <= int(0.05 * 2**13)
    assert result.table.total == BUDGET


def test_auto_scores_a_small_task_exactly(result: ScoringResult) -> None:
    # Assert
    assert result.report["method"] == "exact"
    assert all(r["evaluations"] == 2**6 for r in result.report["rounds"])


# --- claims ---------------------------------------------------------------------------------------
def test_proof_for_gives_each_trainer_a_proof_of_its_leaf(
    federation: Federation, result: ScoringResult
) -> None:
    for account in federation.trainers:
        # Execute
        entry, proof = proof_for(result, account.lower())

        # Assert
        assert entry.account == account
        assert verify(result.root, PAYOUT_LEAF_TYPES, DOMAIN.leaf(entry), proof)


def test_proof_for_refuses_an_account_without_a_leaf(result: ScoringResult) -> None:
    with pytest.raises(ValuationError, match="no entry in the payout table"):
        proof_for(result, "0x" + "42" * 20)


# --- bad input ---------------------------------------------------------------------------------
def test_update_from_a_non_member_is_refused(federation: Federation) -> None:
    with pytest.raises(ValuationError, match="not among the task's trainers"):
        score(federation, trainers=federation.trainers[1:])


def test_valid_update_without_commit_order_is_refused(federation: Federation) -> None:
    # Prepare
    ri = federation.rounds()[0]
    broken = RoundInput(ri.round, ri.global_weights, ri.updates, commit_order={}, refs=ri.refs)

    # Execute / Assert
    with pytest.raises(ValuationError, match="no commit order"):
        score(federation, [broken])


def test_repeated_round_is_refused(federation: Federation) -> None:
    rounds = federation.rounds()
    with pytest.raises(ValuationError, match="round numbers repeat"):
        score(federation, [rounds[0], rounds[0]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "shapley"},
        {"metric": "f1"},
        {"gtg_budget_fraction": 0.0},
        {"floor_ppm": 2_000_000},
        {"flagged": "burn"},
        {"seed": -1},
    ],
)
def test_bad_scoring_config_is_a_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ValuationConfig(**kwargs)


def test_exact_round_values_add_up_to_the_real_models_accuracy_gain(
    federation: Federation, result: ScoringResult
) -> None:
    # Prepare: the accuracy the simulation measured before and after each round
    before = [federation.sim.initial_metrics, *(r.metrics for r in federation.sim.rounds)]

    for i, record in enumerate(result.report["rounds"]):
        # Execute
        total = sum(record["values_ppm"].values())

        # Assert: efficiency of exact Shapley on the grand coalition = the peers' aggregate
        gain = round((before[i + 1].val_accuracy - before[i].val_accuracy) * 10**6)
        assert abs(total - gain) <= len(record["values_ppm"])


def test_values_belong_to_the_right_trainers_when_address_and_string_order_differ(
    federation: Federation, result: ScoringResult
) -> None:
    # Prepare: an independent valuation of round 1 whose rows are already in address order
    # (lower-case senders sort the same both ways), so no index mapping is involved
    record = federation.sim.rounds[0]
    lowered = [ClientUpdate(u.sender.lower(), u.delta, u.num_samples) for u in record.updates]
    utility = RoundUtility(
        model_spec=SPEC,
        global_weights=record.global_weights,
        updates=lowered,
        strategy=federation.sim.strategy(),
        x_val=federation.splits.validation.x,
        y_val=federation.splits.validation.y,
    )
    assert sorted(federation.committers) != sorted(federation.committers, key=str.lower)

    # Execute
    reference = ExactShapley().estimate(utility).values_ppm

    # Assert
    expected = {
        Web3.to_checksum_address(p): v for p, v in zip(utility.players, reference, strict=True)
    }
    assert result.report["rounds"][0]["values_ppm"] == expected


def test_with_nobody_eligible_the_whole_budget_is_refunded(federation: Federation) -> None:
    # Prepare: every update of every round refused
    refused = {
        (r.server_round, t): "CryptoError: envelope does not open"
        for r in federation.sim.rounds
        for t in federation.committers
    }

    # Execute
    result = score(federation, federation.rounds(invalid=refused))

    # Assert
    assert result.table.total == 0 and result.table.refund == BUDGET
    assert all(e.flags for e in result.table.entries)
    assert [r["values_ppm"] for r in result.report["rounds"]] == [{}, {}]
