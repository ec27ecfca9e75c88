"""The task's DP mode in real nodes (Anvil + Kubo): trainers train with record-level DP-SGD,
journal their accountant with each update, report ε per round, refuse a round past their budget
with a one-line reason, and the oracles' published report carries the same ε ledger."""

from __future__ import annotations

import pytest

from marketplace.chain.clients import Phase
from marketplace.fl import partition
from marketplace.fl.dpsgd import DPSGDAccountant
from marketplace.fl.privacy import DPTerms
from marketplace.protocol.published_report import final_report
from marketplace.protocol.session import TaskSession
from node.peers.journal import Journal
from node.peers.trainer import TrainerNode

from .test_protocol import drive, join_all, new_task, oracle_nodes, world  # noqa: F401

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]

TERMS = DPTerms(mode="dpsgd", epsilon=8.0, delta=1e-5, clip_norm=1.0)


def test_dpsgd_nodes_report_epsilon_per_round_and_refuse_past_their_budget(world):  # noqa: F811
    task_id = new_task(world, rounds=2, n_trainers=3, privacy=TERMS)
    splits = world["splits"]
    parts = partition("iid", splits.train.y, num_clients=3, seed=0)
    sessions = [TaskSession.open(world["market"], world["store"], task_id, t)
                for t in world["trainers"][:3]]  # fmt: skip
    assert sessions[0].doc.privacy == TERMS  # the terms travel in the task document
    # The third trainer caps its own ε between one round's spend and two rounds'.
    one_round = DPSGDAccountant.calibrate(
        TERMS, rows=len(parts[2]), rounds=2, train=sessions[0].doc.train
    ).epsilon_after_round()
    cap = one_round * 1.01
    trainers = [
        TrainerNode(s, splits.train.subset(idx), Journal(world["tmp"] / f"dp{task_id}-{i}.sqlite"),
                    max_epsilon=cap if i == 2 else None)
        for i, (s, idx) in enumerate(zip(sessions, parts, strict=True))
    ]  # fmt: skip
    actions: list[str] = []

    class Recorder:  # records every action of the trainers' steps
        def __init__(self, node: TrainerNode) -> None:
            self.node = node

        def step(self):  # type: ignore[no-untyped-def]
            step = self.node.step()
            actions.append(step.action)
            return step

    join_all(world, task_id, trainers)
    oracles = oracle_nodes(world, task_id)
    drive(world, task_id, [*(Recorder(t) for t in trainers), *oracles],
          until=lambda i: i.phase_enum == Phase.FINALIZED, limit=300)  # fmt: skip

    full, capped = trainers[0].privacy.summary(), trainers[2].privacy.summary()
    assert [r["round"] for r in full["rounds"]] == [1, 2]
    eps1, eps2 = (r["epsilon_total"] for r in full["rounds"])
    assert 0 < eps1 < eps2 <= TERMS.epsilon
    assert full["rounds"][1]["epsilon_round"] == pytest.approx(eps2 - eps1, abs=1e-5)
    assert full["refused"] == []
    assert any("committed round 2 (DP ε +" in a and "of 8)" in a for a in actions)
    # The capped trainer trained round 1, then refused round 2 before training, in one line.
    assert [r["round"] for r in capped["rounds"]] == [1]
    assert capped["epsilon_spent"] <= cap
    (refusal,) = capped["refused"]
    assert refusal["round"] == 2 and "DP budget exhausted" in refusal["reason"]
    assert "\n" not in refusal["reason"]
    assert any(a.startswith("refused to train round 2: DP budget exhausted") for a in actions)
    assert world["market"].update_of(task_id, 2, trainers[2].me)[0] == bytes(32)

    # The published report: the terms, and the ε each accountant booked, round by round.
    section = final_report(sessions[0])["privacy"]
    assert (section["mode"], section["epsilon"], section["planned_rounds"]) == ("dpsgd", "8", 2)
    by_round = {r["round"]: r["epsilon_total"] for r in section["rounds"]}
    me, capped_me = trainers[0].me, trainers[2].me
    assert by_round[1][me] == f"{eps1:.6f}" and by_round[2][me] == f"{eps2:.6f}"
    assert by_round[1][capped_me] == f"{capped['epsilon_spent']:.6f}"
    assert capped_me not in by_round[2]


def test_a_restarted_node_resumes_its_accountant_from_the_journal(world):  # noqa: F811
    task_id = new_task(world, rounds=2, n_trainers=2, privacy=TERMS)
    splits = world["splits"]
    parts = partition("iid", splits.train.y, num_clients=2, seed=0)

    def node(i: int) -> TrainerNode:
        s = TaskSession.open(world["market"], world["store"], task_id, world["trainers"][i])
        return TrainerNode(s, splits.train.subset(parts[i]),
                           Journal(world["tmp"] / f"dpr{task_id}-{i}.sqlite"))  # fmt: skip

    trainers = [node(0), node(1)]
    join_all(world, task_id, trainers)
    drive(world, task_id, trainers, until=lambda i: i.current_round == 2)
    restarted = node(0)  # a fresh process over the same journal
    acc = restarted.privacy.accountant(2)
    assert acc.rounds_trained == 1
    assert acc.epsilon == pytest.approx(trainers[0].privacy.summary()["epsilon_spent"], abs=1e-6)
