"""Typed client of ``ModelMarket`` (validation submissions, audits, listings, sales, royalties)
and ``EfficacyMarket`` (pay per ppm of measured improvement).

Views come back as frozen dataclasses built from the ABI's struct components, so a field added to
a Solidity struct shows up here by name. Writes take the signing account explicitly; a revert is a
:class:`~marketplace.errors.TransactionRevertedError` naming the contract's custom error.

The pure helpers (:func:`evaluation_commitment`, :func:`attestation_typed_data`,
:func:`valuation_commitment`, :data:`EFFICACY_LEAF_TYPES`) mirror the contracts' hashing, so a
committee member or auditor can prepare what it sends without a chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from marketplace.chain.build import contract_artifacts
from marketplace.chain.deploy import Deployment
from marketplace.chain.tx import RevertDecoder, call, send
from marketplace.crypto.announce import EIP712_DOMAIN_TYPE
from marketplace.errors import ChainError, SignatureError

PPM = 1_000_000
MAX_SUBMISSIONS = 16  # ModelMarket.MAX_SUBMISSIONS (K)
MAX_AUDITORS = 8  # ModelMarket.MAX_AUDITORS (M)
BPS = 10_000
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
EIP712_NAME = "FedMarket ModelMarket"
EIP712_VERSION = "1"
EFFICACY_LEAF_TYPES: tuple[str, ...] = (
    "uint256",  # chain id
    "address",  # EfficacyMarket
    "uint256",  # offer id
    "uint256",  # index
    "address",  # data owner
    "uint32",  # Shapley share of the improvement, ppm
    "uint256",  # amount
)


class ProductRole(IntEnum):
    """ModelMarket's own roles (the registry has no Developer or Auditor)."""

    NONE = 0
    DEVELOPER = 1
    AUDITOR = 2


class SaleStatus(IntEnum):
    NONE = 0
    PAID = 1
    DELIVERED = 2
    REFUNDED = 3


# --- structs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductParams:
    """What the requester fixes once per task (K, threshold, bounty, M, fee, windows)."""

    max_submissions: int
    threshold_ppm: int
    bounty: int = 0
    required_attestations: int = 0
    auditor_fee: int = 0
    eval_commit_duration: int = 3600
    eval_reveal_duration: int = 3600

    def __post_init__(self) -> None:
        if not 1 <= self.max_submissions <= MAX_SUBMISSIONS:
            raise ChainError(
                f"max_submissions (K) must be within 1..{MAX_SUBMISSIONS}, "
                f"got {self.max_submissions}"
            )
        if not 0 <= self.threshold_ppm <= PPM:
            raise ChainError(f"threshold_ppm must be within 0..{PPM}, got {self.threshold_ppm}")
        if not 0 <= self.required_attestations <= MAX_AUDITORS:
            raise ChainError(
                f"required attestations (M) must be within 0..{MAX_AUDITORS}, "
                f"got {self.required_attestations}"
            )

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(dataclasses.astuple(self))

    @property
    def escrow(self) -> int:
        """Tokens `configure` pulls from the requester."""
        return self.bounty + self.auditor_fee * self.required_attestations


@dataclass(frozen=True)
class EvaluationVote:
    """A committee member's evaluation of one submission (``IModelMarket.evaluationOf``)."""

    committed: bool
    revealed: bool
    settled: bool
    score_ppm: int


@dataclass(frozen=True)
class ListingParams:
    """A listing of the approved submission (shares in basis points)."""

    task_id: int
    submission: int
    price: int
    license_cid: str
    expiry: int
    delivery_window: int
    royalty_window: int
    key_holder: str
    requester_bps: int = 0
    developer_bps: int = 0
    auditor_bps: int = 0
    versions: str = ZERO_ADDRESS
    version: int = 0

    def __post_init__(self) -> None:
        if self.requester_bps + self.developer_bps + self.auditor_bps > BPS:
            raise ChainError(
                "requester, developer and auditor shares exceed 10,000 bps: lower them"
            )
        if self.price <= 0:
            raise ChainError("a listing's price must be positive")

    def as_tuple(self) -> tuple[Any, ...]:
        v = self
        return (
            v.task_id, v.submission, v.price, v.license_cid, v.expiry, v.delivery_window,
            v.royalty_window, Web3.to_checksum_address(v.key_holder), v.requester_bps,
            v.developer_bps, v.auditor_bps, Web3.to_checksum_address(v.versions), v.version,
        )  # fmt: skip


