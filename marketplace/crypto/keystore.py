"""Account key files: an Ethereum key (V3 keystore, scrypt) and an X25519 key beside it.

For each account the keystore directory holds two files, both 0600 and both encrypted with the
same password:

``<address>.json``
    The eth-account V3 keystore (what geth, Foundry and MetaMask import).
``<address>.x25519.json``
    The X25519 key that receives encrypted envelopes: scrypt-derived key, AES-256-GCM, with the
    address and public key bound as associated data so the file cannot be swapped between accounts.
    The public key is stored in clear (it is registered on-chain anyway).

Files are written atomically and never overwritten: a temp file is fsynced, then hard-linked to its
final name, which fails if the name exists.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address

from marketplace.errors import KeystoreError

log = logging.getLogger(__name__)

#: scrypt cost (N) for new keys; geth's "standard" 2**18 takes ~1 s and 256 MiB per unlock.
DEFAULT_SCRYPT_N = 2**18
_SCRYPT_R = 8
_SCRYPT_P = 1
_X25519_FORMAT = "fedmarket-x25519-v1"
_HINT = "create one with `fedmarket account new` or import one with `fedmarket account import`"


@dataclass(frozen=True)
class AccountFiles:
    """An account on disk: its address, its two files and its X25519 public key (32 bytes)."""

    address: str
    keystore_path: Path
    x25519_path: Path
    x25519_public: bytes


@dataclass(frozen=True)
class UnlockedAccount:
    """An account's decrypted keys; keep it in memory only as long as needed."""

    address: str
    eth: LocalAccount = field(repr=False)
    x25519_private: X25519PrivateKey = field(repr=False)
    x25519_public: bytes


def _checksum(address: str) -> str:
    if not isinstance(address, str) or not is_address(address):
        raise KeystoreError(f"not an Ethereum address: {address!r} (expected 0x + 40 hex digits)")
    return str(to_checksum_address(address))


def _paths(directory: Path, address: str) -> tuple[Path, Path]:
    return directory / f"{address}.json", directory / f"{address}.x25519.json"


def _public_bytes(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _x25519_aad(address: str, public: bytes) -> bytes:
    return f"{_X25519_FORMAT}|{address}|".encode() + public


def _scrypt(password: str, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=_SCRYPT_R, p=_SCRYPT_P).derive(password.encode())


def _encrypt_x25519(
    private: X25519PrivateKey, address: str, password: str, scrypt_n: int
) -> dict[str, Any]:
    public = _public_bytes(private)
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    raw = private.private_bytes_raw()
    ciphertext = AESGCM(_scrypt(password, salt, scrypt_n)).encrypt(
        nonce, raw, _x25519_aad(address, public)
    )
    return {
        "format": _X25519_FORMAT,
        "address": address,
        "public_key": public.hex(),
        "kdf": {
            "name": "scrypt",
            "n": scrypt_n,
            "r": _SCRYPT_R,
            "p": _SCRYPT_P,
            "salt": salt.hex(),
        },
        "cipher": {"name": "aes-256-gcm", "nonce": nonce.hex()},
        "ciphertext": ciphertext.hex(),
    }


def _write_new(path: Path, content: bytes) -> None:
    """Create ``path`` (0600) with ``content`` atomically; :class:`KeystoreError` if it exists."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # atomic, and refuses to replace an existing key file
    except FileExistsError:
        raise KeystoreError(f"{path} already exists: refusing to overwrite a key file") from None
    except OSError as exc:
        raise KeystoreError(
            f"cannot write {path}: {exc.strerror}; check the directory's permissions, or pass a "
            "writable --home DIR (or set FEDMARKET_HOME)"
        ) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def _save(directory: Path, eth: LocalAccount, password: str, scrypt_n: int) -> AccountFiles:
    if not password:
        raise KeystoreError("empty password: choose a password to encrypt the key files")
    address = str(eth.address)
    keystore_path, x25519_path = _paths(directory, address)
    if keystore_path.exists() or x25519_path.exists():
        raise KeystoreError(f"account {address} already exists in {directory}: nothing changed")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise KeystoreError(
            f"cannot create keystore directory {directory}: {exc.strerror}; pass a writable "
            "--home DIR (or set FEDMARKET_HOME)"
        ) from exc
    x25519 = X25519PrivateKey.generate()
    keystore = Account.encrypt(eth.key, password, kdf="scrypt", iterations=scrypt_n)
    # The X25519 file first: an account "exists" once its keystore file does, and then it is whole.
    _write_new(
        x25519_path, json.dumps(_encrypt_x25519(x25519, address, password, scrypt_n)).encode()
    )
    try:
        _write_new(keystore_path, json.dumps(keystore).encode())
    except KeystoreError:
        x25519_path.unlink(missing_ok=True)
        raise
    log.info("created account %s in %s", address, directory)
    return AccountFiles(address, keystore_path, x25519_path, _public_bytes(x25519))


def new_account(
    directory: Path, password: str, *, scrypt_n: int = DEFAULT_SCRYPT_N
) -> AccountFiles:
    """Create a fresh account (random Ethereum and X25519 keys) in ``directory``."""
    return _save(Path(directory), Account.create(), password, scrypt_n)


def import_account(
    directory: Path, private_key: str, password: str, *, scrypt_n: int = DEFAULT_SCRYPT_N
) -> AccountFiles:
    """Import an Ethereum private key (hex, with or without 0x) and give it a new X25519 key."""
    text = private_key.strip().removeprefix("0x").removeprefix("0X")
    try:
        if len(text) != 64:
            raise ValueError
        eth = Account.from_key(bytes.fromhex(text))
    except ValueError:
        # Never echo the input: it may be a real key with a typo.
        raise KeystoreError(
            "not a private key: expected 64 hex digits (optionally 0x-prefixed)"
        ) from None
    return _save(Path(directory), eth, password, scrypt_n)


_ACCOUNT_FILE = re.compile(r"^0x[0-9a-fA-F]{40}\.json$")


def _read_account(keystore_path: Path) -> AccountFiles:
    address = _checksum(keystore_path.name.removesuffix(".json"))
    x25519_path = keystore_path.with_name(f"{address}.x25519.json")
    try:
        x_file = json.loads(x25519_path.read_text())
        public = bytes.fromhex(x_file["public_key"])
    except FileNotFoundError:
        raise KeystoreError(
            f"account {address} has no X25519 key file {x25519_path.name}: restore it from backup"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(f"{x25519_path} is corrupt ({exc}): restore it from backup") from exc
    if len(public) != 32:
        raise KeystoreError(f"{x25519_path} is corrupt (public key is not 32 bytes)")
    return AccountFiles(address, keystore_path, x25519_path, public)


def list_accounts(directory: Path) -> list[AccountFiles]:
    """The accounts in ``directory``, sorted by address (empty if the directory does not exist)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("0x*.json")):
        if path.name.endswith(".x25519.json"):
            continue
        if not _ACCOUNT_FILE.match(path.name):
            # Not one of ours (a backup copy, another tool's file): never let it disable the
            # keystore, but say which file it is.
            log.warning("ignoring %s in the keystore: not an account file (0x<address>.json)", path)
            continue
        found.append(_read_account(path))
    return found


