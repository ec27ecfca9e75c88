"""The node journal survives a reopen and never changes a value recorded once."""

from __future__ import annotations

import multiprocessing as mp

from node.peers.journal import Journal


def _write_then_die(path: str) -> None:
    j = Journal(path)
    j.record(1, 2, "committed", {"cid": "bafy…"})
    import os

    os._exit(0)  # no close, no flush: as if killed


def test_entry_survives_abrupt_exit_of_the_writer(tmp_path):
    path = tmp_path / "journal.sqlite"
    p = mp.get_context("spawn").Process(target=_write_then_die, args=(str(path),))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert Journal(path).get(1, 2, "committed") == {"cid": "bafy…"}


def test_record_once_keeps_the_first_value(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    first = j.record_once(7, 0, "salt", {"salt": "0x01"})
    second = j.record_once(7, 0, "salt", {"salt": "0x02"})
    assert first == second == {"salt": "0x01"}


def test_missing_step_is_none_and_entries_filter_by_task(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    assert j.get(1, 1, "trained") is None
    j.record(1, 1, "trained", {"n": 3})
    j.record(2, 1, "trained", {"n": 4})
    assert [e.payload["n"] for e in j.entries(task_id=2)] == [4]
    assert j.has(1, 1, "trained") and not j.has(1, 2, "trained")
