"""Deploying the marketplace and the deployments file that any wallet or ``cast`` can use.

``deployments/<chainId>.json`` holds each contract's address and ABI::

    {"chainId": 31337, "block": 1, "deployer": "0x…",
     "contracts": {"RewardToken": {"address": "0x…", "abi": [...]}, "ParticipantRegistry": …,
                   "TaskMarket": …},
     "params": {"unbondingDelay": 604800, "arbiter": "0x…"}}
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.chain.linking import link
from marketplace.chain.tx import RevertDecoder, call, send
from marketplace.errors import ChainError, ConfigError, DeploymentNotFoundError

if TYPE_CHECKING:
    from marketplace.chain.compiler import ContractArtifact

log = logging.getLogger(__name__)

MARKET_CONTRACTS = ("RewardToken", "ParticipantRegistry", "TaskMarket")
PRODUCT_CONTRACTS = ("ModelMarket", "EfficacyMarket")
DEFAULT_UNBONDING_DELAY = 7 * 24 * 3600


@dataclass(frozen=True)
class ContractRecord:
    address: str
    abi: list[dict[str, Any]]


@dataclass(frozen=True)
class Deployment:
    """Where the marketplace lives on one chain."""

    chain_id: int
    contracts: Mapping[str, ContractRecord]
    deployer: str = ""
    block: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)

    def address(self, name: str) -> str:
        try:
            return self.contracts[name].address
        except KeyError:
            raise DeploymentNotFoundError(
                f"no {name} in the deployment for chain {self.chain_id}: "
                "redeploy with `fedmarket deploy`"
            ) from None

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "block": self.block,
            "deployer": self.deployer,
            "contracts": {
                n: {"address": c.address, "abi": c.abi} for n, c in sorted(self.contracts.items())
            },
            "params": dict(self.params),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployment:
        if not isinstance(data, Mapping) or not isinstance(data.get("contracts"), Mapping):
            raise ValueError("'contracts' is not an object of name -> {address, abi}")
        return cls(
            chain_id=int(data["chainId"]),
            block=int(data.get("block", 0)),
            deployer=str(data.get("deployer", "")),
            contracts={
                n: ContractRecord(
                    address=Web3.to_checksum_address(c["address"]), abi=list(c["abi"])
                )
                for n, c in data["contracts"].items()
            },
            params=dict(data.get("params", {})),
        )


def deployment_path(directory: Path, chain_id: int) -> Path:
    return Path(directory) / f"{chain_id}.json"


def write_deployment(deployment: Deployment, directory: Path) -> Path:
    """Write ``<directory>/<chainId>.json`` atomically; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = deployment_path(directory, deployment.chain_id)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".deploy-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(deployment.to_json(), fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_deployment(directory: Path, chain_id: int, *, w3: Web3 | None = None) -> Deployment:
    """Read the deployments file for ``chain_id``; a clear error when it is missing or corrupt.

    With ``w3``, also check (``eth_getCode``) that every contract it names has code on that chain:
    a devnet restarted without its state keeps the file but loses the contracts, and a command run
    against such a file would send transactions to empty addresses (a mint that "succeeds").
    """
    path = deployment_path(directory, chain_id)
    try:
        data = json.loads(path.read_text())
        deployment = Deployment.from_json(data)
    except FileNotFoundError:
        raise DeploymentNotFoundError(
            f"no deployment for chain {chain_id} at {path}: run `fedmarket deploy` first "
            "(or pass --deployments DIR)"
        ) from None
    except OSError as exc:
        raise DeploymentNotFoundError(
            f"cannot read the deployments file {path} ({exc.strerror}): check its permissions, "
            "or pass --deployments DIR"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DeploymentNotFoundError(
            f"{path} is not a valid deployments file ({type(exc).__name__}: {exc}): "
            "redeploy with `fedmarket deploy`"
        ) from None
    missing = [n for n in MARKET_CONTRACTS if n not in deployment.contracts]
    if missing:
        raise DeploymentNotFoundError(
            f"{path} names no {', '.join(missing)}: redeploy with `fedmarket deploy`"
        )
    if w3 is not None:
        check_deployed_code(w3, deployment, path)
    return deployment


def check_deployed_code(w3: Web3, deployment: Deployment, path: Path | str) -> None:
    """Refuse a deployments file whose contracts have no code on the chain ``w3`` talks to."""
    for name in MARKET_CONTRACTS:
        address = deployment.address(name)
        if len(w3.eth.get_code(address)) == 0:  # type: ignore[arg-type]
            raise DeploymentNotFoundError(
                f"stale deployments file {path}: chain {deployment.chain_id} has no {name} at "
                f"{address} (was the devnet restarted?): run `fedmarket deploy` to deploy again"
            )


def _deploy_one(
    w3: Web3,
    artifact: ContractArtifact,
    deployer: LocalAccount,
    decoder: RevertDecoder,
    *args: Any,
    bytecode: str | None = None,
) -> str:
    factory = w3.eth.contract(abi=artifact.abi, bytecode=bytecode or artifact.bytecode)
    receipt = send(w3, factory.constructor(*args), deployer, decoder=decoder)  # type: ignore[arg-type]
    address = receipt.get("contractAddress")
    if not address:
        raise ChainError(f"deploying {artifact.name} produced no contract address")
    log.info("deployed %s at %s", artifact.name, address)
    return Web3.to_checksum_address(address)


def deploy_marketplace(
    w3: Web3,
    deployer: LocalAccount,
    *,
    token_address: str | None = None,
    unbonding_delay: int = DEFAULT_UNBONDING_DELAY,
    arbiter: str | None = None,
    artifacts: Mapping[str, ContractArtifact] | None = None,
) -> Deployment:
    """Deploy the token (unless ``token_address`` names an existing ERC-20), the registry and
    the market, and authorize the market in the registry.

    The deployer owns the registry (its only power: authorizing markets); hand it to a timelock or
    multisig on a real network. The arbiter defaults to the deployer, which suits a devnet only.
    """
    if artifacts is None:
        from marketplace.chain.build import contract_artifacts

        artifacts = contract_artifacts()  # packaged with the wheel, or compiled in a checkout
    arts = artifacts
    decoder = RevertDecoder(a.abi for a in arts.values())
    arbiter = Web3.to_checksum_address(arbiter or deployer.address)
    start_block = w3.eth.block_number
    if token_address is None:
        token_address = _deploy_one(
            w3, arts["RewardToken"], deployer, decoder, "FedMarket Reward", "FMR", deployer.address
        )
    token_address = Web3.to_checksum_address(token_address)
    registry = _deploy_one(
        w3,
        arts["ParticipantRegistry"],
        deployer,
        decoder,
        token_address,
        unbonding_delay,
        deployer.address,
    )
    libraries: dict[str, str] = {}
    market_code = link(
        arts["TaskMarket"], arts, lambda lib: _deploy_one(w3, lib, deployer, decoder), libraries
    )
    market = _deploy_one(
        w3, arts["TaskMarket"], deployer, decoder, registry, arbiter, bytecode=market_code
    )
    reg = w3.eth.contract(address=registry, abi=arts["ParticipantRegistry"].abi)  # type: ignore[call-overload]
    send(w3, reg.functions.setMarket(market, True), deployer, decoder=decoder)
    contracts = {
        "RewardToken": ContractRecord(token_address, arts["RewardToken"].abi),
        "ParticipantRegistry": ContractRecord(registry, arts["ParticipantRegistry"].abi),
        "TaskMarket": ContractRecord(market, arts["TaskMarket"].abi),
    }
    if "DataSourcing" in arts:  # sourcing before training: gates the market's tasks
        sourcing = _deploy_one(w3, arts["DataSourcing"], deployer, decoder, market)
        contracts["DataSourcing"] = ContractRecord(sourcing, arts["DataSourcing"].abi)
    deployment = Deployment(
        chain_id=w3.eth.chain_id,
        block=start_block + 1,
        deployer=deployer.address,
        contracts=contracts,
        params={"unbondingDelay": unbonding_delay, "arbiter": arbiter, "libraries": libraries},
    )
    return deploy_model_versions(w3, deployer, deployment, artifacts=arts)


def deploy_model_versions(
    w3: Web3,
    deployer: LocalAccount,
    deployment: Deployment,
    *,
    artifacts: Mapping[str, ContractArtifact] | None = None,
) -> Deployment:
    """Deploy ``ModelVersions`` over the deployment's task market; returns the deployment with
    it added (a deployment that already has one is returned unchanged). It has no owner."""
    if "ModelVersions" in deployment.contracts:
        return deployment
    if artifacts is None:
        from marketplace.chain.compiler import compile_contracts

        artifacts = compile_contracts()
    art = artifacts["ModelVersions"]
    decoder = RevertDecoder(a.abi for a in artifacts.values())
    address = _deploy_one(w3, art, deployer, decoder, deployment.address("TaskMarket"))
    contracts = {**deployment.contracts, "ModelVersions": ContractRecord(address, art.abi)}
    return replace(deployment, contracts=contracts)


def deploy_product(
    w3: Web3,
    deployer: LocalAccount,
    deployment: Deployment,
    *,
    artifacts: Mapping[str, ContractArtifact] | None = None,
) -> Deployment:
    """Add ``ModelMarket`` (over the deployment's TaskMarket) and ``EfficacyMarket`` (over its
    registry) to ``deployment``. Neither has an owner. ModelMarket reserves and slashes committee
    members' evaluation stake, so the registry's owner (``deployer``) authorizes it as a market."""
    if artifacts is None:
        from marketplace.chain.compiler import compile_contracts

        artifacts = compile_contracts()
    decoder = RevertDecoder(a.abi for a in artifacts.values())
    model_market = _deploy_one(
        w3, artifacts["ModelMarket"], deployer, decoder, deployment.address("TaskMarket")
    )
    registry = w3.eth.contract(
        address=Web3.to_checksum_address(deployment.address("ParticipantRegistry")),
        abi=artifacts["ParticipantRegistry"].abi,
    )
    owner = str(call(registry.functions.owner()))
    if owner.lower() != deployer.address.lower():
        raise ConfigError(
            f"ModelMarket must be authorized by the registry's owner {owner}: "
            "deploy it with that account"
        )
    send(w3, registry.functions.setMarket(model_market, True), deployer, decoder=decoder)
    efficacy = _deploy_one(
        w3,
        artifacts["EfficacyMarket"],
        deployer,
        decoder,
        deployment.address("ParticipantRegistry"),
    )
    contracts = dict(deployment.contracts)
    contracts["ModelMarket"] = ContractRecord(model_market, artifacts["ModelMarket"].abi)
    contracts["EfficacyMarket"] = ContractRecord(efficacy, artifacts["EfficacyMarket"].abi)
    return Deployment(
        chain_id=deployment.chain_id,
        contracts=contracts,
        deployer=deployment.deployer,
        block=deployment.block,
        params=deployment.params,
    )
