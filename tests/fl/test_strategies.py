"""Strategies: hand values on tiny tensors, determinism under permutation, malformed inputs."""

from __future__ import annotations

import random

import pytest
import torch

from marketplace.errors import ConfigError, InvalidUpdateError
from marketplace.fl.strategy import STRATEGIES, FedProx, get_strategy
from marketplace.fl.train import TrainConfig
from marketplace.fl.updates import ClientUpdate

GLOBAL = {"b": torch.tensor([0.5]), "w": torch.tensor([[1.0, 2.0]])}


def _update(sender: str, w: list[float], b: float, n: int = 10) -> ClientUpdate:
    return ClientUpdate(sender, {"b": torch.tensor([b]), "w": torch.tensor([w])}, n)


def test_fedavg_is_the_sample_weighted_mean_added_to_global() -> None:
    updates = [_update("a", [1.0, 0.0], 2.0, n=1), _update("b", [3.0, 4.0], -2.0, n=3)]

    result = get_strategy("fedavg").aggregate(GLOBAL, updates)

    torch.testing.assert_close(result.delta["w"], torch.tensor([[2.5, 3.0]]))
    torch.testing.assert_close(result.delta["b"], torch.tensor([-1.0]))
    torch.testing.assert_close(result.weights["w"], torch.tensor([[3.5, 5.0]]))
    torch.testing.assert_close(result.weights["b"], torch.tensor([-0.5]))
    assert result.weights["w"].dtype == torch.float32
    assert result.accepted == ("a", "b") and result.rejected == ()


def test_server_lr_scales_the_step() -> None:
    updates = [_update("a", [2.0, 2.0], 2.0)]

    result = get_strategy("fedavg", server_lr=0.5).aggregate(GLOBAL, updates)

    torch.testing.assert_close(result.delta["w"], torch.tensor([[1.0, 1.0]]))


def test_median_and_trimmed_mean_hand_values() -> None:
    updates = [
        _update("a", [1.0, 10.0], 0.0),
        _update("b", [2.0, 20.0], 0.0),
        _update("c", [3.0, 30.0], 0.0),
        _update("d", [4.0, 40.0], 0.0),
        _update("e", [100.0, -100.0], 0.0),
    ]

    med = get_strategy("median").aggregate(GLOBAL, updates)
    trim = get_strategy("trimmed_mean", beta=0.2).aggregate(GLOBAL, updates)

    torch.testing.assert_close(med.delta["w"], torch.tensor([[3.0, 20.0]]))
    torch.testing.assert_close(trim.delta["w"], torch.tensor([[3.0, 20.0]]))


def _cluster_with_attackers() -> list[ClientUpdate]:
    gen = torch.Generator().manual_seed(0)
    honest = [
        ClientUpdate(
            f"h{i}",
            {
                "b": 0.01 * torch.randn(1, generator=gen) + 1.0,
                "w": 0.01 * torch.randn(1, 2, generator=gen) + 1.0,
            },
            10,
        )
        for i in range(7)
    ]
    attackers = [
        ClientUpdate(f"x{i}", {"b": torch.tensor([-5.0]), "w": torch.tensor([[-5.0, -5.0]])}, 10)
        for i in range(2)
    ]
    return honest + attackers


def test_krum_and_multikrum_reject_the_attackers() -> None:
    updates = _cluster_with_attackers()

    krum = get_strategy("krum", f=2).aggregate(GLOBAL, updates)
    multi = get_strategy("multikrum", f=2, m=7).aggregate(GLOBAL, updates)

    assert len(krum.accepted) == 1 and krum.accepted[0].startswith("h")
    assert multi.accepted == tuple(f"h{i}" for i in range(7))
    assert multi.rejected == ("x0", "x1")


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "multikrum", "bulyan"])
def test_robust_strategies_stay_near_the_honest_mean(name: str) -> None:
    updates = _cluster_with_attackers()
    params = {"trimmed_mean": {"beta": 0.25}, "multikrum": {"f": 2}, "bulyan": {"f": 1}}

    robust = get_strategy(name, **params.get(name, {})).aggregate(GLOBAL, updates)
    naive = get_strategy("fedavg").aggregate(GLOBAL, updates)

    assert torch.allclose(robust.delta["w"], torch.ones(1, 2), atol=0.05)
    assert not torch.allclose(naive.delta["w"], torch.ones(1, 2), atol=0.5)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_result_is_bit_identical_under_any_arrival_order(name: str) -> None:
    updates = _cluster_with_attackers()
    shuffled = updates[:]
    random.Random(1).shuffle(shuffled)
    params = {"krum": {"f": 2}, "multikrum": {"f": 2}, "bulyan": {"f": 1}}
    strategy = get_strategy(name, **params.get(name, {}))

    first = strategy.aggregate(GLOBAL, updates)
    second = strategy.aggregate(GLOBAL, shuffled)

    for key in GLOBAL:
        assert torch.equal(first.weights[key], second.weights[key])
    assert first.accepted == second.accepted


def test_fedprox_asks_trainers_for_the_proximal_term() -> None:
    strategy = FedProx(mu=0.1)

    config = strategy.configure_train(3, TrainConfig(fedprox_mu=0.0))

    assert config.fedprox_mu == 0.1
    assert get_strategy("fedavg").configure_train(3, config) == config


def test_params_rebuild_an_equal_strategy() -> None:
    strategy = get_strategy("multikrum", f=2, m=4)

    rebuilt = get_strategy(strategy.name, **strategy.params())

    assert repr(rebuilt) == repr(strategy)


def test_unknown_strategy_and_bad_params_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown aggregation strategy 'fedsgd'"):
        get_strategy("fedsgd")
    with pytest.raises(ConfigError, match="bad parameters"):
        get_strategy("median", beta=0.1)
    with pytest.raises(ConfigError, match="beta"):
        get_strategy("trimmed_mean", beta=0.5)


def _bad_inputs() -> dict[str, list[ClientUpdate]]:
    ok = _update("a", [1.0, 1.0], 1.0)
    return {
        "no updates": [],
        "tensor names": [ok, ClientUpdate("b", {"w": torch.ones(1, 2), "z": torch.ones(1)}, 5)],
        "shape": [ok, ClientUpdate("b", {"b": torch.ones(1), "w": torch.ones(2, 1)}, 5)],
        "NaN": [
            ok,
            ClientUpdate("b", {"b": torch.tensor([float("nan")]), "w": torch.ones(1, 2)}, 5),
        ],
        "Inf": [
            ok,
            ClientUpdate("b", {"b": torch.ones(1), "w": torch.tensor([[1.0, float("inf")]])}, 5),
        ],
        "two updates": [ok, _update("a", [0.0, 0.0], 0.0)],
        "samples": [ok, _update("b", [0.0, 0.0], 0.0, n=0)],
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
@pytest.mark.parametrize("name", ["fedavg", "median", "trimmed_mean"])
def test_malformed_updates_are_refused(name: str, case: str) -> None:
    updates = _bad_inputs()[case]

    with pytest.raises(InvalidUpdateError, match=case):
        get_strategy(name).aggregate(GLOBAL, updates)
