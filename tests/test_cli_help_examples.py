"""Every example a ``--help`` prints must work as printed (issue 10, F12).

The ``\\b`` example blocks are collected from every command of the click tree. Every ``fedmarket``
invocation in them must parse; then a scripted world on a fresh devnet and Kubo runs every block,
in an order that meets its preconditions, as a ``bash`` script of the lines exactly as printed
(``fedmarket`` is this worktree's CLI; the node-wide settings come from the environment, as the
root help says: FEDMARKET_CHAIN_RPC, FEDMARKET_IPFS_API, FEDMARKET_HOME, FEDMARKET_PASSWORD).
The world's other actors (more trainers and oracles, a second task) are set up in-process between
the examples, or run as processes of their own beside a long-running example: task 1 buys data
from three owners and is trained live by them (`node run` as printed and two more trainers) and
the committee (`oracle run` as printed and two more oracles), the test process moving the devnet
clock past the join and dispute windows; then they average by gossip, one withdraws consent and
the other two unlearn its data while the committee re-validates. The model product path
runs on markets of its own whose task 1 is trained and finalized in-process (as the contract
tests do). A command whose examples the world does not run fails the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner
from eth_account import Account

from marketplace.chain.backend import connect
from marketplace.chain.devnet import DevnetProcess, advance_chain_time, free_port
from marketplace.fl import load_dataset, split_dataset
from marketplace.protocol.identity import Identity
from marketplace.storage.kubo_daemon import KuboDaemon
from node.cli import cli
from node.cli.root import command_at, walk

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "help-examples"
T0 = time.monotonic()
LIVE_TIMEOUT = 600.0  # bounds one live run of processes (a hang); no assertion is about time


def _commands() -> Iterator[tuple[str, ...]]:
    return (path for path, _ in walk())


def _help(path: tuple[str, ...]) -> str:
    return command_at(path).help or ""


def _examples(text: str) -> list[str]:
    """The indented lines of each ``\\b`` block."""
    # A line ending in a backslash continues on the next, as in a shell.
    lines, out, inside = text.replace("\\\n", " ").splitlines(), [], False
    for line in lines:
        if line.strip() == "\b":
            inside = True
            continue
        if inside and not line.strip():
            inside = False
        elif inside and line.startswith("  ") and not line.strip().endswith(":"):
            out.append(re.sub(r"\s+", " ", line.strip()))
    return out


def _variables(lines: list[str]) -> set[str]:
    """The shell variables a block defines (``NAME=$(…)`` at the start of a line)."""
    return {m.group(1) for line in lines if (m := re.match(r"([A-Z_]+)=\$\(", line))}


def _invocations(example: str) -> list[list[str]]:
    """The ``fedmarket`` argument lists in one shell line (split at ``&&``, ``|`` and ``;``)."""
    out, current = [], []
    for token in [*shlex.split(example, posix=True), "&&"]:
        if token in ("&&", "|", ";", "||"):
            if current and current[0] == "fedmarket":
                out.append(current[1:])
            current = []
        else:
            current.append(token)
    return out


def _parses(args: list[str]) -> None:
    """Resolve ``args`` through the click tree without running anything."""
    ctx = cli.make_context("fedmarket", list(args), resilient_parsing=False)
    cmd: click.Command = cli
    rest = ctx.protected_args + ctx.args
    while isinstance(cmd, click.Group) and rest:
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None, f"no command {name}"
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        cmd = sub
        rest = ctx.protected_args + ctx.args if isinstance(sub, click.Group) else []


BLOCKS = {" ".join(p): ex for p in _commands() if (ex := _examples(_help(p)))}
EXAMPLES = sorted({(c, e) for c, ex in BLOCKS.items() for e in ex if "fedmarket" in e})


@pytest.mark.parametrize(("command", "example"), EXAMPLES)
def test_every_fedmarket_example_in_the_help_parses(
    command: str, example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The files an example names (a model, a data set) stand in a folder of their own.
    monkeypatch.chdir(tmp_path)
    for token in shlex.split(example.replace("\\", " ")):
        if token.endswith((".safetensors", ".npz", ".json")) and "/" not in token:
            (tmp_path / token).write_bytes(b"")
    # A variable the block defines stands for an address (the only kind the helps define).
    for name in _variables(BLOCKS[command]):
        example = example.replace(f"${name}", Identity.dev(2).address)
    for args in _invocations(example.replace("$(", "'").replace(")", "'")):
        try:
            _parses(args)
        except click.UsageError as exc:
            pytest.fail(f"`{example}` (help of `{command or 'fedmarket'}`): {exc.format_message()}")


class World:
    """Runs example blocks with bash, in a folder and an environment of the world's."""

    def __init__(self, tmp: Path, chain: DevnetProcess, kubo: KuboDaemon) -> None:
        self.tmp, self.chain, self.covered = tmp, chain, set[str]()
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "fedmarket"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m node "$@"\n')
        shim.chmod(0o755)
        cast = REPO / "node_modules" / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"
        (bin_dir / "cast").symlink_to(cast)
        self.cwd = tmp / "world"
        self.cwd.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith("FEDMARKET_")}
        self.base = {**base, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                     "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "200",
                     "FEDMARKET_PASSWORD": PASSWORD}  # fmt: skip
        self.env = {**self.base, "FEDMARKET_CHAIN_RPC": chain.rpc_url,
                    "FEDMARKET_IPFS_API": kubo.api_multiaddr, "ETH_RPC_URL": chain.rpc_url,
                    "FEDMARKET_HOME": str(self.cwd / "home")}  # fmt: skip
        self.w3 = connect(chain.rpc_url)

    def run(self, command: str, lines: list[str] | None = None, **kw: object) -> str:
        """Run ``command``'s examples (or ``lines`` of them) as one bash script; its stdout."""
        lines = BLOCKS[command] if lines is None else lines
        env: dict[str, str] = kw.get("env", self.env)  # type: ignore[assignment]
        cwd: Path = kw.get("cwd", self.cwd)  # type: ignore[assignment]
        script = "set -eo pipefail\n" + "\n".join(lines)
        done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, f"`{command}` failed:\n{script}\n{done.stderr[-3000:]}"
        self.covered.add(command)
        print(f"{time.monotonic() - T0:7.1f}s {command or 'fedmarket'}")
        return done.stdout

    def harness(self, *args: str, env: dict[str, str] | None = None) -> str:
        """A step of the world's other actors (not an example), in-process."""
        env = env or {**self.env, "FEDMARKET_DEPLOYMENTS": str(self.cwd / "deployments")}
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result.output

    def sandbox(self, name: str) -> tuple[dict[str, str], Path]:
        """An environment whose `devnet up` starts a devnet of its own on a free port."""
        cwd = self.tmp / name
        cwd.mkdir()
        env = {**self.base, "FEDMARKET_HOME": str(cwd / "home"),
               "FEDMARKET_CHAIN_RPC": f"http://127.0.0.1:{free_port()}"}  # fmt: skip
        return env, cwd

    def devnet_down(self, env: dict[str, str]) -> None:
        subprocess.run(["fedmarket", "devnet", "down"], env=env, check=True, capture_output=True,
                       timeout=60)  # fmt: skip

    def advance(self, seconds: int) -> None:
        advance_chain_time(self.w3, seconds)

    def long_running(self, command: str, line: str, ready: str | None, **kw: object) -> None:
        """Start ``line``, wait for its first progress line (``ready``; None: one that prints
        nothing until the end runs for 20 s), stop it with SIGINT (as Ctrl-C), and require that it
        printed no error (or that it finished, exit 0, before that)."""
        env: dict[str, str] = kw.get("env", self.env)  # type: ignore[assignment]
        cwd: Path = kw.get("cwd", self.cwd)  # type: ignore[assignment]
        out, err = cwd / f"{command}-{time.monotonic_ns()}.out", cwd / f"{command}.err"
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdout=o,
                                    stderr=e, start_new_session=True)  # fmt: skip
        try:
            start = time.monotonic()
            while proc.poll() is None:
                if ready is None and time.monotonic() - start > 20:
                    break
                if ready is not None and ready in out.read_text():
                    break
                assert time.monotonic() - start < 300, f"`{line}` printed no {ready!r} in 300 s"
                time.sleep(0.5)
            # Done before that: a whole run, which must have succeeded.
            assert proc.poll() in (None, 0), f"`{line}` exited {proc.returncode}: {err.read_text()}"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        # Ctrl-C ends a command with the one line `Error: interrupted`; anything else is an error.
        errors = err.read_text().replace("Error: interrupted\n", "")
        print(f"{time.monotonic() - T0:7.1f}s {command}: {line}")
        self.covered.add(command)
        assert "Error" not in errors and "Traceback" not in errors, errors


