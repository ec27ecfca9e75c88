"""A small real federation (digits, real PyTorch training) and its rounds as the oracle sees them.

Trainers are Ethereum addresses in checksum form (mixed case, so address order and string order
differ, as on a real chain). Behaviours are simulated by ``marketplace.fl.simulate``; a trainer
listed in ``absent`` joins the task but never commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eth_account import Account
from web3 import Web3

from marketplace import fl
from marketplace.oracle import RoundInput
from marketplace.valuation import UpdateRef

SPEC = fl.ModelSpec(arch="mlp", input_dim=64, hidden=(16,), num_classes=10, seed=1)
TRAIN = fl.TrainConfig(epochs=2, lr=0.1)


def address(label: str) -> str:
    """A deterministic checksum address for ``label``."""
    return str(Account.from_key(Web3.keccak(text=f"fedmarket oracle test {label}")).address)


@dataclass(frozen=True)
class Federation:
    """A simulated task: its members, rounds, validation set and strategy."""

    sim: fl.SimulationResult
    splits: fl.DataSplits
    committers: tuple[str, ...]  # trainers that committed, in on-chain commit order
    trainers: tuple[str, ...]  # every joined trainer; index i is the one given behaviour i

    def rounds(
        self,
        *,
        invalid: Mapping[tuple[int, str], str] | None = None,
        drop: Sequence[tuple[int, str]] = (),
    ) -> list[RoundInput]:
        """The rounds as :func:`score_task` takes them.

        ``invalid`` moves ``(round, trainer)`` updates to the refused set with a reason; ``drop``
        removes them (the trainer did not commit that round).
        """
        invalid = dict(invalid or {})
        out = []
        for record in self.sim.rounds:
            r = record.server_round
            refused = {t: why for (rr, t), why in invalid.items() if rr == r}
            gone = {t for rr, t in drop if rr == r}
            committed = [t for t in self.committers if t not in gone]
            out.append(
                RoundInput(
                    round=r,
                    global_weights=record.global_weights,
                    updates=tuple(
                        u
                        for u in record.updates
                        if u.sender in committed and u.sender not in refused
                    ),
                    invalid=refused,
                    commit_order={t: i for i, t in enumerate(committed)},
                    refs=tuple(
                        UpdateRef(t, f"bafy-{r}-{t[2:10]}", "0x" + "ab" * 32) for t in committed
                    ),
                )
            )
        return out


def simulate(
    n: int,
    *,
    rounds: int = 2,
    behaviours: Mapping[int, str] | None = None,
    absent: int = 0,
    copier_last: bool = True,
    seed: int = 0,
) -> Federation:
    """``n`` committing trainers (indexes into ``behaviours``) and ``absent`` idle members."""
    ids = [address(f"trainer {i}") for i in range(n + absent)]
    committers = ids[:n]
    named = {committers[i]: b for i, b in (behaviours or {}).items()}
    splits = fl.split_dataset(fl.load_dataset("digits"), seed=0)
    parts = fl.partition("iid", splits.train.y, num_clients=n, seed=seed)
    sim = fl.simulate(
        model_spec=SPEC,
        splits=splits,
        partition=parts,
        rounds=rounds,
        train_config=TRAIN,
        behaviours=named,
        trainer_ids=committers,
        seed=seed,
    )
    order = list(committers)
    if copier_last:  # a copier needs the others' updates first, so it commits last
        order.sort(key=lambda t: named.get(t) == "copier")
    return Federation(sim, splits, tuple(order), tuple(ids))
