"""Read side of the index: what the dashboard's pages show, as plain dicts.

Every string here came from the chain or IPFS and is untrusted: templates must escape it.
Amounts are Python ints (wei); formatting is the caller's job.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from marketplace.chain.clients import Phase
from marketplace.indexer import schema
from marketplace.indexer.reports import PUBLIC
from marketplace.jsonlimits import shallow_json
from marketplace.valuation.flags import flag_words

# Events the task page shows in their own sections; any other event is listed generically.
TASK_SECTIONS = frozenset({
    "TaskCreated", "PhaseAdvanced", "TrainerJoined", "UpdateCommitted", "ModelPosted",
    "ModelMismatchReported", "ScoreCommitted", "ScoreRevealed", "TaskFinalized", "Refunded",
    "BondWithdrawn", "BondsBurned", "OracleSlashed", "DisputeRaised", "DisputeResolved", "Claimed",
    "TaskSwept", "Slashed", "ReputationUpdated",
})  # fmt: skip

# Registry and token bookkeeping: shown on participant pages, not as "other events".
ACCOUNT_EVENTS = frozenset({
    "Registered", "EncryptionKeyChanged", "StakeDeposited", "UnstakeRequested", "Withdrawn",
    "MarketAuthorizationSet", "Transfer", "Approval", "OwnershipTransferred",
    "MarketStatusSet", "StakeReserved", "StakeReleased", "Settled",
})  # fmt: skip
KNOWN_EVENTS = TASK_SECTIONS | ACCOUNT_EVENTS

# Words for the generic sections other contracts add (matched on the event name, lower case).
GENERIC_GROUPS = (
    ("Offers and selections", ("offer", "select", "sourcing", "winner")),
    ("Listings and sales", ("listing", "listed", "sale", "sold", "purchase", "royalt")),
    ("Withdrawals and model versions", ("withdrawal", "version", "unlearn", "consent")),
)

# The sections the task page gives the later contracts, by (contract name in the deployment,
# event): these are not repeated in the task's "other events".
PRODUCT_SECTIONS = frozenset({
    ("DataSourcing", "RequestCreated"), ("ModelMarket", "Listed"),
    ("ModelVersions", "VersionRecorded"), ("ModelVersions", "VersionAttested"),
    ("ModelVersions", "VersionValidated"), ("ModelVersions", "WithdrawalRequested"),
    ("ModelVersions", "PenaltyPaid"),
})  # fmt: skip
SOURCING_EVENTS = (
    "OfferCommitted", "OfferRevealed", "SelectionRevealed", "SelectionFinalized",
    "WinnerRegistered", "PaymentClaimed", "Refunded", "RequestCancelled",
)  # fmt: skip
VERSION_REASONS = ("trained", "unlearned", "renewed")  # IModelVersionRegistry.Reason


def phase_name(value: Any) -> str:
    """The phase's name in words (``"phase 9"`` for a value this version does not know)."""
    try:
        return Phase(int(value)).name.lower()
    except (ValueError, TypeError):
        return f"phase {value}"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def group_of(name: str) -> str | None:
    low = name.lower()
    for title, words in GENERIC_GROUPS:
        if any(w in low for w in words):
            return title
    return None