class Proc:
    """A process of a live run: an example line as printed, or a harness actor's command, its
    output in files of the world's folder."""

    def __init__(self, label: str, argv: list[str], command: str | None, env: dict[str, str],
                 cwd: Path) -> None:  # fmt: skip
        self.label, self.command = label, command
        self.out, self.err = cwd / f"{label}.out", cwd / f"{label}.err"
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=o, stderr=e,
                                          start_new_session=True)  # fmt: skip

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def tail(self, lines: int = 25) -> str:
        err = self.err.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join([f"--- {self.label} (exit {self.returncode})", *err])

    def stop(self) -> None:
        """Ctrl-C, then SIGKILL if it does not end."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def _start_example(w: World, command: str, label: str = "") -> Proc:
    """``command``'s (one-line) example as printed, started in the background."""
    (line,) = BLOCKS[command]
    label = label or command.replace(" ", "-")
    return Proc(label, ["bash", "-c", f"exec {line}"], command, w.env, w.cwd)


def _start_actor(w: World, label: str, *args: str) -> Proc:
    """A harness actor (not an example): ``fedmarket ARGS`` in a process of its own."""
    return Proc(label, ["fedmarket", *args], None, w.env, w.cwd)


def _finish(w: World, procs: list[Proc], on_tick: Any = None) -> None:
    """Wait until every process exited 0, calling ``on_tick`` between polls; fail with their
    stderr tails at the first failure or after LIVE_TIMEOUT, stopping the others. The examples
    among them are covered."""
    deadline = time.monotonic() + LIVE_TIMEOUT
    try:
        while any(p.returncode is None for p in procs):
            failed = [p for p in procs if p.returncode not in (None, 0)]
            late = time.monotonic() > deadline
            if failed or late:
                why = "exited with an error" if failed else f"still ran after {LIVE_TIMEOUT:.0f} s"
                stuck = failed or [p for p in procs if p.returncode is None]
                names = ", ".join(p.label for p in stuck)
                pytest.fail(f"{names} {why}\n" + "\n".join(p.tail() for p in procs))
            if on_tick is not None:
                on_tick()
            time.sleep(0.3)
        failed = [p for p in procs if p.returncode != 0]
        assert not failed, "\n".join(p.tail() for p in procs)
    finally:
        for p in procs:
            p.stop()
    for p in procs:
        assert "Traceback" not in p.err.read_text(), p.tail(60)
        if p.command is not None:
            w.covered.add(p.command)
            print(f"{time.monotonic() - T0:7.1f}s {p.command} (live)")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timeout(2400)
