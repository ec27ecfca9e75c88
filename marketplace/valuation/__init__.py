"""Contribution valuation: utilities, Shapley estimators, flags, payouts, Merkle tree, report.

Typical oracle flow::

    games = [RoundGame(r, players, RoundUtility(...)) for r, ... in rounds]
    valuation = value_rounds(games, GTGShapley(), seed=task_seed)
    flags = merge_findings([...detector findings..., *poisoner_findings(valuation.totals_ppm())])
    table = compute_payouts(budget, valuation.totals_ppm(), {a: r.flags for a, r in flags.items()})
    domain = LeafDomain(chain_id, task_market_address, task_id)
    tree = PayoutTree.build(table.entries, domain)
    report = build_report(domain=domain, valuation=valuation, ..., flags=flags, payouts=table)
"""

from marketplace.valuation.base import Estimator, ShapleyResult
from marketplace.valuation.exact import ExactShapley
from marketplace.valuation.flags import (
    Finding,
    Flag,
    FlagConfig,
    FlagRecord,
    UpdateView,
    copier_findings,
    flatten_delta,
    free_rider_findings,
    invalid_findings,
    merge_findings,
    poisoner_findings,
)
from marketplace.valuation.gtg import GTGShapley
from marketplace.valuation.loo import LeaveOneOut
from marketplace.valuation.merkle import (
    PAYOUT_LEAF_TYPES,
    LeafDomain,
    PayoutTree,
    StandardMerkleTree,
    verify,
)
from marketplace.valuation.montecarlo import MonteCarloShapley
from marketplace.valuation.payouts import PayoutConfig, PayoutEntry, PayoutTable, compute_payouts
from marketplace.valuation.quantize import PPM, UTILITY_SCALE
from marketplace.valuation.report import (
    RoundArtifacts,
    UpdateRef,
    build_report,
    canonical_bytes,
    report_digest,
)
from marketplace.valuation.rounds import RoundGame, RoundValuation, Valuation, value_rounds
from marketplace.valuation.utility import BatchUtility, FunctionUtility, TableUtility, Utility

__all__ = [
    "PAYOUT_LEAF_TYPES",
    "PPM",
    "UTILITY_SCALE",
    "BatchUtility",
    "Estimator",
    "ExactShapley",
    "Finding",
    "Flag",
    "FlagConfig",
    "FlagRecord",
    "FunctionUtility",
    "GTGShapley",
    "LeafDomain",
    "LeaveOneOut",
    "MonteCarloShapley",
    "PayoutConfig",
    "PayoutEntry",
    "PayoutTable",
    "PayoutTree",
    "RoundArtifacts",
    "RoundGame",
    "RoundValuation",
    "ShapleyResult",
    "StandardMerkleTree",
    "TableUtility",
    "UpdateRef",
    "UpdateView",
    "Utility",
    "Valuation",
    "build_report",
    "canonical_bytes",
    "compute_payouts",
    "copier_findings",
    "flatten_delta",
    "free_rider_findings",
    "invalid_findings",
    "merge_findings",
    "poisoner_findings",
    "report_digest",
    "value_rounds",
    "verify",
]
