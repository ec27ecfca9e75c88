"""The task document: everything a peer needs to take part, as canonical JSON on IPFS.

Its CID is the task's ``configCid`` on-chain, so it cannot change after creation. It names the
model (its spec), the local-training recipe, the aggregator, the bounds every update must meet,
how the oracles value contributions, and where the (encrypted) validation set is, with its sha256
commitment — the same value the contract stores as ``validationCommitment``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from marketplace.crypto.secagg import SecAggTerms
from marketplace.errors import ConfigError
from marketplace.fl.models import ModelSpec
from marketplace.fl.privacy import DPTerms
from marketplace.fl.strategy import Strategy, get_strategy
from marketplace.fl.train import TrainConfig
from marketplace.jsonlimits import shallow_json
from marketplace.protocol.round_batch import BatchTerms
from marketplace.valuation.config import ValuationConfig

FORMAT = "fedmarket-task/1"


@dataclass(frozen=True)
class ValidationRef:
    """The encrypted validation set (for the oracles only) and its commitment."""

    cid: str
    sha256: str  # hex; fl.canonical_digest of (x, y); equals the on-chain validationCommitment
    samples: int


@dataclass(frozen=True)
class TaskDocument:
    """A task's public description (``configCid``)."""

    model: ModelSpec
    train: TrainConfig
    validation: ValidationRef
    aggregator: str = "fedavg"
    aggregator_params: Mapping[str, Any] = field(default_factory=dict)
    max_update_bytes: int = 64 * 1024 * 1024
    max_update_norm: float | None = None
    valuation: ValuationConfig = ValuationConfig()
    dataset: Mapping[str, Any] = field(default_factory=dict)  # the data card, informational
    public_model: bool = False
    privacy: DPTerms | None = None  # differential privacy (None: none); absent from the JSON then
    secagg: SecAggTerms | None = None  # secure aggregation among peers (None: off; absent then)
    batches: BatchTerms | None = None  # batched round commitments (None: off; absent then)

    def strategy(self) -> Strategy:
        return get_strategy(self.aggregator, **dict(self.aggregator_params))

    def to_dict(self) -> dict[str, Any]:
        train = asdict(self.train)
        train.pop("seed", None)  # each trainer seeds its own shuffling
        train.pop("num_threads", None)  # a local choice, not part of the task
        privacy = {} if self.privacy is None else {"privacy": self.privacy.to_dict()}
        secagg = {} if self.secagg is None else {"secagg": self.secagg.to_dict()}
        batches = {} if self.batches is None else {"batches": self.batches.to_dict()}
        return {
            **privacy,
            **secagg,
            **batches,
            "format": FORMAT,
            "model": self.model.to_dict(),
            "train": train,
            "aggregator": {"name": self.aggregator, "params": dict(self.aggregator_params)},
            "bounds": {
                "max_update_bytes": self.max_update_bytes,
                "max_update_norm": self.max_update_norm,
            },
            "valuation": asdict(self.valuation),
            "validation": asdict(self.validation),
            "dataset": dict(self.dataset),
            "public_model": self.public_model,
        }

    def to_json(self) -> bytes:
        """Canonical bytes: sorted keys, no whitespace."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str, *, max_bytes: int = 1 << 20) -> TaskDocument:
        """Parse a task document; :class:`ConfigError` naming what is wrong."""
        if len(raw) > max_bytes:
            raise ConfigError(f"task document is {len(raw)} bytes, over the {max_bytes} limit")
        try:
            data = shallow_json(raw, max_depth=16)  # the requester's: free-form params
            if data.get("format") != FORMAT:
                raise ConfigError(
                    f"unsupported task document format {data.get('format')!r}: expected {FORMAT}"
                )
            bounds = data["bounds"]
            doc = cls(
                model=ModelSpec.from_dict(data["model"]),
                train=TrainConfig(**data["train"]),
                validation=ValidationRef(**data["validation"]),
                aggregator=str(data["aggregator"]["name"]),
                aggregator_params=dict(data["aggregator"].get("params", {})),
                max_update_bytes=int(bounds["max_update_bytes"]),
                max_update_norm=(
                    None if bounds["max_update_norm"] is None else float(bounds["max_update_norm"])
                ),
                valuation=ValuationConfig(**data.get("valuation", {})),
                dataset=dict(data.get("dataset", {})),
                public_model=bool(data.get("public_model", False)),
                privacy=DPTerms.from_dict(data["privacy"]) if "privacy" in data else None,
                secagg=SecAggTerms.from_dict(data["secagg"]) if "secagg" in data else None,
                batches=BatchTerms.from_dict(data["batches"]) if "batches" in data else None,
            )
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"malformed task document: {type(exc).__name__}: {exc}") from None
        doc.strategy()  # an unknown aggregator is refused now, not mid-task
        return doc
