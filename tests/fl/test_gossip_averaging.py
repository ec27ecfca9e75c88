"""Asynchronous gossip averaging in one process: the math on tiny tensors, one peer's step, and
simulations of 6 peers on digits (deterministic schedule and real threads)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from marketplace.errors import ConfigError, InvalidUpdateError, StorageError
from marketplace.fl.data import DataSplits
from marketplace.fl.gossip_averaging import (
    GossipAveragingPeer,
    SnapshotInfo,
    SnapshotRefusedError,
    consensus_distance,
    consensus_report,
    mixing_weights,
)
from marketplace.fl.gossip_simulate import simulate_gossip_averaging, speed_schedule
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.partition import partition
from marketplace.fl.seeding import derive_seed
from marketplace.fl.train import TrainConfig, train_local
from marketplace.fl.weights import apply_delta, flatten, get_weights, weights_equal

LOCAL = TrainConfig(epochs=1, lr=0.1, batch_size=16)
SPEEDS = [1.0, 1.0, 0.5, 1.0, 0.75, 1.0]  # two slow peers: no barrier, stale snapshots


def w(*values: float) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(values, dtype=torch.float32)}


# --- the math ------------------------------------------------------------------------------
def test_consensus_distance_is_the_mean_squared_distance_to_the_average() -> None:
    # Prepare: average (1, 1); squared distances 1+1, 1+1, 0
    models = [w(0.0, 0.0), w(2.0, 2.0), w(1.0, 1.0)]
    # Execute
    report = consensus_report(models)
    # Assert
    assert report.mean_sq == pytest.approx(4 / 3)
    assert report.rms == pytest.approx(math.sqrt(4 / 3))
    assert report.average_norm == pytest.approx(math.sqrt(2))
    assert report.relative == pytest.approx(math.sqrt(4 / 3) / math.sqrt(2))
    assert consensus_distance(models) == report.mean_sq


def test_identical_models_are_at_distance_zero_and_layouts_must_match() -> None:
    assert consensus_report([w(3.0, -1.0)] * 4).relative == 0.0
    with pytest.raises(InvalidUpdateError):
        consensus_distance([w(1.0, 2.0), {"v": torch.zeros(2)}])
    with pytest.raises(ConfigError):
        consensus_distance([])


def test_uniform_mixing_gives_equal_weights_and_stale_snapshots_pull_less() -> None:
    # Execute / Assert: two fresh neighbours: a third each
    own, others = mixing_weights(100, [(50, 0), (200, 0)])
    assert own == pytest.approx(1 / 3) and others == pytest.approx([1 / 3, 1 / 3])
    # one neighbour 3 versions behind, exponent 1: its third is quartered, the peer keeps the rest
    own, others = mixing_weights(100, [(50, 0), (200, 3)], staleness_exponent=1.0)
    assert others == pytest.approx([1 / 3, 1 / 12]) and own == pytest.approx(1 - 5 / 12)
    # no neighbour: the peer keeps its model
    assert mixing_weights(100, []) == (1.0, [])


def test_samples_mixing_weighs_by_sample_counts() -> None:
    own, others = mixing_weights(100, [(50, 0), (250, 0)], rule="samples")
    assert own == pytest.approx(0.25) and others == pytest.approx([0.125, 0.625])


def test_mixing_refuses_an_unknown_rule_or_a_negative_exponent() -> None:
    with pytest.raises(ConfigError, match="mixing rule"):
        mixing_weights(1, [], rule="median")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="staleness_exponent"):
        mixing_weights(1, [], staleness_exponent=-1)


# --- one peer ------------------------------------------------------------------------------
def make_peer(digits: DataSplits, spec: ModelSpec, *, peer_id: str = "p0", **options: object):
    rows = np.arange(0, 200)
    return GossipAveragingPeer(
        peer_id=peer_id, model_spec=spec, dataset=digits.train.subset(rows),
        initial_weights=get_weights(build_model(spec)), train_config=LOCAL, **options,
    )  # fmt: skip


def neighbour_weights(spec: ModelSpec, seed: int) -> dict[str, torch.Tensor]:
    return get_weights(build_model(ModelSpec(**{**spec.__dict__, "seed": seed})))


def test_a_step_without_neighbours_is_plain_local_training(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    # Prepare
    peer = make_peer(digits, mlp_spec, k=2)
    start = dict(peer.weights)
    seed = derive_seed(0, "gossip-train", "p0", 1)
    expected = apply_delta(
        start, train_local(mlp_spec, start, peer.dataset, LOCAL.with_seed(seed)).delta
    )
    # Execute
    report = peer.step({}, fetch=lambda info: pytest.fail("nothing to fetch"))
    # Assert
    assert weights_equal(peer.weights, expected)
    assert report.version == 1 == peer.version and report.mixed == () and report.self_weight == 1


def test_a_step_mixes_the_pre_training_model_and_adds_the_local_delta_in_full(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    # Prepare: two neighbours with other weights, k = all
    peer = make_peer(digits, mlp_spec, k=None)
    start = dict(peer.weights)
    held = {"p1": neighbour_weights(mlp_spec, 1), "p2": neighbour_weights(mlp_spec, 2)}
    candidates = {p: SnapshotInfo(p, 0, 100) for p in held}
    seed = derive_seed(0, "gossip-train", "p0", 1)
    delta = train_local(mlp_spec, start, peer.dataset, LOCAL.with_seed(seed)).delta
    # Execute
    report = peer.step(candidates, fetch=lambda info: held[info.peer])
    # Assert: x ← (x + x1 + x2)/3 + Δ, computed in float64
    expected = (flatten(start) + flatten(held["p1"]) + flatten(held["p2"])) / 3 + flatten(delta)
    np.testing.assert_allclose(flatten(peer.weights), expected, rtol=0, atol=1e-6)
    assert sorted(m.peer for m in report.mixed) == ["p1", "p2"]
    assert sorted(report.fetched) == ["p1", "p2"] and report.self_weight == pytest.approx(1 / 3)


def test_sampling_picks_k_candidates_reproducibly_and_reuses_held_snapshots(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    # Prepare: five neighbours, k = 2, the same candidates for two identical peers
    held = {f"p{i}": neighbour_weights(mlp_spec, i) for i in range(1, 6)}
    candidates = {p: SnapshotInfo(p, 0, 100) for p in held}
    fetches: dict[str, list[str]] = {"a": [], "b": []}

    def fetcher(who: str):
        def fetch(info: SnapshotInfo) -> dict[str, torch.Tensor]:
            fetches[who].append(info.peer)
            return held[info.peer]

        return fetch

    a, b = make_peer(digits, mlp_spec, k=2), make_peer(digits, mlp_spec, k=2)
    # Execute: a steps three times on unchanged candidates, its twin b once
    reports = [a.step(candidates, fetcher("a")) for _ in range(3)]
    twin = b.step(candidates, fetcher("b"))
    # Assert: k mixed each time, the twin chose the same, nothing fetched twice
    assert all(len(r.mixed) == 2 for r in reports)
    assert [m.peer for m in twin.mixed] == [m.peer for m in reports[0].mixed]
    assert len(fetches["a"]) == len(set(fetches["a"])) >= 2
    assert [m.staleness for m in reports[2].mixed] == [2, 2]  # a is at version 2, they at 0


def test_a_bad_snapshot_is_refused_once_skipped_and_another_candidate_takes_its_slot(
    digits: DataSplits, mlp_spec: ModelSpec
) -> None:
    # Prepare: k = 2 of four candidates; three are unusable in different ways
    good = neighbour_weights(mlp_spec, 1)
    nan = {k: v.clone() for k, v in good.items()}
    next(iter(nan.values())).view(-1)[0] = float("nan")
    answers: dict[str, object] = {
        "good": good,
        "nan": nan,
        "shape": {"w": torch.zeros(3)},
        "gone": SnapshotRefusedError("fetch_failed", "no provider"),
    }
    calls: list[str] = []

    def fetch(info: SnapshotInfo) -> dict[str, torch.Tensor]:
        calls.append(info.peer)
        answer = answers[info.peer]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    peer = make_peer(digits, mlp_spec, k=2)
    candidates = {p: SnapshotInfo(p, 0, 100) for p in answers}
    # Execute: two steps on the same candidates, then "gone" publishes a newer version
    one = peer.step(candidates, fetch)
    two = peer.step(candidates, fetch)
    answers["gone"] = StorageError("still gone")
    three = peer.step({**candidates, "gone": SnapshotInfo("gone", 5, 100)}, fetch)
    # Assert: the only good snapshot is mixed every time; each bad (peer, version) tried once
    assert [m.peer for m in one.mixed] == ["good"]
    assert {p: r.split(":")[0] for p, r in one.refused.items()} == {
        "nan": "invalid_snapshot", "shape": "invalid_snapshot", "gone": "fetch_failed",
    }  # fmt: skip
    assert two.refused == {} and [m.peer for m in two.mixed] == ["good"] and two.candidates == 1
    assert three.refused["gone"].startswith("StorageError") and calls.count("gone") == 2
    assert calls.count("nan") == calls.count("shape") == calls.count("good") == 1
    assert all(bool(torch.isfinite(t).all()) for t in peer.weights.values())


def test_max_staleness_keeps_old_snapshots_out(digits: DataSplits, mlp_spec: ModelSpec) -> None:
    # Prepare: the peer is at version 3; one neighbour at 0, one at 2
    peer = make_peer(digits, mlp_spec, k=None, max_staleness=1)
    peer.version = 3
    candidates = {"old": SnapshotInfo("old", 0, 10), "new": SnapshotInfo("new", 2, 10)}
    # Execute
    report = peer.step(candidates, fetch=lambda info: neighbour_weights(mlp_spec, 1))
    # Assert
    assert [(m.peer, m.staleness) for m in report.mixed] == [("new", 1)]


def test_peer_refuses_a_negative_k(digits: DataSplits, mlp_spec: ModelSpec) -> None:
    with pytest.raises(ConfigError, match="k"):
        make_peer(digits, mlp_spec, k=-1)


# --- schedules -----------------------------------------------------------------------------
def test_speed_schedule_interleaves_by_finish_time() -> None:
    assert speed_schedule([1, 1, 1], 2) == [0, 1, 2, 0, 1, 2]
    # peer 1 at half speed: its steps end at 2 and 4, after peer 0's at 1, 2 (tie: lower index)
    assert speed_schedule([1, 0.5], 3) == [0, 0, 1, 0, 1, 1]
    with pytest.raises(ConfigError):
        speed_schedule([1, 0], 2)


# --- simulations on digits, 6 peers --------------------------------------------------------
@pytest.fixture(scope="module")
def six_parts(digits: DataSplits) -> list[np.ndarray]:
    return partition("iid", digits.train.y, num_clients=6, seed=0)


def run(digits, spec, parts, **options):
    return simulate_gossip_averaging(
        model_spec=spec, splits=digits, partition=parts, rounds=6, train_config=LOCAL, **options
    )


def test_k2_of_6_peers_reaches_consensus_from_separate_starts_and_no_mixing_does_not(
    digits: DataSplits, mlp_spec: ModelSpec, six_parts: list[np.ndarray]
) -> None:
    # Execute: every peer starts from its own random model; two slow peers, no barrier
    mixed = run(digits, mlp_spec, six_parts, k=2, init="per_peer", speeds=SPEEDS)
    alone = run(digits, mlp_spec, six_parts, k=0, init="per_peer", speeds=SPEEDS)
    # Assert: relative consensus distance (rms / ||average||) from ~2.2 to below 0.5 with k = 2
    start = mixed.distances("relative")[0]
    assert start == alone.distances("relative")[0] and start > 1.5
    assert mixed.distances("relative")[-1] < 0.5
    assert min(alone.distances("relative")) > 1.5
    assert alone.records[-1].snapshots_fetched == 0 and mixed.records[-1].snapshots_fetched > 0
    assert len(mixed.records) == 7 and mixed.records[-1].mean_mixed == 2


def test_from_a_shared_start_mixing_keeps_peers_closer_and_learns_at_least_as_well(
    digits: DataSplits, mlp_spec: ModelSpec, six_parts: list[np.ndarray]
) -> None:
    # Execute: the marketplace's case: one initial model for everyone
    mixed = run(digits, mlp_spec, six_parts, k=2, speeds=SPEEDS)
    alone = run(digits, mlp_spec, six_parts, k=0, speeds=SPEEDS)
    # Assert: distance 0 at the start; local training alone drifts apart, mixing holds it down
    assert mixed.distances()[0] == 0.0
    assert mixed.distances()[-1] < 0.5 * alone.distances()[-1]
    assert mixed.records[-1].mean_accuracy >= alone.records[-1].mean_accuracy - 0.02
    assert mixed.records[-1].min_accuracy > 0.8


def test_the_deterministic_schedule_reproduces_every_bit_and_follows_the_order(
    digits: DataSplits, mlp_spec: ModelSpec, six_parts: list[np.ndarray]
) -> None:
    # Execute
    options = dict(k=2, speeds=SPEEDS, staleness_exponent=0.5, mixing="samples")
    first = run(digits, mlp_spec, six_parts, **options)
    second = run(digits, mlp_spec, six_parts, **options)
    # Assert
    assert first.order == second.order == tuple(f"t{i:02d}" for i in speed_schedule(SPEEDS, 6))
    assert first.distances() == second.distances()
    assert all(
        weights_equal(first.final_weights[p], second.final_weights[p]) for p in first.peer_ids
    )
    # the slow peers' snapshots were mixed while stale (no barrier)
    assert max(r.mean_staleness for r in first.records[1:]) > 0


def test_threaded_peers_without_a_barrier_still_reach_consensus(
    digits: DataSplits, mlp_spec: ModelSpec, six_parts: list[np.ndarray]
) -> None:
    # Execute: one thread per peer, the slow ones sleeping longer between steps
    result = run(
        digits, mlp_spec, six_parts, k=2, init="per_peer", speeds=SPEEDS, threaded=True,
        step_delay=0.005,
    )  # fmt: skip
    # Assert
    assert sorted(result.order) == sorted(p for p in result.peer_ids for _ in range(6))
    assert result.distances("relative")[-1] < 0.5 * result.distances("relative")[0]
    assert all(
        bool(torch.isfinite(t).all()) for w in result.final_weights.values() for t in w.values()
    )


def test_simulation_refuses_a_schedule_that_does_not_list_each_peer_rounds_times(
    digits: DataSplits, mlp_spec: ModelSpec, six_parts: list[np.ndarray]
) -> None:
    with pytest.raises(ConfigError, match="schedule"):
        run(digits, mlp_spec, six_parts, schedule=[0, 1, 2, 3, 4, 5])
