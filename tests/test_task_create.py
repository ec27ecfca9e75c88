"""``fedmarket task create`` refuses a bad task before any transaction: nothing is escrowed, no
task is created, no gas is spent (issue 11: ``--valuation loo`` used to escrow the budget and
fail only in every oracle after the last round)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace
from marketplace.chain.deploy import load_deployment
from marketplace.chain.devnet import DEV_PRIVATE_KEYS
from marketplace.chain.model_market_client import ModelMarketClient, ProductParams
from marketplace.errors import ConfigError, TransactionRevertedError
from marketplace.fl import ModelSpec, TrainConfig
from marketplace.fl.dpsgd import DPSGD_MODEL_OPTIONS, DPSGD_RECIPE
from marketplace.protocol.requester import TaskPlan
from marketplace.protocol.round_batch import BatchTerms
from marketplace.protocol.taskdoc import TaskDocument
from marketplace.storage.embedded import EmbeddedStore
from marketplace.valuation.config import ValuationConfig
from node.cli.root import cli
from node.cli.task_cli import DEFAULT_MODEL, local_recipe, task_model

REQUESTER, ORACLES = 0, (1, 2, 3)


def address(i: int) -> str:
    return str(Account.from_key(DEV_PRIVATE_KEYS[i]).address)


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    if result.exit_code != 0 and "--json" in args:
        # Under --json an error is one JSON document on stdout and the same line on stderr.
        doc = json.loads(result.stdout)
        assert " ".join(doc["error"]["message"].split()) in result.stderr
        return result.exit_code, result.stderr
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def env(module_chain, tmp_path_factory):
    """A deployed market with three staked oracles; the requester (dev 0) holds tokens."""
    home = tmp_path_factory.mktemp("home")
    env = {
        "FEDMARKET_HOME": str(home),
        "FEDMARKET_CHAIN_RPC": module_chain.rpc_url,
        "FEDMARKET_DEPLOYMENTS": str(home / "deployments"),
    }
    steps = [
        ("--dev-account", "0", "deploy"),
        ("--dev-account", "0", "faucet", "1000", "--to", address(REQUESTER)),
        *(("--dev-account", "0", "faucet", "100", "--to", address(o)) for o in ORACLES),
        *(("--dev-account", str(o), "register", "oracle", "--stake", "50") for o in ORACLES),
    ]
    for args in steps:
        code, out = run(env, *args)
        assert code == 0, out
    return env


def chain_state(env: dict[str, str]) -> dict[str, int]:
    """What a refused task must leave untouched: the requester's tokens, ETH and nonce, and the
    number of tasks."""
    w3 = connect(env["FEDMARKET_CHAIN_RPC"])
    market = Marketplace(w3, load_deployment(Path(env["FEDMARKET_DEPLOYMENTS"]), w3.eth.chain_id))
    who = address(REQUESTER)
    return {
        "tokens": market.balance_of(who),
        "eth": int(w3.eth.get_balance(who)),
        "nonce": int(w3.eth.get_transaction_count(who)),
        "tasks": len(market.events(market.market, "TaskCreated")),
    }


def create(env: dict[str, str], *extra: str) -> tuple[int, str]:
    oracles = [arg for o in ORACLES for arg in ("--oracle", address(o))]
    return run(env, "--dev-account", str(REQUESTER), "task", "create", "--budget", "100",
               *oracles, "--rounds", "2", "--json", *extra)  # fmt: skip


def test_valuation_loo_is_a_one_line_error_before_escrow(env):
    # Prepare
    before = chain_state(env)
    # Execute
    code, out = create(env, "--valuation", "loo")
    # Assert: one line naming the bad value and the valid ones; nothing spent, no task
    assert code != 0
    assert out.count("\n") == 1 and out.startswith("Error: ")
    assert "'loo' is not one of" in out and "leave_one_out" in out
    assert "Traceback" not in out
    assert chain_state(env) == before


def test_an_unregistered_oracle_is_refused_before_escrow(env):
    before = chain_state(env)
    code, out = run(env, "--dev-account", "0", "task", "create", "--budget", "100",
                    "--oracle", address(9))  # fmt: skip
    assert code == 1 and out.count("\n") == 1
    assert "not a registered oracle" in out and "fedmarket register oracle" in out
    assert chain_state(env) == before


def test_bounds_are_refused_before_escrow(env):
    before = chain_state(env)
    code, out = create(env, "--min-trainers", "5", "--max-trainers", "2")
    assert code == 1 and out.count("\n") == 1 and "max_trainers" in out
    assert chain_state(env) == before


def test_a_valid_task_is_created_and_escrowed(env):
    """The control: the same command with a valid valuation does create the task."""
    before = chain_state(env)
    code, out = create(env, "--valuation", "leave_one_out")
    assert code == 0, out
    assert json.loads(out)["taskId"] == before["tasks"] + 1
    after = chain_state(env)
    assert after["tasks"] == before["tasks"] + 1
    assert after["tokens"] == before["tokens"] - 100 * 10**18


def test_a_dpsgd_task_fixes_the_librarys_dp_recipe_unless_the_requester_sets_one(env):
    """The published task document is what every trainer trains with: a DP-SGD task without
    --epochs/--lr/--batch-size gets DPSGD_RECIPE, a task without DP keeps the plain defaults,
    and an explicit flag wins over either."""
    code, out = create(env, "--dp", "dpsgd")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["privacy"]["mode"] == "dpsgd"
    train = doc["train"]
    assert (train["epochs"], train["lr"], train["batch_size"], train["momentum"]) == (
        DPSGD_RECIPE.epochs, DPSGD_RECIPE.lr, DPSGD_RECIPE.batch_size, DPSGD_RECIPE.momentum
    )  # fmt: skip
    code, out = create(env, "--dp", "dpsgd", "--epochs", "3")
    assert code == 0, out
    assert json.loads(out)["train"]["epochs"] == 3
    code, out = create(env)
    assert code == 0, out
    assert json.loads(out)["train"]["epochs"] == 2 and json.loads(out)["privacy"] is None


def test_task_model_gives_the_default_mlp_the_dp_options_only_in_a_dpsgd_task(tmp_path):
    """Without --model a DP-SGD task trains the default MLP with DPSGD_MODEL_OPTIONS (tanh,
    clamped inputs); other modes keep it plain, and a requester's --model is taken as given."""
    plain = ModelSpec.from_json(DEFAULT_MODEL)
    assert task_model(None, "dpsgd") == replace(plain, kwargs=DPSGD_MODEL_OPTIONS)
    assert task_model(None, "none") == plain and task_model(None, "update") == plain
    own = tmp_path / "model.json"
    own.write_text(DEFAULT_MODEL)
    assert task_model(str(own), "dpsgd") == plain
    with pytest.raises(ConfigError, match="model spec is not valid JSON"):
        task_model("{not json", "dpsgd")