@dataclass(frozen=True)
class ProductInfo:
    configured: bool
    bounty_paid: bool
    fees_reclaimed: bool
    max_submissions: int
    submission_count: int
    required_attestations: int
    fees_paid: int
    approved_submission: int
    threshold_ppm: int
    eval_commit_duration: int
    eval_reveal_duration: int
    token: str
    requester: str
    bounty: int
    auditor_fee: int
    total_score: int
    total_score_root: bytes


@dataclass(frozen=True)
class SubmissionInfo:
    developer: str
    digest: bytes
    commit_deadline: int
    reveal_deadline: int
    commit_count: int
    reveal_count: int
    decided: bool
    passed: bool
    resolved: bool
    score_ppm: int
    approvals: int
    rejections: int
    approved: bool


@dataclass(frozen=True)
class ListingInfo:
    task_id: int
    token: str
    expiry: int
    requester: str
    delivery_window: int
    developer: str
    royalty_deadline: int
    key_holder: str
    requester_bps: int
    developer_bps: int
    auditor_bps: int
    auditor_count: int
    submission: int
    swept: bool
    versions: str
    version: int
    price: int
    payout_root: bytes
    total_score: int
    gross: int
    trainer_pool: int
    developer_pool: int
    auditor_pool: int
    pending: int
    trainer_claimed: int
    requester_paid: int
    developer_paid: int
    sales: int


@dataclass(frozen=True)
class SaleInfo:
    listing_id: int
    buyer: str
    deliver_by: int
    status: SaleStatus
    buyer_key: bytes
    price: int
    sealed_key_hash: bytes  # keccak256 of the envelope in the sale's Delivered event; zero before


@dataclass(frozen=True)
class OfferParams:
    """An efficacy-pricing offer: ``cap`` escrowed, ``price_per_ppm`` per ppm of improvement."""

    token: str
    cap: int
    price_per_ppm: int
    model_cid: str
    model_digest: bytes
    test_set_commitment: bytes
    oracles: tuple[str, ...]
    quorum_bps: int
    max_owners: int
    enroll_deadline: int
    commit_duration: int
    reveal_duration: int
    claim_duration: int

    def as_tuple(self) -> tuple[Any, ...]:
        v = self
        return (
            Web3.to_checksum_address(v.token), v.cap, v.price_per_ppm, v.model_cid,
            v.model_digest, v.test_set_commitment,
            [Web3.to_checksum_address(o) for o in v.oracles], v.quorum_bps, v.max_owners,
            v.enroll_deadline, v.commit_duration, v.reveal_duration, v.claim_duration,
        )  # fmt: skip


@dataclass(frozen=True)
class OfferInfo:
    owner: str
    token: str
    cap: int
    price_per_ppm: int
    paid: int
    model_digest: bytes
    test_set_commitment: bytes
    payout_root: bytes
    committee_stake: int
    quorum_bps: int
    max_owners: int
    owner_count: int
    enroll_deadline: int
    commit_deadline: int
    reveal_deadline: int
    claim_deadline: int
    refunded: bool


T = TypeVar("T")


def _struct(cls: type[T], raw: Sequence[Any]) -> T:
    """A dataclass from the positional tuple web3 returns (fields declared in ABI order)."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if len(fields) != len(raw):
        raise ChainError(
            f"{cls.__name__}: the contract returned {len(raw)} fields, expected {len(fields)}; "
            "redeploy with this version of fedmarket"
        )
    values = {}
    for f, v in zip(fields, raw, strict=True):
        if f.name == "status":
            v = SaleStatus(int(v))
        values[f.name] = bytes(v) if isinstance(v, (bytes, bytearray)) else v
    return cls(**values)


# --- pure helpers -------------------------------------------------------------------------------


def evaluation_commitment(
    chain_id: int,
    contract: str,
    task_id: int,
    submission: int,
    oracle: str,
    score_ppm: int,
    salt: bytes,
) -> bytes:
    """ModelMarket's evaluation commitment (see ``IModelMarket.evaluationCommitment``)."""
    return bytes(
        Web3.keccak(
            encode(
                ["uint256", "address", "uint256", "uint8", "address", "uint32", "bytes32"],
                [chain_id, contract, task_id, submission, oracle, score_ppm, salt],
            )
        )
    )