def unlock(directory: Path, address: str, password: str) -> UnlockedAccount:
    """Decrypt an account's keys; :class:`KeystoreError` on a wrong password or missing account."""
    directory = Path(directory)
    address = _checksum(address)
    keystore_path, x25519_path = _paths(directory, address)
    if not keystore_path.exists():
        raise KeystoreError(f"no account {address} in {directory}: {_HINT}")
    files = _read_account(keystore_path)
    try:
        data = json.loads(keystore_path.read_text())
        if not isinstance(data, dict) or "crypto" not in {k.lower() for k in data}:
            raise KeystoreError(
                f"{keystore_path} is not an Ethereum keystore file (no 'crypto' section): "
                "restore it from backup, or move it out of the keystore"
            )
        key = Account.decrypt(data, password)
    except KeystoreError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if "MAC mismatch" in str(exc):
            raise KeystoreError(f"wrong password for {address}") from None
        raise KeystoreError(
            f"{keystore_path} is corrupt ({type(exc).__name__}: {exc}): restore it from backup"
        ) from None
    eth = Account.from_key(key)
    if eth.address != address:
        raise KeystoreError(f"{keystore_path} holds the key of {eth.address}, not {address}")
    x_file = json.loads(x25519_path.read_text())
    try:
        kdf, cipher = x_file["kdf"], x_file["cipher"]
        if x_file.get("format") != _X25519_FORMAT or kdf["name"] != "scrypt":
            raise ValueError(f"unknown format {x_file.get('format')!r}")
        kek = Scrypt(
            salt=bytes.fromhex(kdf["salt"]), length=32, n=int(kdf["n"]), r=int(kdf["r"]),
            p=int(kdf["p"]),
        ).derive(password.encode())  # fmt: skip
        raw = AESGCM(kek).decrypt(
            bytes.fromhex(cipher["nonce"]),
            bytes.fromhex(x_file["ciphertext"]),
            _x25519_aad(address, files.x25519_public),
        )
    except InvalidTag:
        # The keystore accepted this password, so the X25519 file was altered or swapped.
        raise KeystoreError(
            f"{x25519_path} does not open with the password of {address}: it was altered or "
            "belongs to another account; restore it from backup"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(f"{x25519_path} is corrupt ({exc}): restore it from backup") from exc
    private = X25519PrivateKey.from_private_bytes(raw)
    if _public_bytes(private) != files.x25519_public:
        raise KeystoreError(f"{x25519_path}: the public key does not match the private key")
    return UnlockedAccount(address, eth, private, files.x25519_public)
