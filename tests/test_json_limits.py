"""Peers' JSON nested deep is refused, not a crash; no unbounded ``json.loads`` of peer bytes.

Every node imports web3, whose ``py_ecc`` raises the recursion limit to 100,000: 64 KiB of ``[``
handed to ``json.loads`` then overflows the C stack (a segmentation fault). The hostile inputs
run in a child process that imports web3 first, so a missing check kills the child (rc -11)
instead of raising a ``RecursionError`` (announcements, leaves and secure-aggregation messages
are capped at 2 KiB, too short to crash it; their depth check is checked by its message).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from marketplace.jsonlimits import MAX_JSON_DEPTH, NestingError, _depth, shallow_json

ROOT = Path(__file__).resolve().parent.parent
DEEP = b"[" * 65536
# A string of 100,000 "]" then 100,000 real "[": a depth count that read brackets inside strings
# saw depth 1 and let json.loads recurse 100,000 deep.
HIDDEN = b'["' + b"]" * 100_000 + b'",' + b"[" * 100_000 + b"]" * 100_001

CHILD = textwrap.dedent(
    """
    import sys
    import marketplace.chain.sourcing_client  # web3 -> py_ecc: the recursion limit nodes run with
    assert sys.getrecursionlimit() >= 100_000, sys.getrecursionlimit()
    DEEP = b"[" * 65536

    wanted, FAMILIES = sys.argv[1:], {}

    def family(name, expected, call):
        FAMILIES[name] = expected, call

    from marketplace.errors import BatchError, ConfigError, CryptoError, InvalidUpdateError
    from marketplace.errors import SignatureError
    from marketplace.protocol.round_batch import parse_leaf_set
    family("leaf_set", BatchError, lambda: parse_leaf_set(DEEP))

    from marketplace.crypto.announce import Announcement
    from marketplace.crypto.update_leaf import UpdateLeaf
    from marketplace.protocol.secagg_exchange import Manifest, SecAggMessage
    family("announcement", SignatureError, lambda: Announcement.from_json(b"[" * 2048))
    family("update_leaf", SignatureError, lambda: UpdateLeaf.from_json(b"[" * 2048))
    family("secagg_message", SignatureError, lambda: SecAggMessage.from_json(b"[" * 2048))
    family("secagg_manifest", CryptoError, lambda: Manifest.from_json(DEEP))

    import tempfile
    from marketplace.indexer.reports import UNREADABLE, read_report
    from marketplace.storage.embedded import EmbeddedStore
    store = EmbeddedStore(tempfile.mkdtemp())
    cid = store.put(DEEP)
    def report():
        got = read_report(store, cid, root="0x" + "00" * 32)
        if got.status == UNREADABLE:
            raise ValueError(got.detail)
    family("report", ValueError, report)

    from marketplace.fl.models import ModelSpec
    from marketplace.protocol.taskdoc import TaskDocument
    family("task_document", ConfigError, lambda: TaskDocument.from_json(DEEP))
    family("model_spec", ConfigError, lambda: ModelSpec.from_json(DEEP))

    from marketplace.fl.serialization import load_weights
    blob = len(DEEP).to_bytes(8, "little") + DEEP
    family("update_header", InvalidUpdateError,
           lambda: load_weights(blob, spec=None, max_bytes=1 << 20))

    from marketplace.protocol.model_sale import Delivery
    family("delivery", CryptoError, lambda: Delivery.from_bytes(DEEP))

    for name in wanted:
        expected, call = FAMILIES[name]
        try:
            call()
        except expected as exc:
            print(name, "refused", type(exc).__name__, str(exc)[:120], flush=True)
        else:
            print(name, "ACCEPTED", flush=True)
    """
)
FAMILIES = [
    "leaf_set", "announcement", "update_leaf", "secagg_message", "secagg_manifest", "report",
    "task_document", "model_spec", "update_header", "delivery",
]  # fmt: skip


@pytest.fixture(scope="module")
def child() -> tuple[int, dict[str, str]]:
    """Each family's outcome; a child that dies is restarted after the family that killed it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lines: dict[str, str] = {}
    worst = 0
    while todo := [f for f in FAMILIES if f not in lines]:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, *todo], capture_output=True, text=True, env=env,
            timeout=300,
        )  # fmt: skip
        lines.update(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
        if proc.returncode != 0:
            worst = worst or proc.returncode
            culprit = next(f for f in todo if f not in lines)
            lines[culprit] = f"CRASHED rc {proc.returncode}: {proc.stderr[-300:]}"
    return worst, lines


@pytest.mark.parametrize("name", FAMILIES)
def test_deep_json_from_a_peer_is_refused_not_a_crash(
    child: tuple[int, dict[str, str]], name: str
) -> None:
    _, lines = child
    assert lines[name].startswith("refused") and "nests deeper" in lines[name], lines[name]


def test_brackets_inside_strings_cannot_hide_nesting() -> None:
    with pytest.raises(NestingError):
        shallow_json(HIDDEN)
    with pytest.raises(NestingError):
        shallow_json(HIDDEN.decode())
    small = b'["' + b"]" * 600 + b'",' + b"[" * 700 + b"]" * 701  # the pure-Python path
    with pytest.raises(NestingError):
        shallow_json(small)
    assert shallow_json(b'["]]]]\\"]]]", {"a": ["[[[[["]}]') == [']]]]"]]]', {"a": ["[[[[["]}]


def _nesting(doc: object) -> int:
    inner = doc.values() if isinstance(doc, dict) else doc if isinstance(doc, list) else None
    return 0 if inner is None else 1 + max((_nesting(x) for x in inner), default=0)


def test_both_depth_counts_measure_the_nesting_outside_strings() -> None:
    docs = [[], {"a": '[\\"]'}, [[[["x\\\\"]]]], {"k": [{"]": "}"}, [1, '\\\\\\"']]}]
    for doc in docs:
        raw = json.dumps(doc).encode()
        padded = raw[:-1] + b" " * 5000 + raw[-1:]  # over SMALL_JSON_BYTES: the numpy count
        assert _depth(raw) == _depth(padded) == _nesting(doc), doc
        assert shallow_json(padded) == doc


def test_utf16_is_refused() -> None:
    with pytest.raises(ValueError):
        shallow_json('["x"]'.encode("utf-16"))


def test_honest_documents_fit_their_limits(tmp_path: Path) -> None:
    from eth_account import Account

    from marketplace.crypto.announce import sign_announcement
    from marketplace.crypto.update_leaf import sign_update_leaf
    from marketplace.protocol.round_batch import leaf_set_json
    from marketplace.storage.embedded import EmbeddedStore

    cid = EmbeddedStore(tmp_path).put(b"update")
    acct = Account.create()
    common = {"chain_id": 1, "task_id": 1, "round": 1, "cid": cid, "digest": b"\x01" * 32,
              "market_address": "0x" + "22" * 20}  # fmt: skip
    ann = sign_announcement(acct, **common).to_json()  # type: ignore[arg-type]
    leaf = sign_update_leaf(acct, num_samples=3, **common)  # type: ignore[arg-type]
    assert _depth(ann) == 1
    assert _depth(leaf_set_json([leaf, leaf])) == 2
    assert MAX_JSON_DEPTH == 8


# Modules that call json.loads/json.load only on the local operator's own files or daemons.
ALLOWLIST = {
    "marketplace/crypto/keystore.py": "the operator's keystore and x25519 key files",
    "marketplace/chain/deploy.py": "the operator's deployments file",
    "marketplace/chain/build.py": "compiled artifacts built on this machine",
    "marketplace/chain/compiler.py": "the local compiler cache and solc settings in the repo",
    "marketplace/chain/devnet.py": "the local devnet's RPC reply",
    "marketplace/chain/subscription.py": "the operator's RPC node (web3 decodes its HTTP replies "
    "unbounded anyway)",
    "marketplace/netns.py": "`ip -j` output, the local link emulator, its own config file",
    "marketplace/storage/kubo.py": "the local kubo daemon's replies",
    "marketplace/storage/kubo_daemon.py": "the local kubo repo's config file",
    "marketplace/storage/pubsub.py": "the local kubo daemon's JSON lines (peer data in them is "
    "multibase strings)",
    "marketplace/indexer/indexer.py": "the indexer's own SQLite rows (json.dumps of chain events)",
    "marketplace/indexer/queries.py": "the indexer's own SQLite rows (reports go through "
    "shallow_json)",
    "marketplace/jsonlimits.py": "shallow_json itself",
    "node/peers/journal.py": "the node's own SQLite journal",
    "node/cli/context.py": "the CLI's devnet state file under --home",
    "node/cli/model_cli.py": "a file the operator names on the command line",
}


def test_no_json_loads_outside_the_allowlist() -> None:
    calls: dict[str, list[int]] = {}
    for top in ("marketplace", "node"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("loads", "load")
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "json"
                ) or (
                    isinstance(node, ast.ImportFrom)
                    and node.module == "json"
                    and any(a.name in ("loads", "load") for a in node.names)
                ):
                    calls.setdefault(rel, []).append(node.lineno)
    outside = {m: lines for m, lines in calls.items() if m not in ALLOWLIST}
    assert not outside, f"json.loads of possibly peer bytes (use shallow_json): {outside}"
    stale = sorted(set(ALLOWLIST) - set(calls))
    assert not stale, f"allowlisted modules no longer call json.loads: {stale}"
