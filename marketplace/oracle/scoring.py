"""The oracle's scoring step: a task's reconstructed rounds in, the payout root to commit out.

:func:`score_task` is the one call between "the oracle fetched, decrypted and validated every
committed update" and "the oracle commits ``hash(root, reportCid, salt)``". It runs the valuation
library in the order its design recommends:

1. per round, invalid updates (failed decrypt, digest, shape, NaN...) are flagged INVALID and left
   out of the game;
2. per round, free riders (near-zero update, or a replay of the previous global change) and
   copiers (an update equal to one committed earlier, by on-chain commit order) are flagged; the
   other updates go to the update-based poisoner tests (twins, input concentration:
   :mod:`marketplace.valuation.update_flags`; trigger reverse-engineering, off by default:
   :mod:`marketplace.valuation.trigger_flags`), which accumulate over the rounds;
3. each round with at least one valid update is a game valued with the task's estimator (``auto``:
   exact Shapley up to :data:`AUTO_EXACT_MAX_PLAYERS` players, GTG-Shapley with an evaluation
   budget above), seeded ``(seed, round)``;
4. poisoners are flagged on the per-trainer totals and by the accumulated update tests;
5. every joined trainer gets a payout entry: one that committed nothing in any round is flagged
   FREE_RIDER with one piece of evidence per round; then payouts, the Merkle tree and the
   canonical report.

Everything that reaches the root is an integer computed deterministically, so honest oracles given
the same inputs commit the same root, bit for bit (tested across processes).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from marketplace.errors import ConfigError, ValuationError
from marketplace.fl.models import ModelSpec
from marketplace.fl.serialization import dump_weights
from marketplace.fl.strategy import Strategy
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights
from marketplace.valuation.base import Estimator, Seed, ShapleyResult
from marketplace.valuation.config import METHODS, ValuationConfig
from marketplace.valuation.exact import ExactShapley
from marketplace.valuation.flags import (
    Finding,
    Flag,
    FlagConfig,
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
from marketplace.valuation.merkle import LeafDomain, PayoutTree
from marketplace.valuation.montecarlo import MonteCarloShapley
from marketplace.valuation.payouts import (
    PayoutEntry,
    PayoutTable,
    compute_payouts,
    normalize_account,
)
from marketplace.valuation.report import RoundArtifacts, UpdateRef, build_report, canonical_bytes
from marketplace.valuation.round_utility import RoundUtility
from marketplace.valuation.rounds import RoundGame, RoundValuation, Valuation, value_rounds
from marketplace.valuation.trigger_flags import TriggerDetector
from marketplace.valuation.update_flags import UpdateDetector, input_layer
from marketplace.valuation.utility import Utility

log = logging.getLogger(__name__)

AUTO_EXACT_MAX_PLAYERS = 12
"""``method="auto"`` uses exact Shapley while no round has more valid updates than this."""


@dataclass(frozen=True, eq=False)
class RoundInput:
    """One round as the oracle reconstructed it from the chain and the store.

    Attributes
    ----------
    round : int
        The round number (1-based, as on-chain).
    global_weights : Weights
        The round's starting global model, recomputed by the oracle.
    updates : sequence of ClientUpdate
        The valid updates, in any order; senders are trainer addresses.
    invalid : mapping
        Address -> one-line reason its committed update was refused.
    commit_order : mapping
        Address -> position of its commitment in the round's on-chain order (copier detection);
        every valid update's sender must have one.
    refs : sequence of UpdateRef
        CIDs and digests of the round's committed updates, copied into the report.
    model_cid : str
        CID of the round's global model as posted on-chain, if known (report only).
    """

    round: int
    global_weights: Weights
    updates: Sequence[ClientUpdate]
    invalid: Mapping[str, str] = field(default_factory=dict)
    commit_order: Mapping[str, int] = field(default_factory=dict)
    refs: Sequence[UpdateRef] = ()
    model_cid: str = ""


@dataclass(frozen=True)
class ScoringResult:
    """What an oracle publishes and commits to.

    Attributes
    ----------
    report : dict
        The canonical report (:func:`marketplace.valuation.build_report`).
    report_bytes : bytes
        Its canonical encoding (what goes, encrypted, to the store).
    table : PayoutTable
        One entry per joined trainer.
    tree : PayoutTree
        The Merkle tree of ``table``.
    root : bytes
        The 32-byte root to commit and reveal.
    """

    report: dict[str, Any] = field(hash=False)
    report_bytes: bytes
    table: PayoutTable
    tree: PayoutTree = field(hash=False)
    root: bytes


class BudgetedEstimator:
    """A sampled estimator whose evaluation budget follows each round's size.

    A round of ``n`` players may evaluate ``max(n + 1, floor(fraction * 2**n))`` coalitions (the
    fraction is exact, so the budget is the same integer on every machine).
    """

    def __init__(self, method: str, fraction: float, make: Callable[[int], Estimator]) -> None:
        self.method = method
        self.fraction = float(fraction)
        self._make = make
        self._template = make(0)

    def budget(self, n: int) -> int:
        return max(n + 1, int(Fraction(self.fraction) * 2**n))  # exact floor: positive

    def params(self) -> dict[str, object]:
        params = dict(self._template.params())
        params["max_evaluations"] = None  # per round: see budget_fraction
        params["budget_fraction"] = self.fraction
        return params

    def estimate(self, utility: Utility, *, seed: Seed = 0) -> ShapleyResult:
        return self._make(self.budget(int(utility.n))).estimate(utility, seed=seed)


def choose_estimator(method: str, *, max_players: int, budget_fraction: float) -> Estimator:
    """The estimator for ``method`` given the largest round's player count.

    ``auto`` is exact Shapley up to :data:`AUTO_EXACT_MAX_PLAYERS` players and budgeted GTG above.
    """
    if method == "auto":
        method = "exact" if max_players <= AUTO_EXACT_MAX_PLAYERS else "gtg"
    if method == "exact":
        return ExactShapley(max_players=AUTO_EXACT_MAX_PLAYERS)
    if method == "gtg":
        return BudgetedEstimator(
            "gtg", budget_fraction, lambda b: GTGShapley(max_evaluations=b or None)
        )
    if method == "monte_carlo":
        return BudgetedEstimator(
            "monte_carlo",
            budget_fraction,
            lambda b: MonteCarloShapley(permutations=1000, max_evaluations=b or None),
        )
    if method == "leave_one_out":
        return LeaveOneOut()
    raise ConfigError(f"unknown valuation method {method!r}: use one of {', '.join(METHODS)}")


class _AddressOrderUtility:
    """Players indexed in address order (what :class:`RoundGame` requires) over a
    :class:`RoundUtility` whose rows are in the aggregator's order (senders sorted as strings),
    so the grand coalition is exactly the aggregate the peers computed."""

    def __init__(self, inner: RoundUtility, players: tuple[str, ...]) -> None:
        position = {p: i for i, p in enumerate(inner.players)}
        self._inner = inner
        self._to_inner = [position[p] for p in players]

    @property
    def n(self) -> int:
        return int(self._inner.n)

    def __call__(self, coalition: frozenset[int]) -> float:
        return self._inner(frozenset(self._to_inner[i] for i in coalition))


def score_task(
    *,
    domain: LeafDomain,
    model_spec: ModelSpec,
    strategy: Strategy,
    rounds: Sequence[RoundInput],
    x_val: np.ndarray,
    y_val: np.ndarray,
    validation_digest: str,
    budget: int,
    trainers: Sequence[str],
    config: ValuationConfig = ValuationConfig(),
    num_threads: int = 1,
    privacy: Mapping[str, Any] | None = None,
    flag_config: FlagConfig | None = None,
) -> ScoringResult:
    """Value a task's rounds and build the payout table, Merkle root and canonical report.

    Parameters
    ----------
    domain : LeafDomain
        The task (chain id, TaskMarket address, task id): named in the report and bound into
        every payout leaf.
    model_spec : ModelSpec
        The task's model.
    strategy : Strategy
        The task's aggregator (coalitions are aggregated with it).
    rounds : sequence of RoundInput
        Every round of the task, each once (any order).
    x_val, y_val : numpy.ndarray
        The validation set (already checked against the on-chain commitment).
    validation_digest : str
        That commitment, recorded in the report.
    budget : int
        The task's budget in token units.
    trainers : sequence of str
        Every trainer that joined; each gets a payout entry.
    config : ValuationConfig
        Estimator, seed, metric and payout policy.
    num_threads : int
        Torch threads for evaluation (results do not depend on it).
    privacy : mapping or None
        The report's ``privacy`` section (:func:`marketplace.fl.dp_rounds.privacy_report`).
    flag_config : FlagConfig or None
        Thresholds of every flag rule (default :class:`FlagConfig`); not a task term, so every
        oracle of a committee must use the same one or their roots differ.

    Raises
    ------
    ValuationError
        Inputs that do not fit together (an update from a non-member, a round given twice,
        a valid update without its commit order...).
    """
    members = _members(trainers)
    ordered = _check_rounds(rounds, members)
    findings: list[Finding] = []
    games: list[RoundGame] = []
    previous_global: np.ndarray | None = None
    previous_round: int | None = None
    active: set[str] = set()
    flag_config = flag_config or FlagConfig()
    detector = UpdateDetector(config=flag_config, x_val=x_val)
    triggers = TriggerDetector(model_spec, x_val, config=flag_config)
    layer = input_layer(model_spec)
    for ri in ordered:
        updates = [_normalized(u) for u in ri.updates]
        invalid = {normalize_account(a): str(r) for a, r in ri.invalid.items()}
        order = {normalize_account(a): int(o) for a, o in ri.commit_order.items()}
        active.update(u.sender for u in updates)
        active.update(invalid)
        findings += invalid_findings(invalid, round=ri.round)
        current_global = flatten_delta(ri.global_weights)
        global_delta = None
        if previous_global is not None and previous_round == ri.round - 1:
            global_delta = current_global - previous_global
        previous_global, previous_round = current_global, ri.round
        if not updates:
            continue
        views = [UpdateView(u.sender, flatten_delta(u.delta), order[u.sender]) for u in updates]
        round_findings = free_rider_findings(
            views, round=ri.round, global_delta=global_delta, config=flag_config
        )
        round_findings += copier_findings(views, round=ri.round, config=flag_config)
        findings += round_findings
        _observe_updates(detector, ri.round, views, updates, layer, round_findings)
        if triggers.enabled:  # optional (off by default): Neural-Cleanse masks per local model
            skip = {f.account for f in round_findings}
            triggers.observe(
                ri.round,
                ri.global_weights,
                {u.sender: u.delta for u in updates if u.sender not in skip},
            )
        utility = RoundUtility(
            model_spec=model_spec,
            global_weights=ri.global_weights,
            updates=updates,
            strategy=strategy,
            x_val=x_val,
            y_val=y_val,
            metric=config.metric,
            num_threads=num_threads,
        )
        players = tuple(sorted(utility.players, key=str.lower))
        games.append(RoundGame(ri.round, players, _AddressOrderUtility(utility, players)))

    max_players = max((len(g.players) for g in games), default=0)
    estimator = choose_estimator(
        config.method, max_players=max_players, budget_fraction=config.gtg_budget_fraction
    )
    log.info(
        "scoring %d rounds, %d trainers, up to %d players per round, with %s",
        len(ordered), len(members), max_players, estimator.method,
    )  # fmt: skip
    valued = value_rounds(games, estimator, seed=config.seed)
    valuation = _with_empty_rounds(valued, [ri.round for ri in ordered])

    totals = valuation.totals_ppm()
    findings += poisoner_findings(totals, config=flag_config)
    findings += detector.findings()
    findings += triggers.findings()
    findings += _no_update_findings(
        [a for a in members if a not in active], [ri.round for ri in ordered]
    )
    flags = merge_findings(findings)
    table = compute_payouts(
        budget,
        {a: totals.get(a, 0) for a in members},
        {a: int(rec.flags) for a, rec in flags.items()},
        config=config.payout_config(),
    )
    tree = PayoutTree.build(table.entries, domain)
    report = build_report(
        domain=domain,
        valuation=valuation,
        metric=config.metric,
        validation_digest=validation_digest,
        artifacts=[_artifacts(ri) for ri in ordered],
        flags=flags,
        payouts=table,
        privacy=privacy,
    )
    return ScoringResult(
        report=report,
        report_bytes=canonical_bytes(report),
        table=table,
        tree=tree,
        root=bytes.fromhex(tree.root[2:]),
    )


def proof_for(result: ScoringResult, account: str) -> tuple[PayoutEntry, list[bytes]]:
    """``account``'s payout entry and its Merkle proof (32-byte siblings), ready for ``claim``.

    Raises :class:`ValuationError` if the account has no entry in the table.
    """
    key = normalize_account(account)
    for entry in result.table.entries:
        if entry.account == key:
            return entry, [bytes.fromhex(p[2:]) for p in result.tree.proof(entry.index)]
    raise ValuationError(
        f"{key} has no entry in the payout table: only the task's joined trainers are paid"
    )


# --- helpers -------------------------------------------------------------------------------
def _members(trainers: Sequence[str]) -> list[str]:
    if not trainers:
        raise ValuationError("no trainers to score: give every address that joined the task")
    members = [normalize_account(t) for t in trainers]
    if len(set(members)) != len(members):
        raise ValuationError("a trainer is listed twice in trainers: give each joined address once")
    return sorted(members, key=lambda a: int(a, 16))


def _check_rounds(rounds: Sequence[RoundInput], members: Sequence[str]) -> list[RoundInput]:
    if not rounds:
        raise ValuationError("no rounds to score: give every round of the task")
    numbers = [ri.round for ri in rounds]
    if len(set(numbers)) != len(numbers):
        raise ValuationError(f"round numbers repeat: {sorted(numbers)}; give each round once")
    known = set(members)
    for ri in rounds:
        valid = [normalize_account(u.sender) for u in ri.updates]
        invalid = {normalize_account(a) for a in ri.invalid}
        order = {normalize_account(a) for a in ri.commit_order}
        for who in [*valid, *invalid]:
            if who not in known:
                raise ValuationError(
                    f"round {ri.round}: {who} committed an update but is not among the task's "
                    "trainers; pass every joined trainer in trainers"
                )
        both = invalid.intersection(valid)
        if both:
            raise ValuationError(
                f"round {ri.round}: {sorted(both)} listed both as valid and as invalid"
            )
        missing = [a for a in valid if a not in order]
        if missing:
            raise ValuationError(
                f"round {ri.round}: no commit order for {missing}; give each valid update's "
                "position in the on-chain commit order"
            )
    return sorted(rounds, key=lambda ri: ri.round)


def _normalized(update: ClientUpdate) -> ClientUpdate:
    sender = normalize_account(update.sender)
    if sender == update.sender:
        return update
    return ClientUpdate(sender, update.delta, update.num_samples)


def _observe_updates(
    detector: UpdateDetector,
    round: int,
    views: Sequence[UpdateView],
    updates: Sequence[ClientUpdate],
    layer: str | None,
    round_findings: Sequence[Finding],
) -> None:
    """Feed the round's updates that are neither free riders nor copiers to ``detector``, with
    their first-layer weight change when the model has one (``layer``)."""
    skip = {f.account for f in round_findings}
    checked = [v for v in views if v.account not in skip]
    weights: dict[str, np.ndarray] = {}
    if layer is not None:
        for u in updates:
            if u.sender not in skip and layer in u.delta:
                weights[u.sender] = u.delta[layer].detach().double().cpu().numpy()
    # an update without the layer (or no such layer): the concentration test skips the round
    detector.observe(round, checked, weights if len(weights) == len(checked) else None)


def _with_empty_rounds(valued: Valuation, numbers: Sequence[int]) -> Valuation:
    """Add rounds with no valid update (no game) as zero-player rounds, so the report lists
    every round with its model and its refused updates."""
    by_round = {rv.round: rv for rv in valued.rounds}
    empty = ShapleyResult(values=(), evaluations=0, method=valued.method, params=valued.params)
    rounds = tuple(by_round.get(r, RoundValuation(r, (), empty)) for r in sorted(numbers))
    return Valuation(method=valued.method, params=valued.params, seed=valued.seed, rounds=rounds)


def _no_update_findings(accounts: Sequence[str], rounds: Sequence[int]) -> list[Finding]:
    """FREE_RIDER for trainers that committed nothing in any round: one evidence per round."""
    return [
        Finding(
            a,
            Flag.FREE_RIDER,
            {
                "flag": "free_rider",
                "round": r,
                "rule": "no_update",
                "reason": f"no update committed in round {r}",
            },
        )
        for a in accounts
        for r in rounds
    ]


def _artifacts(ri: RoundInput) -> RoundArtifacts:
    """The round's model (plaintext safetensors digest, as on-chain) and update references."""
    digest = "0x" + hashlib.sha256(dump_weights(ri.global_weights)).hexdigest()
    refs = tuple(
        UpdateRef(normalize_account(u.account), u.cid, u.digest)
        for u in sorted(ri.refs, key=lambda u: u.account.lower())
    )
    return RoundArtifacts(round=ri.round, model_cid=ri.model_cid, model_digest=digest, updates=refs)
