"""Typed clients for the deployed contracts.

:class:`Marketplace` binds a ``Web3`` to a :class:`~marketplace.chain.deploy.Deployment` and
exposes each contract function the library uses as a typed method. Writes take the signing
account explicitly (no hidden default sender); reverts come back as
:class:`~marketplace.errors.TransactionRevertedError` with the custom error's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NewType

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import TxReceipt

from marketplace.chain.deploy import Deployment
from marketplace.chain.tx import RevertDecoder, call, send
from marketplace.errors import ChainError

Wei = NewType("Wei", int)
TaskId = NewType("TaskId", int)


class Role(IntEnum):
    """``ParticipantRegistry.Role``."""

    NONE = 0
    TRAINER = 1
    ORACLE = 2
    REQUESTER = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ChainError(
                f"unknown role {name!r}: use trainer, oracle or requester"
            ) from None


@dataclass(frozen=True)
class Participant:
    """``ParticipantRegistry.participant(address)``.

    ``reserved`` is the part of ``stake`` that live tasks the account accepted hold; the rest can
    be unbonded at any time. Unbonding comes in two batches: the first keeps its release time
    whatever later requests do.
    """

    address: str
    role: Role
    encryption_key: bytes
    stake: int
    unbonding: int
    unbonding_release_at: int
    reputation_ppm: int
    reserved: int = 0
    queued: int = 0
    queued_release_at: int = 0

    @property
    def available(self) -> int:
        """Stake not reserved by any task: free to unbond or to reserve for a new task."""
        return self.stake - self.reserved

    @property
    def locked_until(self) -> int:
        """Kept for callers of the old time lock: stake is now reserved per task instead."""
        return 0

    @property
    def registered(self) -> bool:
        return self.role != Role.NONE


class Phase(IntEnum):
    """``TaskMarket.Phase``."""

    OPEN = 0
    TRAINING = 1
    COMMITTING = 2
    REVEALING = 3
    FINALIZED = 4
    DISPUTED = 5
    CLOSED = 6
    CANCELLED = 7
    FORMING = 8  # the proposed committee accepts its seats


class Outcome(IntEnum):
    """``ITaskMarket.Outcome``: how scoring ended."""

    NONE = 0
    SCORED = 1
    FAILED = 2
    VALIDATION_MISMATCH = 3


#: The root an oracle reveals to declare the sealed validation set not matching its commitment.
VALIDATION_MISMATCH = bytes(Web3.keccak(text="fedmarket.validation-mismatch"))


@dataclass(frozen=True)
class TaskParams:
    """``TaskMarket.TaskParams``: what a requester fixes when creating a task.

    Durations are seconds; ``join_deadline`` is a unix timestamp. ``token`` defaults to the
    deployment's RewardToken.
    """

    budget: int
    model_spec_cid: str
    initial_model_cid: str
    initial_model_digest: bytes
    config_cid: str
    validation_commitment: bytes
    rounds: int
    min_trainers: int
    max_trainers: int
    min_stake: int
    join_deadline: int
    oracles: tuple[str, ...]
    token: str | None = None
    min_reputation_ppm: int = 0
    trainer_bond: int = 0
    dispute_bond: int = 0
    round_duration: int = 3600
    commit_duration: int = 3600
    reveal_duration: int = 3600
    dispute_duration: int = 3600
    claim_duration: int = 7 * 24 * 3600
    quorum_bps: int = 6600  # 2 of 3 equal-stake oracles (6,667 would need all 3)
    oracle_slash: int = 10**18  # each seat's reserved stake (its vote weight and what it risks)
    accept_duration: int = 3600  # the committee's window to accept its seats
    join_gate: str | None = None  # an IJoinGate contract; None: open joining
    requester_deposit: int = 0  # paid to the committee if the validation set is found mismatched
    sealed_validation_digest: bytes = b"\x00" * 32  # digest of the sealed validation blob

    def as_tuple(self, token: str) -> tuple[Any, ...]:
        """The struct in the contract's field order."""
        return (
            Web3.to_checksum_address(token),
            self.budget,
            self.model_spec_cid,
            self.initial_model_cid,
            self.initial_model_digest,
            self.config_cid,
            self.validation_commitment,
            self.rounds,
            self.min_trainers,
            self.max_trainers,
            self.min_stake,
            self.min_reputation_ppm,
            self.trainer_bond,
            self.dispute_bond,
            self.join_deadline,
            self.round_duration,
            self.commit_duration,
            self.reveal_duration,
            self.dispute_duration,
            self.claim_duration,
            [Web3.to_checksum_address(o) for o in self.oracles],
            self.quorum_bps,
            self.oracle_slash,
            self.accept_duration,
            Web3.to_checksum_address(self.join_gate or "0x" + "00" * 20),
            self.requester_deposit,
            self.sealed_validation_digest,
        )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@dataclass(frozen=True)
