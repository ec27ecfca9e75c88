"""The valuation report: one canonical JSON document that every honest oracle writes identically.

Canonical bytes: UTF-8 JSON with sorted keys, no whitespace, ASCII only, and **no floats
anywhere** (a float in the document is an error): values that decide money are integers (ppm,
flags) or decimal strings (token amounts, which can exceed 2**53), parameters that are floats
are written as their shortest round-trip decimal string (``repr``). Two oracles given the same
inputs therefore produce the same bytes, and :func:`report_digest` (sha256) compares them.
Trainer addresses are written in checksum form everywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import is_address

from marketplace.errors import ValuationError
from marketplace.valuation.flags import FlagRecord
from marketplace.valuation.merkle import PAYOUT_LEAF_TYPES, LeafDomain, PayoutTree
from marketplace.valuation.payouts import PayoutTable, normalize_account
from marketplace.valuation.rounds import Valuation

REPORT_VERSION = "fedmarket-valuation-report/2"  # 2: leaves carry the task's LeafDomain


@dataclass(frozen=True)
class UpdateRef:
    """Where a trainer's update of a round lives (as committed on-chain)."""

    account: str
    cid: str
    digest: str


@dataclass(frozen=True)
class RoundArtifacts:
    """A round's global model (the one the updates were trained from) and its updates."""

    round: int
    model_cid: str
    model_digest: str
    updates: tuple[UpdateRef, ...] = ()


def build_report(
    *,
    domain: LeafDomain,
    valuation: Valuation,
    metric: str,
    validation_digest: str,
    artifacts: Sequence[RoundArtifacts],
    flags: Mapping[str, FlagRecord],
    payouts: PayoutTable,
    privacy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the report (a JSON-ready dict; see :func:`canonical_bytes`).

    Parameters
    ----------
    domain : LeafDomain
        The task (chain id, TaskMarket address, task id): written as the report's ``task`` and
        bound into every payout leaf.
    valuation : Valuation
        Per-round values from :func:`~marketplace.valuation.rounds.value_rounds`.
    metric : str
        The utility's metric (``"accuracy"`` or ``"neg_loss"``).
    validation_digest : str
        sha256 of the validation set (the task's on-chain commitment).
    artifacts : sequence of RoundArtifacts
        Model and update CIDs and digests, per round, as the caller fetched and checked them.
    flags : mapping
        Flagged trainer -> record (from :func:`~marketplace.valuation.flags.merge_findings`).
    payouts : PayoutTable
        The payout table; its Merkle root is computed here.
    privacy : mapping or None
        The task's DP terms and the ε each trainer's accountant booked per round (strings, see
        :func:`marketplace.oracle.scoring.privacy_section`); absent from the report when ``None``.
    """
    tree = PayoutTree.build(payouts.entries, domain)
    refs = {a.round: a for a in artifacts}
    rounds = []
    for rv in valuation.rounds:
        art = refs.get(rv.round)
        rounds.append(
            {
                "round": rv.round,
                "values_ppm": _by_account(rv.values_ppm()),
                "evaluations": rv.result.evaluations,
                "permutations": rv.result.permutations,
                "round_truncated": rv.result.round_truncated,
                "model": {"cid": art.model_cid, "digest": art.model_digest} if art else None,
                "updates": {
                    _account(u.account): {"cid": u.cid, "digest": u.digest} for u in art.updates
                }
                if art
                else {},
            }
        )
    report = {
        "version": REPORT_VERSION,
        "task": domain.as_dict(),
        "method": valuation.method,
        "params": _jsonable(dict(valuation.params)),
        "seed": valuation.seed,
        "metric": metric,
        "validation_digest": validation_digest,
        "rounds": rounds,
        "totals_ppm": _by_account(valuation.totals_ppm()),
        "flags": {
            _account(account): {
                "flags": int(rec.flags),
                "evidence": [_jsonable(dict(e)) for e in rec.evidence],
            }
            for account, rec in flags.items()
        },
        "budget": str(payouts.budget),
        "refund": str(payouts.refund),
        "payouts": [
            {
                "index": e.index,
                "account": e.account,
                "amount": str(e.amount),
                "score_ppm": e.score_ppm,
                "flags": e.flags,
            }
            for e in payouts.entries
        ],
        "leaf_encoding": list(PAYOUT_LEAF_TYPES),
        "merkle_root": tree.root,
    }
    if privacy is not None:
        report["privacy"] = _jsonable(dict(privacy))
    canonical_bytes(report)  # fail now, not at upload, if something is not canonical
    return report


def canonical_bytes(report: Mapping[str, Any]) -> bytes:
    """The report's canonical encoding; refuses floats, NaN and non-string keys."""
    _check_no_floats(report, "report")
    text = json.dumps(
        report, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def report_digest(report: Mapping[str, Any]) -> str:
    """Hex sha256 of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(report)).hexdigest()


def _account(player: str) -> str:
    """Addresses in checksum form (as in the payouts), so the case an oracle was given does not
    change the bytes; other player ids (simulations) are kept as they are."""
    return normalize_account(player) if is_address(player) else player


def _by_account(values: Mapping[str, int]) -> dict[str, int]:
    return {_account(k): v for k, v in values.items()}


def _jsonable(value: Any) -> Any:
    """Parameters and evidence as canonical JSON values: floats become ``repr`` strings."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    raise ValuationError(f"{type(value).__name__} value {value!r} cannot go into the report")


def _check_no_floats(value: Any, where: str) -> None:
    if isinstance(value, float):
        raise ValuationError(
            f"float {value!r} at {where}: the report carries integers and strings only"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValuationError(f"non-string key {k!r} at {where}")
            _check_no_floats(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_no_floats(v, f"{where}[{i}]")