def test_local_recipe_layers_the_requesters_flags_over_the_mode_default():
    assert local_recipe("dpsgd", epochs=None, lr=None, batch_size=None) == DPSGD_RECIPE
    assert local_recipe("update", epochs=None, lr=None, batch_size=None) == TrainConfig(
        epochs=2, lr=0.1, batch_size=16
    )
    assert local_recipe("dpsgd", epochs=None, lr=0.3, batch_size=8) == replace(
        DPSGD_RECIPE, lr=0.3, batch_size=8
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [(("--validation-submissions", "0"), "--validation-submissions must be within 1..16"),
     (("--validation-submissions", "2", "--auditors", "-1"), "--auditors must be within 0..8"),
     (("--auditors", "2"), "give --validation-submissions K"),
     (("--validation-submissions", "2", "--pass-threshold", "1.5"), "--pass-threshold")],
)  # fmt: skip
def test_bad_k_or_m_is_a_one_line_error_before_escrow(env, extra, message):
    before = chain_state(env)
    code, out = create(env, *extra)
    assert code == 1 and message in out and "Traceback" not in out
    assert chain_state(env) == before


def test_k_and_m_need_the_model_market_deployed(env):
    before = chain_state(env)
    code, out = create(env, "--validation-submissions", "2")
    assert code == 1 and "fedmarket model deploy" in out
    assert chain_state(env) == before


