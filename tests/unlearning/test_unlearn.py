"""Calibrated retraining and retraining: deterministic, sane, and the chooser's choice."""

from __future__ import annotations

import pytest

from marketplace.errors import ConfigError
from marketplace.fl.train import evaluate
from marketplace.unlearning import FedEraserConfig, choose_method, unlearn
from marketplace.unlearning.history import StoredHistory

from .conftest import LOCAL, SPEC, WITHDRAWN, Federation


def _unlearn(fed: Federation, **kw: object):  # type: ignore[no-untyped-def]
    return unlearn(
        fed.history, withdrawn=WITHDRAWN, train=fed.train, strategy=fed.strategy,
        epochs=LOCAL.epochs, config=FedEraserConfig(interval=2, calibration_epochs=1), **kw,
    )  # fmt: skip


def test_federaser_twice_gives_the_same_digest(federation: Federation) -> None:
    first = _unlearn(federation)
    second = _unlearn(federation)
    assert first.method == "federaser"
    assert first.digest == second.digest
    assert len(first.digest) == 32


def test_unlearned_model_is_accurate_and_differs_from_the_original(federation: Federation) -> None:
    result = _unlearn(federation)
    test = federation.splits.test
    acc = evaluate(SPEC, result.weights, test.x, test.y).accuracy
    original = evaluate(SPEC, federation.final, test.x, test.y).accuracy
    assert acc > 0.85  # digits, 3 trainers of 4 left: far above chance (0.1)
    assert acc > original - 0.05
    assert any(not bool((result.weights[k] == federation.final[k]).all()) for k in result.weights)


def test_retraining_never_reads_the_withdrawn_update(federation: Federation) -> None:
    history = federation.history

    def updates_without_peeking(round_: int):  # type: ignore[no-untyped-def]
        return [u for u in history.updates(round_) if u.sender != WITHDRAWN]

    guarded = StoredHistory(
        rounds=history.rounds, participants=history.participants,
        global_weights=history.global_weights, updates=updates_without_peeking,
    )  # fmt: skip
    seen: list[str] = []

    def train(trainer, round_, start, epochs):  # type: ignore[no-untyped-def]
        seen.append(trainer)
        return federation.train(trainer, round_, start, epochs)

    for method in ("federaser", "retrain"):
        seen.clear()
        result = unlearn(
            guarded, withdrawn=WITHDRAWN, train=train, strategy=federation.strategy,
            epochs=LOCAL.epochs, method=method,  # type: ignore[arg-type]
        )  # fmt: skip
        assert WITHDRAWN not in seen
        assert result.method == method
    # The same history unlearned twice through the full store gives the same bits.
    assert _unlearn(federation).digest == unlearn(
        guarded, withdrawn=WITHDRAWN, train=federation.train, strategy=federation.strategy,
        epochs=LOCAL.epochs, config=FedEraserConfig(interval=2, calibration_epochs=1),
    ).digest  # fmt: skip


def test_chooser_prefers_retraining_a_late_joiner() -> None:
    cfg = FedEraserConfig(interval=2, calibration_epochs=2)
    assert choose_method(1, 20, epochs=5, config=cfg) == "federaser"  # 100 vs 20 epochs
    assert choose_method(20, 20, epochs=2, config=cfg) == "retrain"  # 2 vs 2: exact wins ties
    assert choose_method(19, 20, epochs=1, config=cfg) == "retrain"


def test_a_trainer_that_never_contributed_is_refused(federation: Federation) -> None:
    with pytest.raises(ConfigError, match="nothing to unlearn"):
        unlearn(
            federation.history, withdrawn="t99", train=federation.train,
            strategy=federation.strategy, epochs=1,
        )  # fmt: skip


def test_two_withdrawn_trainers_are_forgotten_together(federation: Federation) -> None:
    seen: set[str] = set()

    def train(trainer, round_, start, epochs):  # type: ignore[no-untyped-def]
        seen.add(trainer)
        return federation.train(trainer, round_, start, epochs)

    result = unlearn(
        federation.history, withdrawn={"t01", WITHDRAWN}, train=train,
        strategy=federation.strategy, epochs=LOCAL.epochs,
    )  # fmt: skip
    assert seen == {"t00", "t02"}
    assert result.digest != _unlearn(federation).digest
