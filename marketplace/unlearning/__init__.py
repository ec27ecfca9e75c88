"""Federated unlearning: derive a task's model without one trainer's data, and check it.

* :mod:`~marketplace.unlearning.history` — the stored rounds (global models and updates) as data;
* :mod:`~marketplace.unlearning.federaser` — FedEraser-style calibrated retraining;
* :mod:`~marketplace.unlearning.plan` — either method as steps of new local training, run in one
  process or over the network (:mod:`marketplace.protocol.calibration`);
* :mod:`~marketplace.unlearning.retrain` — retraining from the last clean checkpoint, and the
  chooser between the two;
* :mod:`~marketplace.unlearning.stored` — the same from a content store and the on-chain record,
  every digest checked;
* :mod:`~marketplace.unlearning.mia` — membership-inference audits (loss threshold, shadow model).
"""

from __future__ import annotations

from marketplace.unlearning.federaser import FedEraserConfig
from marketplace.unlearning.history import LocalTrainer, StoredHistory, weights_digest
from marketplace.unlearning.retrain import UnlearnResult, choose_method, federaser, retrain, unlearn

__all__ = [
    "FedEraserConfig",
    "LocalTrainer",
    "StoredHistory",
    "UnlearnResult",
    "choose_method",
    "federaser",
    "retrain",
    "unlearn",
    "weights_digest",
]
