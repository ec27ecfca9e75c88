"""Models from a spec: the canonical ``ModelSpec``, the architecture registry and ``build_model``.

A task names its model by a small JSON spec; the sha256 of the spec's canonical JSON goes on-chain,
so every trainer builds the same architecture with the same initial weights (seeded).

Example
-------
>>> spec = ModelSpec.from_dict(
...     {"arch": "mlp", "input_dim": 64, "hidden": [64], "num_classes": 10, "seed": 0})
>>> spec.to_json()
'{"arch":"mlp","hidden":[64],"input_dim":64,"num_classes":10,"seed":0}'
>>> model = build_model(spec)  # same weights on every machine
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from marketplace.errors import ConfigError
from marketplace.jsonlimits import shallow_json

ModelFactory = Callable[["ModelSpec"], nn.Module]

# Keys a spec may carry; `arch`, `input_dim`, `num_classes` and `seed` are always written.
_ALWAYS = ("arch", "input_dim", "num_classes", "seed")
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "hidden": (),
    "channels": (),
    "input_shape": (),
    "import_path": "",
    "kwargs": {},
}


@dataclass(frozen=True)
class ModelSpec:
    """What to build: an architecture id and its shape parameters, plus the init seed.

    Parameters
    ----------
    arch : str
        A registered architecture: ``"logreg"``, ``"mlp"``, ``"cnn"``, ``"custom"`` or one added
        with :func:`register_model`.
    input_dim : int
        Number of input features (a flat vector; the CNN reshapes it to ``input_shape``).
    num_classes : int
        Number of output logits.
    seed : int
        Seed of the initial weights.
    hidden : tuple of int
        MLP hidden layer widths.
    channels : tuple of int
        CNN convolution channels (default ``(16, 32)``).
    input_shape : tuple of int
        CNN input as ``(C, H, W)``; its product must be ``input_dim`` (default ``(1, 8, 8)``).
    import_path : str
        For ``arch="custom"``: ``"package.module:Class"`` of a locally installed ``nn.Module``.
    kwargs : mapping
        For ``arch="custom"``: JSON keyword arguments given to the class. For ``arch="mlp"``:
        optional ``activation`` (``"relu"``, the default, or ``"tanh"``) and ``input_clip``
        (clamp each input feature to ``[-c, c]`` before the first layer; the DP-SGD default
        model, :data:`~marketplace.fl.dpsgd.DPSGD_MODEL_OPTIONS`).
    """

    arch: str
    input_dim: int
    num_classes: int
    seed: int = 0
    hidden: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()
    input_shape: tuple[int, ...] = ()
    import_path: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.arch:
            raise ConfigError("model spec has an empty 'arch': name a registered architecture")
        for name in ("input_dim", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model spec {name!r} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ConfigError("model spec 'num_classes' must be at least 2")
        # Normalise sequences so that a spec read from JSON lists equals one built from tuples.
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        # An empty list must not silently mean "the default width": it reads as "no hidden layer".
        if self.arch == "mlp" and not self.hidden:
            raise ConfigError(
                "model spec arch 'mlp' needs 'hidden' layer widths, e.g. [64]; "
                "for a model without hidden layers use arch 'logreg'"
            )
        if any(h < 1 for h in self.hidden):
            raise ConfigError(
                f"model spec 'hidden' widths must be positive, got {list(self.hidden)}"
            )

    # --- canonical JSON ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict: the always-present keys plus non-default options."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _ALWAYS}
        for key, default in _OPTIONAL_DEFAULTS.items():
            value = getattr(self, key)
            if value != default:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): its sha256 identifies the spec on-chain."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def digest(self) -> str:
        """Hex sha256 of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode("ascii")).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Parse a spec dict; unknown keys are refused so that two readers never disagree."""
        unknown = set(data) - set(_ALWAYS) - set(_OPTIONAL_DEFAULTS)
        if unknown:
            raise ConfigError(
                f"model spec has unknown keys {sorted(unknown)}: allowed are "
                f"{sorted((*_ALWAYS, *_OPTIONAL_DEFAULTS))}"
            )
        missing = [k for k in ("arch", "input_dim", "num_classes") if k not in data]
        if missing:
            raise ConfigError(f"model spec is missing {missing}: add them to the spec")
        kwargs = data.get("kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise ConfigError("model spec 'kwargs' must be a JSON object")
        return cls(
            arch=str(data["arch"]),
            input_dim=data["input_dim"],
            num_classes=data["num_classes"],
            seed=int(data.get("seed", 0)),
            hidden=tuple(data.get("hidden", ())),
            channels=tuple(data.get("channels", ())),
            input_shape=tuple(data.get("input_shape", ())),
            import_path=str(data.get("import_path", "")),
            kwargs=kwargs,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        """Parse a spec from JSON text."""
        try:
            data = shallow_json(text, max_depth=16)  # a requester's (via the task)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"model spec is not valid JSON ({exc.msg}): fix the spec file"
            ) from None
        except ValueError as exc:  # nested too deep (NestingError) or not UTF-8
            raise ConfigError(f"model spec is not valid JSON ({exc}): fix the spec file") from None
        if not isinstance(data, dict):
            raise ConfigError("model spec JSON must be an object")
        return cls.from_dict(data)


# --- built-in architectures ----------------------------------------------------------------
class LogisticRegression(nn.Module):
    """Multinomial logistic regression: one linear layer producing logits."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)  # (B, D) -> (B, K)
        return out


