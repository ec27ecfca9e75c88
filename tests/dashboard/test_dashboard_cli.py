"""`fedmarket dashboard` and `fedmarket demo --dashboard` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from marketplace.chain.backend import connect
from marketplace.chain.deploy import deploy_marketplace, write_deployment
from marketplace.chain.devnet import free_port, start_devnet
from marketplace.protocol.identity import Identity

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def start(args: list[str], tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = os.environ | {"FEDMARKET_DASHBOARD_PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, "-m", "node", "--home", str(tmp_path / "home"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip


def wait_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"exited ({proc.wait()}) before {needle!r}:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no {needle!r} within {timeout}s:\n{''.join(seen)}")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_dashboard_command_serves_the_deployment_and_resumes(
    chain_kind: str, tmp_path: Path
) -> None:
    with start_devnet(chain_kind) as node:
        w3 = connect(node.rpc_url)
        write_deployment(deploy_marketplace(w3, Identity.dev(0).eth), tmp_path / "deployments")
        args = ["--chain-rpc", node.rpc_url, "--deployments", str(tmp_path / "deployments"),
                "dashboard"]  # fmt: skip
        port = free_port()
        proc = start(args, tmp_path, port)
        try:
            wait_line(proc, "FedMarket dashboard on", 60)
            assert "No task yet." in get(f"http://127.0.0.1:{port}/")
            first = int(
                get(f"http://127.0.0.1:{port}/api/status").split('"last_block":')[1].split(",")[0]
            )
        finally:
            assert stop(proc) in (0, -signal.SIGTERM)
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        proc = start([*args, "--json"], tmp_path, port)
        try:
            ready = json.loads(wait_line(proc, '{"url":', 60))
            assert ready["url"].startswith(f"http://127.0.0.1:{port}")
            assert ready["index"].endswith(".sqlite")
            status = get(f"http://127.0.0.1:{port}/api/status")
            assert f'"last_block":{first + 1}' in status.replace(" ", "")
            index = list((tmp_path / "home" / "dashboard").glob("*.sqlite"))
            assert len(index) == 1  # the same file, resumed
        finally:
            stop(proc)


def test_dashboard_without_a_deployment_is_a_one_line_error(
    chain_kind: str, tmp_path: Path
) -> None:
    with start_devnet(chain_kind) as node:
        proc = subprocess.run(
            [sys.executable, "-m", "node", "--chain-rpc", node.rpc_url, "--deployments",
             str(tmp_path / "none"), "dashboard"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: no deployment for chain 31337")
    assert "Traceback" not in proc.stderr


def test_demo_dashboard_serves_the_in_process_demo(tmp_path: Path) -> None:
    port = free_port()
    proc = start(["demo", "--rounds", "1", "--out", str(tmp_path / "out"), "--dashboard"],
                 tmp_path, port)  # fmt: skip
    try:
        line = wait_line(proc, "Dashboard on", 600)
        url = line.split("Dashboard on ", 1)[1].split(" ", 1)[0]
        assert url.startswith(f"http://127.0.0.1:{port}/task/")
        page = get(url)
        assert 'id="phase" class="phase phase-finalized">finalized<' in page
        # Every trainer's leaf claimed: the demo's trainers are the sourcing winners (7 of 10).
        assert page.count('class="claimed">yes<') == 7
        assert "poisoner" in page and "free rider" in page  # the demo's cheaters, flagged
        assert page.count("status-encrypted") == 3  # the committee's sealed reports
    finally:
        stop(proc)
