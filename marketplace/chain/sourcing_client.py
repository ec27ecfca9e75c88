"""Typed client of the ``DataSourcing`` contract, and the hashes it checks.

The commitments and the selection's Merkle leaves are computed here exactly as the contract does
(``abi.encode`` then keccak256; leaves double-hashed as in OpenZeppelin's StandardMerkleTree), so
an offer or a selection can be committed before anything about it is public.

Example
-------
>>> ds = DataSourcingClient(w3, deployment)
>>> rid = ds.create_request(requester, RequestParams(task_id=1, budget=10**20, ...))
>>> ds.commit_offer(owner, rid, offer_commitment(rid, owner.address, ask, n, cid, salt))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from marketplace.chain.deploy import Deployment
from marketplace.chain.tx import RevertDecoder, call, revert_error, send
from marketplace.errors import ChainError, DeploymentNotFoundError, SourcingError
from marketplace.valuation.merkle import StandardMerkleTree
from marketplace.valuation.payouts import PayoutEntry

FINALIZE_GAS = 60_000
"""Gas added to a selection reveal's estimate: the reveal that reaches the quorum also writes the
final root and total and emits ``SelectionFinalized``, and another oracle's reveal mined first can
make ours that one after it was estimated."""

SELECTION_LEAF_TYPES = ("uint256", "address", "uint256")
"""A selection leaf: ``(requestId, owner, payment)``."""


def offer_commitment(
    request_id: int, owner: str, ask: int, samples: int, sketch_cid: str, salt: bytes
) -> bytes:
    """``keccak256(abi.encode(requestId, owner, ask, samples, keccak256(sketchCid), salt))``."""
    return bytes(
        Web3.keccak(
            encode(
                ["uint256", "address", "uint256", "uint64", "bytes32", "bytes32"],
                [
                    request_id,
                    Web3.to_checksum_address(owner),
                    ask,
                    samples,
                    Web3.keccak(text=sketch_cid),
                    salt,
                ],
            )
        )
    )


def selection_commitment(
    request_id: int, oracle: str, root: bytes, total: int, report_cid: str, salt: bytes
) -> bytes:
    """``keccak256(abi.encode(requestId, oracle, root, total, keccak256(reportCid), salt))``."""
    return bytes(
        Web3.keccak(
            encode(
                ["uint256", "address", "bytes32", "uint256", "bytes32", "bytes32"],
                [
                    request_id,
                    Web3.to_checksum_address(oracle),
                    root,
                    total,
                    Web3.keccak(text=report_cid),
                    salt,
                ],
            )
        )
    )


class SelectionTree(StandardMerkleTree):
    """The selection as a Merkle tree of ``(requestId, owner, payment)`` leaves, owners sorted."""

    def __init__(self, request_id: int, winners: Sequence[str], payments: Sequence[int]) -> None:
        if len(winners) != len(payments):
            raise SourcingError("one payment per winner")
        if not winners:
            raise SourcingError("an empty selection has no tree: cancel the request instead")
        rows = sorted(
            (Web3.to_checksum_address(w), int(p)) for w, p in zip(winners, payments, strict=True)
        )
        self.request_id = request_id
        self.rows = tuple(rows)
        super().__init__([(request_id, w, p) for w, p in rows], SELECTION_LEAF_TYPES)

    @property
    def total(self) -> int:
        """Sum of the payments."""
        return sum(p for _, p in self.rows)

    def root_bytes(self) -> bytes:
        """The root as 32 bytes."""
        return bytes.fromhex(self.root[2:])

    def proof_of(self, owner: str) -> tuple[int, list[bytes]]:
        """``owner``'s payment and Merkle proof."""
        key = Web3.to_checksum_address(owner)
        for i, (w, p) in enumerate(self.rows):
            if w == key:
                return p, [bytes.fromhex(h[2:]) for h in self.proof_at(i)]
        raise SourcingError(f"{owner} is not a winner of request {self.request_id}")


MAX_OFFERS = 64
"""``DataSourcing.MAX_OFFERS``: the most offers one request takes (``DataSourcingOffersFull``)."""

MIN_SELECTION_WINDOW = 300
"""``DataSourcing.MIN_SELECTION_WINDOW``: the shortest selection-commit window (seconds), enough
for the committee to try every one of ``MAX_OFFERS`` sketches before its collection margin."""


