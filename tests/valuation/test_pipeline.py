"""From a real simulation to a report: cheaters are flagged and paid nothing."""

from __future__ import annotations

import pytest

from marketplace import fl
from marketplace.valuation import (
    Flag,
    GTGShapley,
    LeafDomain,
    RoundGame,
    UpdateView,
    build_report,
    compute_payouts,
    copier_findings,
    flatten_delta,
    free_rider_findings,
    merge_findings,
    poisoner_findings,
    report_digest,
    value_rounds,
)
from marketplace.valuation.round_utility import RoundUtility

SPEC = fl.ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=1)
IDS = tuple(f"0x{i:040x}" for i in range(1, 7))  # trainer ids are addresses, sorted
HONEST, FREE_RIDER, COPIER, FLIPPER = IDS[:3], IDS[3], IDS[4], IDS[5]


@pytest.fixture(scope="module")
def simulation() -> tuple[fl.SimulationResult, fl.DataSplits]:
    splits = fl.split_dataset(fl.load_dataset("digits"), seed=0)
    parts = fl.partition("iid", splits.train.y, num_clients=6, seed=0)
    sim = fl.simulate(
        model_spec=SPEC,
        splits=splits,
        partition=parts,
        rounds=2,
        train_config=fl.TrainConfig(epochs=2, lr=0.1),
        behaviours={FREE_RIDER: "free_rider", COPIER: "copier", FLIPPER: "sign_flip"},
        trainer_ids=IDS,
        seed=0,
    )
    return sim, splits


def run_oracle(sim: fl.SimulationResult, splits: fl.DataSplits) -> dict[str, object]:
    findings = []
    games = []
    for record in sim.rounds:
        # Commit order: the copier committed last (it needs the others' updates first)
        views = [
            UpdateView(u.sender, flatten_delta(u.delta), 99 if u.sender == COPIER else i)
            for i, u in enumerate(record.updates)
        ]
        findings += free_rider_findings(views, round=record.server_round)
        findings += copier_findings(views, round=record.server_round)
        utility = RoundUtility(
            model_spec=SPEC,
            global_weights=record.global_weights,
            updates=record.updates,
            strategy=sim.strategy(),
            x_val=splits.validation.x,
            y_val=splits.validation.y,
        )
        games.append(RoundGame(record.server_round, utility.players, utility))
    valuation = value_rounds(games, GTGShapley(round_threshold=-1), seed=42)
    flags = merge_findings([*findings, *poisoner_findings(valuation.totals_ppm())])
    table = compute_payouts(10**18, valuation.totals_ppm(), {a: r.flags for a, r in flags.items()})
    return build_report(
        domain=LeafDomain(chain_id=31337, market="0x" + "11" * 20, task_id=1),
        valuation=valuation,
        metric="accuracy",
        validation_digest=splits.validation.sha256(),
        artifacts=[],
        flags=flags,
        payouts=table,
    )


def test_cheaters_are_flagged_and_paid_nothing(
    simulation: tuple[fl.SimulationResult, fl.DataSplits],
) -> None:
    # Execute
    report = run_oracle(*simulation)

    # Assert
    flags = {a: r["flags"] for a, r in report["flags"].items()}  # type: ignore[attr-defined]
    assert flags[FREE_RIDER.lower()] & Flag.FREE_RIDER
    assert flags[COPIER.lower()] & Flag.COPIER
    assert flags[FLIPPER.lower()] & Flag.POISONER
    assert not any(h.lower() in flags for h in HONEST)
    paid = {p["account"].lower(): int(p["amount"]) for p in report["payouts"]}  # type: ignore[attr-defined]
    assert paid[FREE_RIDER] == paid[COPIER] == paid[FLIPPER] == 0
    assert sum(paid[h] for h in HONEST) == 10**18


def test_two_oracle_runs_write_identical_reports(
    simulation: tuple[fl.SimulationResult, fl.DataSplits],
) -> None:
    # Execute
    first, second = run_oracle(*simulation), run_oracle(*simulation)

    # Assert
    assert report_digest(first) == report_digest(second)
    assert first["merkle_root"] == second["merkle_root"]