def valuation_commitment(
    chain_id: int,
    contract: str,
    offer_id: int,
    oracle: str,
    root: bytes,
    report_cid: str,
    salt: bytes,
) -> bytes:
    """EfficacyMarket's commitment (see ``IEfficacyMarket.valuationCommitment``)."""
    return bytes(
        Web3.keccak(
            encode(
                ["uint256", "address", "uint256", "address", "bytes32", "bytes32", "bytes32"],
                [chain_id, contract, offer_id, oracle, root, Web3.keccak(text=report_cid), salt],
            )
        )
    )


def attestation_typed_data(
    chain_id: int, contract: str, task_id: int, model_digest: bytes, report_cid: str, approved: bool
) -> dict[str, Any]:
    """The EIP-712 message an auditor signs (domain binds chain id and the ModelMarket)."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_TYPE,
            "Attestation": [
                {"name": "taskId", "type": "uint256"},
                {"name": "modelDigest", "type": "bytes32"},
                {"name": "reportCid", "type": "string"},
                {"name": "approved", "type": "bool"},
            ],
        },
        "primaryType": "Attestation",
        "domain": {
            "name": EIP712_NAME,
            "version": EIP712_VERSION,
            "chainId": chain_id,
            "verifyingContract": Web3.to_checksum_address(contract),
        },
        "message": {
            "taskId": task_id,
            "modelDigest": model_digest,
            "reportCid": report_cid,
            "approved": approved,
        },
    }


def sign_attestation(
    auditor: LocalAccount,
    *,
    chain_id: int,
    contract: str,
    task_id: int,
    model_digest: bytes,
    report_cid: str,
    approved: bool,
) -> bytes:
    """The auditor's 65-byte signature over its attestation."""
    data = attestation_typed_data(chain_id, contract, task_id, model_digest, report_cid, approved)
    return bytes(auditor.sign_message(encode_typed_data(full_message=data)).signature)


def recover_attestation_signer(
    signature: bytes,
    *,
    chain_id: int,
    contract: str,
    task_id: int,
    model_digest: bytes,
    report_cid: str,
    approved: bool,
) -> str:
    """Who signed an attestation; :class:`SignatureError` if the signature is malformed."""
    data = attestation_typed_data(chain_id, contract, task_id, model_digest, report_cid, approved)
    try:
        return str(
            Account.recover_message(encode_typed_data(full_message=data), signature=signature)
        )
    except Exception as exc:  # eth-account raises several types for a bad signature
        raise SignatureError(f"attestation signature does not recover: {exc}") from None


# --- the client ---------------------------------------------------------------------------------