@dataclass(frozen=True)
class RequestParams:
    """``IDataSourcing.RequestParams`` (deadlines are unix times). ``offer_bond`` is what each
    offer posts (at least :meth:`DataSourcingClient.min_offer_bond`, one whole token)."""

    task_id: int
    token: str
    budget: int
    offer_bond: int
    schema_cid: str
    validation_commitment: bytes
    oracles: tuple[str, ...]
    quorum: int
    offer_deadline: int
    reveal_deadline: int
    select_commit_deadline: int
    select_reveal_deadline: int
    claim_deadline: int

    def as_tuple(self) -> tuple[Any, ...]:
        """The struct in the contract's field order."""
        return (
            self.task_id,
            Web3.to_checksum_address(self.token),
            self.budget,
            self.offer_bond,
            self.schema_cid,
            self.validation_commitment,
            [Web3.to_checksum_address(o) for o in self.oracles],
            self.quorum,
            self.offer_deadline,
            self.reveal_deadline,
            self.select_commit_deadline,
            self.select_reveal_deadline,
            self.claim_deadline,
        )


@dataclass(frozen=True)
class RequestView:
    """``IDataSourcing.RequestInfo``."""

    requester: str
    token: str
    task_id: int
    budget: int
    paid: int
    refunded: int
    selected_total: int
    validation_commitment: bytes
    selection_root: bytes
    offer_deadline: int
    reveal_deadline: int
    select_commit_deadline: int
    select_reveal_deadline: int
    claim_deadline: int
    committee_size: int
    accepted: int
    quorum: int
    cancelled: bool
    offer_bond: int
    min_stake: int
    min_reputation_ppm: int
    offer_count: int
    bonds_held: int

    @property
    def selected(self) -> bool:
        """Whether a selection reached quorum."""
        return self.selection_root != b"\x00" * 32 and not self.cancelled


