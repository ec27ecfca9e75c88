"""Small cooperative games with known structure, shared by the valuation tests."""

from __future__ import annotations

import math

from marketplace.valuation import FunctionUtility, TableUtility

# A 3-player game solved by hand: phi = (2, 3, 4).
HAND_TABLE = {
    frozenset(): 0.0,
    frozenset({0}): 1.0,
    frozenset({1}): 2.0,
    frozenset({2}): 3.0,
    frozenset({0, 1}): 4.0,
    frozenset({0, 2}): 5.0,
    frozenset({1, 2}): 6.0,
    frozenset({0, 1, 2}): 9.0,
}


def hand_game() -> TableUtility:
    return TableUtility(3, HAND_TABLE)


def concave_game(weights: list[float]) -> FunctionUtility:
    """v(S) = sqrt(sum of weights in S): diminishing returns, like accuracy gains."""
    return FunctionUtility(len(weights), lambda s: math.sqrt(sum(weights[i] for i in s)))


def additive_game(weights: list[float]) -> FunctionUtility:
    """v(S) = sum of weights in S: each player's Shapley value is its own weight."""
    return FunctionUtility(len(weights), lambda s: sum(weights[i] for i in s))