def test_every_help_example_runs_as_printed(
    module_chain: DevnetProcess, kubo: KuboDaemon, tmp_path: Path
) -> None:
    w = World(tmp_path, module_chain, kubo)
    _sandboxed(w)
    _world(w)
    _signed_seats(w)
    _product(w)
    _bounty_and_refund(w)
    _reclaim(w)
    # Every command with examples was run.
    assert set(BLOCKS) == w.covered, set(BLOCKS) ^ w.covered


def _sandboxed(w: World) -> None:
    # Examples that start a devnet of their own (`devnet up`): each in a sandbox, stopped after.
    for command in ("", "devnet up"):
        env, cwd = w.sandbox(command or "root")
        try:
            out = w.run(command, env=env, cwd=cwd)
        finally:
            w.devnet_down(env)
        if command == "":
            assert "trainer" in out and "100" in out  # `status` of the new, registered account
    env, cwd = w.sandbox("dashboard")
    first, serve = BLOCKS["dashboard"]
    try:
        w.run("dashboard", [first], env=env, cwd=cwd)
        assert serve.endswith("--port 8550") and _port_free(8550), "port 8550 is taken"
        # `dashboard` serves until Ctrl-C: started, its first line awaited, stopped.
        w.long_running("dashboard", serve, "FedMarket dashboard on", env=env, cwd=cwd)
    finally:
        w.devnet_down(env)

    # `demo` runs for minutes: each of its examples is started, its first progress line (`·`)
    # awaited (with --json it prints nothing until the end: 20 s alive, or done), then stopped.
    # Its chain is in-process (or its own --devnet), so no FEDMARKET_CHAIN_RPC.
    env, cwd = w.sandbox("demo")
    del env["FEDMARKET_CHAIN_RPC"]
    plain, devnet = BLOCKS["demo"]
    w.long_running("demo", plain, "·", env=env, cwd=cwd)
    w.long_running("demo", devnet, None, env=env, cwd=cwd)


