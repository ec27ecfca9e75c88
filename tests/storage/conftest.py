"""Storage fixtures (the session's Kubo daemons, ``kubo``/``kubo_pair``/``kubo_store``, live in
tests/conftest.py): a daemon per test for kill tests, the embedded store, both backends in turn.

A missing Kubo binary is a setup error (run scripts/bootstrap), never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.storage.embedded import EmbeddedStore
from marketplace.storage.kubo import KuboStore
from marketplace.storage.kubo_daemon import KuboDaemon, start_kubo


@pytest.fixture
def fresh_kubo() -> Iterator[KuboDaemon]:
    """A daemon of the test's own, for tests that kill it."""
    with start_kubo() as daemon:
        yield daemon


@pytest.fixture
def embedded_store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "store")


@pytest.fixture(params=["kubo", "embedded"])
def store(request: pytest.FixtureRequest) -> KuboStore | EmbeddedStore:
    """Each backend in turn: the shared suite must pass on both."""
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]