class DataSourcingClient:
    """The ``DataSourcing`` contract of a deployment."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        if "DataSourcing" not in deployment.contracts:
            raise DeploymentNotFoundError(
                f"the deployment for chain {deployment.chain_id} has no DataSourcing contract: "
                "redeploy with `fedmarket deploy`"
            )
        rec = deployment.contracts["DataSourcing"]
        self.w3 = w3
        self.contract: Contract = w3.eth.contract(address=rec.address, abi=rec.abi)  # type: ignore[call-overload]
        self.address: str = rec.address
        self._deployment = deployment
        self.decoder = RevertDecoder(c.abi for c in deployment.contracts.values())

    def _send(self, fn: Any, account: LocalAccount, *, extra_gas: int = 0) -> TxReceipt:
        gas = None
        if extra_gas:
            try:
                gas = int(fn.estimate_gas({"from": account.address}) * 1.2) + extra_gas
            except ContractLogicError as exc:
                raise revert_error(exc, self.decoder, action=fn.fn_name) from None
        return send(self.w3, fn, account, decoder=self.decoder, gas=gas)

    def now(self) -> int:
        """The chain's clock: the latest block's timestamp (what the contracts compare with)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def _call(self, fn: Any) -> Any:
        return call(fn, decoder=self.decoder)

    # --- writes -------------------------------------------------------------------------------
    def create_request(self, requester: LocalAccount, params: RequestParams) -> int:
        """Create the request (the requester must have approved the budget); returns its id."""
        receipt = self._send(self.contract.functions.createRequest(params.as_tuple()), requester)
        events = self.contract.events.RequestCreated().process_receipt(receipt, errors=DISCARD)
        if not events:
            raise ChainError("createRequest emitted no RequestCreated event")
        return int(events[0]["args"]["requestId"])

    def accept_seat(self, oracle: LocalAccount, request_id: int) -> TxReceipt:
        """Accept the oracle's committee seat."""
        return self._send(self.contract.functions.acceptSeat(request_id), oracle)

    def commit_offer(self, owner: LocalAccount, request_id: int, commitment: bytes) -> TxReceipt:
        """Commit a sealed offer (see :func:`offer_commitment`) and post the request's offer
        bond: the owner must have approved it (:meth:`approve_offer_bond`)."""
        return self._send(self.contract.functions.commitOffer(request_id, commitment), owner)

    def approve_offer_bond(self, owner: LocalAccount, request_id: int) -> int:
        """Approve this contract for the request's offer bond in the request's token (unless
        the allowance covers it already); returns the bond."""
        view = self.request(request_id)
        # Any ERC-20: the packaged RewardToken ABI's ERC-20 part is the standard one.
        abi = self._deployment.contracts["RewardToken"].abi
        token = self.w3.eth.contract(address=Web3.to_checksum_address(view.token), abi=abi)
        current = int(self._call(token.functions.allowance(owner.address, self.address)))
        if current < view.offer_bond:
            send(self.w3, token.functions.approve(self.address, view.offer_bond), owner,
                 decoder=self.decoder)  # fmt: skip
        return view.offer_bond

    def forfeit_bonds(self, account: LocalAccount, request_id: int) -> TxReceipt:
        """After the reveal deadline: send the bonds of offers never revealed to the requester."""
        return self._send(self.contract.functions.forfeitBonds(request_id), account)

    def reveal_offer(
        self,
        owner: LocalAccount,
        request_id: int,
        *,
        ask: int,
        samples: int,
        sketch_cid: str,
        salt: bytes,
    ) -> TxReceipt:
        """Reveal the owner's offer."""
        fn = self.contract.functions.revealOffer(request_id, ask, samples, sketch_cid, salt)
        return self._send(fn, owner)

    def commit_selection(
        self, oracle: LocalAccount, request_id: int, commitment: bytes
    ) -> TxReceipt:
        """Commit the oracle's selection (see :func:`selection_commitment`)."""
        return self._send(self.contract.functions.commitSelection(request_id, commitment), oracle)

    def reveal_selection(
        self,
        oracle: LocalAccount,
        request_id: int,
        *,
        root: bytes,
        total: int,
        report_cid: str,
        salt: bytes,
    ) -> TxReceipt:
        """Reveal the oracle's selection."""
        fn = self.contract.functions.revealSelection(request_id, root, total, report_cid, salt)
        return self._send(fn, oracle, extra_gas=FINALIZE_GAS)

    def register_winner(
        self, owner: LocalAccount, request_id: int, tree: SelectionTree
    ) -> TxReceipt:
        """Prove the owner's place in the final selection (it may then join the task)."""
        payment, proof = tree.proof_of(owner.address)
        fn = self.contract.functions.registerWinner(request_id, payment, proof)
        return self._send(fn, owner)

    def claim_payment(
        self,
        owner: LocalAccount,
        request_id: int,
        leaf: PayoutEntry | None = None,
        proof: Sequence[bytes] = (),
    ) -> TxReceipt:
        """Claim the winner's threshold payment once the task is scored: ``leaf`` is the owner's
        row of the final payout table and ``proof`` its Merkle proof (see
        :func:`marketplace.protocol.published_report.claim_args`); the contract pays only an
        unflagged row (``DataSourcingWinnerFlagged`` otherwise). If the task's scoring failed
        there is no table: pass no leaf (the winner is paid for having trained the last round)."""
        if leaf is None:
            args: tuple[int, int, int, int] = (0, 0, 0, 0)
        else:
            if Web3.to_checksum_address(leaf.account) != owner.address:
                raise SourcingError(f"payout row {leaf.index} is not {owner.address}'s")
            args = (leaf.index, leaf.amount, leaf.score_ppm, leaf.flags)
        fn = self.contract.functions.claimPayment(request_id, *args, list(proof))
        return self._send(fn, owner)

    def refund(self, account: LocalAccount, request_id: int) -> TxReceipt:
        """Return unspent or unclaimed budget to the requester."""
        return self._send(self.contract.functions.refund(request_id), account)

    def cancel(self, account: LocalAccount, request_id: int) -> TxReceipt:
        """Cancel a request whose selection found no quorum in time."""
        return self._send(self.contract.functions.cancel(request_id), account)

    # --- reads --------------------------------------------------------------------------------
    def request(self, request_id: int) -> RequestView:
        """The request's state."""
        raw = self._call(self.contract.functions.request(request_id))
        return RequestView(*raw)

    def min_offer_bond(self, token: str) -> int:
        """The protocol minimum offer bond in ``token`` (one whole token)."""
        fn = self.contract.functions.minOfferBond(Web3.to_checksum_address(token))
        return int(self._call(fn))

    def request_of_task(self, task_id: int) -> int:
        """The request sourcing ``task_id`` (0 when none)."""
        return int(self._call(self.contract.functions.requestOfTask(task_id)))

    def offer(self, request_id: int, owner: str) -> tuple[int, int]:
        """A revealed offer's (ask, samples); zeros when not revealed."""
        ask, samples = self._call(
            self.contract.functions.offer(request_id, Web3.to_checksum_address(owner))
        )
        return int(ask), int(samples)

    def winner(self, request_id: int, owner: str) -> tuple[int, bool]:
        """A registered winner's (payment, claimed)."""
        payment, claimed = self._call(
            self.contract.functions.winner(request_id, Web3.to_checksum_address(owner))
        )
        return int(payment), bool(claimed)

    def can_join(self, task_id: int, trainer: str) -> bool:
        """Whether the gate admits ``trainer`` to ``task_id``."""
        return bool(
            self._call(self.contract.functions.canJoin(task_id, Web3.to_checksum_address(trainer)))
        )
