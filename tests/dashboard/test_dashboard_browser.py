"""The dashboard in a real browser (headless chromium) against real Anvil and Kubo: what is on
screen is checked against the chain, pages follow new blocks without a reload, and hostile
on-chain strings are shown as text and never run."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chainkit import TaskSpec
from scenario import STAKE, Strings, World, create_task, finalized_task
from selenium.webdriver.common.by import By
from web3 import Web3

from marketplace.chain.clients import Phase
from marketplace.indexer import IndexerConfig
from node.dashboard.formatting import token
from node.dashboard.server import DashboardServer

pytestmark = [pytest.mark.anvil, pytest.mark.kubo, pytest.mark.browser]

DOCS = Path(__file__).resolve().parents[2] / "docs"
SHOTS = os.environ.get("FEDMARKET_DASHBOARD_SCREENSHOTS") == "1"  # refresh docs/*.png


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # the page may be mid-refresh (stale element)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def row(browser: Any, table: str, address: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, f'#{table} tr[data-address="{address}"]')


def cell(browser: Any, table: str, address: str, css: str) -> str:
    return str(row(browser, table, address).find_element(By.CSS_SELECTOR, css).text)


def shot(browser: Any, name: str, css: str | None = None) -> None:
    """Refresh a README screenshot (with FEDMARKET_DASHBOARD_SCREENSHOTS=1): the window, or
    one element of the page."""
    if not SHOTS:
        return
    if css is None:
        browser.save_screenshot(str(DOCS / name))
    else:
        element = browser.find_element(By.CSS_SELECTOR, css)
        browser.execute_script("arguments[0].scrollIntoView()", element)
        element.screenshot(str(DOCS / name))


def serve(world: World, tmp_path: Path) -> DashboardServer:
    return DashboardServer(world.w3, world.deployment, tmp_path / "index.sqlite", store=world.store)


def claimed_on_chain(world: World, task_id: int) -> dict[str, int]:
    """Claimed amounts straight from the chain's logs (not from the index)."""
    logs = world.mkt.market.events.Claimed().get_logs(
        from_block=world.deployment.block, argument_filters={"taskId": task_id}
    )
    return {str(e["args"]["account"]): int(e["args"]["amount"]) for e in logs}


def test_task_page_matches_the_chain(world: World, browser: Any, tmp_path: Path) -> None:
    task = finalized_task(world)
    chain_task = world.mkt.task(task.task_id)
    paid = claimed_on_chain(world, task.task_id)
    stake_now = {t.address: world.mkt.stake(t.address) for t in task.trainers}
    with serve(world, tmp_path) as server:
        browser.get(f"{server.url}/task/{task.task_id}")
        wait_for(
            "the page script", lambda: browser.execute_script("return document.body.dataset.ready")
        )
        assert browser.find_element(By.ID, "phase").text == Phase(chain_task["phase"]).name.lower()
        for t in task.trainers:
            assert cell(browser, "trainers", t.address, ".payout") == token(paid[t.address])
            assert cell(browser, "trainers", t.address, ".stake") == token(stake_now[t.address])
        # The flagged trainer: flags in words and the slash the chain made.
        slashed = STAKE - stake_now[task.flagged.address]
        assert slashed > 0
        assert cell(browser, "trainers", task.flagged.address, ".flags") == "invalid update"
        assert cell(browser, "trainers", task.flagged.address, ".slashed") == token(slashed)
        for t in task.trainers[:-1]:
            assert cell(browser, "trainers", t.address, ".flags") == "none"
        # Rounds: every trainer committed; the last round's model was reported differing once.
        counts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#rounds td.commits")]
        assert counts == [str(len(task.trainers))] * int(chain_task["rounds"])
        last = browser.find_element(
            By.CSS_SELECTOR, f'#rounds tr[data-round="{chain_task["rounds"]}"]'
        )
        assert "posted" in last.find_element(By.CSS_SELECTOR, ".mismatches").text
        # The committee: three reveals; the report fetched from Kubo is public JSON.
        oracles = world.mkt.actors.oracles
        assert "public" in cell(browser, "committee", oracles[0].address, ".report")
        # The chart drew from the public report.
        wait_for("the chart", lambda: browser.execute_script(
            "return document.getElementById('accuracy').dataset.ready"))  # fmt: skip
        shot(browser, "dashboard-task.png")
        shot(browser, "dashboard-trainers.png", "#trainers")

        browser.get(server.url + "/")
        phase_cell = browser.find_element(
            By.CSS_SELECTOR, f'#tasks tr[data-task="{task.task_id}"] .phase'
        )
        assert phase_cell.text == Phase(chain_task["phase"]).name.lower()
        shot(browser, "dashboard-tasks.png")

        browser.get(f"{server.url}/participant/{task.flagged.address}")
        assert browser.find_element(By.ID, "stake").text == token(stake_now[task.flagged.address])
        names = [
            e.text
            for e in browser.find_elements(By.CSS_SELECTOR, "#participant-events .event-name")
        ]
        assert "Slashed" in names and "Claimed" in names and "TrainerJoined" in names


