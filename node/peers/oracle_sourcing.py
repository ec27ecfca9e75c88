"""The oracle's part in sourcing before training: the data request of the task it sits on.

:class:`SourcingDuty` is consulted by :class:`~node.peers.oracle.OracleNode` while the task is
forming, open or training (when the oracle would otherwise only wait). It does the one next thing
this oracle owes the task's data request (``DataSourcing``), by the request's deadlines:

1. before the offer deadline: accept its seat on the request's committee;
2. after the reveal deadline: open the revealed offers' sealed sketches, value them against the
   task's validation set (which must hash to the request's commitment), run the deterministic
   mechanism (:func:`marketplace.protocol.sourcing.committee_selection`), store the report and
   commit the selection (root, total, report CID, salt);
3. after the selection-commit deadline: reveal what it committed (a quorum of equal reveals makes
   the selection final; honest oracles agree to the bit).

Everything chosen is journaled *before* it is sent — keyed by the task's scope (chain id, market,
task) and the request id — so a restarted oracle reveals what it committed and never commits
twice. An offer whose sketch cannot be fetched, opened or parsed is rejected with its reason and
counts as non-selected (:func:`marketplace.sourcing.run_sourcing`); it never stops the oracle.
Sketches are fetched 8 at a time, each fetch bounded by 10 s, and the whole collection ends
``COLLECTION_MARGIN_SECONDS`` (60) before the selection-commit deadline (a sketch nobody served by
then is rejected as ``unreachable``): offers revealed with CIDs nobody serves cannot push the
oracle past its commit window (:func:`marketplace.protocol.sourcing.collect_offers`).
Returns ``None`` when there is nothing (more) to do: no request, not on its committee, a request
document that cannot be read as one (logged), or done.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from marketplace.chain.sourcing_client import DataSourcingClient, RequestView, SelectionTree
from marketplace.errors import (
    DeploymentNotFoundError,
    SourcingError,
    StorageError,
    TransactionRevertedError,
)
from marketplace.fl.data import canonical_digest
from marketplace.protocol.session import open_validation_set
from marketplace.protocol.sourcing import (
    RequestDocument,
    collection_budget,
    commit_selection,
    load_request_document,
    oracle_selection,
    reveal_selection,
)
from marketplace.resilience import is_transient
from node.peers.base import Peer, Step

log = logging.getLogger(__name__)


def step_name(request_id: int, what: str) -> str:
    """The journal step of ``what`` (``seat``, ``chosen``, ``committed``, ``revealed``) for a
    request (round 0: sourcing precedes round 1)."""
    return f"sourcing-{request_id}-{what}"


class SourcingDuty:
    """One oracle's duties on its task's data request (see the module docstring)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.finished = False
        self._client: DataSourcingClient | None = None
        self._doc: RequestDocument | None = None

    # --- the state machine ----------------------------------------------------------------
    def step(self) -> Step | None:
        """The next sourcing step, or ``None`` when sourcing asks nothing of this oracle now."""
        if self.finished:
            return None
        client = self._sourcing_client()
        s = self.peer.session
        request_id = 0 if client is None else client.request_of_task(s.task_id)
        if client is None or request_id == 0:
            return None  # no request (yet): the requester may still publish one
        view = client.request(request_id)
        try:
            doc = self._document(client, request_id)
        except (SourcingError, StorageError) as exc:
            if is_transient(exc):
                raise  # the store is unreachable or the content not there yet: retried
            # The requester's document is malformed, oversized or not a CID: nothing to value,
            # and no reason to stop this oracle's scoring of the task itself.
            return self._finish(f"data request {request_id} cannot be served: {exc}")
        if self.peer.me not in doc.oracles:
            return self._finish(f"not on the committee of data request {request_id}")
        if view.cancelled:
            return self._finish(f"data request {request_id} was cancelled")
        now = s.market.now()
        if now < view.offer_deadline:
            return self._accept_seat(client, request_id)
        if not self._seated(client, request_id):
            return self._finish(f"did not take the seat on data request {request_id} in time")
        if now < view.reveal_deadline:
            return Step.waiting(f"data request {request_id}: waiting for the offers' reveals")
        if now < view.select_commit_deadline:
            return self._commit(client, request_id, view)
        if now < view.select_reveal_deadline:
            return self._reveal(client, request_id)
        return self._finish(f"data request {request_id}: selection window over")

    # --- the steps ------------------------------------------------------------------------
    def _accept_seat(self, client: DataSourcingClient, request_id: int) -> Step:
        if self._seated(client, request_id):
            return Step.waiting(f"data request {request_id}: waiting for offers")
        try:
            client.accept_seat(self.peer.account, request_id)
        except TransactionRevertedError as exc:
            if exc.error_name != "DataSourcingSeatAlreadyAccepted":
                raise
        self._record(request_id, "seat", {})
        return Step.acted(f"took the seat on data request {request_id}")

    def _commit(
        self, client: DataSourcingClient, request_id: int, view: RequestView
    ) -> Step | None:
        if self._journal(request_id, "committed") is not None:
            return Step.waiting(f"data request {request_id}: waiting for the selection reveals")
        chosen = self._chosen(client, request_id, view)
        if "nothing" in chosen:
            return self._finish(f"data request {request_id}: {chosen['nothing']}")
        tree = _tree(request_id, chosen)
        salt, cid = bytes.fromhex(chosen["salt"]), chosen["report_cid"]
        try:
            commit_selection(client, self.peer.account, request_id, tree, cid, salt)
        except TransactionRevertedError as exc:
            if exc.error_name != "DataSourcingAlreadyCommitted":
                raise  # committed by an earlier run of this oracle otherwise
        self._record(request_id, "committed", {})
        winners = ", ".join(chosen["winners"])
        return Step.acted(f"committed the selection of data request {request_id}", winners)

    def _reveal(self, client: DataSourcingClient, request_id: int) -> Step | None:
        if self._journal(request_id, "revealed") is not None:
            return self._finish(f"data request {request_id}: selection revealed")
        chosen = self._journal(request_id, "chosen")
        if chosen is None or "nothing" in chosen or not self._committed(client, request_id):
            return self._finish(f"data request {request_id}: no selection committed to reveal")
        tree = _tree(request_id, chosen)
        try:
            reveal_selection(
                client, self.peer.account, request_id, tree, chosen["report_cid"],
                bytes.fromhex(chosen["salt"]),
            )  # fmt: skip
        except TransactionRevertedError as exc:
            if exc.error_name != "DataSourcingAlreadyRevealed":
                raise
        self._record(request_id, "revealed", {})
        final = client.request(request_id).selected
        return Step.acted(
            f"revealed the selection of data request {request_id}" + (" (final)" if final else "")
        )

    # --- the selection --------------------------------------------------------------------
    def _chosen(
        self, client: DataSourcingClient, request_id: int, view: RequestView
    ) -> dict[str, Any]:
        """The selection this oracle commits to, computed once and journaled before the commit."""
        recorded = self._journal(request_id, "chosen")
        if recorded is not None:
            return recorded
        s = self.peer.session
        x_val, y_val = open_validation_set(s)  # refuses a set the task did not commit to
        if canonical_digest(x_val, y_val) != view.validation_commitment.hex():
            chosen: dict[str, Any] = {
                "nothing": "the request commits to another validation set than its task's, so "
                "its offers cannot be valued (the requester must re-request)"
            }
            return self._record_once(request_id, "chosen", chosen)
        result, tree, report_cid = oracle_selection(
            client, s.store, request_id, task_id=s.task_id, chain_id=s.chain_id,
            oracle=self.peer.me, x25519_private=s.identity.x25519_private,
            spec=self._document(client, request_id).spec, x_val=x_val, y_val=y_val,
            budget=view.budget,
            budget_seconds=collection_budget(view.select_commit_deadline, s.market.now()),
        )  # fmt: skip
        for outcome in result.outcomes:
            if outcome.rejected is not None:
                log.warning("data request %d: offer of %s rejected: %s",
                            request_id, outcome.owner, outcome.rejected)  # fmt: skip
        if tree is None or report_cid is None:
            chosen = {"nothing": f"none of the {len(result.outcomes)} offers can be selected"}
            return self._record_once(request_id, "chosen", chosen)
        chosen = {
            "winners": [w for w, _ in tree.rows],
            "payments": [str(p) for _, p in tree.rows],
            "report_cid": report_cid,
            "salt": secrets.token_bytes(32).hex(),
        }
        return self._record_once(request_id, "chosen", chosen)

    # --- chain and journal ----------------------------------------------------------------
    def _sourcing_client(self) -> DataSourcingClient | None:
        if self._client is None:
            market = self.peer.session.market
            try:
                self._client = DataSourcingClient(market.w3, market.deployment)
            except DeploymentNotFoundError:
                self.finished = True  # a deployment without sourcing: nothing to do, ever
                return None
        return self._client

    def _document(self, client: DataSourcingClient, request_id: int) -> RequestDocument:
        if self._doc is None:
            self._doc = load_request_document(
                client, self.peer.session.store, request_id,
                from_block=self.peer.session.market.deployment.block,
            )  # fmt: skip
        return self._doc

    def _seated(self, client: DataSourcingClient, request_id: int) -> bool:
        if self._journal(request_id, "seat") is not None:
            return True
        return self._has_event(client, "SeatAccepted", request_id)

    def _committed(self, client: DataSourcingClient, request_id: int) -> bool:
        if self._journal(request_id, "committed") is not None:
            return True
        return self._has_event(client, "SelectionCommitted", request_id)

    def _has_event(self, client: DataSourcingClient, event: str, request_id: int) -> bool:
        """Whether the chain holds ``event`` of this oracle on the request (a lost journal)."""
        market = self.peer.session.market
        found = market.events(
            client.contract, event, filters={"requestId": request_id, "oracle": self.peer.me}
        )
        return bool(found)

    def _journal(self, request_id: int, what: str) -> dict[str, Any] | None:
        return self.peer.journal.get(self.peer.session.task_id, 0, step_name(request_id, what))

    def _record(self, request_id: int, what: str, payload: dict[str, Any]) -> None:
        self.peer.journal.record(self.peer.session.task_id, 0, step_name(request_id, what), payload)

    def _record_once(self, request_id: int, what: str, payload: dict[str, Any]) -> dict[str, Any]:
        tid = self.peer.session.task_id
        return self.peer.journal.record_once(tid, 0, step_name(request_id, what), payload)

    def _finish(self, why: str) -> Step | None:
        """Sourcing is over for this oracle (says why in the log): ``None`` from now on."""
        log.info("oracle %s: %s", self.peer.me, why)
        self.finished = True
        return None


def _tree(request_id: int, chosen: dict[str, Any]) -> SelectionTree:
    """The selection tree of a journaled choice."""
    return SelectionTree(request_id, chosen["winners"], [int(p) for p in chosen["payments"]])