class TaskView:
    """A task's on-chain state; fields by the contract's names, also in snake_case."""

    task_id: int
    fields: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__["fields"]
        for key in (name, _camel(name)):
            if key in fields:
                value = fields[key]
                return bytes(value) if isinstance(value, (bytes, bytearray)) else value
        raise AttributeError(f"task has no field {name!r} (fields: {', '.join(fields)})")

    @property
    def phase_enum(self) -> Phase:
        return Phase(int(self.fields["phase"]))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"taskId": self.task_id}
        for k, v in self.fields.items():
            if isinstance(v, (bytes, bytearray)):
                out[k] = "0x" + bytes(v).hex()
            elif isinstance(v, int) and not isinstance(v, bool) and v > 2**53:
                out[k] = str(v)
            elif isinstance(v, (list, tuple)):
                out[k] = [str(x) for x in v]
            else:
                out[k] = v
        if "phase" in out:
            out["phaseName"] = Phase(int(self.fields["phase"])).name.lower()
        return out


class Marketplace:
    """The marketplace contracts on one chain."""

    def __init__(self, w3: Web3, deployment: Deployment):
        self.w3 = w3
        self.deployment = deployment
        if w3.eth.chain_id != deployment.chain_id:
            raise ChainError(
                f"the RPC serves chain {w3.eth.chain_id} but the deployment is for chain "
                f"{deployment.chain_id}: pass the matching --chain-rpc or --deployments"
            )
        self.token: Contract = self._contract("RewardToken")
        self.registry: Contract = self._contract("ParticipantRegistry")
        self.market: Contract = self._contract("TaskMarket")
        self.decoder = RevertDecoder(c.abi for c in deployment.contracts.values())
        self._event_cache: dict[tuple[Any, ...], tuple[int, list[Any]]] = {}

    def _contract(self, name: str) -> Contract:
        rec = self.deployment.contracts[name]
        return self.w3.eth.contract(address=rec.address, abi=rec.abi)  # type: ignore[call-overload,no-any-return]

    # --- plumbing -------------------------------------------------------------------------
    def send(self, fn: ContractFunction, account: LocalAccount, **kwargs: Any) -> TxReceipt:
        """Send ``fn`` signed by ``account``; reverts decoded against the marketplace's errors."""
        return send(self.w3, fn, account, decoder=self.decoder, **kwargs)

    def call(self, fn: ContractFunction) -> Any:
        return call(fn, decoder=self.decoder)

    def token_at(self, address: str) -> Contract:
        """An ERC-20 at ``address`` with the RewardToken ABI (its ERC-20 part is standard)."""
        return self.w3.eth.contract(  # type: ignore[call-overload,no-any-return]
            address=Web3.to_checksum_address(address),
            abi=self.deployment.contracts["RewardToken"].abi,
        )

    # --- token ----------------------------------------------------------------------------
    def balance_of(self, address: str, token: str | None = None) -> int:
        t = self.token_at(token) if token else self.token
        return int(self.call(t.functions.balanceOf(Web3.to_checksum_address(address))))

    def mint(self, owner: LocalAccount, to: str, amount: int) -> TxReceipt:
        """Devnet only: the RewardToken owner mints ``amount`` to ``to``."""
        return self.send(self.token.functions.mint(Web3.to_checksum_address(to), amount), owner)

    def ensure_allowance(
        self, account: LocalAccount, spender: str, amount: int, token: str | None = None
    ) -> None:
        """Approve ``spender`` for ``amount`` unless the allowance already covers it."""
        t = self.token_at(token) if token else self.token
        current = int(self.call(t.functions.allowance(account.address, spender)))
        if current < amount:
            self.send(t.functions.approve(spender, amount), account)

    def require_balance(self, account: LocalAccount, amount: int, what: str) -> None:
        have = self.balance_of(account.address)
        if have < amount:
            raise ChainError(
                f"insufficient token balance for {what}: {account.address} holds {have}, needs "
                f"{amount}; get tokens (devnet: `fedmarket faucet`) and retry"
            )

    # --- registry -------------------------------------------------------------------------
    def participant(self, address: str) -> Participant:
        addr = Web3.to_checksum_address(address)
        role, key, stake, reserved, unbonding, release_at, queued, queued_at, rep = self.call(
            self.registry.functions.participant(addr)
        )
        return Participant(
            address=addr,
            role=Role(role),
            encryption_key=bytes(key),
            stake=int(stake),
            unbonding=int(unbonding),
            unbonding_release_at=int(release_at),
            reputation_ppm=int(rep),
            reserved=int(reserved),
            queued=int(queued),
            queued_release_at=int(queued_at),
        )

    def register(
        self, account: LocalAccount, role: Role, encryption_key: bytes, stake: int = 0
    ) -> TxReceipt:
        """Register ``account`` with ``role`` and its X25519 public key, staking ``stake``."""
        if len(encryption_key) != 32:
            raise ChainError("the encryption key must be a 32-byte X25519 public key")
        if stake:
            self.require_balance(account, stake, "the stake")
            self.ensure_allowance(account, self.registry.address, stake)
        return self.send(
            self.registry.functions.register(int(role), encryption_key, stake), account
        )

    def stake(self, account: LocalAccount, amount: int) -> TxReceipt:
        self.require_balance(account, amount, "the stake")
        self.ensure_allowance(account, self.registry.address, amount)
        return self.send(self.registry.functions.stake(amount), account)

    def request_unstake(self, account: LocalAccount, amount: int) -> TxReceipt:
        return self.send(self.registry.functions.requestUnstake(amount), account)

    def withdraw(self, account: LocalAccount) -> TxReceipt:
        return self.send(self.registry.functions.withdraw(), account)

    # --- task market ----------------------------------------------------------------------
    def create_task(self, requester: LocalAccount, params: TaskParams) -> TaskId:
        """Escrow ``params.budget`` and create the task; returns its id."""
        token = params.token or self.token.address
        escrow = params.budget + params.requester_deposit
        self.require_balance(requester, escrow, "the task budget and deposit")
        self.ensure_allowance(requester, self.market.address, escrow, token)
        receipt = self.send(self.market.functions.createTask(params.as_tuple(token)), requester)
        (event,) = self.market.events.TaskCreated().process_receipt(receipt, errors=DISCARD)
        return TaskId(int(event["args"]["taskId"]))

    def join(self, trainer: LocalAccount, task_id: int) -> TxReceipt:
        bond = int(self.task(task_id).trainer_bond)
        if bond:
            self.ensure_allowance(trainer, self.market.address, bond, self.task(task_id).token)
        return self.send(self.market.functions.join(task_id), trainer)

    def commit_update(
        self,
        trainer: LocalAccount,
        task_id: int,
        round_: int,
        cid: str,
        digest: bytes,
        num_samples: int,
    ) -> TxReceipt:
        return self.send(
            self.market.functions.commitUpdate(task_id, round_, cid, digest, num_samples), trainer
        )

    def post_model(
        self, trainer: LocalAccount, task_id: int, round_: int, cid: str, digest: bytes
    ) -> TxReceipt:
        return self.send(self.market.functions.postModel(task_id, round_, cid, digest), trainer)

    def advance(self, account: LocalAccount, task_id: int) -> TxReceipt:
        return self.send(self.market.functions.advance(task_id), account)

    def cancel(self, requester: LocalAccount, task_id: int) -> TxReceipt:
        return self.send(self.market.functions.cancel(task_id), requester)

    # --- committee consent and failure paths ----------------------------------------------
    def accept_seat(self, oracle: LocalAccount, task_id: int) -> TxReceipt:
        """``oracle`` takes its seat on a Forming task (reserves ``oracleSlash`` of its stake)."""
        return self.send(self.market.functions.acceptSeat(task_id), oracle)

    def seat_acceptance_signature(self, oracle: LocalAccount, task_id: int, deadline: int) -> bytes:
        """``oracle``'s EIP-712 signature accepting its seat, for anyone to submit."""
        digest = bytes(
            self.call(
                self.market.functions.seatAcceptanceDigest(task_id, oracle.address, deadline)
            )
        )
        signed = oracle.unsafe_sign_hash(digest)
        return bytes(signed.signature)

    def accept_seat_for(
        self, sender: LocalAccount, task_id: int, oracle: str, deadline: int, signature: bytes
    ) -> TxReceipt:
        """Submit an oracle's signed seat acceptance (e.g. the requester batching them)."""
        fn = self.market.functions.acceptSeatFor(
            task_id, Web3.to_checksum_address(oracle), deadline, signature
        )
        return self.send(fn, sender)

    def has_accepted(self, task_id: int, oracle: str) -> bool:
        checksum = Web3.to_checksum_address(oracle)
        return bool(self.call(self.market.functions.hasAccepted(task_id, checksum)))

    def claim_fallback(self, trainer: LocalAccount, task_id: int) -> TxReceipt:
        """After failed scoring: the trainer's pay by committed samples, bond and reservation."""
        return self.send(self.market.functions.claimFallback(task_id), trainer)

    def fallback_of(self, task_id: int, trainer: str) -> tuple[int, int]:
        """``(committed samples, fallback pay)`` of ``trainer``."""
        samples, amount = self.call(
            self.market.functions.fallbackOf(task_id, Web3.to_checksum_address(trainer))
        )
        return int(samples), int(amount)

    def claim_deposit(self, oracle: LocalAccount, task_id: int) -> TxReceipt:
        """After a validation mismatch: an oracle that proved it takes its deposit share."""
        return self.send(self.market.functions.claimDeposit(task_id), oracle)

    def release_stake(self, trainer: LocalAccount, task_id: int) -> TxReceipt:
        """After a task closed: a trainer that never claimed releases its reservation."""
        return self.send(self.market.functions.releaseStake(task_id), trainer)

    def commit_score(self, oracle: LocalAccount, task_id: int, commitment: bytes) -> TxReceipt:
        return self.send(self.market.functions.commitScore(task_id, commitment), oracle)

    def reveal_score(
        self, oracle: LocalAccount, task_id: int, root: bytes, report_cid: str, salt: bytes
    ) -> TxReceipt:
        return self.send(
            self.market.functions.revealScore(task_id, root, report_cid, salt), oracle
        )

    def score_commitment(
        self, task_id: int, oracle: str, root: bytes, report_cid: str, salt: bytes
    ) -> bytes:
        """``keccak256(abi.encode(taskId, oracle, root, keccak256(reportCid), salt))``."""
        from eth_abi import encode

        inner = Web3.keccak(text=report_cid)
        return bytes(
            Web3.keccak(
                encode(
                    ["uint256", "address", "bytes32", "bytes32", "bytes32"],
                    [task_id, Web3.to_checksum_address(oracle), root, inner, salt],
                )
            )
        )

    def claim(
        self,
        sender: LocalAccount,
        task_id: int,
        *,
        index: int,
        account: str,
        amount: int,
        score_ppm: int,
        flags: int,
        proof: Sequence[bytes],
    ) -> TxReceipt:
        return self.send(
            self.market.functions.claim(
                task_id, index, Web3.to_checksum_address(account), amount, score_ppm, flags,
                list(proof),
            ),
            sender,
        )

    def slash_oracle(self, sender: LocalAccount, task_id: int, oracle: str) -> TxReceipt:
        return self.send(
            self.market.functions.slashOracle(task_id, Web3.to_checksum_address(oracle)), sender
        )

    def dispute(self, account: LocalAccount, task_id: int) -> TxReceipt:
        t = self.task(task_id)
        if t.dispute_bond:
            self.ensure_allowance(account, self.market.address, t.dispute_bond, t.token)
        return self.send(self.market.functions.dispute(task_id), account)

    def resolve_dispute(self, arbiter: LocalAccount, task_id: int, root: bytes) -> TxReceipt:
        return self.send(self.market.functions.resolveDispute(task_id, root), arbiter)

    def sweep(self, account: LocalAccount, task_id: int) -> TxReceipt:
        return self.send(self.market.functions.sweep(task_id), account)

    def withdraw_bond(self, trainer: LocalAccount, task_id: int) -> TxReceipt:
        return self.send(self.market.functions.withdrawBond(task_id), trainer)

    def task(self, task_id: int) -> TaskView:
        """The task's on-chain state (the ``task(taskId)`` view, by field name)."""
        fn = self.market.functions.task(task_id)
        raw = self.call(fn)
        outputs = fn.abi["outputs"]
        if len(outputs) == 1 and outputs[0]["type"] == "tuple":
            names = [c["name"] for c in outputs[0]["components"]]
            values = raw if isinstance(raw, (list, tuple)) else tuple(raw)
        else:
            names = [o["name"] for o in outputs]
            values = raw
        return TaskView(task_id=task_id, fields=dict(zip(names, values, strict=True)))

    def is_trainer(self, task_id: int, address: str) -> bool:
        checksum = Web3.to_checksum_address(address)
        return bool(self.call(self.market.functions.isTrainer(task_id, checksum)))

    def update_of(self, task_id: int, round_: int, trainer: str) -> tuple[bytes, int]:
        digest, n = self.call(
            self.market.functions.update(task_id, round_, Web3.to_checksum_address(trainer))
        )
        return bytes(digest), int(n)

    def model_digest(self, task_id: int, round_: int) -> bytes:
        return bytes(self.call(self.market.functions.modelDigest(task_id, round_)))

    def increase_time(self, seconds: int) -> None:
        """Devnets only: move the chain clock forward and mine a block."""
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    # --- events ---------------------------------------------------------------------------
    def events(
        self,
        contract: Contract,
        event: str,
        *,
        from_block: int | None = None,
        to_block: int | str = "latest",
        filters: dict[str, Any] | None = None,
    ) -> Sequence[Any]:
        """Decoded logs of ``event`` (from the deployment block by default).

        The default range (deployment block to the head) is cached per event and filter and
        extended incrementally, so polling peers scan each block once. Devnets do not reorganize;
        on a real network pass explicit ``to_block`` values a few blocks behind the head.
        """
        ev = getattr(contract.events, event)
        if from_block is not None or to_block != "latest":
            start = self.deployment.block if from_block is None else from_block
            return ev.get_logs(  # type: ignore[no-any-return]
                from_block=start, to_block=to_block, argument_filters=filters or None
            )
        key = (contract.address, event, tuple(sorted((filters or {}).items())))
        scanned, logs = self._event_cache.get(key, (self.deployment.block - 1, []))
        head = self.w3.eth.block_number
        if head > scanned:
            fresh = ev.get_logs(
                from_block=scanned + 1, to_block=head, argument_filters=filters or None
            )
            logs = [*logs, *fresh]
            self._event_cache[key] = (head, logs)
        return logs