def _world(w: World) -> None:
    # The world: a fresh devnet and Kubo; every actor signs with its devnet key.
    dev = {i: Identity.dev(i).address for i in range(12)}
    assert w.run("deploy").strip().splitlines()[-1] == "0"  # a fresh market has no task
    (w.cwd / "pw.txt").write_text(PASSWORD)  # the password file `account new`'s example names
    w.run("account new")
    w.run("faucet")  # 1000 to the requester (dev 1)
    for i in range(1, 12):
        w.harness("--dev-account", "0", "faucet", "2000", "--to", dev[i])
    w.run("register")  # trainer dev 2
    w.harness("--dev-account", "1", "register", "requester")
    for i in (3, 4):
        w.harness("--dev-account", str(i), "register", "trainer", "--stake", "100")
    for i in (5, 6, 7):
        w.harness("--dev-account", str(i), "register", "oracle", "--stake", "100")
    w.run("model deploy")
    w.run("task create")
    assert json.loads(w.harness("task", "show", "1", "--json"))["taskId"] == 1
    w.run("oracle accept")  # dev 5; the others take theirs
    for i in (6, 7):
        w.harness("--dev-account", str(i), "oracle", "accept", "--task", "1")
    w.run("data register")
    # A second, plain task for `model configure` (task 1 was configured at creation).
    oracles = [a for i in (5, 6, 7) for a in ("--oracle", dev[i])]
    w.harness("--dev-account", "1", "task", "create", "--budget", "100", *oracles)
    w.run("model configure")
    w.run("model register")
    w.run("audit register")
    w.run("model list")

    # Sourcing on task 1: the request, seats, offers, the committee's selection, the winners.
    w.run("task request")
    w.run("sourcing accept")  # dev 5; dev 6 takes the second seat of the quorum
    w.harness("--dev-account", "6", "sourcing", "accept", "--task", "1")
    # The rows each owner offers: three shards of the digits train split (its own data, the one
    # file the example names). Three clean offers of equal size share the budget (two would
    # not: the more valuable one alone would take it all, the large-item branch); three trainers
    # also leave two to unlearn one's rows within the committee's accuracy tolerance.
    train = split_dataset(load_dataset("digits"), seed=0).train
    shards = {2: "hospital.npz", 3: "clinic.npz", 4: "lab.npz"}
    for k, name in enumerate(shards.values()):
        rows = slice(400 * k, 400 * (k + 1))
        np.savez(w.cwd / name, x=train.x[rows], y=train.y[rows])
    w.run("offer submit")  # dev 2; dev 3 and dev 4 offer too
    for dev, ask in ((3, 60), (4, 50)):
        w.harness("--dev-account", str(dev), "offer", "submit", "--task", "1", "--data",
                  str(w.cwd / shards[dev]), "--ask", str(ask))  # fmt: skip
    _past_sourcing_deadline(w, "offers")
    w.run("offer reveal")
    for dev in (3, 4):
        w.harness("--dev-account", str(dev), "offer", "reveal", "--task", "1")
    _past_sourcing_deadline(w, "reveals")
    w.run("sourcing select")
    w.harness("--dev-account", "6", "sourcing", "select", "--task", "1")
    _past_sourcing_deadline(w, "selectionCommit")
    w.run("sourcing reveal")
    w.harness("--dev-account", "6", "sourcing", "reveal", "--task", "1")
    shown = json.loads(w.harness("sourcing", "show", "--task", "1", "--json"))
    assert len(shown["selection"]["winners"]) == 3, shown["selection"]
    w.run("sourcing register")
    for dev in (3, 4):  # the other winners register too
        w.harness("--dev-account", str(dev), "sourcing", "register", "--task", "1")
    w.run("sourcing show")
    _live_task(w)


