"""DP: clipping bounds the norm, noise is seeded, the accountant grows with rounds."""

from __future__ import annotations

import itertools

import pytest
import torch

from marketplace.errors import ConfigError
from marketplace.fl.privacy import (
    PrivacyAccountant,
    PrivacyConfig,
    add_gaussian_noise,
    clip_update,
    noise_multiplier_for_epsilon,
    privatize,
)
from marketplace.fl.weights import l2_norm

DELTA = {"a": torch.full((3,), 2.0), "b": torch.full((2, 2), -1.0)}  # norm sqrt(12 + 4) = 4


def test_clipping_scales_a_large_update_to_the_clip_norm() -> None:
    clipped, before = clip_update(DELTA, 1.0)

    assert before == pytest.approx(4.0)
    assert l2_norm(clipped) == pytest.approx(1.0, rel=1e-6)
    torch.testing.assert_close(clipped["a"], torch.full((3,), 0.5))


def test_clipping_leaves_a_small_update_unchanged() -> None:
    clipped, _ = clip_update(DELTA, 10.0)

    assert all(torch.equal(clipped[k], DELTA[k]) for k in DELTA)


def test_noise_is_reproducible_under_its_seed_and_has_the_right_scale() -> None:
    zeros = {"w": torch.zeros(20000)}

    first = add_gaussian_noise(zeros, 0.5, seed=3)
    again = add_gaussian_noise(zeros, 0.5, seed=3)
    other = add_gaussian_noise(zeros, 0.5, seed=4)

    assert torch.equal(first["w"], again["w"])
    assert not torch.equal(first["w"], other["w"])
    assert float(first["w"].std()) == pytest.approx(0.5, rel=0.03)


def test_privatize_clips_before_adding_noise() -> None:
    noiseless = privatize(DELTA, PrivacyConfig(clip_norm=2.0, noise_multiplier=0.0), seed=0)
    noisy = privatize(DELTA, PrivacyConfig(clip_norm=2.0, noise_multiplier=1.0), seed=0)

    assert l2_norm(noiseless) == pytest.approx(2.0, rel=1e-6)
    assert l2_norm(noisy) != pytest.approx(2.0, rel=1e-3)


def test_accountant_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    accountant = PrivacyAccountant(delta=1e-5)
    history = []
    for _ in range(5):
        accountant.step("t00", noise_multiplier=1.0)
        accountant.step("t01", noise_multiplier=4.0)
        history.append(accountant.epsilon("t00"))

    assert all(a < b for a, b in itertools.pairwise(history))
    assert accountant.epsilon("t01") < accountant.epsilon("t00")
    assert accountant.epsilon("never-trained") == 0.0
    assert list(accountant.epsilons()) == ["t00", "t01"]


def test_noise_multiplier_for_target_epsilon_meets_the_target() -> None:
    sigma = noise_multiplier_for_epsilon(8.0, delta=1e-5, rounds=20)
    accountant = PrivacyAccountant(delta=1e-5)
    for _ in range(20):
        accountant.step("t", noise_multiplier=sigma)

    assert 7.5 < accountant.epsilon("t") <= 8.0
    assert noise_multiplier_for_epsilon(8.0, delta=1e-5, rounds=40) > sigma


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip_norm": 0.0, "noise_multiplier": 1.0},
        {"clip_norm": 1.0, "noise_multiplier": -1.0},
        {"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": 1.0},
    ],
)
def test_bad_privacy_configs_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="DP"):
        PrivacyConfig(**kwargs)


def test_accounting_without_noise_is_refused() -> None:
    with pytest.raises(ConfigError, match="noise_multiplier > 0"):
        PrivacyAccountant().step("t", noise_multiplier=0.0)
