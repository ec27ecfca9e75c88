"""Weights as plain data: ``dict[str, Tensor]`` with sorted keys, float32, detached, on CPU.

Updates travel as deltas (update - global) in the same form. These helpers convert between a module
and that form, apply or compute deltas, and flatten to one float64 vector for the aggregation math.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from marketplace.errors import InvalidUpdateError

Weights = dict[str, torch.Tensor]
"""Model weights or a weight delta: parameter name -> float32 CPU tensor, keys sorted."""


def get_weights(model: nn.Module) -> Weights:
    """The model's floating-point state (parameters and float buffers) as sorted float32 copies.

    Non-float buffers (e.g. BatchNorm's ``num_batches_tracked``) are not part of the exchanged
    weights: they are not averaged.
    """
    state = model.state_dict()
    return {
        k: state[k].detach().to(device="cpu", dtype=torch.float32).clone()
        for k in sorted(state)
        if state[k].is_floating_point()
    }


def set_weights(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Load ``weights`` into ``model`` in place, checking names and shapes first."""
    reference = get_weights(model)
    check_same_layout(reference, weights, what="weights")
    model.load_state_dict(dict(weights), strict=False)


def check_same_layout(
    reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor], *, what: str
) -> None:
    """Raise ``InvalidUpdateError`` unless ``other`` has ``reference``'s names and shapes."""
    if set(other) != set(reference):
        missing = sorted(set(reference) - set(other))[:3]
        extra = sorted(set(other) - set(reference))[:3]
        raise InvalidUpdateError(
            f"{what} tensor names do not match the model (missing {missing}, unexpected {extra}): "
            "was it produced for this model spec?"
        )
    for name, ref in reference.items():
        tensor = other[name]
        if not isinstance(tensor, torch.Tensor):
            raise InvalidUpdateError(f"{what} entry {name!r} is not a tensor")
        if tuple(tensor.shape) != tuple(ref.shape):
            raise InvalidUpdateError(
                f"{what} tensor {name!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(ref.shape)}: was it produced for this model spec?"
            )
        if not tensor.is_floating_point():
            raise InvalidUpdateError(f"{what} tensor {name!r} has dtype {tensor.dtype}, not float")


def check_finite(weights: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Raise ``InvalidUpdateError`` if any entry holds NaN or Inf."""
    for name, tensor in weights.items():
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidUpdateError(f"{what} tensor {name!r} contains NaN or Inf: it is refused")


def weight_delta(new: Mapping[str, torch.Tensor], old: Mapping[str, torch.Tensor]) -> Weights:
    """``new - old`` per tensor, float32, sorted keys."""
    check_same_layout(old, new, what="weights")
    return {k: (new[k].double() - old[k].double()).float() for k in sorted(old)}


def apply_delta(weights: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> Weights:
    """``weights + delta`` computed in float64 and cast to float32 (bit-identical on every peer)."""
    check_same_layout(weights, delta, what="delta")
    return {k: (weights[k].double() + delta[k].double()).float() for k in sorted(weights)}


def zeros_like(weights: Mapping[str, torch.Tensor]) -> Weights:
    """A zero delta with ``weights``' layout."""
    return {k: torch.zeros_like(weights[k], dtype=torch.float32) for k in sorted(weights)}


def scale(delta: Mapping[str, torch.Tensor], factor: float) -> Weights:
    """``factor * delta`` (float64 math, float32 result)."""
    return {k: (delta[k].double() * factor).float() for k in sorted(delta)}


def l2_norm(delta: Mapping[str, torch.Tensor]) -> float:
    """Global L2 norm over all tensors (float64)."""
    return math.sqrt(sum(float(delta[k].double().pow(2).sum()) for k in sorted(delta)))


def flatten(weights: Mapping[str, torch.Tensor]) -> np.ndarray:
    """All tensors, in sorted-key order, as one float64 vector."""
    if not weights:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate(
        [weights[k].detach().double().reshape(-1).numpy() for k in sorted(weights)]
    )


def unflatten(vector: np.ndarray, template: Mapping[str, torch.Tensor]) -> Weights:
    """Split a flat vector back into ``template``'s layout, cast to float32."""
    out: Weights = {}
    offset = 0
    for k in sorted(template):
        n = template[k].numel()
        chunk = np.asarray(vector[offset : offset + n], dtype=np.float64)
        out[k] = torch.from_numpy(chunk.astype(np.float32)).reshape(template[k].shape)
        offset += n
    if offset != vector.shape[0]:
        raise InvalidUpdateError(
            f"flat vector has {vector.shape[0]} values, the layout needs {offset}"
        )
    return out


def weights_equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """True when both have the same names and bit-identical tensors."""
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
