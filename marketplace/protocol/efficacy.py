"""Efficacy pricing: what each data owner's data is worth to a model owner's model.

The committee fine-tunes the owner's model on every coalition of the enrolled owners' data
(deterministically, on the CPU), measures the accuracy on the owner's committed test set, and
takes the exact Shapley value of the improvement over the untouched model (few owners per offer,
so exact is affordable; :data:`MAX_OWNERS_EXACT`). Values are integer ppm of accuracy. Each owner
is owed ``price_per_ppm * max(value, 0)``; if that sums above the escrowed cap, every amount is
scaled down to the cap by the largest-remainder method (never above the price rule, which the
contract also checks). The table is a Merkle tree over
``(chainId, EfficacyMarket, offerId, index, account, shapleyPpm, amount)`` leaves, committed by
commit-reveal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marketplace.chain.model_market_client import EFFICACY_LEAF_TYPES
from marketplace.errors import ValuationError
from marketplace.fl.data import Dataset
from marketplace.fl.models import ModelSpec
from marketplace.fl.train import TrainConfig, evaluate, torch_settings, train_local
from marketplace.fl.weights import Weights, apply_delta
from marketplace.valuation.base import ShapleyResult
from marketplace.valuation.exact import ExactShapley
from marketplace.valuation.merkle import StandardMerkleTree
from marketplace.valuation.payouts import normalize_account
from marketplace.valuation.utility import FunctionUtility

MAX_OWNERS_EXACT = 10


@dataclass(frozen=True)
class EfficacyRow:
    """One data owner's line of the table."""

    index: int
    account: str
    shapley_ppm: int
    amount: int

    def leaf(self, chain_id: int, contract: str, offer_id: int) -> tuple[object, ...]:
        return (
            chain_id,
            contract,
            offer_id,
            self.index,
            self.account,
            self.shapley_ppm,
            self.amount,
        )


def improvement_shapley(
    model_spec: ModelSpec,
    base: Weights,
    owners: Sequence[Dataset],
    test: Dataset,
    config: TrainConfig,
) -> ShapleyResult:
    """Exact Shapley values of the accuracy improvement each owner's data brings to ``base``."""
    n = len(owners)
    if not 1 <= n <= MAX_OWNERS_EXACT:
        raise ValuationError(f"efficacy valuation needs 1..{MAX_OWNERS_EXACT} owners, got {n}")
    base_acc = evaluate(model_spec, base, test.x, test.y).accuracy

    def accuracy_gain(coalition: frozenset[int]) -> float:
        if not coalition:
            return 0.0
        members = sorted(coalition)
        data = Dataset(
            "coalition",
            np.concatenate([owners[i].x for i in members]),
            np.concatenate([owners[i].y for i in members]),
            test.num_classes,
        )
        with torch_settings(config.num_threads):
            delta = train_local(model_spec, base, data, config).delta
        tuned = apply_delta(base, delta)
        return evaluate(model_spec, tuned, test.x, test.y).accuracy - base_acc

    return ExactShapley(max_players=MAX_OWNERS_EXACT).estimate(FunctionUtility(n, accuracy_gain))


def efficacy_table(
    accounts: Sequence[str], shapley_ppm: Sequence[int], *, price_per_ppm: int, cap: int
) -> list[EfficacyRow]:
    """Amounts owed: ``price_per_ppm * max(ppm, 0)``, scaled to ``cap`` if they exceed it."""
    if len(accounts) != len(shapley_ppm):
        raise ValuationError("one Shapley value per account is needed")
    if price_per_ppm <= 0 or cap <= 0:
        raise ValuationError("price_per_ppm and cap must be positive")
    ppm = [max(int(v), 0) for v in shapley_ppm]
    owed = [price_per_ppm * v for v in ppm]
    total = sum(owed)
    if total > cap:
        shares = [cap * o // total for o in owed]
        left = cap - sum(shares)
        order = sorted(range(len(owed)), key=lambda i: (-(cap * owed[i] % total), i))
        for i in order[:left]:
            shares[i] += 1
        owed = shares
    return [
        EfficacyRow(i, normalize_account(a), p, o)
        for i, (a, p, o) in enumerate(zip(accounts, ppm, owed, strict=True))
    ]


def efficacy_tree(
    rows: Sequence[EfficacyRow], *, chain_id: int, contract: str, offer_id: int
) -> StandardMerkleTree:
    """The Merkle tree of ``rows`` as EfficacyMarket verifies it (rows with nothing owed too)."""
    return StandardMerkleTree(
        [r.leaf(chain_id, normalize_account(contract), offer_id) for r in rows],
        EFFICACY_LEAF_TYPES,
    )