class ModelMarketClient:
    """``ModelMarket`` (and ``EfficacyMarket`` when deployed) on one chain."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        if w3.eth.chain_id != deployment.chain_id:
            raise ChainError(
                f"the RPC serves chain {w3.eth.chain_id} but the deployment is for chain "
                f"{deployment.chain_id}: pass the matching --chain-rpc or --deployments"
            )
        self.w3 = w3
        self.deployment = deployment
        self.chain_id = deployment.chain_id
        self.contract: Contract = self._contract("ModelMarket")
        self.address = str(self.contract.address)
        self.decoder = RevertDecoder(c.abi for c in deployment.contracts.values())

    def _contract(self, name: str) -> Contract:
        address = self.deployment.address(name)  # clear error when missing
        abi = self.deployment.contracts[name].abi
        return self.w3.eth.contract(address=address, abi=abi)  # type: ignore[call-overload,no-any-return]

    @property
    def efficacy(self) -> Contract:
        """The EfficacyMarket contract."""
        return self._contract("EfficacyMarket")

    def send(self, fn: ContractFunction, account: LocalAccount) -> TxReceipt:
        return send(self.w3, fn, account, decoder=self.decoder)

    def call(self, fn: ContractFunction) -> Any:
        return call(fn, decoder=self.decoder)

    def now(self) -> int:
        """The chain's clock: the latest block's timestamp (what the contracts compare with)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def withdrawal_of(self, versions: str, task_id: int, trainer: str) -> int:
        """The withdrawal number of ``trainer``'s consent in ``task_id`` at the listing's
        versions contract (``0``: it never withdrew)."""
        abi = contract_artifacts()["ModelVersions"].abi  # the packaged ABI (once per CLI claim)
        v = self.w3.eth.contract(address=Web3.to_checksum_address(versions), abi=abi)
        return int(self.call(v.functions.withdrawalOf(task_id, Web3.to_checksum_address(trainer))))

    def _token(self, address: str) -> Contract:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(address),
            abi=self.deployment.contracts["RewardToken"].abi,
        )

    def _approve(self, account: LocalAccount, token: str, spender: str, amount: int) -> None:
        t = self._token(token)
        if amount > 0 and int(self.call(t.functions.allowance(account.address, spender))) < amount:
            self.send(t.functions.approve(spender, amount), account)

    def _event(self, contract: Contract, receipt: TxReceipt, name: str) -> dict[str, Any]:
        from web3.logs import DISCARD

        events = getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)
        if not events:
            raise ChainError(f"transaction {receipt['transactionHash'].hex()} emitted no {name}")
        return dict(events[0]["args"])

    @property
    def fn(self) -> Any:
        return self.contract.functions

    # --- roles and validation submissions -----------------------------------------------------
    def register(
        self, account: LocalAccount, role: ProductRole, encryption_key: bytes
    ) -> TxReceipt:
        return self.send(self.fn.register(int(role), encryption_key), account)

    def configure(self, requester: LocalAccount, task_id: int, params: ProductParams) -> TxReceipt:
        """Fix K, threshold, bounty and M; approves and escrows the bounty plus M fees."""
        token = self.call(self.deployment_task_market().functions.task(task_id))[1]
        self._approve(requester, token, self.address, params.escrow)
        return self.send(self.fn.configure(task_id, params.as_tuple()), requester)

    def deployment_task_market(self) -> Contract:
        return self._contract("TaskMarket")

    def _task_field(self, task_id: int, name: str) -> Any:
        fn = self.deployment_task_market().functions.task(task_id)
        names = [c["name"] for c in fn.abi["outputs"][0]["components"]]
        return self.call(fn)[names.index(name)]

    def validation_commitment(self, task_id: int) -> bytes:
        """The task's validation commitment as TaskMarket stores it (``validationCommitment``)."""
        return bytes(self._task_field(task_id, "validationCommitment"))

    def task_requester(self, task_id: int) -> str:
        """The task's requester as TaskMarket stores it (audit packages are bound to it)."""
        return Web3.to_checksum_address(str(self._task_field(task_id, "requester")))

    def submit_final_model(self, requester: LocalAccount, task_id: int, model_cid: str) -> int:
        receipt = self.send(self.fn.submitFinalModel(task_id, model_cid), requester)
        return int(self._event(self.contract, receipt, "ModelSubmitted")["submission"])

    def submit(self, developer: LocalAccount, task_id: int, model_cid: str, digest: bytes) -> int:
        receipt = self.send(self.fn.submit(task_id, model_cid, digest), developer)
        return int(self._event(self.contract, receipt, "ModelSubmitted")["submission"])

    def commit_evaluation(
        self, oracle: LocalAccount, task_id: int, submission: int, score_ppm: int, salt: bytes
    ) -> TxReceipt:
        c = evaluation_commitment(
            self.chain_id, self.address, task_id, submission, oracle.address, score_ppm, salt
        )
        return self.send(self.fn.commitEvaluation(task_id, submission, c), oracle)

    def reveal_evaluation(
        self, oracle: LocalAccount, task_id: int, submission: int, score_ppm: int, salt: bytes
    ) -> TxReceipt:
        return self.send(self.fn.revealEvaluation(task_id, submission, score_ppm, salt), oracle)

    def settle_evaluation(
        self, account: LocalAccount, task_id: int, submission: int, oracle: str
    ) -> TxReceipt:
        """Release ``oracle``'s evaluation stake, or slash it if it did not reveal or revealed
        a score the quorum ruled against (anyone may call once the submission is resolved)."""
        return self.send(self.fn.settleEvaluation(task_id, submission, oracle), account)

    def evaluation_of(self, task_id: int, submission: int, oracle: str) -> EvaluationVote:
        """One committee member's evaluation of a submission."""
        committed, revealed, settled, score = self.call(
            self.fn.evaluationOf(task_id, submission, oracle)
        )
        return EvaluationVote(bool(committed), bool(revealed), bool(settled), int(score))

    def claim_bounty(self, account: LocalAccount, task_id: int) -> TxReceipt:
        return self.send(self.fn.claimBounty(task_id), account)

    # --- audits -------------------------------------------------------------------------------
    def sign_attestation(
        self,
        auditor: LocalAccount,
        task_id: int,
        model_digest: bytes,
        report_cid: str,
        approved: bool,
    ) -> bytes:
        return sign_attestation(
            auditor, chain_id=self.chain_id, contract=self.address, task_id=task_id,
            model_digest=model_digest, report_cid=report_cid, approved=approved,
        )  # fmt: skip

    def attest(
        self,
        sender: LocalAccount,
        task_id: int,
        submission: int,
        model_digest: bytes,
        report_cid: str,
        approved: bool,
        signature: bytes,
    ) -> TxReceipt:
        """Post a signed attestation (``sender`` may be the auditor or any relayer)."""
        fn = self.fn.attest(task_id, submission, model_digest, report_cid, approved, signature)
        return self.send(fn, sender)

    def approve(self, requester: LocalAccount, task_id: int, submission: int) -> TxReceipt:
        return self.send(self.fn.approve(task_id, submission), requester)

    def reclaim(self, requester: LocalAccount, task_id: int) -> TxReceipt:
        return self.send(self.fn.reclaim(task_id), requester)

    # --- listing and sales --------------------------------------------------------------------
    def attest_total_score(self, oracle: LocalAccount, task_id: int, total_score: int) -> TxReceipt:
        return self.send(self.fn.attestTotalScore(task_id, total_score), oracle)

    def list_model(self, requester: LocalAccount, params: ListingParams) -> int:
        receipt = self.send(self.fn.list(params.as_tuple()), requester)
        return int(self._event(self.contract, receipt, "Listed")["listingId"])

    def buy(self, buyer: LocalAccount, listing_id: int, buyer_key: bytes) -> tuple[int, TxReceipt]:
        """Pay for a listing with an EIP-2612 permit, in one transaction: (sale id, receipt)."""
        info = self.listing(listing_id)
        if info.price == 0:
            raise ChainError(
                f"no listing {listing_id} on ModelMarket {self.address}: see `fedmarket model list`"
            )
        deadline = self.now() + 3600
        v, r, s = self._permit(buyer, info.token, info.price, deadline)
        fn = self.fn.buyWithPermit(listing_id, buyer_key, deadline, v, r, s)
        receipt = self.send(fn, buyer)
        return int(self._event(self.contract, receipt, "Purchased")["saleId"]), receipt

    def _permit(
        self, owner: LocalAccount, token: str, value: int, deadline: int
    ) -> tuple[int, bytes, bytes]:
        t = self._token(token)
        name = str(self.call(t.functions.name()))
        nonce = int(self.call(t.functions.nonces(owner.address)))
        data = {
            "types": {
                "EIP712Domain": EIP712_DOMAIN_TYPE,
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": name, "version": "1", "chainId": self.chain_id,
                "verifyingContract": t.address,
            },
            "message": {
                "owner": owner.address, "spender": self.address, "value": value,
                "nonce": nonce, "deadline": deadline,
            },
        }  # fmt: skip
        sig = owner.sign_message(encode_typed_data(full_message=data))
        return int(sig.v), int(sig.r).to_bytes(32, "big"), int(sig.s).to_bytes(32, "big")

    def deliver(self, key_holder: LocalAccount, sale_id: int, sealed_key: bytes) -> TxReceipt:
        """Record the sealed key envelope itself (on-chain, in the ``Delivered`` event)."""
        return self.send(self.fn.deliver(sale_id, sealed_key), key_holder)

    def delivered_envelope(self, sale_id: int) -> bytes:
        """The sealed key envelope of a delivered sale, read from its ``Delivered`` log and
        checked against the sale's stored ``sealedKeyHash``: no content store involved."""
        expected = self.sale(sale_id).sealed_key_hash
        if expected == bytes(32):
            raise ChainError(f"sale {sale_id} has no delivery recorded")
        events = self.contract.events.Delivered().get_logs(
            from_block=self.deployment.block, argument_filters={"saleId": sale_id}
        )
        for ev in events:
            envelope = bytes(ev["args"]["sealedKey"])
            if Web3.keccak(envelope) == expected:
                return envelope
        raise ChainError(
            f"no Delivered log of sale {sale_id} carries the envelope hashing to "
            f"0x{expected.hex()}: the RPC's logs are pruned or incomplete; ask another node"
        )

    def refund(self, buyer: LocalAccount, sale_id: int) -> TxReceipt:
        return self.send(self.fn.refund(sale_id), buyer)

    def claim_royalty(
        self,
        sender: LocalAccount,
        listing_id: int,
        leaf: tuple[int, str, int, int, int],
        proof: Sequence[bytes | str],
    ) -> TxReceipt:
        """Claim a trainer's royalties with its payout leaf
        ``(index, account, amount, scorePpm, flags)`` and its proof."""
        index, account, amount, score, flags = leaf
        p = [bytes.fromhex(x[2:]) if isinstance(x, str) else x for x in proof]
        fn = self.fn.claimRoyalty(listing_id, index, account, amount, score, flags, p)
        return self.send(fn, sender)

    def settle_withdrawal(
        self,
        sender: LocalAccount,
        listing_id: int,
        leaf: tuple[int, str, int, int, int],
        proof: Sequence[bytes | str],
    ) -> TxReceipt:
        """Stop a withdrawn trainer's royalties on a listing with its payout leaf
        ``(index, account, amount, scorePpm, flags)`` and proof (withdrawals settle in order)."""
        index, account, amount, score, flags = leaf
        p = [bytes.fromhex(x[2:]) if isinstance(x, str) else x for x in proof]
        fn = self.fn.settleWithdrawal(listing_id, index, account, amount, score, flags, p)
        return self.send(fn, sender)

    def claim_share(self, account: LocalAccount, listing_id: int) -> TxReceipt:
        return self.send(self.fn.claimShare(listing_id), account)

    def sweep_royalties(self, account: LocalAccount, listing_id: int) -> TxReceipt:
        return self.send(self.fn.sweepRoyalties(listing_id), account)

    # --- views --------------------------------------------------------------------------------
    def role_of(self, address: str) -> ProductRole:
        return ProductRole(int(self.call(self.fn.roleOf(Web3.to_checksum_address(address)))))

    def product(self, task_id: int) -> ProductInfo:
        return _struct(ProductInfo, self.call(self.fn.product(task_id)))

    def submission(self, task_id: int, submission: int) -> SubmissionInfo:
        return _struct(SubmissionInfo, self.call(self.fn.submission(task_id, submission)))

    def listing(self, listing_id: int) -> ListingInfo:
        return _struct(ListingInfo, self.call(self.fn.listing(listing_id)))

    def sale(self, sale_id: int) -> SaleInfo:
        return _struct(SaleInfo, self.call(self.fn.sale(sale_id)))

    def trainer_gross(self, listing_id: int) -> int:
        return int(self.call(self.fn.trainerGross(listing_id)))

    def royalty_of(self, listing_id: int, index: int, score_ppm: int) -> tuple[int, int]:
        accrued, paid = self.call(self.fn.royaltyOf(listing_id, index, score_ppm))
        return int(accrued), int(paid)

    # --- efficacy pricing ---------------------------------------------------------------------
    def create_offer(self, owner: LocalAccount, params: OfferParams) -> int:
        eff = self.efficacy
        self._approve(owner, params.token, str(eff.address), params.cap)
        receipt = self.send(eff.functions.createOffer(params.as_tuple()), owner)
        return int(self._event(eff, receipt, "OfferCreated")["offerId"])

    def enroll(
        self, data_owner: LocalAccount, offer_id: int, data_cid: str, data_digest: bytes
    ) -> TxReceipt:
        return self.send(
            self.efficacy.functions.enroll(offer_id, data_cid, data_digest), data_owner
        )

    def commit_valuation(
        self, oracle: LocalAccount, offer_id: int, root: bytes, report_cid: str, salt: bytes
    ) -> TxReceipt:
        eff = self.efficacy
        c = valuation_commitment(
            self.chain_id, str(eff.address), offer_id, oracle.address, root, report_cid, salt
        )
        return self.send(eff.functions.commitValuation(offer_id, c), oracle)

    def reveal_valuation(
        self, oracle: LocalAccount, offer_id: int, root: bytes, report_cid: str, salt: bytes
    ) -> TxReceipt:
        return self.send(
            self.efficacy.functions.revealValuation(offer_id, root, report_cid, salt), oracle
        )

    def claim_efficacy(
        self,
        sender: LocalAccount,
        offer_id: int,
        leaf: tuple[int, str, int, int],
        proof: Sequence[bytes | str],
    ) -> TxReceipt:
        """Claim one row ``(index, account, shapleyPpm, amount)`` of an offer's payout table."""
        index, account, shapley_ppm, amount = leaf
        p = [bytes.fromhex(x[2:]) if isinstance(x, str) else x for x in proof]
        fn = self.efficacy.functions.claim(offer_id, index, account, shapley_ppm, amount, p)
        return self.send(fn, sender)

    def refund_offer(self, owner: LocalAccount, offer_id: int) -> TxReceipt:
        return self.send(self.efficacy.functions.refund(offer_id), owner)

    def offer(self, offer_id: int) -> OfferInfo:
        return _struct(OfferInfo, self.call(self.efficacy.functions.offer(offer_id)))
