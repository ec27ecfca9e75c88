"""Typed views of the contracts' structs: frozen dataclasses that mirror the ABI, field by field.

Each view names the ABI struct (or function outputs) it mirrors; its fields are the ABI's
component names in snake_case (``currentRound`` → ``current_round``), plus
any field listed in ``NOT_IN_ABI`` (e.g. the address a participant was looked up by). Values are
converted by ABI type once, on the way in: integers to ``int``, ``bytes32`` to ``bytes``,
addresses to checksummed ``str``, enums to their Python ``IntEnum``.

:func:`decode` refuses an ABI whose components differ from the view's fields, naming the
difference, so a contract change is a one-line error (and ``tests/chain/test_views.py`` fails),
never a silently misread field. To follow a contract change, add or rename the field here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, TypeVar, get_type_hints

from web3 import Web3

from marketplace.errors import ChainError
from marketplace.units import checksum_address

V = TypeVar("V", bound="StructView")


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
            raise ChainError(f"unknown role {name!r}: use trainer, oracle or requester") from None


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


def snake(name: str) -> str:
    """``currentRound`` → ``current_round`` (the ABI's camelCase as a Python field name)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class StructView:
    """Base of the views: ``ABI`` names what is mirrored, ``NOT_IN_ABI`` the extra fields."""

    ABI: ClassVar[str]  # "<Contract>.<function> outputs" or "<Contract>.<Struct>", for messages
    NOT_IN_ABI: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def abi_fields(cls) -> tuple[str, ...]:
        """The view's fields that come from the ABI, in order."""
        names = (f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        return tuple(n for n in names if n not in cls.NOT_IN_ABI)


def check_components(view: type[StructView], components: Sequence[Mapping[str, Any]]) -> None:
    """Raise :class:`ChainError` unless ``components`` (ABI entries with ``name``) name exactly
    the view's ABI fields (values are matched by name, so the order may differ)."""
    abi = [snake(c["name"]) for c in components]
    mine = view.abi_fields()
    if sorted(abi) != sorted(mine):
        missing = [n for n in abi if n not in mine]
        extra = [n for n in mine if n not in abi]
        raise ChainError(
            f"{view.__name__} does not match the ABI's {view.ABI} "
            f"(ABI only: {missing or '-'}; view only: {extra or '-'}): "
            "update marketplace/chain/views.py to the deployed contracts"
        )


def decode(
    view: type[V], components: Sequence[Mapping[str, Any]], values: Sequence[Any], **extra: Any
) -> V:
    """Build ``view`` from an ABI-decoded tuple ``values`` whose ABI entries are ``components``."""
    names = tuple(str(c["name"]) for c in components)
    fields = _decoding(view, names)  # checked and resolved once per view and ABI
    kwargs = dict(extra)
    for comp, value, (name, hint) in zip(components, values, fields, strict=True):
        kwargs[name] = _convert(comp, value, hint)
    return view(**kwargs)


_DECODINGS: dict[tuple[type, tuple[str, ...]], tuple[tuple[str, Any], ...]] = {}


def _decoding(view: type[StructView], abi_names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """Each ABI member's field name and type hint in ``view``, after :func:`check_components`
    (once per view and ABI: a peer decodes the same view many times a second)."""
    key = (view, abi_names)
    found = _DECODINGS.get(key)
    if found is None:
        check_components(view, [{"name": n} for n in abi_names])
        hints = get_type_hints(view)
        found = _DECODINGS[key] = tuple((snake(n), hints[snake(n)]) for n in abi_names)
    return found


def encode(view: StructView, components: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    """The struct as a tuple in the ABI's order (for a call taking it as an argument)."""
    check_components(type(view), components)
    return tuple(_to_abi(c, getattr(view, snake(c["name"]))) for c in components)


def _convert(component: Mapping[str, Any], value: Any, hint: Any) -> Any:
    type_ = component["type"]
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        return hint(int(value))
    if type_ == "address":
        return checksum_address(value)
    if type_ == "address[]":
        return tuple(checksum_address(v) for v in value)
    if type_.startswith("bytes"):
        return bytes(value)
    if type_ == "bool":
        return bool(value)
    if type_.startswith(("uint", "int")):
        return int(value)
    return value


def _to_abi(component: Mapping[str, Any], value: Any) -> Any:
    type_ = component["type"]
    if type_ == "address":
        return Web3.to_checksum_address(value or "0x" + "00" * 20)  # None: the zero address
    if type_ == "address[]":
        return [Web3.to_checksum_address(v) for v in value]
    if isinstance(value, IntEnum):
        return int(value)
    return value


# --- the views --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Participant(StructView):
    """``IParticipantRegistry.Participant``: an account's registration.

    ``reserved`` is the part of ``stake`` that live tasks the account accepted hold; the rest can
    be unbonded at any time. Unbonding comes in two batches: the first keeps its release time
    whatever later requests do (``queued`` waits behind it).
    """

    ABI: ClassVar[str] = "IParticipantRegistry.Participant"
    NOT_IN_ABI: ClassVar[tuple[str, ...]] = ("address",)

    address: str
    role: Role
    encryption_key: bytes
    stake: int
    reserved: int
    unbonding: int
    unbonding_release_at: int
    queued: int
    queued_release_at: int
    reputation_ppm: int

    @property
    def available(self) -> int:
        """Stake not reserved by any task: free to unbond or to reserve for a new task."""
        return self.stake - self.reserved

    @property
    def registered(self) -> bool:
        return self.role != Role.NONE


@dataclass(frozen=True)
class TaskInfo(StructView):
    """``ITaskMarket.TaskInfo``: a task's on-chain state, as returned by ``task(taskId)``."""

    ABI: ClassVar[str] = "ITaskMarket.TaskInfo"
    NOT_IN_ABI: ClassVar[tuple[str, ...]] = ("task_id",)

    task_id: int
    requester: str
    token: str
    phase: Phase
    current_round: int
    rounds: int
    budget: int
    paid: int
    refunded: int
    trainer_bond: int
    dispute_bond: int
    bonds_held: int
    min_stake: int
    min_reputation_ppm: int
    min_trainers: int
    max_trainers: int
    trainer_count: int
    round_commits: int
    join_deadline: int
    phase_deadline: int
    claims_open_at: int
    claim_deadline: int
    round_duration: int
    commit_duration: int
    reveal_duration: int
    dispute_duration: int
    claim_duration: int
    initial_model_digest: bytes
    validation_commitment: bytes
    payout_root: bytes
    leading_root: bytes
    leading_stake: int
    committee_stake: int
    quorum_bps: int
    committee_size: int
    committed_count: int
    revealed_count: int
    oracle_slash: int
    disputer: str
    scoring_failed: bool
    outcome: Outcome
    arbiter_ruled: bool
    accepted_count: int
    accept_duration: int
    join_duration: int
    total_samples: int
    join_gate: str
    requester_deposit: int
    deposit_held: int
    sealed_validation_digest: bytes

    @property
    def phase_enum(self) -> Phase:
        """The phase (an alias of :attr:`phase`, kept for callers of the untyped view)."""
        return self.phase

    def to_json(self) -> dict[str, Any]:
        """camelCase keys as in the ABI, bytes as 0x-hex, big integers as strings."""
        out: dict[str, Any] = {"taskId": self.task_id}
        for name in self.abi_fields():
            key = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)
            value = getattr(self, name)
            if isinstance(value, bytes):
                out[key] = "0x" + value.hex()
            elif isinstance(value, IntEnum):
                out[key] = int(value)
            elif isinstance(value, int) and not isinstance(value, bool) and value > 2**53:
                out[key] = str(value)
            else:
                out[key] = value
        out["phaseName"] = self.phase.name.lower()
        return out


# The untyped view this replaced was called TaskView; the name is kept for its callers.
TaskView = TaskInfo


@dataclass(frozen=True)
class TaskParams(StructView):
    """``ITaskMarket.TaskParams``: what a requester fixes when creating a task.

    Durations are seconds; ``join_deadline`` is a unix timestamp. ``token`` ``None`` means the
    deployment's RewardToken (:meth:`Marketplace.create_task` fills it in).
    """

    ABI: ClassVar[str] = "ITaskMarket.TaskParams"

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
    trainer_bond: int = 10**18  # the protocol minimum (TaskMarket.MIN_TRAINER_BOND)
    dispute_bond: int = 0
    round_duration: int = 3600
    commit_duration: int = 3600
    reveal_duration: int = 3600
    dispute_duration: int = 3600
    claim_duration: int = 7 * 24 * 3600
    quorum_bps: int = 6600  # 2 of 3 equal-stake oracles (6,667 would need all 3)
    oracle_slash: int = 10**18  # each seat's reserved stake (its vote weight and what it risks)
    accept_duration: int = 3600  # the committee's window to accept its seats
    join_gate: str = "0x" + "00" * 20  # an IJoinGate contract; zero: open joining
    requester_deposit: int = 0  # paid to the committee if the validation set is found mismatched
    sealed_validation_digest: bytes = b"\x00" * 32  # digest of the sealed validation blob
