"""An oracle's view of a secure-aggregation task: each round's inputs from the plaintexts sealed
to the committee, and each round's model from the peers' aggregate.

Per round, :func:`marketplace.protocol.secagg_committee.committee_round` opens every committed
input with this oracle's key and checks it (binding to the masked input and the on-chain digest,
the task's clip); a failed check or an unreadable input is scored as invalid, so the valuation
flags it (and enforcement then slashes it) as in plain mode. The inputs that pass are valued with
equal weights (``num_samples`` 1), as the peers' aggregate is the unweighted mean. The round's
model is ``previous + server_lr · mean`` with the mean recomputed from the survivors' plaintexts
(bit for bit the peers' sum when every survivor's plaintext is the one it masked); otherwise the
session follows the model the survivors posted on-chain.
"""

from __future__ import annotations

from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import unflatten
from marketplace.oracle.scoring import RoundInput
from marketplace.protocol.secagg_committee import committee_round
from marketplace.protocol.session import TaskSession
from marketplace.valuation.report import UpdateRef


def secagg_round_input(session: TaskSession, round_: int) -> RoundInput:
    """Round ``round_``'s valuation input under secure aggregation (rounds in order: the model
    of round ``r`` needs round ``r - 1``'s aggregate, recorded here)."""
    template = session.global_weights(round_)
    opened = committee_round(session, round_)
    if opened.reproducible:
        session.set_round_mean(round_, opened.mean)
    updates = [
        ClientUpdate(a, unflatten(i.vector, template), 1)
        for a, i in sorted(opened.inputs.items())
        if i.ok and i.vector is not None
    ]
    return RoundInput(
        round=round_,
        global_weights=template,
        updates=updates,
        invalid=opened.invalid(),
        commit_order={c.sender: c.order for c in opened.committed},
        refs=tuple(UpdateRef(c.sender, c.cid, "0x" + c.digest.hex()) for c in opened.committed),
    )
