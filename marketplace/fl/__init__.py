"""Federated learning core: models, data, partitions, local training, aggregation, DP, attacks,
and an in-process simulator. Usable with no chain at all.

Example
-------
>>> from marketplace import fl
>>> splits = fl.split_dataset(fl.load_dataset("digits"), seed=0)
>>> parts = fl.partition("iid", splits.train.y, num_clients=8, seed=0)
>>> spec = fl.ModelSpec(arch="mlp", input_dim=64, hidden=(64,), num_classes=10)
>>> result = fl.simulate(model_spec=spec, splits=splits, partition=parts, rounds=5)

(``marketplace.fl.serialization`` turns weights into safetensors bytes; it is not imported here.)
"""

from __future__ import annotations

from marketplace.fl.attacks import BEHAVIOURS, Behaviour, RoundContext, get_behaviour
from marketplace.fl.data import (
    Dataset,
    DatasetCard,
    DataSplits,
    canonical_bytes,
    canonical_digest,
    load_dataset,
    split_dataset,
)
from marketplace.fl.dpsgd import DPSGDAccountant, DPSGDResult, train_dpsgd
from marketplace.fl.models import (
    ModelSpec,
    build_model,
    count_parameters,
    register_model,
    registered_models,
)
from marketplace.fl.partition import (
    LabelSkew,
    Partition,
    add_label_noise,
    dirichlet_partition,
    iid_partition,
    label_skew,
    partition,
    quantity_skew_partition,
    shard_partition,
)
from marketplace.fl.privacy import (
    DPTerms,
    PrivacyAccountant,
    PrivacyConfig,
    add_gaussian_noise,
    clip_update,
    noise_multiplier_for_epsilon,
    privatize,
)
from marketplace.fl.simulate import RoundMetrics, RoundRecord, SimulationResult, simulate
from marketplace.fl.strategy import STRATEGIES, Strategy, get_strategy
from marketplace.fl.train import (
    EvalResult,
    LocalResult,
    TrainConfig,
    evaluate,
    predict_logits,
    train_centralized,
    train_local,
)
from marketplace.fl.updates import AggregateResult, ClientUpdate, validate_updates
from marketplace.fl.weights import Weights, apply_delta, get_weights, set_weights, weight_delta

__all__ = [
    "BEHAVIOURS",
    "STRATEGIES",
    "AggregateResult",
    "Behaviour",
    "ClientUpdate",
    "DPSGDAccountant",
    "DPSGDResult",
    "DPTerms",
    "DataSplits",
    "Dataset",
    "DatasetCard",
    "EvalResult",
    "LabelSkew",
    "LocalResult",
    "ModelSpec",
    "Partition",
    "PrivacyAccountant",
    "PrivacyConfig",
    "RoundContext",
    "RoundMetrics",
    "RoundRecord",
    "SimulationResult",
    "Strategy",
    "TrainConfig",
    "Weights",
    "add_gaussian_noise",
    "add_label_noise",
    "apply_delta",
    "build_model",
    "canonical_bytes",
    "canonical_digest",
    "clip_update",
    "count_parameters",
    "dirichlet_partition",
    "evaluate",
    "get_behaviour",
    "get_strategy",
    "get_weights",
    "iid_partition",
    "label_skew",
    "load_dataset",
    "noise_multiplier_for_epsilon",
    "partition",
    "predict_logits",
    "privatize",
    "quantity_skew_partition",
    "register_model",
    "registered_models",
    "set_weights",
    "shard_partition",
    "simulate",
    "split_dataset",
    "train_centralized",
    "train_dpsgd",
    "train_local",
    "validate_updates",
    "weight_delta",
]
