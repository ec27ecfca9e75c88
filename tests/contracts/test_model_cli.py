"""`fedmarket audit register | package | attest`, `model submit | sell | list | show | buy |
deliver | download` on the devnet and Kubo, each as a user runs it (dev accounts, own homes)."""

from __future__ import annotations

import hashlib
import json

from click.testing import CliRunner
from productkit import deployment_of, setup_product

from marketplace.chain.deploy import write_deployment
from marketplace.fl.data import canonical_digest, load_dataset, split_dataset
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.serialization import dump_weights
from marketplace.fl.weights import get_weights
from marketplace.storage.kubo import KuboStore
from node.cli import cli

# chainkit's actors are the dev keys in this order; 8 and 9 are trainers of no task here, so they
# may audit this one (and register as auditors from the CLI, with their own X25519 keys)
REQUESTER, AUDITORS, BUYER = 2, (8, 9), 19


def test_a_model_is_attested_listed_bought_delivered_and_downloaded_from_the_cli(
    mkt, anvil, kubo, tmp_path
):
    # Prepare: a finished task whose final model is a real one, submission 1 passed
    blob = dump_weights(get_weights(build_model(ModelSpec("logreg", 64, 10, seed=3))))
    path = tmp_path / "final.safetensors"
    path.write_bytes(blob)
    pm = setup_product(mkt)
    val = split_dataset(load_dataset("digits"), seed=0).validation
    task_id, _ = pm.finished_task(
        final=hashlib.sha256(blob).digest(),
        validation=bytes.fromhex(canonical_digest(val.x, val.y)),
    )
    pm.configure(task_id)
    pm.submit_final(task_id)
    pm.evaluate(task_id, 1, 900_000)
    pm.fix_total(task_id, 1_000_000)
    deployments = tmp_path / "deployments"
    write_deployment(deployment_of(pm), deployments)
    runner = CliRunner()

    def common(dev: int) -> list[str]:
        return ["--chain-rpc", anvil.rpc_url, "--deployments", str(deployments),
                "--home", str(tmp_path / f"home{dev}"), "--ipfs-api", kubo.api_multiaddr,
                "--dev-account", str(dev)]  # fmt: skip

    def run(dev: int, *args: str) -> dict:
        result = runner.invoke(cli, [*common(dev), *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    # Execute: the auditors register; the requester seals model + committed validation set to them
    auditors = [run(a, "audit", "register")["auditor"] for a in AUDITORS]
    package = ["audit", "package", "--task", str(task_id), "--submission", "1",
               "--model", str(path), "--validation", "digits"]  # fmt: skip
    bad = runner.invoke(cli, [*common(REQUESTER), *package, "--seed", "1",
                              *(f"--auditor={a}" for a in auditors)])  # fmt: skip
    assert bad.exit_code == 1 and "not task" in bad.output  # not the committed validation set
    cid = run(REQUESTER, *package, *(f"--auditor={a}" for a in auditors))["package"]
    # an auditor checks the package before it signs: another package (not sealed to it) fails
    other = run(REQUESTER, *package, f"--auditor={auditors[0]}")["package"]
    attest = ["audit", "attest", "--task", str(task_id), "--submission", "1"]
    bad = runner.invoke(
        cli, [*common(AUDITORS[1]), *attest, "--package", other, "--report-cid", "r"]
    )
    assert bad.exit_code == 1 and "not a recipient" in bad.output
    assert bad.output.startswith("Error: ") and "Traceback" not in bad.output
    # a report is given once: a file (stored) or a stored CID, not neither nor both
    report = tmp_path / "report.json"
    report.write_text('{"finding": "digest and validation set match"}')
    for extra in ([], ["--report", str(report), "--report-cid", "r"]):
        bad = runner.invoke(cli, [*common(AUDITORS[0]), *attest, "--package", cid, *extra])
        assert bad.exit_code == 1 and "--report FILE, or --report-cid" in bad.output
    # the first auditor's report file is stored and its CID attested; the second names a CID
    by_file = run(AUDITORS[0], *attest, "--package", cid, "--report", str(report))
    by_cid = run(AUDITORS[1], *attest, "--package", cid, "--report-cid", "bafy-report-9")
    assert by_file["approved"] is True and by_cid["approved"] is True
    stored = KuboStore(kubo.api_multiaddr).get(by_file["reportCid"])
    assert stored == report.read_bytes() and by_cid["reportCid"] == "bafy-report-9"
    pm.tx(pm.fn.approve(task_id, 1), pm.requester)
    sold = run(REQUESTER, "model", "sell", "--task", str(task_id), "--model", str(path),
               "--price", "10", "--license-cid", "bafy-lic", "--auditor-bps", "500")  # fmt: skip
    listing = sold["listing"]
    listed = run(BUYER, "model", "list")
    sale = run(BUYER, "model", "buy", str(listing))["sale"]
    delivered = run(REQUESTER, "model", "deliver", "--listing", str(listing))["delivered"]
    out_file = tmp_path / "bought.safetensors"
    downloaded = run(BUYER, "model", "download", str(sale), "--out", str(out_file))
    shown = run(BUYER, "model", "show", str(listing))
    # Assert
    assert [r["listing"] for r in listed] == [listing]
    assert list(delivered) == [str(sale)]
    assert delivered[str(sale)] == "0x" + pm.sale(sale)["sealedKeyHash"].hex()  # on-chain
    assert out_file.read_bytes() == blob
    assert downloaded["sha256"] == "0x" + hashlib.sha256(blob).hexdigest()
    assert shown["sales"] == 1 and shown["gross"] == 10 * 10**18
    assert shown["digest"] == "0x" + hashlib.sha256(blob).hexdigest()
    # bad input: one line, no traceback
    bad = runner.invoke(
        cli,
        ["--chain-rpc", anvil.rpc_url, "--deployments", str(deployments),
         "--home", str(tmp_path / "home-x"), "--dev-account", str(BUYER), "model", "buy", "99"],
    )  # fmt: skip
    assert bad.exit_code == 1
    assert bad.output.startswith("Error: ") and "no listing 99" in bad.output
    assert "Traceback" not in bad.output


def test_model_submit_seals_to_the_committee_and_the_k_plus_first_is_refused(
    mkt, anvil, kubo, kubo_store, tmp_path
):
    # Prepare: a finished task with K = 2; the final aggregate and a developer's revision on disk
    from marketplace.chain.model_market_client import ProductParams

    final = dump_weights(get_weights(build_model(ModelSpec("logreg", 64, 10, seed=3))))
    revised = dump_weights(get_weights(build_model(ModelSpec("logreg", 64, 10, seed=4))))
    (tmp_path / "final.safetensors").write_bytes(final)
    (tmp_path / "rev.safetensors").write_bytes(revised)
    pm = setup_product(mkt)
    task_id, _ = pm.finished_task(final=hashlib.sha256(final).digest())
    k2 = ProductParams(max_submissions=2, threshold_ppm=800_000, eval_commit_duration=60,
                       eval_reveal_duration=60)  # fmt: skip
    pm.configure(task_id, k2)
    deployments = tmp_path / "deployments"
    write_deployment(deployment_of(pm), deployments)
    runner = CliRunner()

    def run(dev: int, *args: str) -> tuple[int, str]:
        result = runner.invoke(
            cli,
            ["--chain-rpc", anvil.rpc_url, "--deployments", str(deployments),
             "--home", str(tmp_path / f"home{dev}"), "--ipfs-api", kubo.api_multiaddr,
             "--dev-account", str(dev), *args],
        )  # fmt: skip
        return result.exit_code, result.output

    task = str(task_id)
    # Execute: the requester submits the final aggregate (#1), developer 14 a revision (#2)
    code, out = run(REQUESTER, "model", "submit", "--task", task, "--model",
                    str(tmp_path / "final.safetensors"), "--final", "--json")  # fmt: skip
    assert code == 0, out
    first = json.loads(out)
    code, out = run(14, "model", "submit", "--task", task, "--model",
                    str(tmp_path / "rev.safetensors"), "--json")  # fmt: skip
    assert code == 0, out
    second = json.loads(out)
    code, out = run(15, "model", "submit", "--task", task, "--model",
                    str(tmp_path / "rev.safetensors"))  # fmt: skip
    # Assert: numbered 1 and 2, digests on-chain, content in Kubo and sealed (no plaintext)
    assert (first["submission"], second["submission"]) == (1, 2)
    assert pm.submission(task_id, 1)["digest"] == hashlib.sha256(final).digest()
    assert pm.submission(task_id, 2)["digest"] == hashlib.sha256(revised).digest()
    assert pm.submission(task_id, 2)["developer"] == pm.developers[0].address
    for sub, blob in ((first, final), (second, revised)):
        stored = kubo_store.get(sub["cid"])
        assert blob not in stored and len(stored) > len(blob)
    # the (K+1)-th submission is refused by the chain: one line, no traceback
    assert code == 1
    assert out.startswith("Error: ") and "ModelMarketSubmissionLimit" in out
    assert "Traceback" not in out
    assert pm.product(task_id)["submissionCount"] == 2
