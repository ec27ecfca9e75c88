"""Fixtures of the oracle tests: small real federations, simulated once per session."""

from __future__ import annotations

import pytest
import torch

from .federation import Federation, simulate

HONEST, FREE_RIDER, COPIER, FLIPPER = (0, 1, 2), 3, 4, 5


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)  # CI has 2 cores shared with other suites


@pytest.fixture(scope="session")
def federation() -> Federation:
    """Six committing trainers (three honest, a free rider, a copier, a sign flipper) and one
    member that joined but never committed; two rounds."""
    return simulate(
        6,
        behaviours={FREE_RIDER: "free_rider", COPIER: "copier", FLIPPER: "sign_flip"},
        absent=1,
    )
