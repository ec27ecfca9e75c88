"""Every bad input issue 18 lists is one line naming the cause and the fix: exit 1, no traceback,
and under ``--json`` a JSON error document on stdout. Run against a real Anvil with the contracts
deployed, so a check that happens too late (after a transaction) would show."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from node.cli.root import cli

GOOD = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BAD_CHECKSUM = "0x70997970c51812DC3A010C7d01b50e0d17dc79C8"  # two letters' case flipped


@pytest.fixture(scope="module")
def world(module_chain, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("errors")
    node = module_chain  # the module's own devnet (FEDMARKET_TEST_CHAIN)
    env = {
        "FEDMARKET_HOME": str(tmp / "home"), "FEDMARKET_CHAIN_RPC": node.rpc_url,
        "FEDMARKET_DEPLOYMENTS": str(tmp / "deployments"), "FEDMARKET_PASSWORD": "pw",
    }  # fmt: skip
    result = CliRunner().invoke(cli, ["--dev-account", "0", "deploy"], env=env)
    assert result.exit_code == 0, result.output
    (tmp / "empty.npz").write_bytes(b"")
    np.savez(tmp / "ten.npz", x=np.zeros((20, 10), dtype="f4"), y=np.arange(20) % 2)
    (tmp / "notadir").write_text("a file where a directory should be")
    bad_deps = tmp / "bad-deployments"
    bad_deps.mkdir()
    (bad_deps / "31337.json").write_text('{"chainId": 31337, "contracts": []}')
    return {"tmp": tmp, "env": env, "rpc": node.rpc_url}


def _keystore_with(world, content: str) -> dict[str, str]:
    """A fresh home whose one account's keystore file was replaced by ``content`` (fresh for
    each call: a second account in a shared home would fail earlier, as "2 accounts")."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=world["tmp"]))
    env = {**world["env"], "FEDMARKET_HOME": str(home)}
    made = CliRunner().invoke(cli, ["account", "new", "--json"], env=env)
    assert made.exit_code == 0, made.output
    address = json.loads(made.stdout)["address"]
    (home / "keystore" / f"{address}.json").write_text(content)
    return env


CASES = {
    "malformed address (faucet)": (["--dev-account", "0", "faucet", "5", "--to", "0x123"], None),
    "malformed address (status)": (["status", "0xnothex"], None),
    "malformed --oracle": (
        ["--dev-account", "1", "task", "create", "--budget", "1", "--oracle", "bob"],
        None,
    ),
    "EIP-55 checksum wrong": (["--dev-account", "0", "faucet", "5", "--to", BAD_CHECKSUM], None),
    "negative task id": (["task", "show", "--", "-1"], None),
    "task id beyond uint256": (["task", "show", str(2**256)], None),
    "faucet 2**300": (["--dev-account", "0", "faucet", str(2**300), "--to", GOOD], None),
    "faucet Infinity": (["--dev-account", "0", "faucet", "Infinity", "--to", GOOD], None),
    "faucet NaN": (["--dev-account", "0", "faucet", "NaN", "--to", GOOD], None),
    "more decimals than the token": (
        ["--dev-account", "0", "faucet", "1.0000000000000000001", "--to", GOOD],
        None,
    ),
    "stake 2**300": (["--dev-account", "2", "stake", str(2**300)], None),
    "deployments file with contracts: []": (["status", GOOD], "bad-deployments"),
    "read-only --home (account new)": (["account", "new"], "home-under-a-file"),
    "read-only --home (devnet up)": (["devnet", "up", "--port", "1"], "home-under-a-file"),
    "empty .npz": (["--dev-account", "2", "node", "run", "--task", "1", "--data", "EMPTY"], None),
    "negative --fanout": (
        ["--dev-account", "2", "node", "run", "--task", "1", "--data", "digits", "--fanout", "-1"],
        None,
    ),
    "malformed seat signature": (
        ["--dev-account", "1", "task", "seat", "1", "1:0xabc:5:0x00"],
        None,
    ),
    "seat signature for another task": (
        ["--dev-account", "1", "task", "seat", "1", f"2:{GOOD}:99999999999:0x{'11' * 64}"],
        None,
    ),
    "expired seat signature": (
        ["--dev-account", "1", "task", "seat", "1", f"1:{GOOD}:1:0x{'11' * 64}"],
        None,
    ),
    "seat signature of no oracle": (["--dev-account", "1", "task", "seat", "1"], None),
    "sign-seat --valid-for 0": (
        ["--dev-account", "5", "oracle", "sign-seat", "--task", "1", "--valid-for", "0"],
        None,
    ),
    "sign-seat by an unregistered account": (
        ["--dev-account", "5", "oracle", "sign-seat", "--task", "1"],
        None,
    ),
    "foreign JSON as keystore": (["status"], '{"version": "other program", "data": 1}'),
    "a [1,2] keystore": (["status"], "[1, 2]"),
}