class IndexReader:
    """Queries over an index file (opened read-only; safe beside a running indexer)."""

    def __init__(self, db_path: Path | str):
        self.db_path = Path(db_path)
        self.conn = schema.connect(self.db_path, readonly=True)

    def close(self) -> None:
        self.conn.close()

    def _rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    @staticmethod
    def _event(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "block": int(row["block"]), "log_index": int(row["log_index"]),
            "tx_hash": row["tx_hash"], "contract": row["contract"], "name": row["name"],
            "task_id": row["task_id"], "args": json.loads(row["args"]),
        }  # fmt: skip

    def _events(self, task_id: int, *names: str) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(names))
        return [
            self._event(r)
            for r in self._rows(
                f"SELECT * FROM events WHERE task_id = ? AND name IN ({marks}) "  # noqa: S608
                "ORDER BY block, log_index",
                task_id,
                *names,
            )
        ]

    # --- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Last indexed block, the deployment, and the measured indexing cost."""
        cost = self.conn.execute(
            "SELECT COUNT(*) n, COALESCE(SUM(to_block - from_block + 1), 0) blocks, "
            "COALESCE(SUM(seconds), 0) s, COALESCE(SUM(events), 0) events FROM syncs"
        ).fetchone()
        blocks = int(cost["blocks"])
        return {
            "last_block": _int(schema.get_meta(self.conn, "last_block")),
            "deployment": schema.get_meta(self.conn, "deployment") or "",
            "syncs": int(cost["n"]),
            "blocks_indexed": blocks,
            "events_indexed": int(cost["events"]),
            "ms_per_block": 1000 * float(cost["s"]) / blocks if blocks else 0.0,
        }

    def _state(self, task_id: int) -> tuple[dict[str, Any], list[str]] | None:
        row = self.conn.execute(
            "SELECT state, oracles FROM task_state WHERE task_id = ? ORDER BY block DESC LIMIT 1",
            (task_id,),
        ).fetchone()
        if row is None:
            return None
        return json.loads(row["state"]), json.loads(row["oracles"])

    # --- all tasks ------------------------------------------------------------------------------
    def tasks(self) -> list[dict[str, Any]]:
        """Every task with its phase, newest first."""
        out = []
        latest = self._rows(
            "SELECT s.task_id, s.state FROM task_state s JOIN (SELECT task_id, MAX(block) b "
            "FROM task_state GROUP BY task_id) m ON s.task_id = m.task_id AND s.block = m.b "
            "ORDER BY s.task_id DESC"
        )
        for r in latest:
            st = json.loads(r["state"])
            out.append({
                "task_id": int(r["task_id"]), "phase": phase_name(st.get("phase")),
                "round": _int(st.get("currentRound")), "rounds": _int(st.get("rounds")),
                "budget": _int(st.get("budget")), "paid": _int(st.get("paid")),
                "trainers": _int(st.get("trainerCount")), "requester": st.get("requester", ""),
            })  # fmt: skip
        return out

    def market_other_events(self, limit: int = 200) -> list[dict[str, Any]]:
        """Events outside the known task sections (other contracts' events), newest first."""
        marks = ",".join("?" * len(KNOWN_EVENTS))
        rows = self._rows(
            f"SELECT * FROM events WHERE name NOT IN ({marks}) "  # noqa: S608
            "ORDER BY block DESC, log_index DESC LIMIT ?",
            *sorted(KNOWN_EVENTS),
            limit,
        )
        return [self._event(r) | {"group": group_of(r["name"])} for r in rows]

    # --- one task -------------------------------------------------------------------------------
    def task(self, task_id: int) -> dict[str, Any] | None:
        """Everything the task page shows, or ``None`` for a task not (yet) indexed."""
        got = self._state(task_id)
        if got is None:
            return None
        state, oracles = got
        created = self._events(task_id, "TaskCreated")
        report = self._best_report(task_id, str(state.get("payoutRoot", "")))
        return {
            "task_id": task_id,
            "state": state,
            "phase": phase_name(state.get("phase")),
            "created": created[0] if created else None,
            "phases": self._events(task_id, "PhaseAdvanced"),
            "rounds": self._rounds(task_id, state, created),
            "trainers": self._trainers(task_id, report),
            "committee": self._committee(task_id, oracles),
            "disputes": self._events(task_id, "DisputeRaised", "DisputeResolved"),
            "claims": self._claims(task_id, state),
            "finalized": self._events(task_id, "TaskFinalized", "TaskSwept", "Refunded",
                                      "BondsBurned", "BondWithdrawn"),
            "report": report,
            "sourcing": self._sourcing(task_id),
            "listings": self._listings(task_id),
            "versions": self._versions(task_id),
            "withdrawals": self._withdrawals(task_id),
            "other_events": self._task_other_events(task_id),
        }  # fmt: skip

    # --- the later contracts' sections (each empty when its contract is not deployed) ----------
    def _of(self, contract: str, names: tuple[str, ...], key: str, ids: set[int]) -> list[Any]:
        """Events of one contract whose ``key`` argument (an id without a task) is in ``ids``."""
        marks = ",".join("?" * len(names))
        rows = self._rows(
            f"SELECT * FROM events WHERE contract = ? AND name IN ({marks}) "  # noqa: S608
            "ORDER BY block, log_index",
            contract,
            *names,
        )
        return [e for e in map(self._event, rows) if _int(e["args"].get(key, -1)) in ids]

    def _task_events(self, task_id: int, contract: str, *names: str) -> list[dict[str, Any]]:
        return [e for e in self._events(task_id, *names) if e["contract"] == contract]

    def _sourcing(self, task_id: int) -> list[dict[str, Any]]:
        """The task's data requests: each owner's offer, the committee's selection, payments."""
        out = []
        for req in self._task_events(task_id, "DataSourcing", "RequestCreated"):
            rid = _int(req["args"].get("requestId"))
            offers: dict[str, dict[str, Any]] = {}
            selection, reveals, refunded, cancelled = None, [], 0, False
            for e in self._of("DataSourcing", SOURCING_EVENTS, "requestId", {rid}):
                a, name = e["args"], e["name"]
                if name.startswith(("Offer", "Winner", "Payment")):
                    o = offers.setdefault(str(a.get("owner")), {
                        "owner": str(a.get("owner")), "ask": None, "samples": None,
                        "sketch_cid": "", "payment": None, "paid": None})  # fmt: skip
                    if name == "OfferRevealed":
                        o.update(ask=_int(a.get("ask")), samples=_int(a.get("samples")),
                                 sketch_cid=str(a.get("sketchCid", "")))  # fmt: skip
                    elif name == "WinnerRegistered":
                        o["payment"] = _int(a.get("payment"))
                    elif name == "PaymentClaimed":
                        o["paid"] = _int(a.get("amount"))
                elif name == "SelectionRevealed":
                    reveals.append(a)
                elif name == "SelectionFinalized":
                    selection = {"root": a.get("root"), "total": _int(a.get("total"))}
                elif name == "Refunded":
                    refunded += _int(a.get("amount"))
                else:
                    cancelled = True
            out.append({
                "request_id": rid, "budget": _int(req["args"].get("budget")),
                "schema_cid": str(req["args"].get("schemaCid", "")),
                "offers": list(offers.values()), "reveals": reveals, "selection": selection,
                "winners": sum(o["payment"] is not None for o in offers.values()),
                "refunded": refunded,
                "status": "cancelled" if cancelled else "selected" if selection else "open",
            })  # fmt: skip
        return out

    def _listings(self, task_id: int) -> list[dict[str, Any]]:
        """The model's listings: price, each sale (delivered or refunded), royalties paid."""
        listings = self._task_events(task_id, "ModelMarket", "Listed")
        ids = {_int(e["args"].get("listingId")) for e in listings}
        sales: dict[int, dict[str, Any]] = {}
        paid: dict[int, int] = defaultdict(int)
        for e in self._of("ModelMarket", ("Purchased", "RoyaltyClaimed", "ShareClaimed"),
                          "listingId", ids):  # fmt: skip
            a = e["args"]
            if e["name"] == "Purchased":
                sales[_int(a.get("saleId"))] = {
                    "sale_id": _int(a.get("saleId")), "listing_id": _int(a.get("listingId")),
                    "buyer": str(a.get("buyer")), "price": _int(a.get("price")),
                    "status": "awaiting delivery"}  # fmt: skip
            else:
                paid[_int(a.get("listingId"))] += _int(a.get("amount"))
        for e in self._of("ModelMarket", ("Delivered", "Refunded"), "saleId", set(sales)):
            sales[_int(e["args"]["saleId"])]["status"] = e["name"].lower()
        return [{
            "listing_id": _int(a.get("listingId")), "submission": _int(a.get("submission")),
            "price": _int(a.get("price")), "license_cid": str(a.get("licenseCid", "")),
            "expiry": _int(a.get("expiry")), "claimed": paid[_int(a.get("listingId"))],
            "sales": [s for s in sales.values() if s["listing_id"] == _int(a.get("listingId"))],
        } for a in (e["args"] for e in listings)]  # fmt: skip

    def _versions(self, task_id: int) -> list[dict[str, Any]]:
        """The task's model versions: parent, reason, withdrawals excluded, attestations."""
        out: dict[int, dict[str, Any]] = {}
        for e in self._task_events(task_id, "ModelVersions", "VersionRecorded",
                                   "VersionAttested", "VersionValidated"):  # fmt: skip
            a, v = e["args"], _int(e["args"].get("version"))
            if e["name"] == "VersionRecorded":
                reason = _int(a.get("reason"))
                out[v] = {"version": v, "parent": _int(a.get("parent")),
                          "reason": VERSION_REASONS[reason] if reason < 3 else f"reason {reason}",
                          "excludes": _int(a.get("excludes")), "digest": a.get("digest", ""),
                          "cid": str(a.get("cid", "")), "attestations": 0, "validated": False,
                          "block": e["block"]}  # fmt: skip
            elif v in out and e["name"] == "VersionAttested":
                out[v]["attestations"] = max(out[v]["attestations"], _int(a.get("attestations")))
            elif v in out:
                out[v]["validated"] = True
        return list(out.values())

    def _withdrawals(self, task_id: int) -> list[dict[str, Any]]:
        """Withdrawals of consent: deadline, the first validated version excluding it, penalty."""
        versions = self._versions(task_id)
        out: dict[int, dict[str, Any]] = {}
        for e in self._task_events(task_id, "ModelVersions", "WithdrawalRequested", "PenaltyPaid"):
            a, w = e["args"], _int(e["args"].get("withdrawalId"))
            if e["name"] == "WithdrawalRequested":
                done = [v["version"] for v in versions if v["validated"] and v["excludes"] >= w]
                out[w] = {"withdrawal_id": w, "trainer": str(a.get("trainer")),
                          "deadline": _int(a.get("deadline")), "penalty": 0,
                          "excluded_by": min(done) if done else None}  # fmt: skip
            elif w in out:
                out[w]["penalty"] += _int(a.get("amount"))
        return list(out.values())

    def _rounds(
        self, task_id: int, state: dict[str, Any], created: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        commits: dict[int, list[sqlite3.Row]] = defaultdict(list)
        for r in self._rows(
            "SELECT * FROM updates WHERE task_id = ? ORDER BY block, trainer", task_id
        ):
            commits[int(r["round"])].append(r)
        batches = {
            int(b["round"]): b
            for b in self._rows("SELECT * FROM batches WHERE task_id = ?", task_id)
        }
        models: dict[int, list[sqlite3.Row]] = defaultdict(list)
        for r in self._rows("SELECT * FROM models WHERE task_id = ? ORDER BY block", task_id):
            models[int(r["round"])].append(r)
        rounds = max(_int(state.get("rounds")), max(commits, default=0))
        initial = created[0]["args"] if created else {}
        out = []
        for rnd in range(1, rounds + 1):
            start = [m for m in models.get(rnd, []) if not m["mismatch"]]
            start_cid = start[0]["cid"] if start else (
                initial.get("initialModelCid", "") if rnd == 1 else "")  # fmt: skip
            start_digest = start[0]["digest"] if start else (
                initial.get("initialModelDigest", "") if rnd == 1 else "")  # fmt: skip
            nxt = models.get(rnd + 1, [])
            posted = [m for m in nxt if not m["mismatch"]]
            batch = batches.get(rnd)
            direct = [c for c in commits.get(rnd, []) if c["via"] == "direct"]
            out.append({
                "round": rnd,
                "model_cid": start_cid, "model_digest": start_digest,
                "commits": len(commits.get(rnd, [])),
                # A batch's total is on-chain even when its leaf set cannot be read.
                "samples": sum(int(c["samples"]) for c in direct)
                           + (int(batch["samples"]) if batch else 0),
                "committers": [c["trainer"] for c in commits.get(rnd, [])],
                "updates": [{"trainer": c["trainer"], "cid": c["cid"], "digest": c["digest"],
                             "via": c["via"]}
                            for c in commits.get(rnd, [])],
                "batch": None if batch is None else {
                    "closer": batch["closer"], "count": int(batch["count"]),
                    "leaves_cid": batch["leaves_cid"], "status": batch["status"],
                    "detail": batch["detail"], "direct": len(direct),
                },
                "result_cid": posted[0]["cid"] if posted else "",
                "result_digest": posted[0]["digest"] if posted else "",
                "result_poster": posted[0]["poster"] if posted else "",
                "mismatches": [{"reporter": m["poster"], "cid": m["cid"], "digest": m["digest"]}
                               for m in nxt if m["mismatch"]],
            })  # fmt: skip
        return out

    def _latest_participant(self, account: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM participant_state WHERE account = ? ORDER BY block DESC LIMIT 1",
            (account,),
        ).fetchone()
        if row is None:
            return None
        return {
            "role": int(row["role"]),
            "stake": int(row["stake"]),
            "unbonding": int(row["unbonding"]),
            "reputation_ppm": int(row["reputation_ppm"]),
        }

    def _trainers(self, task_id: int, report: dict[str, Any] | None) -> list[dict[str, Any]]:
        joined = self._events(task_id, "TrainerJoined")
        claims = {e["args"]["account"]: e["args"] for e in self._events(task_id, "Claimed")}
        slashes: dict[str, int] = defaultdict(int)
        for e in self._events(task_id, "Slashed"):
            slashes[e["args"]["account"]] += _int(e["args"]["amount"])
        commits = {
            r["trainer"]: int(r["n"])
            for r in self._rows(
                "SELECT trainer, COUNT(*) n FROM updates WHERE task_id = ? GROUP BY trainer",
                task_id,
            )
        }
        body = (report or {}).get("body") or {}
        payouts = {}
        for p in body.get("payouts", []) if isinstance(body.get("payouts"), list) else []:
            if isinstance(p, dict):
                payouts[str(p.get("account", ""))] = p
        totals: dict[str, Any] = (
            body["totals_ppm"] if isinstance(body.get("totals_ppm"), dict) else {}
        )
        out = []
        for e in joined:
            addr = e["args"]["trainer"]
            claim = claims.get(addr)
            leaf = payouts.get(addr, {})
            flags = _int(claim["flags"]) if claim else _int(leaf.get("flags"))
            p = self._latest_participant(addr) or {}
            score = totals.get(addr, leaf.get("score_ppm")) if body else None
            out.append({
                "address": addr, "bond": _int(e["args"].get("bond")),
                "stake": p.get("stake"), "reputation_ppm": p.get("reputation_ppm"),
                "commits": commits.get(addr, 0),
                "score_ppm": _int(score) if score is not None else None,
                "payout": _int(claim["amount"]) if claim else (
                    _int(leaf["amount"]) if "amount" in leaf else None),
                "claimed": claim is not None,
                "flags": flags, "flag_words": flag_words(flags),
                "slashed": slashes.get(addr, 0),
            })  # fmt: skip
        return out

    def _committee(self, task_id: int, oracles: list[str]) -> list[dict[str, Any]]:
        commits = {e["args"]["oracle"]: e for e in self._events(task_id, "ScoreCommitted")}
        reveals = {e["args"]["oracle"]: e for e in self._events(task_id, "ScoreRevealed")}
        slashed: dict[str, int] = defaultdict(int)
        for e in self._events(task_id, "OracleSlashed"):
            slashed[e["args"]["oracle"]] += _int(e["args"]["amount"])
        reports = {
            r["oracle"]: r
            for r in self._rows("SELECT * FROM reports WHERE task_id = ? ORDER BY block", task_id)
        }
        out = []
        for o in list(dict.fromkeys([*oracles, *commits, *reveals])):
            c, rv, rep = commits.get(o), reveals.get(o), reports.get(o)
            p = self._latest_participant(o) or {}
            out.append({
                "address": o, "stake": p.get("stake"),
                "commitment": c["args"]["commitment"] if c else "",
                "committed_block": c["block"] if c else None,
                "root": rv["args"]["root"] if rv else "",
                "report_cid": rv["args"]["reportCid"] if rv else "",
                "revealed_block": rv["block"] if rv else None,
                "report_status": rep["status"] if rep else "",
                "report_detail": rep["detail"] if rep else "",
                "slashed": slashed.get(o, 0),
            })  # fmt: skip
        return out

    def _claims(self, task_id: int, state: dict[str, Any]) -> dict[str, Any]:
        claimed = self._events(task_id, "Claimed")
        return {
            "count": len(claimed),
            "paid": _int(state.get("paid")),
            "budget": _int(state.get("budget")),
            "refunded": _int(state.get("refunded")),
            "claims_open_at": _int(state.get("claimsOpenAt")),
            "claim_deadline": _int(state.get("claimDeadline")),
            "payout_root": state.get("payoutRoot", ""),
        }

    def _best_report(self, task_id: int, root: str) -> dict[str, Any] | None:
        """A public report, preferring one whose revealed root is the final root."""
        rows = self._rows(
            "SELECT * FROM reports WHERE task_id = ? AND status = ? ORDER BY (root = ?) DESC, "
            "block", task_id, PUBLIC, root,
        )  # fmt: skip
        for r in rows:
            try:
                body = shallow_json(r["body"], max_depth=16)  # an oracle's report, re-dumped
            except (TypeError, ValueError):
                continue
            return {"oracle": r["oracle"], "cid": r["cid"], "root": r["root"],
                    "final": r["root"] == root, "detail": r["detail"], "body": body}  # fmt: skip
        return None

    def chart(self, task_id: int) -> dict[str, Any]:
        """Per-round accuracy from the public report: the round's utility gain (the sum of its
        Shapley values, efficiency) and its running total over the initial model; a round's own
        ``accuracy`` field is used when the report carries one."""
        got = self._state(task_id)
        report = self._best_report(task_id, str(got[0].get("payoutRoot", ""))) if got else None
        if report is None:
            return {"available": False, "labels": [], "gain": [], "cumulative": [], "metric": ""}
        body = report["body"]
        labels, gain, cumulative, total = [], [], [], 0.0
        rounds: list[Any] = body["rounds"] if isinstance(body.get("rounds"), list) else []
        for r in rounds:
            if not isinstance(r, dict):
                continue
            values: dict[str, Any] = (
                r["values_ppm"] if isinstance(r.get("values_ppm"), dict) else {}
            )
            g = sum((_int(v) for v in values.values()), 0) / 1e6
            total += g
            labels.append(str(_int(r.get("round"))))
            gain.append(round(g, 6))
            acc = r.get("accuracy")
            cumulative.append(float(acc) if isinstance(acc, (int, float)) else round(total, 6))
        return {"available": True, "labels": labels, "gain": gain, "cumulative": cumulative,
                "metric": str(body.get("metric", ""))[:40]}  # fmt: skip

    def _task_other_events(self, task_id: int) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(TASK_SECTIONS))
        rows = self._rows(
            f"SELECT * FROM events WHERE task_id = ? AND name NOT IN ({marks}) "  # noqa: S608
            "ORDER BY block, log_index",
            task_id,
            *sorted(TASK_SECTIONS),
        )
        return [
            self._event(r) | {"group": group_of(r["name"])}
            for r in rows
            if (r["contract"], r["name"]) not in PRODUCT_SECTIONS
        ]

    # --- one participant ------------------------------------------------------------------------
    def participant(self, account: str) -> dict[str, Any]:
        """A participant's stake history and every event that names it."""
        states = [
            {"block": int(r["block"]), "role": int(r["role"]), "stake": int(r["stake"]),
             "unbonding": int(r["unbonding"]), "reputation_ppm": int(r["reputation_ppm"])}
            for r in self._rows(
                "SELECT * FROM participant_state WHERE account = ? ORDER BY block", account)
        ]  # fmt: skip
        events = []
        for r in self._rows(
            "SELECT e.*, a.arg FROM event_accounts a JOIN events e ON e.block = a.block AND "
            "e.log_index = a.log_index WHERE a.account = ? ORDER BY e.block, e.log_index",
            account,
        ):
            events.append(self._event(r) | {"as": r["arg"]})
        tasks = sorted({e["task_id"] for e in events if e["task_id"] is not None})
        return {"address": account, "states": states, "events": events, "tasks": tasks,
                "latest": states[-1] if states else None}  # fmt: skip
