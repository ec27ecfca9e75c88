"""An installed wheel deploys: the ABIs and bytecode ship as package data.

The wheel is built from this checkout, installed with ``--no-deps`` into a plain new venv (no
system site-packages), and run from a directory outside the checkout with no PYTHONPATH. The
venv reaches the third-party packages (web3, torch, …) through one ``.pth`` line naming the
project venv's site-packages; that directory holds no ``marketplace`` or ``node`` (the project is
installed there in editable mode, whose finder a ``.pth`` line does not load), so missing package
data would show as a failure here rather than be found in the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{argv[:4]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the fedmarket wheel installed; returns its bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp / "dist"), str(REPO)], cwd=tmp)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("fedmarket-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)  # ensurepip: offline
    bin_dir = env_dir / "bin"
    env = clean_env(tmp)  # no PYTHONPATH: pip would see the checkout's egg-info as installed
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = run([str(bin_dir / "python"), "-c", where], env=env).stdout.strip()
    run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         str(wheel)], cwd=tmp, env=env)  # fmt: skip
    # After the install: pip would otherwise see the editable fedmarket there and skip the wheel.
    (Path(purelib) / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return bin_dir


def clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HOME"] = str(tmp)  # no ~/.fedmarket of the user
    # Tools the deploy does not need are not looked up; node_modules is not reachable.
    env["FEDMARKET_NODE_MODULES"] = str(tmp / "no-node-modules")
    return env


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    out = run([str(installed / "python"), "-c",
               "import marketplace, node, marketplace.chain.build as b; "
               "print(marketplace.__file__); print(node.__file__); print(b.PACKAGED.exists())"],
              cwd=tmp_path, env=clean_env(tmp_path)).stdout.split()  # fmt: skip
    assert all(str(installed.parent) in p for p in out[:2]), out
    assert out[2] == "True"


def test_fedmarket_deploys_from_the_installed_wheel(installed, tmp_path, module_chain):
    # Execute: the installed console script, outside the checkout
    proc = run([str(installed / "fedmarket"), "--chain-rpc", module_chain.rpc_url,
                "--deployments", str(tmp_path / "deployments"), "--home", str(tmp_path / "home"),
                "--dev-account", "0", "deploy", "--json"],
               cwd=tmp_path, env=clean_env(tmp_path))  # fmt: skip
    # Assert: three contracts with code on the chain
    out = json.loads(proc.stdout)
    from marketplace.chain.backend import connect

    w3 = connect(module_chain.rpc_url)
    for name in ("RewardToken", "ParticipantRegistry", "TaskMarket"):
        assert len(w3.eth.get_code(out[name])) > 100, name
