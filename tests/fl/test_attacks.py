"""Behaviours: what each attack publishes, by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marketplace.errors import ConfigError
from marketplace.fl.attacks import BEHAVIOURS, RoundContext, get_behaviour
from marketplace.fl.weights import l2_norm

GLOBAL = {"b": torch.zeros(2), "w": torch.ones(2, 3)}
DELTA = {"b": torch.tensor([1.0, -2.0]), "w": torch.full((2, 3), 0.5)}
OTHER = {"b": torch.tensor([9.0, 9.0]), "w": torch.full((2, 3), 3.0)}


def _ctx(sender: str = "t01", seed: int = 0) -> RoundContext:
    return RoundContext(1, sender, GLOBAL, {"t00": OTHER, "t01": DELTA}, seed)


def test_honest_publishes_what_it_trained() -> None:
    out = get_behaviour("honest").craft_update(DELTA, _ctx())

    assert out is DELTA


def test_sign_flip_and_scaled_transform_the_trained_delta() -> None:
    flipped = get_behaviour("sign_flip").craft_update(DELTA, _ctx())
    boosted = get_behaviour("scaled", factor=5.0).craft_update(DELTA, _ctx())

    torch.testing.assert_close(flipped["b"], torch.tensor([-1.0, 2.0]))
    torch.testing.assert_close(boosted["w"], torch.full((2, 3), 2.5))


def test_gaussian_noise_replaces_the_update_with_seeded_noise() -> None:
    behaviour = get_behaviour("gaussian_noise", std=2.0)

    first = behaviour.craft_update(None, _ctx(seed=5))
    again = behaviour.craft_update(None, _ctx(seed=5))

    assert not behaviour.trains
    assert all(torch.equal(first[k], again[k]) for k in GLOBAL)
    assert not torch.equal(first["w"], DELTA["w"])


def test_free_rider_publishes_zero_or_a_tiny_noise_delta() -> None:
    zero = get_behaviour("free_rider").craft_update(None, _ctx())
    tiny = get_behaviour("free_rider", noise_std=1e-4).craft_update(None, _ctx())

    assert l2_norm(zero) == 0.0
    assert 0 < l2_norm(tiny) < 1e-2


def test_copier_resubmits_another_trainers_update() -> None:
    copy_any = get_behaviour("copier").craft_update(None, _ctx(sender="t02"))
    copy_target = get_behaviour("copier", target="t01").craft_update(None, _ctx(sender="t02"))

    assert all(torch.equal(copy_any[k], OTHER[k]) for k in GLOBAL)  # first honest sender: t00
    assert all(torch.equal(copy_target[k], DELTA[k]) for k in GLOBAL)


def test_copier_without_anyone_to_copy_is_a_config_error() -> None:
    lonely = RoundContext(1, "t00", GLOBAL, {}, 0)

    with pytest.raises(ConfigError, match="nobody to copy"):
        get_behaviour("copier").craft_update(None, lonely)


def test_label_flip_mirrors_labels_on_the_data_side() -> None:
    x = np.zeros((4, 2), dtype=np.float32)

    _, y = get_behaviour("label_flip").poison_data(
        x, np.array([0, 1, 8, 9]), num_classes=10, seed=0
    )

    np.testing.assert_array_equal(y, [9, 8, 1, 0])


def test_every_attack_is_marked_dishonest_and_named() -> None:
    assert sorted(BEHAVIOURS) == [
        "alie",
        "backdoor",
        "copier",
        "free_rider",
        "gaussian_noise",
        "honest",
        "ipm",
        "label_flip",
        "min_max",
        "min_sum",
        "scaled",
        "sign_flip",
    ]
    assert [n for n, cls in BEHAVIOURS.items() if cls.honest] == ["honest"]


def test_unknown_behaviour_or_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown behaviour 'sybil'"):
        get_behaviour("sybil")
    with pytest.raises(ConfigError, match="bad parameters"):
        get_behaviour("sign_flip", std=1.0)