def test_page_follows_new_blocks_without_reload(world: World, browser: Any, tmp_path: Path) -> None:
    mkt = world.mkt
    trainers = mkt.actors.trainers[:2]
    task_id = create_task(world, TaskSpec(rounds=1, min_trainers=2, max_trainers=2))
    mkt.start(task_id, trainers)
    with serve(world, tmp_path) as server:
        browser.get(f"{server.url}/task/{task_id}")
        wait_for("live events", lambda: browser.find_element(By.ID, "live-state").text == "live")
        browser.execute_script("window.__sameDocument = 'yes';")
        commits = browser.find_element(By.CSS_SELECTOR, '#rounds tr[data-round="1"] .commits')
        assert commits.text == "0"
        sent = time.monotonic()
        mkt.chain.tx(
            mkt.fn.commitUpdate(task_id, 1, "bafy-live", Web3.keccak(text="u"), 7), trainers[0]
        )
        wait_for("the commit on screen", lambda: browser.find_element(
            By.CSS_SELECTOR, '#rounds tr[data-round="1"] .commits').text == "1")  # fmt: skip
        delay = time.monotonic() - sent
        print(f"on screen {delay:.2f} s after the transaction")
        assert delay <= 2.0, f"a new block took {delay:.2f} s to show (goal: within 2 s)"
        assert browser.execute_script("return window.__sameDocument") == "yes"  # no reload
        mkt.chain.tx(
            mkt.fn.commitUpdate(task_id, 1, "bafy-live2", Web3.keccak(text="v"), 7), trainers[1]
        )
        mkt.chain.tx(mkt.fn.advance(task_id), trainers[0])
        wait_for(
            "the phase change", lambda: browser.find_element(By.ID, "phase").text == "committing"
        )
        assert browser.execute_script("return window.__sameDocument") == "yes"


HOSTILE = Strings(
    model_spec_cid="<img src=x onerror=\"document.body.dataset.pwned='spec'\">",
    update_cid="<script>document.body.dataset.pwned='update'</script>{round}-{i}",
    model_cid='"><svg onload="document.body.dataset.pwned=\'model\'">{round}',
    evidence="<img src=x onerror=\"document.body.dataset.pwned='evidence'\"><b>bold</b>",
    report_method="<script>document.body.dataset.pwned='method'</script>",
    bad_reveal_cid="\"'><script>document.body.dataset.pwned='cid'</script>",
)