def _past_sourcing_deadline(w: World, which: str) -> None:
    """Move the devnet clock past one of task 1's data-request deadlines (as `sourcing show`
    lists them)."""
    shown = json.loads(w.harness("sourcing", "show", "--task", "1", "--json"))
    now = int(w.w3.eth.get_block("latest")["timestamp"])
    w.advance(max(1, int(shown["deadlines"][which]) - now + 1))


def _live_task(w: World) -> None:
    """Task 1 trained by processes: the winners dev 2 (`node run` as printed), 3 and 4 on the
    rows they offered, the committee dev 5 (`oracle run` as printed), 6 and 7. Then the data
    payments, gossip averaging, a withdrawal and its unlearning, and the refund."""
    from marketplace.chain.clients import Marketplace, Phase
    from marketplace.chain.deploy import load_deployment
    from marketplace.chain.versions_client import Reason, VersionsClient

    market = Marketplace(w.w3, load_deployment(w.cwd / "deployments", w.w3.eth.chain_id))
    winners = {Identity.dev(i).address for i in (2, 3, 4)}
    data = {3: "clinic.npz", 4: "lab.npz"}  # dev 2's, hospital.npz, is in the examples

    def clock() -> None:
        # The test moves the devnet clock past the windows nobody closes early: the join window
        # once the three winners joined, and the dispute window once the task is finalized.
        info, now = market.task(1), market.now()
        if info.phase_enum == Phase.OPEN and info.trainer_count == 3 and now <= info.phase_deadline:
            w.advance(max(1, info.phase_deadline - now + 1))
        elif info.phase_enum == Phase.FINALIZED and now < info.claims_open_at:
            w.advance(info.claims_open_at - now + 1)

    _finish(w, [
        _start_example(w, "node run"),
        *(_start_actor(w, f"trainer-{i}", "--dev-account", str(i), "node", "run", "--task", "1",
                       "--data", data[i]) for i in (3, 4)),
        _start_example(w, "oracle run"),
        *(_start_actor(w, f"oracle-{i}", "--dev-account", str(i), "oracle", "run", "--task", "1")
          for i in (6, 7)),
    ], on_tick=clock)  # fmt: skip
    info = market.task(1)
    assert info.phase_enum == Phase.FINALIZED and info.trainer_count == 3, info
    claims = market.events(market.market, "Claimed", filters={"taskId": 1})
    claimed = {e["args"]["account"] for e in claims}
    assert claimed == winners, claimed
    # Task 1 is registered for retention (`data register`): the committee recorded its final
    # model as version 1 and validated it.
    versions = VersionsClient(market)
    (v1,) = [v for v in versions.versions(1) if v.reason == Reason.TRAINED and v.validated]

    # The winners trained every round unflagged: their data payments (dev 2 as printed; dev 3,
    # which withdraws below, leaves its own unclaimed).
    w.run("sourcing claim")
    w.harness("--dev-account", "4", "sourcing", "claim", "--task", "1")
    # Gossip averaging with the task's two other trainers beside it, each on its own rows.
    _finish(w, [
        _start_example(w, "node average"),
        *(_start_actor(w, f"average-{i}", "--dev-account", str(i), "node", "average", "--task",
                       "1", "--data", data[i], "--k", "2", "--seed", str(i)) for i in (3, 4)),
    ])  # fmt: skip
    # Dev 3 withdraws consent; dev 2 and dev 4, the trainers left, unlearn its rows while the
    # committee (`oracle run` again) derives the same model and attests it.
    w.run("data withdraw")
    _finish(w, [
        _start_example(w, "data unlearn"),
        _start_actor(w, "unlearn-4", "--dev-account", "4", "data", "unlearn", "--task", "1",
                     "--data", data[4]),
        _start_example(w, "oracle run", "oracle-run-again"),
        *(_start_actor(w, f"oracle-{i}-again", "--dev-account", str(i), "oracle", "run",
                       "--task", "1") for i in (6, 7)),
    ])  # fmt: skip
    (unlearned,) = [v for v in versions.versions(1) if v.reason == Reason.UNLEARNED]
    assert unlearned.validated and unlearned.parent == v1.number and unlearned.excludes == 1
    assert versions.is_honoured(1, 1)
    # What the winners did not claim (dev 3's payment) goes back to the requester once the claim
    # window (7 days after the last deadline) is over.
    w.advance(8 * 24 * 3600)
    out = w.run("sourcing refund")
    (refunded,) = re.findall(r"has returned (\d+) in total", out)
    assert int(refunded) >= 90 * 10**18, out


