"""Typed clients for the deployed contracts.

:class:`Marketplace` binds a ``Web3`` to a :class:`~marketplace.chain.deploy.Deployment` and
exposes each contract function the library uses as a typed method. Writes take the signing
account explicitly (no hidden default sender); reverts come back as
:class:`~marketplace.errors.TransactionRevertedError` with the custom error's name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any, NewType

from eth_account.signers.local import LocalAccount
from eth_typing import Hash32
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import TxReceipt

from marketplace.chain.deploy import Deployment
from marketplace.chain.lean import LeanReads, Missing
from marketplace.chain.tx import RevertDecoder, TxContext, call, call_unreachable, send
from marketplace.chain.views import (
    Outcome,
    Participant,
    Phase,
    Role,
    TaskInfo,
    TaskParams,
    TaskView,
    decode,
    encode,
)
from marketplace.errors import ChainError, ChainLagError, TransactionRevertedError

__all__ = [
    "BPS",
    "QUORUM_MIN_BPS",
    "VALIDATION_MISMATCH",
    "MarketLimits",
    "Marketplace",
    "Outcome",
    "Participant",
    "Phase",
    "Role",
    "SeatSignature",
    "TaskId",
    "TaskInfo",
    "TaskParams",
    "TaskView",
    "Wei",
    "compact_signature",
]

Wei = NewType("Wei", int)
TaskId = NewType("TaskId", int)

_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def compact_signature(signature: bytes) -> tuple[bytes, bytes]:
    """A 65-byte ``r || s || v`` signature as EIP-2098 ``(r, vs)``: ``vs`` is ``s`` with
    ``v - 27`` in its top bit (``TaskMarket.acceptSeatsFor`` takes it). A 64-byte signature is
    taken as already compact."""
    if len(signature) == 64:
        return signature[:32], signature[32:]
    if len(signature) != 65:
        raise ValueError(f"a signature has 65 bytes (or 64 compact), not {len(signature)}")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    v = v + 27 if v < 27 else v
    if v not in (27, 28) or s > _SECP256K1_HALF_N:
        raise ValueError("not a low-s signature with v 27 or 28: no compact form")
    vs = s | ((v - 27) << 255)
    return signature[:32], vs.to_bytes(32, "big")


@dataclass(frozen=True)
class SeatSignature:
    """An oracle's consent to its seat on a task, signed off-chain (EIP-712 ``SeatAcceptance``,
    see :meth:`Marketplace.sign_seat`) for anyone to submit with
    :meth:`Marketplace.accept_seats_for`.

    Its text form, :meth:`to_text`, is ``TASK:ORACLE:DEADLINE:0xSIG`` (the signature in its
    64-byte EIP-2098 compact form), one shell word that :meth:`from_text` reads back.
    """

    task_id: int
    oracle: str
    deadline: int
    signature: bytes  # 65 bytes r || s || v, or 64 compact

    def contract_args(self) -> tuple[str, int, bytes, bytes]:
        """The ``ITaskMarket.SeatSignature`` tuple ``(oracle, deadline, r, vs)``."""
        r, vs = compact_signature(self.signature)
        return Web3.to_checksum_address(self.oracle), self.deadline, r, vs

    def to_text(self) -> str:
        """``TASK:ORACLE:DEADLINE:0x`` + the 64-byte compact signature in hex."""
        r, vs = compact_signature(self.signature)
        oracle = Web3.to_checksum_address(self.oracle)
        return f"{self.task_id}:{oracle}:{self.deadline}:0x{(r + vs).hex()}"

    @classmethod
    def from_text(cls, text: str) -> SeatSignature:
        """Read :meth:`to_text`'s form; a ``ValueError`` says what is wrong with ``text``."""
        parts = text.strip().split(":")
        if len(parts) != 4:
            raise ValueError(
                "expected TASK:ORACLE:DEADLINE:0xSIGNATURE (4 fields separated by ':')"
            )
        task, oracle, deadline, sig = parts
        if not task.isdigit() or not deadline.isdigit():
            raise ValueError("its task id and deadline must be whole numbers")
        if not Web3.is_address(oracle):
            raise ValueError(f"{oracle!r} is not an address")
        hexsig = sig.removeprefix("0x")
        if len(hexsig) != 128:
            raise ValueError("its signature must be 0x followed by 128 hex digits (64 bytes)")
        try:
            raw = bytes.fromhex(hexsig)
        except ValueError:
            raise ValueError("its signature must be hex digits") from None
        return cls(int(task), Web3.to_checksum_address(oracle), int(deadline), raw)