# What each message must say besides the cause: the fix (or the valid form).
FIXES = {
    "malformed address (faucet)": "expected 0x followed by 40 hex digits",
    "malformed address (status)": "expected 0x followed by 40 hex digits",
    "malformed --oracle": "expected 0x followed by 40 hex digits",
    "EIP-55 checksum wrong": "copy the address again",
    "negative task id": "between 0 and 2^256 - 1",
    "task id beyond uint256": "between 0 and 2^256 - 1",
    "faucet 2**300": "2^256 - 1",
    "faucet Infinity": "give tokens like 100 or 0.5",
    "faucet NaN": "give tokens like 100 or 0.5",
    "more decimals than the token": "at most 18 decimals",
    "stake 2**300": "2^256 - 1",
    "deployments file with contracts: []": "redeploy with `fedmarket deploy`",
    "read-only --home (account new)": "writable --home DIR",
    "read-only --home (devnet up)": "writable --home DIR",
    "empty .npz": "numpy.savez",
    "negative --fanout": "x>=0",
    "malformed seat signature": "pass the string `fedmarket oracle sign-seat` printed",
    "seat signature for another task": "`fedmarket oracle sign-seat --task 1`",
    "expired seat signature": "a longer --valid-for",
    "seat signature of no oracle": "Missing argument 'SIGNATURES...'",
    "sign-seat --valid-for 0": "x>=1",
    "sign-seat by an unregistered account": "`fedmarket register oracle --stake N`",
    "foreign JSON as keystore": "move it out of the keystore",
    "a [1,2] keystore": "move it out of the keystore",
}


def _prepare(world, args: list[str], extra: str | None) -> tuple[list[str], dict[str, str]]:
    env = dict(world["env"])
    args = [a.replace("EMPTY", str(world["tmp"] / "empty.npz")) for a in args]
    if extra == "bad-deployments":
        env["FEDMARKET_DEPLOYMENTS"] = str(world["tmp"] / "bad-deployments")
    elif extra == "home-under-a-file":
        env["FEDMARKET_HOME"] = str(world["tmp"] / "notadir" / "home")
    elif extra is not None:
        env = _keystore_with(world, extra)
    return args, env


def _with_json(args: list[str]) -> list[str]:
    """``--json`` after the subcommand's own words (before a ``--``)."""
    if "--" in args:
        i = args.index("--")
        return [*args[:i], "--json", *args[i:]]
    return [*args, "--json"]


@pytest.mark.anvil
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_bad_input_is_one_line_exit_1(world, case, as_json):
    args, env = _prepare(world, *CASES[case])
    if as_json:
        args = _with_json(args)
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), err
    assert "Aborted" not in err
    assert FIXES[case] in err and "AttributeError" not in err, err
    if as_json:
        doc = json.loads(result.stdout)
        assert set(doc["error"]) == {"type", "message"} and doc["error"]["message"] in err


@pytest.mark.anvil
def test_trainer_data_that_does_not_fit_the_model_is_refused_before_joining(world):
    from marketplace.errors import ConfigError
    from marketplace.fl import load_dataset
    from marketplace.fl.data import check_fits

    data = load_dataset(str(world["tmp"] / "ten.npz"))
    with pytest.raises(ConfigError, match="10 features per row but task 1's model takes 64"):
        check_fits(data, 64, 10, task="task 1")
    check_fits(load_dataset("digits"), 64, 10)


def test_a_stray_file_in_the_keystore_is_named_and_skipped(world, caplog):
    home = Path(world["tmp"]) / "home-stray"
    env = {**world["env"], "FEDMARKET_HOME": str(home)}
    made = CliRunner().invoke(cli, ["account", "new", "--json"], env=env)
    assert made.exit_code == 0
    stray = home / "keystore" / "0xbackup-copy.json"
    stray.write_text("{}")
    listed = CliRunner().invoke(cli, ["account", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(made.stdout)["address"] in listed.stdout
    assert any(str(stray) in r.getMessage() for r in caplog.records)