def test_hostile_strings_are_text_and_never_run(world: World, browser: Any, tmp_path: Path) -> None:
    task = finalized_task(world, strings=HOSTILE)
    with serve(world, tmp_path) as server:
        pages = ["/", f"/task/{task.task_id}", f"/participant/{task.trainers[0].address}"]
        for page in pages:
            browser.get(server.url + page)
            wait_for(
                "the page script",
                lambda: browser.execute_script("return document.body.dataset.ready"),
            )
            time.sleep(0.3)  # let any injected handler fire (it must not)
            assert browser.execute_script("return document.body.dataset.pwned") is None, page
            assert browser.execute_script(
                "return document.querySelectorAll('main img, main svg, main script').length"
            ) == 0, page  # fmt: skip
        # Shown as text, exactly as the chain and the report hold it.
        browser.get(f"{server.url}/task/{task.task_id}")
        text = browser.find_element(By.TAG_NAME, "main").text
        assert HOSTILE.model_spec_cid in text
        assert HOSTILE.evidence in text
        assert HOSTILE.report_method in text
        liar = world.mkt.actors.oracles[1].address
        shown = row(browser, "committee", liar).find_element(By.CSS_SELECTOR, ".report code")
        assert shown.get_attribute("title") == HOSTILE.bad_reveal_cid
        # A live refresh (innerHTML of a server fragment) must not run anything either.
        browser.execute_script("window.__sameDocument = 'yes';")
        before = browser.execute_script("return document.body.dataset.refreshed || ''")
        world.mkt.chain.warp(1)  # a new block: the page refreshes its fragment
        wait_for("a live refresh", lambda: (browser.execute_script(
            "return document.body.dataset.refreshed || ''") != before))  # fmt: skip
        time.sleep(0.3)
        assert browser.execute_script("return document.body.dataset.pwned") is None
        assert browser.execute_script("return window.__sameDocument") == "yes"
        shot(browser, "dashboard-xss.png", "#evidence")


def test_a_dispute_and_its_resolution_are_shown(world: World, browser: Any, tmp_path: Path) -> None:
    mkt = world.mkt
    task = finalized_task(world, trainers=2, rounds=1, claim=False, mismatch=False)
    disputer = task.trainers[0]
    mkt.chain.tx(mkt.fn.dispute(task.task_id), disputer)
    with serve(world, tmp_path) as server:
        browser.get(f"{server.url}/task/{task.task_id}")
        wait_for("live events", lambda: browser.find_element(By.ID, "live-state").text == "live")
        assert browser.find_element(By.ID, "phase").text == "disputed"
        shown = browser.find_element(By.ID, "disputes").text
        assert "DisputeRaised" in shown and disputer.address in shown
        root = mkt.task(task.task_id)["leadingRoot"]
        mkt.chain.tx(mkt.fn.resolveDispute(task.task_id, root), mkt.actors.arbiter)
        wait_for("the resolution", lambda: "DisputeResolved" in browser.find_element(
            By.ID, "disputes").text)  # fmt: skip
        assert (
            browser.find_element(By.ID, "phase").text
            == Phase(mkt.task(task.task_id)["phase"]).name.lower()
        )


def test_an_indexer_failure_is_shown_on_the_page(
    world: World, browser: Any, tmp_path: Path
) -> None:
    chain = world.mkt.chain
    server = DashboardServer(world.w3, world.deployment, tmp_path / "index.sqlite",
                             config=IndexerConfig(reorg_depth=2))  # fmt: skip
    with server:
        browser.get(server.url + "/")
        wait_for("live events", lambda: browser.find_element(By.ID, "live-state").text == "live")
        fork = chain.snapshot()
        for _ in range(5):
            chain.warp(1)
        wait_for("the index to follow", lambda: int(browser.find_element(
            By.ID, "indexed-block").text) == world.w3.eth.block_number)  # fmt: skip
        chain.revert_to(fork)  # a reorganization deeper than the two blocks the index keeps
        for _ in range(6):
            chain.warp(2)
        shown = wait_for("the error", lambda: browser.find_element(By.ID, "indexer-error").text)
        assert "reorganized deeper than the 2 blocks" in shown and "--reorg-depth" in shown