def _signed_seats(w: World) -> None:
    """Committee consent by signatures, on a market of its own (same devnet) whose task 1 is
    Forming with oracles dev 5 and 6: each signs its seat offline (`oracle sign-seat`), the
    requester (dev 1) seats both in one transaction (`task seat`), which opens the task."""
    cwd = w.tmp / "seats"
    cwd.mkdir()
    env = {**w.env, "FEDMARKET_DEPLOYMENTS": str(cwd / "deployments"),
           "FEDMARKET_HOME": str(cwd / "home")}  # fmt: skip
    w.harness("--dev-account", "0", "deploy", env=env)
    dev = {i: Identity.dev(i).address for i in (1, 5, 6)}
    for i in (1, 5, 6):
        w.harness("--dev-account", "0", "faucet", "2000", "--to", dev[i], env=env)
    w.harness("--dev-account", "1", "register", "requester", env=env)
    for i in (5, 6):
        w.harness("--dev-account", str(i), "register", "oracle", "--stake", "100", env=env)
    w.harness("--dev-account", "1", "task", "create", "--budget", "100", "--oracle", dev[5],
              "--oracle", dev[6], env=env)  # fmt: skip
    bare, as_json = w.run("oracle sign-seat", env=env, cwd=cwd).strip().split("\n", 1)
    assert bare.startswith(f"1:{dev[5]}:") and json.loads(as_json)["oracle"] == dev[6]
    w.run("task seat", env=env, cwd=cwd)
    from marketplace.chain.clients import Phase

    shown = json.loads(w.harness("task", "show", "1", "--json", env=env))
    assert shown["acceptedCount"] == shown["committeeSize"] == 2, shown
    assert shown["phase"] == Phase.OPEN, shown