MLP_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """Fully connected network with ReLU (or tanh) hidden layers, optionally clamping its inputs.

    ``input_clip = c > 0`` clamps every feature to ``[-c, c]`` first: a fixed function of each
    record, so it costs no privacy, and under DP-SGD it keeps the rare outlying (standardised)
    pixel from dominating a per-sample gradient that is then clipped.
    """

    def __init__(
        self,
        input_dim: int,
        hidden: tuple[int, ...],
        num_classes: int,
        *,
        activation: str = "relu",
        input_clip: float = 0.0,
    ) -> None:
        super().__init__()
        act = MLP_ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Hardtanh(-input_clip, input_clip)] if input_clip else []
        width = input_dim
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)  # (B, D) -> (B, K)
        return out


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (padding 1, ReLU), a 2x2 max-pool after each, then a linear head.

    Sized for 8x8 digits: ``(B, 64) -> (B, 1, 8, 8) -> (B, 16, 4, 4) -> (B, 32, 2, 2) -> (B, K)``.
    """

    def __init__(
        self, input_shape: tuple[int, ...], channels: tuple[int, ...], num_classes: int
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.input_shape = (c, h, w)
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        if h < 1 or w < 1:
            raise ConfigError(
                f"cnn with {len(channels)} pooling layers is too deep for input {input_shape}: "
                "use fewer 'channels'"
            )
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.input_shape)  # (B, D) -> (B, C, H, W)
        out: torch.Tensor = self.head(self.features(x).flatten(1))  # (B, K)
        return out


def _build_logreg(spec: ModelSpec) -> nn.Module:
    return LogisticRegression(spec.input_dim, spec.num_classes)


def _build_mlp(spec: ModelSpec) -> nn.Module:
    options = dict(spec.kwargs)
    activation = options.pop("activation", "relu")
    input_clip = options.pop("input_clip", 0.0)
    if options:
        raise ConfigError(
            f"mlp model spec has unknown kwargs {sorted(options)}: allowed are "
            "'activation' and 'input_clip'"
        )
    if activation not in MLP_ACTIVATIONS:
        raise ConfigError(
            f"mlp 'activation' {activation!r} is not one of {sorted(MLP_ACTIVATIONS)}: pick one"
        )
    if isinstance(input_clip, bool) or not isinstance(input_clip, int | float) or input_clip < 0:
        raise ConfigError(f"mlp 'input_clip' must be a number >= 0 (0: off), got {input_clip!r}")
    return MLP(
        spec.input_dim,
        spec.hidden,
        spec.num_classes,
        activation=activation,
        input_clip=float(input_clip),
    )


def _build_cnn(spec: ModelSpec) -> nn.Module:
    shape = spec.input_shape or (1, 8, 8)
    if len(shape) != 3 or shape[0] * shape[1] * shape[2] != spec.input_dim:
        raise ConfigError(
            f"cnn 'input_shape' {list(shape)} must be [C, H, W] with C*H*W == input_dim "
            f"({spec.input_dim})"
        )
    return SmallCNN(shape, spec.channels or (16, 32), spec.num_classes)


def _build_custom(spec: ModelSpec) -> nn.Module:
    """Import ``package.module:Class`` (already installed locally: nothing is fetched)."""
    module_name, _, attr = spec.import_path.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"custom model 'import_path' {spec.import_path!r} must look like 'package.module:Class'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import custom model module {module_name!r} ({exc}): install it on this node"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(
            f"custom model {spec.import_path!r}: {attr!r} is not a class in the module"
        )
    model = factory(**spec.kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"custom model {spec.import_path!r} did not return a torch.nn.Module")
    return model


_REGISTRY: dict[str, ModelFactory] = {
    "logreg": _build_logreg,
    "mlp": _build_mlp,
    "cnn": _build_cnn,
    "custom": _build_custom,
}
_REGISTRY_LOCK = threading.Lock()


def register_model(name: str, factory: ModelFactory, *, replace: bool = False) -> None:
    """Register an architecture so that specs with ``"arch": name`` build through ``factory``.

    ``factory(spec)`` must return a fresh ``nn.Module``; :func:`build_model` seeds it.
    """
    with _REGISTRY_LOCK:
        if name in _REGISTRY and not replace:
            raise ConfigError(
                f"model architecture {name!r} is already registered: pick another name"
            )
        _REGISTRY[name] = factory


def registered_models() -> tuple[str, ...]:
    """Names of the registered architectures, sorted."""
    return tuple(sorted(_REGISTRY))


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the spec's model with deterministic initial weights (seeded by ``spec.seed``).

    The global torch RNG is left untouched (the build runs under ``torch.random.fork_rng``).
    """
    factory = _REGISTRY.get(spec.arch)
    if factory is None:
        raise ConfigError(
            f"unknown model architecture {spec.arch!r}: use one of {list(registered_models())} "
            "or register_model() it"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = factory(spec)
    return model.float().eval()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
