"""The report's canonical bytes: sorted, float-free, identical for identical inputs."""

from __future__ import annotations

import json

import pytest

from marketplace.errors import ValuationError
from marketplace.valuation import (
    GTGShapley,
    LeafDomain,
    RoundArtifacts,
    RoundGame,
    UpdateRef,
    build_report,
    canonical_bytes,
    compute_payouts,
    merge_findings,
    poisoner_findings,
    report_digest,
    value_rounds,
)

from .games import concave_game

PLAYERS = tuple(f"0x{i:040x}" for i in range(1, 6))


def make_report(seed: int = 4) -> dict[str, object]:
    games = [RoundGame(r, PLAYERS, concave_game([0.3, 0.1, 0.2, 0.0, 0.05 * r])) for r in (1, 2)]
    valuation = value_rounds(games, GTGShapley(eps=0, round_threshold=-1), seed=seed)
    totals = valuation.totals_ppm()
    flags = merge_findings(poisoner_findings(totals))
    table = compute_payouts(10**18, totals, {a: r.flags for a, r in flags.items()})
    artifacts = [
        RoundArtifacts(
            r,
            f"bafy-model-{r}",
            f"{r:064x}",
            tuple(UpdateRef(p, f"bafy-{p}", "00" * 32) for p in PLAYERS),
        )
        for r in (1, 2)
    ]
    return build_report(
        domain=LeafDomain(chain_id=31337, market="0x" + "9" * 40, task_id=1),
        valuation=valuation,
        metric="accuracy",
        validation_digest="ab" * 32,
        artifacts=artifacts,
        flags=flags,
        payouts=table,
    )


def test_same_inputs_give_identical_bytes_and_digest() -> None:
    # Execute
    first, second = make_report(), make_report()

    # Assert
    assert canonical_bytes(first) == canonical_bytes(second)
    assert report_digest(first) == report_digest(second)


def test_canonical_bytes_are_sorted_compact_json_without_floats() -> None:
    # Prepare
    report = make_report()

    # Execute
    raw = canonical_bytes(report)

    # Assert
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    assert report["params"]["eps"] == "0.0"  # type: ignore[index]
    assert report["params"]["criterion"] == "0.05"  # type: ignore[index]
    assert isinstance(report["payouts"][0]["amount"], str)  # type: ignore[index]


def test_key_insertion_order_does_not_change_the_bytes() -> None:
    report = make_report()
    shuffled = dict(reversed(list(report.items())))
    assert canonical_bytes(shuffled) == canonical_bytes(report)


def test_report_carries_the_merkle_root_and_totals_that_add_up() -> None:
    # Execute
    report = make_report()

    # Assert
    totals = report["totals_ppm"]
    rounds = report["rounds"]
    for player in PLAYERS:
        assert totals[player] == sum(r["values_ppm"][player] for r in rounds)  # type: ignore[index]
    assert str(report["merkle_root"]).startswith("0x") and len(str(report["merkle_root"])) == 66


def test_a_different_seed_changes_the_digest() -> None:
    assert report_digest(make_report(seed=1)) != report_digest(make_report(seed=2))


def test_floats_are_refused_in_canonical_bytes() -> None:
    with pytest.raises(ValuationError, match="float"):
        canonical_bytes({"score": 0.5})


def test_address_case_does_not_change_the_bytes() -> None:
    # Prepare: the same trainers given in lowercase and in checksum form
    from eth_utils.address import to_checksum_address

    lower = [f"0x{i:040x}".replace("0x000", "0xabc") for i in range(1, 4)]
    mixed = [to_checksum_address(a) for a in lower]

    def report_for(players: list[str]) -> bytes:
        games = [RoundGame(1, tuple(players), concave_game([0.3, 0.1, 0.2]))]
        valuation = value_rounds(games, GTGShapley(round_threshold=-1), seed=1)
        table = compute_payouts(1000, valuation.totals_ppm())
        report = build_report(
            domain=LeafDomain(chain_id=31337, market="0x" + "9" * 40, task_id=1),
            valuation=valuation,
            metric="accuracy",
            validation_digest="00",
            artifacts=[],
            flags={},
            payouts=table,
        )
        return canonical_bytes(report)

    # Execute / Assert
    assert report_for(lower) == report_for(mixed)