BPS = 10_000  # basis points in one
QUORUM_MIN_BPS = 5_000  # a quorum must be a strict majority of the committee's stake

#: The root an oracle reveals to declare the sealed validation set not matching its commitment.
VALIDATION_MISMATCH = bytes(Web3.keccak(text="fedmarket.validation-mismatch"))


@dataclass(frozen=True)
class MarketLimits:
    """``TaskMarket``'s constant bounds on a task."""

    max_rounds: int
    max_committee: int


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
        # The in-process EVM runs every eth_call in Python (a task view costs tens of ms) while
        # its block number is a dictionary read: there, views are memoized per block. Over an
        # RPC the extra eth_blockNumber would cost as much as the call it saves.
        self._in_process = isinstance(w3.provider, EthereumTesterProvider)
        self._view_cache: dict[tuple[Any, ...], tuple[int, Any]] = {}
        # Over an RPC, views and logs skip web3's per-read plumbing (see lean.py), which cost
        # a polling peer more CPU than the requests themselves.
        self._lean = LeanReads(w3)
        # The block this thread reads at, inside `at_head()` (a peer's step); see there.
        self._pin = threading.local()
        self._limits: MarketLimits | None = None
        self.receipt_hooks: list[Callable[[str, TxReceipt], None]] = []
        # Chain id, nonces and fees reused across a step's sends (3 requests a send, not 6).
        self._tx_context = TxContext(chain_id=deployment.chain_id)

    def _abi_function(self, contract: str, name: str) -> dict[str, Any]:
        """The ABI entry of ``contract``'s function ``name``."""
        for entry in self.deployment.contracts[contract].abi:
            if entry.get("type") == "function" and entry.get("name") == name:
                return dict(entry)
        raise ChainError(f"{contract} has no function {name}: redeploy (`fedmarket deploy`)")

    def _contract(self, name: str) -> Contract:
        rec = self.deployment.contracts[name]
        return self.w3.eth.contract(address=rec.address, abi=rec.abi)  # type: ignore[call-overload,no-any-return]

    # --- plumbing -------------------------------------------------------------------------
    def send(self, fn: ContractFunction, account: LocalAccount, **kwargs: Any) -> TxReceipt:
        """Send ``fn`` signed by ``account``; reverts decoded against the marketplace's errors.

        Every mined receipt is passed to each of :attr:`receipt_hooks` with the function's name
        (e.g. to sum gas per function). Inside :meth:`at_head`, this thread's reads move on to
        the receipt's block (a step reads what its own transaction did)."""
        pinned = self._pinned()
        # Inside a step the head is known for free, so the nonce and fees can be reused safely
        # (a chain that went backwards makes the context read them again); elsewhere, read them.
        context = None
        if pinned is not None:
            context = self._tx_context
            context.at_head(pinned)
        receipt = send(self.w3, fn, account, decoder=self.decoder, context=context, **kwargs)
        if pinned is not None:
            self._pin.block = max(pinned, int(receipt["blockNumber"]))
        for hook in self.receipt_hooks:
            hook(getattr(fn, "fn_name", "constructor"), receipt)
        return receipt

    @contextmanager
    def at_head(self) -> Iterator[int]:
        """Read the chain at one block in this thread: the head when entered (one
        ``eth_blockNumber``), moved on by this thread's own transactions.

        Inside, views (:meth:`call`), :meth:`events` and :meth:`now` are memoized per block, so
        a peer's step that reads the same view twice, or a step after a wait in which no block
        was mined, sends no ``eth_call`` for it: a peer's step reads the task, its round and its
        batches, and steps far more often than blocks are mined. Other threads are unaffected.
        Yields the block.
        """
        outer = self._pinned()
        self._pin.block = self.head()
        try:
            yield self._pin.block
        finally:
            self._pin.block = outer

    def head(self) -> int:
        """The latest block's number (over an RPC without web3's per-request plumbing; any
        odd answer or error takes web3's path, and its error)."""
        if not self._in_process:
            with suppress(ConnectionError, OSError):
                number = self._lean.block_number()
                if not isinstance(number, Missing):
                    return number
        return int(self.w3.eth.block_number)

    def _pinned(self) -> int | None:
        """The block this thread reads at inside :meth:`at_head`, else ``None`` (the latest)."""
        return getattr(self._pin, "block", None)

    def _memo(self, key: tuple[Any, ...], block: int, read: Callable[[], Any]) -> Any:
        hit = self._view_cache.get(key)
        if hit is not None and hit[0] == block:
            return hit[1]
        if len(self._view_cache) > 4096:  # old blocks' entries are never read again
            self._view_cache.clear()
        result = read()
        self._view_cache[key] = (block, result)
        return result

    def call(self, fn: ContractFunction) -> Any:
        """``fn``'s result at the latest block, or at :meth:`at_head`'s block (memoized per
        block there, and on the in-process EVM, whose block number is a dictionary read while
        its every eth_call runs in Python; over an RPC outside ``at_head`` an extra
        eth_blockNumber would cost as much as the call it saves)."""
        key = (fn.address, fn.fn_name, repr(fn.args), repr(fn.kwargs))
        pinned = self._pinned()
        if pinned is not None:
            return self._memo(key, pinned, lambda: self._read(fn, key, pinned))
        if not self._in_process:
            return self._read(fn, key, "latest")
        block = int(self.w3.eth.block_number)
        return self._memo(
            key, block, lambda: call(fn, decoder=self.decoder, block_identifier=block)
        )

    def _read(self, fn: ContractFunction, key: tuple[Any, ...], block: int | str) -> Any:
        """``fn`` at ``block`` over the RPC: the lean path, else web3's (which then raises its
        error for a revert or an odd answer, decoded as :func:`~marketplace.chain.tx.call`
        does). The in-process EVM always takes web3's path (its provider is no JSON-RPC)."""
        if self._in_process:
            return call(fn, decoder=self.decoder, block_identifier=block)
        try:
            result = self._lean.call(fn, key, block)
        except (ConnectionError, OSError) as exc:
            raise call_unreachable(fn.fn_name, exc) from None
        if isinstance(result, Missing):
            return call(fn, decoder=self.decoder, block_identifier=block)
        return result

    def token_at(self, address: str) -> Contract:
        """An ERC-20 at ``address`` with the RewardToken ABI (its ERC-20 part is standard)."""
        return self.w3.eth.contract(
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
        """The account's registration (role, key, stake, unbonding, lock, reputation)."""
        addr = Web3.to_checksum_address(address)
        fn = self.registry.functions.participant(addr)
        (output,) = fn.abi["outputs"]  # one Participant struct
        return decode(Participant, output["components"], self.call(fn), address=addr)

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
        """Start unbonding ``amount``; stake reserved by tasks is refused naming those tasks."""
        try:
            return self.send(self.registry.functions.requestUnstake(amount), account)
        except TransactionRevertedError as exc:
            if exc.error_name != "ParticipantRegistryInsufficientStake":
                raise
            from marketplace.chain.explain import explain
            from marketplace.chain.holds import stake_holds

            holds = stake_holds(self.market.events, self.task, account.address)
            words = explain(exc.error_name, exc.error_args, holds)
            raise TransactionRevertedError(
                f"requestUnstake reverted: {words} ({exc.error_name})",
                error_name=exc.error_name,
                args=exc.error_args,
            ) from exc

    def withdraw(self, account: LocalAccount) -> TxReceipt:
        return self.send(self.registry.functions.withdraw(), account)

    # --- task market ----------------------------------------------------------------------
    def create_task(self, requester: LocalAccount, params: TaskParams) -> TaskId:
        """Escrow ``params.budget`` and create the task; returns its id."""
        token = params.token or self.token.address
        escrow = params.budget + params.requester_deposit
        self.require_balance(requester, escrow, "the task budget and deposit")
        self.ensure_allowance(requester, self.market.address, escrow, token)
        (arg,) = self._abi_function("TaskMarket", "createTask")["inputs"]
        struct = encode(replace(params, token=token), arg["components"])
        receipt = self.send(self.market.functions.createTask(struct), requester)
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
            self.call(self.market.functions.seatAcceptanceDigest(task_id, oracle.address, deadline))
        )
        signed = oracle.unsafe_sign_hash(Hash32(digest))
        return bytes(signed.signature)

    def sign_seat(self, oracle: LocalAccount, task_id: int, deadline: int) -> SeatSignature:
        """``oracle``'s consent to its seat on ``task_id`` until ``deadline`` (unix time, chain
        clock), signed off-chain: no transaction, no gas. The digest comes from the market's
        ``seatAcceptanceDigest`` (EIP-712, bound to this chain and market)."""
        return SeatSignature(
            task_id,
            oracle.address,
            deadline,
            self.seat_acceptance_signature(oracle, task_id, deadline),
        )

    def accept_seats_for(
        self, sender: LocalAccount, task_id: int, signatures: Sequence[SeatSignature]
    ) -> TxReceipt:
        """Seat every oracle that signed ``signatures`` in one transaction (the requester
        typically sends it, paying the base cost once): all or nothing, each signature checked
        on-chain (expired, invalid or already seated reverts the whole batch)."""
        fn = self.market.functions.acceptSeatsFor(task_id, [s.contract_args() for s in signatures])
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
        return self.send(self.market.functions.revealScore(task_id, root, report_cid, salt), oracle)

    def score_commitment(
        self, task_id: int, oracle: str, root: bytes, report_cid: str, salt: bytes
    ) -> bytes:
        """``keccak256(abi.encode(taskId, oracle, root, keccak256(reportCid), salt))``."""
        from eth_abi.abi import encode

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
                task_id,
                index,
                Web3.to_checksum_address(account),
                amount,
                score_ppm,
                flags,
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

    def owed_to(self, task_id: int, account: str) -> int:
        """Tokens task ``task_id`` owes ``account``: payments the task's token refused when they
        were pushed (a refund, a dispute bond, a burn, a withdrawn bond), for :meth:`send_owed`."""
        checksum = Web3.to_checksum_address(account)
        return int(self.call(self.market.functions.owedTo(task_id, checksum)))

    def send_owed(self, sender: LocalAccount, task_id: int, account: str) -> TxReceipt:
        """Pay ``account`` everything task ``task_id`` owes it (anyone may send this; it reverts
        while the token still refuses the transfer)."""
        fn = self.market.functions.sendOwed(task_id, Web3.to_checksum_address(account))
        return self.send(fn, sender)

    def task(self, task_id: int) -> TaskInfo:
        """The task's on-chain state (the ``task(taskId)`` view)."""
        fn = self.market.functions.task(task_id)
        (output,) = fn.abi["outputs"]
        return decode(TaskInfo, output["components"], self.call(fn), task_id=task_id)

    def joined_trainers(self, task_id: int) -> list[str]:
        """The task's trainers in join order (its ``TrainerJoined`` logs), checksummed.

        Never fewer than the task's ``trainerCount``: a node can answer a view at the head with
        state whose logs it has not indexed yet (Anvil does, while it mines the next block), and
        a short list would leave a trainer out of every envelope and every batch bitmap. A short
        scan is read again up to the latest block; still short, it raises
        :class:`~marketplace.errors.ChainLagError`, which a peer's step retries.
        """
        expected = self.task(task_id).trainer_count
        filters = {"taskId": task_id}
        logs = self.events(self.market, "TrainerJoined", filters=filters)
        if len(logs) < expected:
            logs = self.events(
                self.market, "TrainerJoined", from_block=self.deployment.block, filters=filters
            )
        if len(logs) < expected:
            raise ChainLagError(
                f"task {task_id} has {expected} trainers but the chain's logs show "
                f"{len(logs)} joins so far (its logs lag its state): retrying"
            )
        ordered = sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"]))
        return list(dict.fromkeys(Web3.to_checksum_address(e["args"]["trainer"]) for e in ordered))

    def is_trainer(self, task_id: int, address: str) -> bool:
        checksum = Web3.to_checksum_address(address)
        return bool(self.call(self.market.functions.isTrainer(task_id, checksum)))

    def update_of(self, task_id: int, round_: int, trainer: str) -> tuple[bytes, int]:
        digest, n = self.call(
            self.market.functions.update(task_id, round_, Web3.to_checksum_address(trainer))
        )
        return bytes(digest), int(n)

    def update_count(self, task_id: int, round_: int) -> int:
        """How many updates ``round_`` holds on-chain (direct and batched; 0 for a round not
        started)."""
        return int(self.call(self.market.functions.updateCount(task_id, round_)))

    def model_digest(self, task_id: int, round_: int) -> bytes:
        return bytes(self.call(self.market.functions.modelDigest(task_id, round_)))

    def final_model_post(self, task_id: int, rounds: int) -> tuple[str, bytes]:
        """(CID, plaintext digest) of the final model as posted on-chain (round ``rounds + 1``;
        the contract keeps a round's first post)."""
        for e in self.events(self.market, "ModelPosted", filters={"taskId": task_id}):
            if int(e["args"]["round"]) == rounds + 1:
                return str(e["args"]["cid"]), bytes(e["args"]["digest"])
        raise ChainError(f"task {task_id}: no final model posted")

    def oracles(self, task_id: int) -> tuple[str, ...]:
        """The task's oracle committee."""
        return tuple(
            Web3.to_checksum_address(a) for a in self.call(self.market.functions.oracles(task_id))
        )

    def is_claimed(self, task_id: int, index: int) -> bool:
        """Whether payout leaf ``index`` of the task was claimed (or settled)."""
        return bool(self.call(self.market.functions.isClaimed(task_id, index)))

    def commitment_of(self, task_id: int, oracle: str) -> bytes:
        """The oracle's score commitment (zero bytes: none)."""
        return bytes(
            self.call(self.market.functions.commitmentOf(task_id, Web3.to_checksum_address(oracle)))
        )

    def revealed_root_of(self, task_id: int, oracle: str) -> bytes:
        """The payout root the oracle revealed (zero bytes: none)."""
        return bytes(
            self.call(
                self.market.functions.revealedRootOf(task_id, Web3.to_checksum_address(oracle))
            )
        )

    def is_oracle_slashed(self, task_id: int, oracle: str) -> bool:
        return bool(
            self.call(
                self.market.functions.isOracleSlashed(task_id, Web3.to_checksum_address(oracle))
            )
        )

    def limits(self) -> MarketLimits:
        """The market's bounds on rounds and committee size (read once)."""
        if self._limits is None:
            fn = self.market.functions
            self._limits = MarketLimits(
                max_rounds=int(self.call(fn.MAX_ROUNDS())),
                max_committee=int(self.call(fn.MAX_COMMITTEE())),
            )
        return self._limits

    def now(self) -> int:
        """The chain's clock: the latest block's timestamp (what the contracts compare with);
        inside :meth:`at_head`, that block's."""
        pinned = self._pinned()
        if pinned is None:
            return int(self.w3.eth.get_block("latest")["timestamp"])
        return int(self._memo(("now",), pinned, lambda: self.w3.eth.get_block(pinned)["timestamp"]))

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
        if from_block is not None or to_block != "latest":
            start = self.deployment.block if from_block is None else from_block
            return getattr(contract.events, event).get_logs(  # type: ignore[no-any-return]
                from_block=start, to_block=to_block, argument_filters=filters or None
            )
        key = (contract.address, event, tuple(sorted((filters or {}).items())))
        scanned, logs = self._event_cache.get(key, (self.deployment.block - 1, []))
        pinned = self._pinned()
        head = self.head() if pinned is None else pinned
        if head > scanned:
            fresh = self._new_logs(contract, event, filters, scanned + 1, head)
            logs = [*logs, *fresh]
            self._event_cache[key] = (head, logs)
        return logs

    def _new_logs(
        self,
        contract: Contract,
        event: str,
        filters: dict[str, Any] | None,
        from_block: int,
        to_block: int,
    ) -> Sequence[Any]:
        """The logs of ``from_block..to_block``: the lean path over an RPC (indexed equality
        filters), else web3's ``get_logs`` (and its errors)."""
        if not self._in_process:
            fresh = self._lean.logs(contract, event, filters, from_block, to_block)
            if not isinstance(fresh, Missing):
                return fresh
        return getattr(contract.events, event).get_logs(  # type: ignore[no-any-return]
            from_block=from_block, to_block=to_block, argument_filters=filters or None
        )


# --- generic reads at a block (the indexer's snapshots) ------------------------------------------
def view_at(contract: Contract, function: str, *args: Any, block: int) -> Any:
    """The raw answer of view ``function(*args)`` of any contract, as of ``block``."""
    return getattr(contract.functions, function)(*args).call(block_identifier=block)


def view_fields_at(contract: Contract, function: str, *args: Any, block: int) -> dict[str, Any]:
    """View ``function(*args)`` as of ``block``, by output name: a struct's components when the
    view returns one struct, else its named outputs."""
    fn = getattr(contract.functions, function)(*args)
    raw = fn.call(block_identifier=block)
    outputs = fn.abi["outputs"]
    if len(outputs) == 1 and outputs[0]["type"] == "tuple":
        names = [c["name"] for c in outputs[0]["components"]]
    else:
        names = [o["name"] for o in outputs]
        raw = raw if isinstance(raw, (list, tuple)) else (raw,)
    return dict(zip(names, raw, strict=True))
