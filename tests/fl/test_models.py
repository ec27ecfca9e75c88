"""Model specs (canonical JSON), the registry and the built models' shapes and seeding."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from marketplace.errors import ConfigError
from marketplace.fl.models import ModelSpec, build_model, count_parameters, register_model
from marketplace.fl.weights import get_weights, weights_equal

EXAMPLE = {"arch": "mlp", "input_dim": 64, "hidden": [64], "num_classes": 10, "seed": 0}


def test_spec_json_is_canonical_sorted_and_compact() -> None:
    spec = ModelSpec.from_dict(EXAMPLE)

    text = spec.to_json()

    assert text == '{"arch":"mlp","hidden":[64],"input_dim":64,"num_classes":10,"seed":0}'
    assert ModelSpec.from_json(text) == spec
    assert ModelSpec.from_dict(dict(reversed(list(EXAMPLE.items())))).digest() == spec.digest()


def test_spec_digest_changes_with_any_field() -> None:
    base = ModelSpec.from_dict(EXAMPLE)

    changed = ModelSpec.from_dict({**EXAMPLE, "seed": 1})

    assert base.digest() != changed.digest()
    assert len(base.digest()) == 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**EXAMPLE, "hiden": [3]}, "unknown keys"),
        ({"arch": "mlp", "input_dim": 64}, "missing"),
        ({**EXAMPLE, "num_classes": 1}, "at least 2"),
        ({**EXAMPLE, "input_dim": -3}, "positive integer"),
        ({**EXAMPLE, "arch": "mlp", "hidden": []}, "needs 'hidden'"),
        ({**EXAMPLE, "arch": "mlp", "hidden": [64, 0]}, "must be positive"),
    ],
)
def test_bad_specs_are_config_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelSpec.from_dict(data)


def test_bad_json_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelSpec.from_json("{arch: mlp")


@pytest.mark.parametrize(
    ("spec", "params"),
    [
        (ModelSpec(arch="logreg", input_dim=64, num_classes=10), 64 * 10 + 10),
        (
            ModelSpec(arch="mlp", input_dim=64, hidden=(64,), num_classes=10),
            64 * 64 + 64 + 64 * 10 + 10,
        ),
        (
            ModelSpec(arch="cnn", input_dim=64, num_classes=10, input_shape=(1, 8, 8)),
            (1 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 2 * 2 * 10 + 10),
        ),
    ],
)
def test_builtin_models_map_a_batch_to_logits(spec: ModelSpec, params: int) -> None:
    model = build_model(spec)

    out = model(torch.zeros(5, 64))

    assert out.shape == (5, 10)
    assert count_parameters(model) == params


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    spec = ModelSpec.from_dict(EXAMPLE)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)

    first = get_weights(build_model(spec))
    second = get_weights(build_model(spec))
    other = get_weights(build_model(ModelSpec.from_dict({**EXAMPLE, "seed": 7})))

    assert weights_equal(first, second)
    assert not weights_equal(first, other)
    assert torch.equal(torch.rand(1), expected_next)
    assert list(first) == sorted(first) and all(t.dtype == torch.float32 for t in first.values())


def test_custom_model_by_import_path() -> None:
    spec = ModelSpec.from_dict(
        {
            "arch": "custom",
            "input_dim": 64,
            "num_classes": 10,
            "import_path": "torch.nn:Linear",
            "kwargs": {"in_features": 64, "out_features": 10},
        }
    )

    model = build_model(spec)

    assert isinstance(model, nn.Linear)
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert '"import_path":"torch.nn:Linear"' in spec.to_json()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("torch.nn.Linear", "must look like"),
        ("no_such_pkg.mod:Net", "cannot import"),
        ("torch.nn:NoSuchThing", "is not a class"),
    ],
)
def test_bad_custom_import_paths_are_config_errors(path: str, message: str) -> None:
    spec = ModelSpec(arch="custom", input_dim=4, num_classes=2, import_path=path)

    with pytest.raises(ConfigError, match=message):
        build_model(spec)


def test_registered_architecture_builds_through_its_factory() -> None:
    def tiny(spec: ModelSpec) -> nn.Module:
        return nn.Sequential(
            nn.Linear(spec.input_dim, 3), nn.Tanh(), nn.Linear(3, spec.num_classes)
        )

    register_model("tiny-test-net", tiny, replace=True)

    model = build_model(ModelSpec(arch="tiny-test-net", input_dim=6, num_classes=2))

    assert model(torch.zeros(2, 6)).shape == (2, 2)
    with pytest.raises(ConfigError, match="already registered"):
        register_model("tiny-test-net", tiny)


def test_unknown_arch_and_bad_cnn_shape_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model architecture 'resnet'"):
        build_model(ModelSpec(arch="resnet", input_dim=64, num_classes=10))
    with pytest.raises(ConfigError, match="C\\*H\\*W == input_dim"):
        build_model(ModelSpec(arch="cnn", input_dim=64, num_classes=10, input_shape=(1, 4, 4)))


def test_mlp_options_tanh_units_and_clamped_inputs() -> None:
    """``kwargs`` of an MLP choose tanh units and clamp the inputs: an input beyond the clip
    gives the same logits as one at the clip, and the default (no options) does not clamp."""
    spec = ModelSpec(
        arch="mlp", input_dim=4, hidden=(8,), num_classes=3,
        kwargs={"activation": "tanh", "input_clip": 3.0},
    )  # fmt: skip
    model = build_model(spec)
    x = torch.tensor([[100.0, -50.0, 0.5, 3.0]])
    at_clip = torch.tensor([[3.0, -3.0, 0.5, 3.0]])

    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert torch.equal(model(x), model(at_clip))
    plain = build_model(ModelSpec(arch="mlp", input_dim=4, hidden=(8,), num_classes=3))
    assert not torch.equal(plain(x), plain(at_clip))
    assert spec.to_dict()["kwargs"] == {"activation": "tanh", "input_clip": 3.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "sigmoid"}, "'activation'"),
        ({"input_clip": -1}, "'input_clip' must be a number >= 0"),
        ({"input_clip": "3"}, "'input_clip' must be a number >= 0"),
        ({"dropout": 0.5}, "unknown kwargs ['dropout']"),
    ],
)
def test_bad_mlp_options_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_model(ModelSpec(arch="mlp", input_dim=4, hidden=(4,), num_classes=3, kwargs=kwargs))
