"""Membership inference: can an attacker tell the withdrawn trainer's records from held-out ones?

Two attacks, each reported as the ROC AUC of telling *members* (records the model may have
trained on) from *non-members* (records from the same distribution it never saw): 0.5 is chance,
1.0 is perfect membership inference.

* :func:`loss_threshold_auc` (Yeom et al., 2018): a record is called a member when the model's
  loss on it is low; the AUC sweeps every threshold.
* :func:`shadow_attack_auc` (Shokri et al., 2017): the attacker trains a *shadow* model on records
  it knows to be in (``shadow_in``) and keeps others out (``shadow_out``), fits a classifier on
  the shadow model's outputs (loss, true-class probability, top probability, entropy), and
  applies it to the target model's outputs on the members and non-members.

An unlearned model should leave both near 0.5 on the withdrawn records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

from marketplace.errors import ConfigError
from marketplace.fl.data import Dataset
from marketplace.fl.models import ModelSpec
from marketplace.fl.train import predict_logits


@dataclass(frozen=True)
class MiaReport:
    """Both attacks' AUC on one model (members vs non-members)."""

    loss_auc: float
    shadow_auc: float

    @property
    def worst(self) -> float:
        """The stronger attack's AUC (distance from chance counts, so 0.3 is as bad as 0.7)."""
        return max(self.loss_auc, self.shadow_auc, key=lambda a: abs(a - 0.5))


def record_losses(
    spec: ModelSpec, weights: Mapping[str, torch.Tensor], data: Dataset
) -> np.ndarray:
    """Per-record cross-entropy of the model on ``data`` (float64, ``(n,)``)."""
    logits = predict_logits(spec, weights, data.x).double()
    return F.cross_entropy(logits, torch.from_numpy(data.y), reduction="none").numpy()


def attack_features(
    spec: ModelSpec, weights: Mapping[str, torch.Tensor], data: Dataset
) -> np.ndarray:
    """What the shadow attack sees per record: loss, true-class prob, top prob, entropy."""
    logits = predict_logits(spec, weights, data.x).double()
    probs = torch.softmax(logits, dim=1)
    y = torch.from_numpy(data.y)
    loss = F.cross_entropy(logits, y, reduction="none")
    true_p = probs[torch.arange(len(y)), y]
    top_p = probs.max(dim=1).values
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)
    return torch.stack([loss, true_p, top_p, entropy], dim=1).numpy()


def _auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    if len(member_scores) == 0 or len(nonmember_scores) == 0:
        raise ConfigError("membership inference needs at least one member and one non-member")
    labels = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    return float(roc_auc_score(labels, np.concatenate([member_scores, nonmember_scores])))


def loss_threshold_auc(
    spec: ModelSpec, weights: Mapping[str, torch.Tensor], members: Dataset, nonmembers: Dataset
) -> float:
    """AUC of calling low-loss records members."""
    return _auc(-record_losses(spec, weights, members), -record_losses(spec, weights, nonmembers))


def shadow_attack_auc(
    spec: ModelSpec,
    weights: Mapping[str, torch.Tensor],
    members: Dataset,
    nonmembers: Dataset,
    *,
    shadow_weights: Mapping[str, torch.Tensor],
    shadow_in: Dataset,
    shadow_out: Dataset,
    seed: int = 0,
) -> float:
    """AUC of a classifier trained on the shadow model's in/out outputs, applied to the target.

    ``shadow_weights`` is a model the attacker trained (like the target was trained) on data that
    includes ``shadow_in`` and excludes ``shadow_out``.
    """
    fin = attack_features(spec, shadow_weights, shadow_in)
    fout = attack_features(spec, shadow_weights, shadow_out)
    x = np.concatenate([fin, fout])
    y = np.concatenate([np.ones(len(fin)), np.zeros(len(fout))])
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(x, y)
    member_scores = clf.predict_proba(attack_features(spec, weights, members))[:, 1]
    nonmember_scores = clf.predict_proba(attack_features(spec, weights, nonmembers))[:, 1]
    return _auc(member_scores, nonmember_scores)


def audit(
    spec: ModelSpec,
    weights: Mapping[str, torch.Tensor],
    members: Dataset,
    nonmembers: Dataset,
    *,
    shadow_weights: Mapping[str, torch.Tensor],
    shadow_in: Dataset,
    shadow_out: Dataset,
) -> MiaReport:
    """Both attacks on one model."""
    return MiaReport(
        loss_auc=loss_threshold_auc(spec, weights, members, nonmembers),
        shadow_auc=shadow_attack_auc(
            spec,
            weights,
            members,
            nonmembers,
            shadow_weights=shadow_weights,
            shadow_in=shadow_in,
            shadow_out=shadow_out,
        ),
    )
