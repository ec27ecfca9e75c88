#!/usr/bin/env python
"""Storage benchmark: the encrypted update path against plain IPFS add/cat, through one Kubo daemon.

For 1, 10 and 100 MB payloads, side by side in one run:

plain
    ``KuboStore.put(payload)`` then ``KuboStore.get(cid)``, compare with the payload.
sealed
    ``seal_stream`` (AES-256-GCM, 1 MiB segments, one recipient) → ``put_stream`` (sha256 of the
    envelope computed on the way, as a trainer does to commit it) → ``get_stream`` with that digest
    checked → ``open_stream`` → plaintext, compare with the payload.

Both use the same ``KuboStore`` code, the same daemon and the same add flags (``--cid-version=1
--raw-leaves --chunker=size-262144``). Every case runs in a fresh subprocess, so peak memory is that
case's alone: the figure is ``ru_maxrss`` at the end minus the RSS just before the payload was
created (the payload itself counts as 1x; C allocations by OpenSSL and urllib3 are included, which
``tracemalloc`` would miss). Each case is repeated and the median reported.

Prints ONE JSON object on stdout. Usage::

    .venv/bin/python scripts/bench_storage.py [--reps 5] [--sizes-mb 1,10,100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 1_000_000
SEGMENT = 1024 * 1024


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _worker(mode: str, size: int, api: str) -> dict[str, float]:
    """One case, in this (fresh) process; returns timings and memory."""
    from marketplace.chain.devnet import DEV_PRIVATE_KEYS, dev_x25519_private, dev_x25519_public
    from marketplace.crypto.envelope import EnvelopeContext, open_stream, seal_stream
    from marketplace.storage.kubo import KuboStore

    store = KuboStore(api, timeout=300.0)
    store.version()  # warm the connection pool, so both modes start equal
    from eth_account import Account

    sender = Account.from_key(DEV_PRIVATE_KEYS[1]).address
    reader = Account.from_key(DEV_PRIVATE_KEYS[2]).address
    reader_key = dev_x25519_private(2)
    context = EnvelopeContext(chain_id=31337, task_id=1, round=1, sender=sender)

    rss_before = _rss_bytes()
    payload = os.urandom(size)
    result: dict[str, float] = {}
    if mode == "plain":
        t0 = time.perf_counter()
        cid = store.put(payload)
        t1 = time.perf_counter()
        fetched = store.get(cid)
        ok = fetched == payload
        t2 = time.perf_counter()
        del fetched
    else:
        digest = hashlib.sha256()

        def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                digest.update(chunk)
                yield chunk

        view = memoryview(payload)
        t0 = time.perf_counter()
        pieces = (view[i : i + SEGMENT] for i in range(0, len(view), SEGMENT))
        sealed = seal_stream(
            pieces,
            recipients={reader: dev_x25519_public(2)},
            context=context,  # type: ignore[arg-type]
        )
        cid = store.put_stream(hashed(sealed))
        t1 = time.perf_counter()
        expected = digest.digest()
        import io

        out = io.BytesIO()
        for part in open_stream(
            store.get_stream(cid, expected_sha256=expected),
            recipient_address=reader, x25519_private=reader_key, expected_context=context,
        ):  # fmt: skip
            out.write(part)
        plaintext = out.getvalue()
        ok = plaintext == payload
        t2 = time.perf_counter()
        del plaintext
    if not ok:
        raise SystemExit(f"{mode} {size}: fetched bytes differ from the payload")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    result.update(
        seconds=t2 - t0,
        put_seconds=t1 - t0,
        get_seconds=t2 - t1,
        peak_rss_increase=peak - rss_before,
        rss_before=rss_before,
    )
    return result


def _run_case(mode: str, size: int, api: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--size", str(size), "--api", api],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=["plain", "sealed"])
    parser.add_argument("--size", type=int)
    parser.add_argument("--api")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sizes-mb", default="1,10,100")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.size, args.api)))
        return

    from marketplace.storage.kubo import KuboStore
    from marketplace.storage.kubo_daemon import start_kubo

    sizes = [int(s) for s in args.sizes_mb.split(",")]
    report: dict[str, object] = {"machine": _machine(), "reps": args.reps, "cases": {}}
    cases: dict[str, dict[str, object]] = {}
    with start_kubo(pubsub=False) as daemon:
        report["kubo"] = KuboStore(daemon.api_multiaddr).version()
        for size_mb in sizes:
            runs: dict[str, list[dict[str, float]]] = {"plain": [], "sealed": []}
            for rep in range(args.reps):
                # Interleaved, in alternating order, so drift and neighbours' load hit both alike.
                order = ("plain", "sealed") if rep % 2 == 0 else ("sealed", "plain")
                for mode in order:
                    runs[mode].append(_run_case(mode, size_mb * MB, daemon.api_multiaddr))
            summary: dict[str, object] = {}
            for mode, results in runs.items():
                summary[mode] = {
                    key: statistics.median(r[key] for r in results)
                    for key in ("seconds", "put_seconds", "get_seconds", "peak_rss_increase")
                }
                summary[mode]["seconds_min"] = min(r["seconds"] for r in results)  # type: ignore[index]
                summary[mode]["seconds_max"] = max(r["seconds"] for r in results)  # type: ignore[index]
                summary[mode]["mb_per_s"] = size_mb / summary[mode]["seconds"]  # type: ignore[index,operator]
                summary[mode]["peak_mem_ratio"] = (  # type: ignore[index]
                    summary[mode]["peak_rss_increase"] / (size_mb * MB)  # type: ignore[index,operator]
                )
            plain_s = summary["plain"]["seconds"]  # type: ignore[index]
            sealed_s = summary["sealed"]["seconds"]  # type: ignore[index]
            summary["ratio"] = sealed_s / plain_s
            cases[f"{size_mb}mb"] = summary
            print(f"{size_mb} MB: ratio {summary['ratio']:.3f}", file=sys.stderr)
    report["cases"] = cases
    if "100mb" in cases:
        report["ratio_100mb"] = cases["100mb"]["ratio"]
        report["peak_mem_ratio_100mb"] = cases["100mb"]["sealed"]["peak_mem_ratio"]  # type: ignore[index]
        report["plain_peak_mem_ratio_100mb"] = cases["100mb"]["plain"]["peak_mem_ratio"]  # type: ignore[index]
    report["memory_method"] = (
        "ru_maxrss of a fresh subprocess per case minus its RSS just before the payload was "
        "created (payload counts as 1x)"
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
