"""Safe (de)serialization of weights: deterministic bytes out, hostile bytes refused clearly."""

from __future__ import annotations

import json
import re
import struct

import pytest
import safetensors.torch
import torch

from marketplace.errors import InvalidUpdateError
from marketplace.fl.serialization import WeightSpec, dump_weights, load_weights


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.bn = torch.nn.BatchNorm1d(3)  # buffers, including an int64 counter


@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def spec(model: TinyNet) -> WeightSpec:
    return WeightSpec.from_module(model)


def test_dump_then_load_returns_equal_tensors(model: TinyNet, spec: WeightSpec) -> None:
    # Prepare
    state = model.state_dict()
    # Execute
    loaded = load_weights(dump_weights(state), spec=spec, max_bytes=1 << 20)
    # Assert
    assert sorted(loaded) == sorted(state)
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor)
        assert loaded[name].dtype == tensor.dtype


def test_same_tensors_give_identical_bytes_whatever_the_order_or_layout(model: TinyNet) -> None:
    # Prepare: reversed insertion order, a transposed (non-contiguous) copy, a gradient-tracking one
    state = model.state_dict()
    reordered = {k: state[k] for k in reversed(list(state))}
    weight_t = state["fc.weight"].t().contiguous().t()  # same values, non-contiguous layout
    relaid = {**state, "fc.weight": weight_t, "fc.bias": state["fc.bias"].clone().requires_grad_()}
    # Execute
    a, b, c = dump_weights(state), dump_weights(reordered), dump_weights(relaid)
    # Assert
    assert not weight_t.is_contiguous()
    assert a == b == c


def test_view_into_a_larger_tensor_is_saved_alone() -> None:
    # Prepare
    big = torch.arange(10, dtype=torch.float32)
    state = {"part": big[2:5]}
    # Execute
    blob = dump_weights(state)
    # Assert
    assert len(blob) < 200
    assert torch.equal(safetensors.torch.load(blob)["part"], big[2:5])


def test_oversize_blob_is_refused_before_parsing(model: TinyNet, spec: WeightSpec) -> None:
    # Prepare
    blob = dump_weights(model.state_dict())
    # Execute / Assert
    with pytest.raises(
        InvalidUpdateError, match=f"update of {len(blob)} bytes exceeds max_bytes=100"
    ):
        load_weights(blob, spec=spec, max_bytes=100)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_is_refused_naming_the_tensor(model: TinyNet, spec: WeightSpec, bad) -> None:
    # Prepare
    state = model.state_dict()
    state["fc.bias"][1] = bad
    # Execute / Assert
    with pytest.raises(InvalidUpdateError, match=re.escape("tensor 'fc.bias' contains NaN or Inf")):
        load_weights(dump_weights(state), spec=spec, max_bytes=1 << 20)


def test_wrong_shape_is_refused_naming_the_tensor(model: TinyNet, spec: WeightSpec) -> None:
    # Prepare
    state = {**model.state_dict(), "fc.weight": torch.zeros(3, 5)}
    # Execute / Assert
    with pytest.raises(
        InvalidUpdateError, match=r"tensor 'fc.weight' has shape \[3, 5\], expected \[3, 4\]"
    ):
        load_weights(dump_weights(state), spec=spec, max_bytes=1 << 20)


def test_wrong_dtype_is_refused_naming_the_tensor(model: TinyNet, spec: WeightSpec) -> None:
    # Prepare
    state = {**model.state_dict(), "fc.bias": torch.zeros(3, dtype=torch.float64)}
    # Execute / Assert
    with pytest.raises(
        InvalidUpdateError, match=re.escape("tensor 'fc.bias' has dtype F64, expected F32")
    ):
        load_weights(dump_weights(state), spec=spec, max_bytes=1 << 20)


def test_unknown_and_missing_tensors_are_refused(model: TinyNet, spec: WeightSpec) -> None:
    # Prepare
    state = model.state_dict()
    extra = {**state, "backdoor.weight": torch.zeros(1)}
    missing = {k: v for k, v in state.items() if k != "bn.running_var"}
    # Execute / Assert
    with pytest.raises(
        InvalidUpdateError, match=re.escape("tensor 'backdoor.weight', which the model spec lacks")
    ):
        load_weights(dump_weights(extra), spec=spec, max_bytes=1 << 20)
    with pytest.raises(InvalidUpdateError, match=re.escape("lacks tensor 'bn.running_var'")):
        load_weights(dump_weights(missing), spec=spec, max_bytes=1 << 20)


def test_norm_above_the_bound_is_refused_naming_the_tensor(
    model: TinyNet, spec: WeightSpec
) -> None:
    # Prepare
    state = model.state_dict()
    state["fc.weight"].fill_(10.0)  # 12 entries of 10: L2 norm ≈ 34.6
    blob = dump_weights(state)
    # Execute / Assert
    with pytest.raises(InvalidUpdateError, match=re.escape("tensor 'fc.weight' has L2 norm 34.64")):
        load_weights(blob, spec=spec, max_bytes=1 << 20, max_norm=30.0)
    with pytest.raises(InvalidUpdateError, match="total L2 norm"):
        load_weights(blob, spec=spec, max_bytes=1 << 20, max_total_norm=30.0)
    assert load_weights(blob, spec=spec, max_bytes=1 << 20, max_norm=40.0)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "too short"),
        (struct.pack("<Q", 10**9) + b"{}", "out of bounds"),
        (struct.pack("<Q", 4) + b"{x}!", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (b"\x80\x04\x95" + b"\x00" * 40, "out of bounds"),  # a pickle is refused, never unpickled
    ],
)
def test_malformed_blobs_are_refused(spec: WeightSpec, blob: bytes, message: str) -> None:
    # Execute / Assert
    with pytest.raises(InvalidUpdateError, match=message):
        load_weights(blob, spec=spec, max_bytes=1 << 20)


def test_truncated_data_section_is_refused(model: TinyNet, spec: WeightSpec) -> None:
    # Prepare
    blob = dump_weights(model.state_dict())
    # Execute / Assert
    with pytest.raises(InvalidUpdateError, match="not valid safetensors"):
        load_weights(blob[:-8], spec=spec, max_bytes=1 << 20)


def test_overlapping_data_offsets_are_refused(model: TinyNet, spec: WeightSpec) -> None:
    # Prepare: same names/shapes/dtypes, but one tensor's bytes overlap another's
    blob = dump_weights(model.state_dict())
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    header["fc.bias"]["data_offsets"] = header["bn.bias"]["data_offsets"]
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    forged = struct.pack("<Q", len(body)) + body + blob[8 + length :]
    # Execute / Assert
    with pytest.raises(InvalidUpdateError, match="not valid safetensors"):
        load_weights(forged, spec=spec, max_bytes=1 << 20)


def test_spec_total_bytes_matches_the_data_section(model: TinyNet, spec: WeightSpec) -> None:
    # Prepare
    blob = dump_weights(model.state_dict())
    (length,) = struct.unpack("<Q", blob[:8])
    # Execute / Assert
    assert spec.total_bytes == len(blob) - 8 - length
