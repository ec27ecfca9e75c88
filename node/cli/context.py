"""What every CLI command needs: where the node's files live, which chain, which account.

Resolution order for each setting: the command-line option, then the environment variable
(``FEDMARKET_HOME``, ``FEDMARKET_CHAIN_RPC``, ``FEDMARKET_DEPLOYMENTS``, ``FEDMARKET_ACCOUNT``,
``FEDMARKET_PASSWORD`` / ``FEDMARKET_PASSWORD_FILE``), then the default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import click
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace import units
from marketplace.chain.backend import connect
from marketplace.chain.clients import Marketplace
from marketplace.chain.deploy import Deployment, load_deployment
from marketplace.chain.devnet import DEVNET_CHAIN_ID, MAX_DEV_ACCOUNT, dev_private_key
from marketplace.errors import ConfigError, KeystoreError
from marketplace.protocol.identity import Identity
from marketplace.storage.base import ContentStore
from node.peers.journal import Journal

DEFAULT_RPC = "http://127.0.0.1:8545"
DEVNET_CHAIN_IDS = (DEVNET_CHAIN_ID, 1337)
TOKEN_DECIMALS = 18


@dataclass
class CliContext:
    """Settings shared by all commands, resolved once per invocation."""

    home: Path
    rpc_url: str
    deployments_dir: Path
    account_name: str | None = None
    dev_account: int | None = None
    password_file: Path | None = None
    ipfs_api: str | None = None
    _unlocked: dict[str, LocalAccount] = field(default_factory=dict, repr=False)

    @property
    def keystore_dir(self) -> Path:
        return self.home / "keystore"

    @cached_property
    def w3(self) -> Web3:
        return connect(self.rpc_url)

    @cached_property
    def deployment(self) -> Deployment:
        return load_deployment(self.deployments_dir, self.w3.eth.chain_id, w3=self.w3)

    @cached_property
    def market(self) -> Marketplace:
        return Marketplace(self.w3, self.deployment)

    @cached_property
    def store(self) -> ContentStore:
        """Kubo when ``--ipfs-api`` is given, else the embedded store in HOME/store."""
        if self.ipfs_api:
            from marketplace.storage.kubo import KuboStore

            return KuboStore(self.ipfs_api)
        from marketplace.storage.embedded import EmbeddedStore

        return EmbeddedStore(self.home / "store")

    def identity(self) -> Identity:
        """The signer with its X25519 key (keystore account, or a devnet key)."""
        if self.dev_account is not None:
            self.dev_signer(self.dev_account)  # refuses non-devnet chains
            return Identity.dev(self.dev_account)
        from marketplace.crypto.keystore import unlock

        signer = self.signer()
        return Identity.from_unlocked(unlock(self.keystore_dir, signer.address, self.password()))

    def journal(self, name: str) -> Journal:
        return Journal(self.home / "journal" / f"{name}.sqlite")

    # --- accounts -------------------------------------------------------------------------
    def password(self, *, confirm: bool = False, prompt: str = "Keystore password") -> str:
        """The keystore password: --password-file, FEDMARKET_PASSWORD(_FILE), or a prompt."""
        path = self.password_file or (
            Path(os.environ["FEDMARKET_PASSWORD_FILE"])
            if os.environ.get("FEDMARKET_PASSWORD_FILE")
            else None
        )
        if path is not None:
            try:
                return path.read_text().rstrip("\n")
            except OSError as exc:
                raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None
        env = os.environ.get("FEDMARKET_PASSWORD")
        if env is not None:
            return env
        value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
        return value

    def signer(self) -> LocalAccount:
        """The account that signs this command's transactions."""
        if self.dev_account is not None:
            return self.dev_signer(self.dev_account)
        from marketplace.crypto.keystore import list_accounts, unlock

        accounts = list_accounts(self.keystore_dir)
        wanted = self.account_name or os.environ.get("FEDMARKET_ACCOUNT")
        if wanted is None:
            if len(accounts) == 1:
                wanted = accounts[0].address
            elif not accounts:
                raise KeystoreError(
                    f"no account in {self.keystore_dir}: create one with `fedmarket account new` "
                    "or `fedmarket account import`"
                )
            else:
                raise KeystoreError(
                    f"{len(accounts)} accounts in {self.keystore_dir}: choose one with --account "
                    "ADDRESS (see `fedmarket account list`)"
                )
        if wanted not in self._unlocked:
            self._unlocked[wanted] = unlock(self.keystore_dir, wanted, self.password()).eth
        return self._unlocked[wanted]

    def dev_signer(self, index: int) -> LocalAccount:
        """A funded devnet account; refused on any chain that is not a local devnet."""
        if not 0 <= index <= MAX_DEV_ACCOUNT:
            raise ConfigError(f"--dev-account must be 0..{MAX_DEV_ACCOUNT}")
        chain_id = self.w3.eth.chain_id
        if chain_id not in DEVNET_CHAIN_IDS and self.rpc_url != "inprocess":
            raise ConfigError(
                f"--dev-account uses public devnet keys and is refused on chain {chain_id}: "
                "use a keystore account (--account)"
            )
        acct: LocalAccount = Account.from_key(dev_private_key(index))
        return acct

    # --- devnet state ---------------------------------------------------------------------
    @property
    def devnet_state_path(self) -> Path:
        return self.home / "devnet.json"

    def read_devnet_state(self) -> dict[str, object] | None:
        try:
            data: dict[str, object] = json.loads(self.devnet_state_path.read_text())
            return data
        except (OSError, ValueError):
            return None


def parse_amount(text: str, decimals: int = TOKEN_DECIMALS) -> int:
    """``"1.5"`` tokens → base units; ``"123wei"`` → 123 base units (exact: marketplace.units)."""
    return units.parse_amount(text, decimals)


def format_amount(value: int, decimals: int = TOKEN_DECIMALS) -> str:
    """Base units → a token amount without trailing zeros."""
    return units.format_amount(value, decimals)
