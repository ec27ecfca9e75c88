"""`fedmarket dashboard` and `fedmarket demo --dashboard` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from test_dashboard_browser import DOCS, SHOTS, wait_for

from marketplace.chain.backend import connect
from marketplace.chain.deploy import deploy_marketplace, write_deployment
from marketplace.chain.devnet import free_port, start_devnet
from marketplace.protocol.identity import Identity
from node.dashboard.formatting import token

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


@pytest.mark.browser
def test_demo_dashboard_serves_the_in_process_demo(tmp_path: Path, browser: Any) -> None:
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
        # The later contracts' sections against the demo's own record of what it sent.
        result = json.loads((tmp_path / "out" / "result.json").read_text())
        offers = section(page, 'id="offers-1"')
        for c in result["sourcing"]["candidates"]:
            cells = row_cells(offers, c["address"])
            assert cells["ask"] == token(c["ask"])
            assert cells["selected"] == ("yes" if c["won"] else "no")
            assert cells["payment"] == (token(c["payment"]) if c["won"] else "—")
        sale = result["sale"]
        listings = section(page, 'id="listings"')
        assert f'<td class="num price">{token(sale["price"])}</td>' in listings
        for buyer in sale["buyers"]:
            assert re.search(rf'title="{buyer}">[^<]*</a> paid [^,]*, <span class="sale-status">'
                             r"delivered<", listings)  # fmt: skip
        versions = section(page, 'id="versions"')
        for v in result["withdrawal"]["versions"]:
            shown = versions.split(f'data-version="{v["number"]}"', 1)[1].split("</tr>", 1)[0]
            assert f'class="reason">{v["reason"]}<' in shown
            assert f'class="validated">{"yes" if v["validated"] else "no"}<' in shown
        leaver = row_cells(section(page, 'id="withdrawals"'), result["withdrawal"]["trainer"])
        assert leaver["excluded-by"] == "2"  # the unlearned version excludes withdrawal 1
        # The same on screen, in chromium (and the README's screenshot of these sections).
        browser.get(url)
        wait_for("the page script", lambda: browser.execute_script(
            "return document.body.dataset.ready"))  # fmt: skip
        assert browser.find_element(By.CSS_SELECTOR, "#listings .price").text == token(
            sale["price"]
        )
        statuses = browser.find_elements(By.CSS_SELECTOR, "#listings .sale-status")
        assert [e.text for e in statuses] == ["delivered"] * len(sale["buyers"])
        selected = browser.find_elements(By.CSS_SELECTOR, "#offers-1 .selected")
        won = sum(c["won"] for c in result["sourcing"]["candidates"])
        assert [e.text for e in selected].count("yes") == won
        if SHOTS:
            heading = browser.find_element(By.XPATH, "//h2[starts-with(., 'Offers and')]")
            browser.execute_script("arguments[0].scrollIntoView()", heading)
            browser.save_screenshot(str(DOCS / "dashboard-products.png"))
    finally:
        stop(proc)


def section(page: str, marker: str) -> str:
    """One table of a page, from its marker to its end."""
    return page.split(marker, 1)[1].split("</table>", 1)[0]


def row_cells(table: str, address: str) -> dict[str, str]:
    """The text of each classed cell of the row of ``address``."""
    row = table.split(f'data-address="{address}"', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'<td class="(?:num )?([a-z-]+)">(.*?)</td>', row, re.S)
    return {k: re.sub(r"<[^>]+>", "", v).strip() for k, v in cells}