def test_k_and_m_are_fixed_on_the_model_market_with_the_task(env):
    # Prepare: ModelMarket on the chain
    code, out = run(env, "--dev-account", "0", "model", "deploy", "--json")
    assert code == 0, out
    before = chain_state(env)
    # Execute
    code, out = create(env, "--validation-submissions", "3", "--auditors", "2", "--pass-threshold",
                       "0.8", "--bounty", "5", "--auditor-fee", "1")  # fmt: skip
    # Assert: the task and its product settings exist together; budget + bounty + 2 fees escrowed
    assert code == 0, out
    doc = json.loads(out)
    assert (doc["validationSubmissions"], doc["auditors"]) == (3, 2)
    w3 = connect(env["FEDMARKET_CHAIN_RPC"])
    client = ModelMarketClient(
        w3, load_deployment(Path(env["FEDMARKET_DEPLOYMENTS"]), w3.eth.chain_id)
    )
    product = client.product(doc["taskId"])
    assert (product.configured, product.max_submissions, product.required_attestations) == (
        True, 3, 2,
    )  # fmt: skip
    assert (product.threshold_ppm, product.bounty, product.auditor_fee) == (
        800_000, 5 * 10**18, 10**18,
    )  # fmt: skip
    assert chain_state(env)["tokens"] == before["tokens"] - (100 + 5 + 2) * 10**18
    # the submission limit is the task's from the start: K cannot be raised later
    with pytest.raises(TransactionRevertedError) as again:
        client.configure(
            Account.from_key(DEV_PRIVATE_KEYS[REQUESTER]), doc["taskId"],
            ProductParams(max_submissions=16, threshold_ppm=0),
        )  # fmt: skip
    assert again.value.error_name == "ModelMarketAlreadyConfigured"


@pytest.mark.parametrize(
    "kwargs",
    [{"method": "loo"}, {"metric": "f1"}, {"flagged": "burn"}, {"gtg_budget_fraction": 2.0}],
)
def test_the_valuation_config_refuses_what_the_oracles_would(kwargs):
    with pytest.raises(ConfigError):
        ValuationConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"rounds": 0}, {"budget": 0}, {"min_trainers": 3, "max_trainers": 2}, {"oracles": ()},
     {"oracles": ("0x12",)}, {"quorum_bps": 5000}, {"aggregator": "mean"},
     {"oracles": (address(1), address(1).lower())}, {"validation_submissions": 0},
     {"validation_submissions": 17}, {"validation_submissions": 2, "auditors": -1},
     {"auditors": 1}],
)  # fmt: skip
def test_a_task_plan_refuses_bad_parameters_when_built(kwargs):
    base = {
        "model": ModelSpec(arch="mlp", input_dim=64, hidden=(8,), num_classes=10),
        "train": TrainConfig(),
        "budget": 1,
        "rounds": 1,
        "oracles": (address(1),),
        "min_trainers": 1,
        "max_trainers": 2,
    }
    with pytest.raises(ConfigError):
        TaskPlan(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("extra", "message"),
    [(("--aggregator", "median"), "aggregator 'median' needs each update: use --aggregator fedavg"),
     (("--aggregator", "multikrum"), "aggregator 'multikrum' needs each update"),
     (("--min-trainers", "2"), "at least 3 trainers"),
     (("--min-trainers", "4", "--secagg-threshold", "4"), "threshold 4 needs at least 5 trainers"),
     (("--min-trainers", "3", "--secagg-clip", "30000"), "overflow the 32-bit ring"),
     (("--secagg-clip", "0"), "clip_norm > 0")],
)  # fmt: skip
def test_secure_aggregation_refuses_what_it_cannot_run_in_one_line_before_escrow(
    env, extra, message
):
    # Prepare
    before = chain_state(env)
    # Execute
    code, out = create(env, "--secure-aggregation", "--min-trainers", "3", *extra)
    # Assert: one line naming the cause and the fix; nothing spent, no task
    assert code == 1 and out.count("\n") == 1 and out.startswith("Error: "), out
    assert message in " ".join(out.split()), out
    assert chain_state(env) == before