def _trained_market(
    w: World, name: str, params: Any = None
) -> tuple[Any, dict[str, str], Path, bytes]:
    """A market of its own (same devnet and Kubo, fresh contracts) whose task 1 is trained,
    finalized and configured for the model product in-process as the contract tests do
    (chainkit/productkit), with the examples' actors: requester dev 1, trainers 2-3, oracles 5-7,
    developer 8, auditors 9-10, buyer 11. Its Product, the examples' env and folder, the final
    model."""
    sys.path.insert(0, str(REPO / "tests" / "contracts"))
    from chainkit import E18, Actors, Chain, Market, Vote, payout_tree, root_bytes
    from productkit import DEVELOPER, MAX, Product, deployment_of, key

    from marketplace.chain.compiler import compile_contracts
    from marketplace.chain.deploy import write_deployment
    from marketplace.chain.devnet import DEV_PRIVATE_KEYS
    from marketplace.crypto.envelope import EnvelopeContext, seal
    from marketplace.fl.data import canonical_digest
    from marketplace.fl.models import ModelSpec, build_model
    from marketplace.fl.serialization import dump_weights
    from marketplace.fl.weights import get_weights
    from marketplace.protocol.published_report import REPORT_ROUND
    from marketplace.storage.kubo import KuboStore

    k = [Account.from_key(x) for x in DEV_PRIVATE_KEYS]
    actors = Actors(deployer=k[0], arbiter=k[12], requester=k[1], oracles=k[5:8],
                    trainers=k[2:5], outsiders=[k[8], k[9], k[10], k[11], k[13]])  # fmt: skip
    chain, d = Chain(w.w3, compile_contracts()), k[0]
    token = chain.deploy("RewardToken", d, "FedMarket Reward", "FMR", d.address)
    registry = chain.deploy("ParticipantRegistry", d, token.address, 7 * 24 * 3600, d.address)
    market = chain.deploy("TaskMarket", d, registry.address, actors.arbiter.address)
    chain.tx(registry.functions.setMarket(market.address, True), d)
    mm = chain.deploy("ModelMarket", d, market.address)
    chain.tx(registry.functions.setMarket(mm.address, True), d)
    for who in [actors.arbiter, actors.requester, *actors.oracles, *actors.trainers,
                *actors.outsiders]:  # fmt: skip
        chain.tx(token.functions.mint(who.address, 1_000_000 * E18), d)
        for spender in (market, registry, mm):
            chain.tx(token.functions.approve(spender.address, MAX), who)
    for role, group in ((2, actors.oracles), (1, actors.trainers)):
        for i, who in enumerate(group):
            chain.tx(registry.functions.register(role, key(f"r{role}-{i}"), 100 * E18), who)
    chain.tx(mm.functions.register(DEVELOPER, key("dev8")), k[8])
    pm = Product(Market(chain, actors, token, registry, market), mm, mm, [k[8]], [], [k[11]])
    deployments, cwd = w.tmp / f"{name}-deployments", w.tmp / name
    write_deployment(deployment_of(pm), deployments)
    cwd.mkdir()
    env = {**w.env, "FEDMARKET_DEPLOYMENTS": str(deployments), "FEDMARKET_HOME": str(cwd / "home")}
    # The files the examples name: the final model and developer dev 8's revision.
    final = dump_weights(get_weights(build_model(ModelSpec("logreg", 64, 10, seed=3))))
    (cwd / "final.safetensors").write_bytes(final)
    (cwd / "revised.safetensors").write_bytes(
        dump_weights(get_weights(build_model(ModelSpec("logreg", 64, 10, seed=4))))
    )
    # Task 1: trained by dev 2 and 3 on the committed validation set, finalized on a report
    # sealed to them and stored in Kubo (as the oracles publish it), its final model posted.
    val = split_dataset(load_dataset("digits"), seed=0).validation
    spec = pm.mkt_spec(2).with_(validation_commitment=bytes.fromhex(canonical_digest(val.x, val.y)))
    task, trainers = pm.mkt.create(spec), actors.trainers[:2]
    assert task == 1
    pm.mkt.start(task, trainers)
    pm.mkt.train(task, trainers)
    tree = payout_tree([(t.address, 100 * E18, 500_000, 0) for t in trainers], pm.mkt.domain(task))
    payouts = [{"index": e.index, "account": e.account, "amount": str(e.amount),
                "score_ppm": e.score_ppm, "flags": e.flags} for e in tree.entries]  # fmt: skip
    report = json.dumps({"merkle_root": tree.root, "payouts": payouts}).encode()
    sealed_to = {Identity.dev(i).address: Identity.dev(i).x25519_public for i in (2, 3)}
    store, votes = KuboStore(w.env["FEDMARKET_IPFS_API"], timeout=30.0), {}
    for i, oracle in enumerate(actors.oracles):
        ctx = EnvelopeContext(chain_id=chain.chain_id, task_id=task, round=REPORT_ROUND,
                              sender=oracle.address)  # fmt: skip
        cid = str(store.put(seal(report, recipients=sealed_to, context=ctx)))
        votes[i] = Vote(root_bytes(tree), cid, bytes([i + 1]) * 32)
    store.close()
    pm.mkt.score(task, votes)
    rounds = pm.mkt.task(task)["rounds"]
    digest = hashlib.sha256(final).digest()
    pm.tx(market.functions.postModel(task, rounds + 1, "bafy-final", digest), trainers[0])
    pm.mkt.open_claims(task)
    pm.configure(task, params)
    return pm, env, cwd, final


