"""Model weights and updates as bytes: safetensors out, validated safetensors in. Never pickle.

:func:`dump_weights` is deterministic (safetensors orders tensors and header keys itself; we pass
detached, contiguous CPU tensors and no metadata), so honest peers holding the same tensors produce
the same bytes and the same sha256. :func:`load_weights` treats its input as hostile: it checks the
size, then the header (names, dtypes, shapes against the task's :class:`WeightSpec`) before any
tensor is materialized, then NaN/Inf and norm bounds, and raises :class:`InvalidUpdateError` with
one line naming the offending tensor.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import safetensors
import safetensors.torch
import torch
from safetensors.torch import load as load_safetensors  # a plain tensor format: no code runs

from marketplace.errors import InvalidUpdateError
from marketplace.jsonlimits import shallow_json

# safetensors' dtype names for the torch dtypes a model may hold.
_DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_MAX_HEADER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TensorSpec:
    """The expected shape and dtype of one named tensor."""

    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class WeightSpec:
    """The tensors a model's weights (or an update to them) must consist of, by name."""

    tensors: Mapping[str, TensorSpec]

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor]) -> WeightSpec:
        """The spec of a state dict (names, shapes, dtypes)."""
        for name, tensor in state.items():
            if tensor.dtype not in _DTYPE_NAMES:
                raise InvalidUpdateError(f"tensor {name!r} has unsupported dtype {tensor.dtype}")
        return cls({k: TensorSpec(tuple(v.shape), v.dtype) for k, v in sorted(state.items())})

    @classmethod
    def from_module(cls, module: torch.nn.Module) -> WeightSpec:
        """The spec of ``module.state_dict()`` (parameters and buffers)."""
        return cls.from_state(module.state_dict())

    @property
    def total_bytes(self) -> int:
        """Bytes of tensor data a conforming blob holds (its header comes on top)."""
        return sum(
            math.prod(s.shape) * torch.empty((), dtype=s.dtype).element_size()
            for s in self.tensors.values()
        )


def dump_weights(state: Mapping[str, torch.Tensor]) -> bytes:
    """Serialize named tensors to safetensors bytes, identical for identical tensors."""
    prepared: dict[str, torch.Tensor] = {}
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise InvalidUpdateError(f"{name!r} is a {type(tensor).__name__}, not a tensor")
        if tensor.dtype not in _DTYPE_NAMES:
            raise InvalidUpdateError(f"tensor {name!r} has unsupported dtype {tensor.dtype}")
        t = tensor.detach().to("cpu").contiguous()
        if t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # a view into a larger (or shared) storage: safetensors wants it alone
        prepared[name] = t
    return safetensors.torch.save(prepared)


def _read_header(blob: bytes) -> dict[str, Any]:
    if len(blob) < 8:
        raise InvalidUpdateError(f"update of {len(blob)} bytes is too short to be safetensors")
    (length,) = struct.unpack("<Q", blob[:8])
    if length > min(len(blob) - 8, _MAX_HEADER_BYTES):
        raise InvalidUpdateError(f"update header length {length} is out of bounds: truncated blob?")
    try:
        header = shallow_json(blob[8 : 8 + length])  # a peer's: nesting bounded
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidUpdateError(f"update header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InvalidUpdateError("update header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def _check_header(header: Mapping[str, Any], spec: WeightSpec) -> None:
    unknown = sorted(set(header) - set(spec.tensors))
    if unknown:
        raise InvalidUpdateError(f"update has tensor {unknown[0]!r}, which the model spec lacks")
    missing = sorted(set(spec.tensors) - set(header))
    if missing:
        raise InvalidUpdateError(f"update lacks tensor {missing[0]!r} of the model spec")
    for name, expected in spec.tensors.items():
        entry = header[name]
        if not isinstance(entry, dict):
            raise InvalidUpdateError(f"tensor {name!r}: malformed header entry")
        dtype_name = _DTYPE_NAMES[expected.dtype]
        if entry.get("dtype") != dtype_name:
            raise InvalidUpdateError(
                f"tensor {name!r} has dtype {entry.get('dtype')}, expected {dtype_name}"
            )
        shape = entry.get("shape")
        if not isinstance(shape, list) or tuple(shape) != expected.shape:
            raise InvalidUpdateError(
                f"tensor {name!r} has shape {shape}, expected {list(expected.shape)}"
            )


def load_weights(
    blob: bytes,
    *,
    spec: WeightSpec,
    max_bytes: int,
    max_norm: float | None = None,
    max_total_norm: float | None = None,
) -> dict[str, torch.Tensor]:
    """Parse and validate safetensors bytes from a peer.

    Parameters
    ----------
    blob:
        The bytes (already decrypted and digest-checked).
    spec:
        The names, shapes and dtypes the task's model has; anything else is refused.
    max_bytes:
        Refuse larger blobs before parsing anything.
    max_norm:
        Bound on the L2 norm of each floating-point tensor.
    max_total_norm:
        Bound on the L2 norm of all floating-point tensors together.
    """
    if len(blob) > max_bytes:
        raise InvalidUpdateError(f"update of {len(blob)} bytes exceeds max_bytes={max_bytes}")
    _check_header(_read_header(blob), spec)
    try:
        tensors = load_safetensors(bytes(blob))
    except Exception as exc:  # SafetensorError and friends: offsets, lengths, overlaps
        raise InvalidUpdateError(f"update is not valid safetensors ({exc})") from None
    total_sq = 0.0
    for name in sorted(tensors):
        tensor = tensors[name]
        if not tensor.is_floating_point():
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidUpdateError(f"tensor {name!r} contains NaN or Inf")
        norm = float(torch.linalg.vector_norm(tensor, dtype=torch.float64))
        if max_norm is not None and norm > max_norm:
            raise InvalidUpdateError(
                f"tensor {name!r} has L2 norm {norm:.6g}, above the bound {max_norm:.6g}"
            )
        total_sq += norm * norm
    if max_total_norm is not None and math.sqrt(total_sq) > max_total_norm:
        raise InvalidUpdateError(
            f"update has total L2 norm {math.sqrt(total_sq):.6g}, above the bound "
            f"{max_total_norm:.6g}"
        )
    return tensors