def test_secagg_parameters_without_secure_aggregation_are_refused(env):
    before = chain_state(env)
    code, out = create(env, "--secagg-threshold", "3")
    assert code == 1 and "add --secure-aggregation" in out
    assert chain_state(env) == before


def test_a_secure_aggregation_task_carries_its_term(env):
    code, out = create(env, "--secure-aggregation", "--min-trainers", "3", "--max-trainers", "6",
                       "--secagg-clip", "2", "--aggregator", "fedprox")  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["secureAggregation"] == {
        "clip_norm": 2.0, "frac_bits": 16, "threshold": None,
    }  # fmt: skip


def test_a_batched_task_publishes_its_term_in_the_task_document(env):
    # Execute
    code, out = create(env, "--batch-commits", "--batch-turn", "12")
    plain_code, plain = create(env)
    # Assert: the term is in the document every peer reads (the on-chain configCid); a task
    # created without the flag has none (batches off)
    assert code == 0 and plain_code == 0, (out, plain)
    assert json.loads(out)["batches"] == {"turn_seconds": 12.0}
    w3 = connect(env["FEDMARKET_CHAIN_RPC"])
    market = Marketplace(w3, load_deployment(Path(env["FEDMARKET_DEPLOYMENTS"]), w3.eth.chain_id))
    store = EmbeddedStore(Path(env["FEDMARKET_HOME"]) / "store")

    def doc_of(task_id: int) -> TaskDocument:
        (created,) = market.events(market.market, "TaskCreated", filters={"taskId": task_id})
        return TaskDocument.from_json(store.get(str(created["args"]["configCid"])))

    assert doc_of(json.loads(out)["taskId"]).batches == BatchTerms(turn_seconds=12.0)
    assert doc_of(json.loads(plain)["taskId"]).batches is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [(("--batch-turn", "0"), "0 < turn_seconds <= 3600"),
     (("--secure-aggregation", "--min-trainers", "3"), "do not combine yet")],
)  # fmt: skip
def test_a_bad_batch_term_is_a_one_line_error_before_escrow(env, extra, message):
    before = chain_state(env)
    code, out = create(env, "--batch-commits", *extra)
    assert code == 1 and out.count("\n") == 1 and out.startswith("Error: "), out
    assert message in " ".join(out.split()), out
    assert chain_state(env) == before


def test_trainer_data_that_does_not_fit_the_model_is_refused_before_joining(env, tmp_path):
    """`node run --data` with rows the task's model cannot take: one line naming the shapes, and
    no transaction (no join, no bond posted) — it used to join and then crash in training."""
    import numpy as np

    code, out = create(env)
    assert code == 0, out
    task_id = json.loads(out)["taskId"]
    trainer = 4
    for args in (
        ("--dev-account", "0", "faucet", "100", "--to", address(trainer)),
        ("--dev-account", str(trainer), "register", "trainer", "--stake", "50"),
    ):
        code, out = run(env, *args)
        assert code == 0, out
    np.savez(tmp_path / "ten.npz", x=np.zeros((20, 10), dtype="f4"), y=np.arange(20) % 2)
    w3 = connect(env["FEDMARKET_CHAIN_RPC"])
    market = Marketplace(w3, load_deployment(Path(env["FEDMARKET_DEPLOYMENTS"]), w3.eth.chain_id))
    nonce = w3.eth.get_transaction_count(address(trainer))
    for as_json in ((), ("--json",)):
        code, out = run(env, "--dev-account", str(trainer), "node", "run", "--task",
                        str(task_id), "--data", str(tmp_path / "ten.npz"), *as_json)  # fmt: skip
        assert code == 1 and out.count("\n") == 1 and "Traceback" not in out, out
        assert f"10 features per row but task {task_id}'s model takes 64" in out, out
    assert w3.eth.get_transaction_count(address(trainer)) == nonce  # nothing was sent
    assert market.task(task_id).trainer_count == 0