def _product(w: World) -> None:
    """The model product path, its examples as printed, on a trained market."""
    pm, env, cwd, final = _trained_market(w, "product")
    chain, mm, task = pm.chain, pm.mm, 1
    pm.submit_final(task)  # submission 1: the requester's final aggregate
    w.run("model submit", env=env, cwd=cwd)  # submission 2: developer dev 8's revision
    pm.evaluate(task, 1, 900_000)
    pm.fix_total(task, 1_000_000)
    for a in (9, 10):
        w.harness("--dev-account", str(a), "audit", "register", env=env)
    out = w.run("audit package", env=env, cwd=cwd)
    (package,) = re.findall(r"│ package +│ (\w+)", out)
    # Auditor dev 9 as printed (its block packages the model again and attests that package,
    # with the report the example names); dev 10 attests the package above.
    report = {"auditor": Identity.dev(9).address, "finding": "digest and validation set match"}
    (cwd / "report.json").write_text(json.dumps(report))
    out = w.run("audit attest", env=env, cwd=cwd)
    assert "reportCid" in out
    w.harness("--dev-account", "10", "audit", "attest", "--task", "1", "--submission", "1",
              "--package", package, "--report-cid", "report-10", env=env)  # fmt: skip
    pm.tx(mm.functions.approve(task, 1), pm.requester)
    for command in ("model sell", "model show", "model buy", "model deliver", "model download"):
        w.run(command, env=env, cwd=cwd)
    assert (cwd / "model.safetensors").read_bytes() == final
    # The sale's royalties: trainer dev 2 and the requester claim theirs; after the royalty
    # window, the requester sweeps what trainer dev 3 left unclaimed.
    w.run("model claim", env=env, cwd=cwd)
    w.run("model claim-share", env=env, cwd=cwd)
    chain.warp_past(pm.listing(1)["royaltyDeadline"])
    w.run("model sweep", env=env, cwd=cwd)


def _bounty_and_refund(w: World) -> None:
    """On another trained market: developer dev 8's revision (submission 2) passes where the final
    aggregate failed, is approved, and dev 8 claims the bounty; a sale nobody delivers is
    refunded after its delivery deadline."""
    pm, env, cwd, _ = _trained_market(w, "bounty")  # puts productkit on the path
    from productkit import AUDITOR, key

    from marketplace.chain.devnet import DEV_PRIVATE_KEYS

    k = [Account.from_key(x) for x in DEV_PRIVATE_KEYS]
    task = 1
    pm.submit_final(task)
    assert pm.submit(task, k[8], "revision") == 2
    pm.evaluate(task, 1, 100_000)  # below the threshold
    pm.evaluate(task, 2, 900_000)
    pm.fix_total(task, 1_000_000)
    for a in (9, 10):
        pm.tx(pm.mm.functions.register(AUDITOR, key(f"aud{a}")), k[a])
        pm.tx(pm.attest_fn(task, 2, k[a]), k[8])
    pm.tx(pm.mm.functions.approve(task, 2), pm.requester)
    w.run("model claim-bounty", env=env, cwd=cwd)
    sale = pm.buy(pm.list(task, submission=2), k[11])
    assert sale == 1
    pm.chain.warp_past(pm.sale(sale)["deliverBy"])
    w.run("model refund", env=env, cwd=cwd)


def _reclaim(w: World) -> None:
    """On a third trained market that takes one submission: it fails, and the requester reclaims
    the bounty and the auditor fees."""
    from marketplace.chain.model_market_client import ProductParams

    one = ProductParams(max_submissions=1, threshold_ppm=800_000, bounty=50 * 10**18,
                        required_attestations=2, auditor_fee=5 * 10**18,
                        eval_commit_duration=600, eval_reveal_duration=600)  # fmt: skip
    pm, env, cwd, _ = _trained_market(w, "reclaim", one)
    pm.submit_final(1)
    pm.evaluate(1, 1, 100_000)  # below the threshold: no submission left
    w.run("model reclaim", env=env, cwd=cwd)
