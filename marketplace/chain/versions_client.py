"""Typed client of ``ModelVersions``: model versions, consent withdrawals and data retention.

Writes take the signing account explicitly; reverts come back as
:class:`~marketplace.errors.TransactionRevertedError` naming the contract's custom error.

Example
-------
>>> versions = VersionsClient(market)            # a Marketplace whose deployment has ModelVersions
>>> versions.register_task(requester, task_id, RetentionTerms(retention_expiry=..., ...))
>>> versions.request_withdrawal(trainer, task_id)
>>> versions.is_sellable(task_id, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from marketplace.chain.clients import Marketplace
from marketplace.errors import ChainError, ConfigError

DEFAULT_UNLEARN_WINDOW = 7 * 24 * 3600
ATTEST_GAS = 250_000  # attestVersion uses < 150k even when it reaches the quorum (gas test)


class Reason(IntEnum):
    """``IModelVersionRegistry.Reason``."""

    TRAINED = 0
    UNLEARNED = 1
    RENEWED = 2


@dataclass(frozen=True)
class RetentionTerms:
    """``IModelVersionRegistry.Terms``: what a requester fixes when registering a task."""

    retention_expiry: int  # unix time
    quorum: int  # committee attestations a version needs
    unlearn_window: int = DEFAULT_UNLEARN_WINDOW  # seconds from a withdrawal to its deadline
    deposit: int = 0
    miss_penalty: int = 0
    token: str | None = None  # default: the deployment's RewardToken

    def __post_init__(self) -> None:
        if self.deposit < self.miss_penalty:
            raise ConfigError("the deposit must cover at least one miss penalty")
        if self.unlearn_window <= 0 or self.quorum < 1:
            raise ConfigError("unlearn_window must be positive and quorum at least 1")


@dataclass(frozen=True)
class VersionsState:
    """``IModelVersionRegistry.TaskState``."""

    requester: str
    token: str
    deposit_held: int
    miss_penalty: int
    retention_expiry: int
    unlearn_window: int
    quorum: int
    version_count: int
    withdrawal_count: int
    excluded_count: int
    renewal_nonce: int
    pending_expiry: int
    renewal_approvals: int


@dataclass(frozen=True)
class ModelVersion:
    """``IModelVersionRegistry.Version`` with its number."""

    number: int
    digest: bytes
    parent: int
    reason: Reason
    excludes: int
    attestations: int
    recorded_at: int
    attested_at: int
    proposer: str

    @property
    def validated(self) -> bool:
        return self.attested_at != 0


@dataclass(frozen=True)
class WithdrawalView:
    """``IModelVersionRegistry.Withdrawal`` with its number."""

    number: int
    trainer: str
    requested_at: int
    deadline: int
    penalty_paid: bool


@dataclass(frozen=True)
class CalibrationCommit:
    """A ``CalibrationCommitted`` event: one remaining trainer's update for one round of the
    unlearning that forgets withdrawals ``1..excludes``."""

    excludes: int
    round: int
    trainer: str
    digest: bytes  # sha256 of the stored bytes (the envelope)
    cid: str
    committed_at: int  # block time


class VersionsClient:
    """``ModelVersions`` through a :class:`Marketplace` (its signer plumbing and revert decoder)."""

    def __init__(self, market: Marketplace) -> None:
        if "ModelVersions" not in market.deployment.contracts:
            raise ChainError(
                f"the deployment for chain {market.deployment.chain_id} has no ModelVersions: "
                "redeploy with `fedmarket deploy`"
            )
        self.market = market
        rec = market.deployment.contracts["ModelVersions"]
        self.contract: Contract = market.w3.eth.contract(address=rec.address, abi=rec.abi)  # type: ignore[call-overload]

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def _event(self, receipt: TxReceipt, name: str) -> dict[str, Any]:
        (event,) = getattr(self.contract.events, name)().process_receipt(receipt, errors=DISCARD)
        return dict(event["args"])

    # --- writes ---------------------------------------------------------------------------
    def register_task(
        self, requester: LocalAccount, task_id: int, terms: RetentionTerms
    ) -> TxReceipt:
        """Register the task's retention term and post the deposit (approving it first)."""
        token = terms.token or self.market.token.address
        if terms.deposit:
            self.market.ensure_allowance(requester, self.address, terms.deposit, token)
        struct = (
            Web3.to_checksum_address(token), terms.deposit, terms.miss_penalty,
            terms.retention_expiry, terms.unlearn_window, terms.quorum,
        )  # fmt: skip
        return self.market.send(self.contract.functions.registerTask(task_id, struct), requester)

    def record_version(
        self,
        proposer: LocalAccount,
        task_id: int,
        *,
        parent: int,
        reason: Reason,
        excludes: int,
        digest: bytes,
        cid: str,
    ) -> int:
        """Propose a version; returns its number (it counts once the committee's quorum attests)."""
        receipt = self.market.send(
            self.contract.functions.recordVersion(
                task_id, parent, int(reason), excludes, digest, cid
            ),
            proposer,
        )
        return int(self._event(receipt, "VersionRecorded")["version"])

    def attest_version(self, oracle: LocalAccount, task_id: int, version: int) -> TxReceipt:
        """Attest ``version`` as a committee member.

        Sent with a fixed gas limit: the attestation that reaches the quorum also records the
        exclusion checkpoint, so an estimate taken while another member's attestation is pending
        would run out of gas when mined after it.
        """
        fn = self.contract.functions.attestVersion(task_id, version)
        return self.market.send(fn, oracle, gas=ATTEST_GAS)

    def request_withdrawal(self, trainer: LocalAccount, task_id: int) -> WithdrawalView:
        """Withdraw ``trainer``'s consent; returns the withdrawal with its deadline."""
        receipt = self.market.send(self.contract.functions.requestWithdrawal(task_id), trainer)
        return self.withdrawal(
            task_id, int(self._event(receipt, "WithdrawalRequested")["withdrawalId"])
        )

    def commit_calibration(
        self, trainer: LocalAccount, task_id: int, *, excludes: int, round_: int, digest: bytes,
        cid: str,
    ) -> TxReceipt:  # fmt: skip
        """Commit ``trainer``'s calibration update for ``round_`` of unlearning ``excludes``."""
        return self.market.send(
            self.contract.functions.commitCalibration(task_id, excludes, round_, digest, cid),
            trainer,
        )

    def claim_missed_deadline(self, trainer: LocalAccount, task_id: int) -> int:
        """Collect the miss penalty; returns the amount paid."""
        receipt = self.market.send(self.contract.functions.claimMissedDeadline(task_id), trainer)
        return int(self._event(receipt, "PenaltyPaid")["amount"])

    def propose_renewal(self, requester: LocalAccount, task_id: int, expiry: int) -> int:
        """Propose a new retention expiry; returns the renewal's nonce."""
        receipt = self.market.send(
            self.contract.functions.proposeRenewal(task_id, expiry), requester
        )
        return int(self._event(receipt, "RenewalProposed")["nonce"])

    def approve_renewal(self, trainer: LocalAccount, task_id: int, nonce: int) -> TxReceipt:
        return self.market.send(self.contract.functions.approveRenewal(task_id, nonce), trainer)

    def reclaim_deposit(self, requester: LocalAccount, task_id: int) -> TxReceipt:
        return self.market.send(self.contract.functions.reclaimDeposit(task_id), requester)

    # --- views ----------------------------------------------------------------------------
    def is_sellable(self, task_id: int, version: int) -> bool:
        return bool(self.market.call(self.contract.functions.isSellable(task_id, version)))

    def has_withdrawn(self, task_id: int, trainer: str) -> bool:
        return bool(
            self.market.call(
                self.contract.functions.hasWithdrawn(task_id, Web3.to_checksum_address(trainer))
            )
        )

    def is_honoured(self, task_id: int, withdrawal_id: int) -> bool:
        return bool(self.market.call(self.contract.functions.isHonoured(task_id, withdrawal_id)))

    def state(self, task_id: int) -> VersionsState:
        raw = self.market.call(self.contract.functions.taskState(task_id))
        return VersionsState(
            requester=str(raw[0]), token=str(raw[1]), deposit_held=int(raw[2]),
            miss_penalty=int(raw[3]), retention_expiry=int(raw[4]), unlearn_window=int(raw[5]),
            quorum=int(raw[6]), version_count=int(raw[7]), withdrawal_count=int(raw[8]),
            excluded_count=int(raw[9]), renewal_nonce=int(raw[10]), pending_expiry=int(raw[11]),
            renewal_approvals=int(raw[12]),
        )  # fmt: skip

    def version(self, task_id: int, number: int) -> ModelVersion:
        raw = self.market.call(self.contract.functions.version(task_id, number))
        return ModelVersion(
            number=number, digest=bytes(raw[0]), parent=int(raw[1]), reason=Reason(int(raw[2])),
            excludes=int(raw[3]), attestations=int(raw[4]), recorded_at=int(raw[5]),
            attested_at=int(raw[6]), proposer=str(raw[7]),
        )  # fmt: skip

    def versions(self, task_id: int) -> list[ModelVersion]:
        """Every version of the task, oldest first."""
        return [self.version(task_id, n) for n in range(1, self.state(task_id).version_count + 1)]

    def withdrawal(self, task_id: int, number: int) -> WithdrawalView:
        raw = self.market.call(self.contract.functions.withdrawal(task_id, number))
        return WithdrawalView(
            number=number, trainer=str(raw[0]), requested_at=int(raw[1]), deadline=int(raw[2]),
            penalty_paid=bool(raw[3]),
        )  # fmt: skip

    def withdrawal_count(self, task_id: int) -> int:
        """Withdrawals so far (0 as well for a task not registered: never reverts)."""
        return int(self.market.call(self.contract.functions.withdrawalCount(task_id)))

    def withdrawals(self, task_id: int) -> list[WithdrawalView]:
        """Every withdrawal of the task, in request order."""
        count = self.state(task_id).withdrawal_count
        return [self.withdrawal(task_id, n) for n in range(1, count + 1)]

    def calibration_of(self, task_id: int, excludes: int, round_: int, trainer: str) -> bytes:
        """``trainer``'s digest for ``round_`` of unlearning ``excludes`` (zeros: none)."""
        fn = self.contract.functions.calibrationOf(
            task_id, excludes, round_, Web3.to_checksum_address(trainer)
        )
        return bytes(self.market.call(fn))

    def calibrations(self, task_id: int, excludes: int) -> list[CalibrationCommit]:
        """Every calibration update committed for unlearning ``excludes``, in chain order."""
        events = self.market.events(
            self.contract, "CalibrationCommitted", filters={"taskId": task_id, "excludes": excludes}
        )
        events = sorted(events, key=lambda e: (e["blockNumber"], e["logIndex"]))
        return [
            CalibrationCommit(
                excludes=excludes,
                round=int(e["args"]["round"]),
                trainer=Web3.to_checksum_address(e["args"]["trainer"]),
                digest=bytes(e["args"]["digest"]),
                cid=str(e["args"]["cid"]),
                committed_at=int(e["args"]["committedAt"]),
            )
            for e in events
        ]

    def attested_by(self, task_id: int, version: int, oracle: str) -> bool:
        """Whether ``oracle`` attested ``version`` (from ``VersionAttested``)."""
        events = self.market.events(
            self.contract, "VersionAttested",
            filters={"taskId": task_id, "version": version,
                     "oracle": Web3.to_checksum_address(oracle)},
        )  # fmt: skip
        return bool(events)

    def version_cid(self, task_id: int, number: int) -> str:
        """The CID a version was recorded with (from its ``VersionRecorded`` event)."""
        events = self.market.events(
            self.contract, "VersionRecorded", filters={"taskId": task_id, "version": number}
        )
        if not events:
            raise ChainError(f"task {task_id} has no version {number}")
        return str(events[0]["args"]["cid"])
