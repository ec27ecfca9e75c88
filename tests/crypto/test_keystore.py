"""Key files: create, import, list, unlock; wrong passwords and missing accounts fail clearly."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from marketplace.chain.devnet import DEV_PRIVATE_KEYS
from marketplace.crypto.keystore import import_account, list_accounts, new_account, unlock
from marketplace.errors import KeystoreError

# Low scrypt cost for tests only: the default (2**18) costs ~1 s and 256 MiB per operation.
TEST_SCRYPT_N = 2**12
DEV0_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_new_account_writes_two_private_files_and_unlocks(tmp_path: Path) -> None:
    # Execute
    files = new_account(tmp_path / "keys", "pw", scrypt_n=TEST_SCRYPT_N)
    unlocked = unlock(tmp_path / "keys", files.address, "pw")
    # Assert
    assert stat.S_IMODE(files.keystore_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.x25519_path.stat().st_mode) == 0o600
    assert json.loads(files.keystore_path.read_text())["crypto"]["kdf"] == "scrypt"
    assert unlocked.address == files.address == unlocked.eth.address
    assert len(files.x25519_public) == 32
    derived = unlocked.x25519_private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert derived == unlocked.x25519_public == files.x25519_public


def test_import_account_keeps_the_address_of_the_private_key(tmp_path: Path) -> None:
    # Execute
    files = import_account(tmp_path, DEV_PRIVATE_KEYS[0], "pw", scrypt_n=TEST_SCRYPT_N)
    unlocked = unlock(tmp_path, DEV0_ADDRESS.lower(), "pw")
    # Assert
    assert files.address == DEV0_ADDRESS
    assert unlocked.eth.key.hex() == DEV_PRIVATE_KEYS[0].removeprefix("0x")


def test_list_accounts_returns_every_account_sorted(tmp_path: Path) -> None:
    # Prepare
    a = new_account(tmp_path, "pw", scrypt_n=TEST_SCRYPT_N)
    b = import_account(tmp_path, DEV_PRIVATE_KEYS[0], "pw", scrypt_n=TEST_SCRYPT_N)
    # Execute
    listed = list_accounts(tmp_path)
    # Assert
    assert listed == sorted([a, b], key=lambda f: f.address)
    assert list_accounts(tmp_path / "absent") == []


def test_wrong_password_raises_keystore_error_naming_the_address(tmp_path: Path) -> None:
    # Prepare
    files = new_account(tmp_path, "right", scrypt_n=TEST_SCRYPT_N)
    # Execute / Assert
    with pytest.raises(KeystoreError, match=f"^wrong password for {files.address}$"):
        unlock(tmp_path, files.address, "wrong")


def test_missing_account_says_how_to_create_or_import_one(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(KeystoreError, match=r"fedmarket account new.*fedmarket account import"):
        unlock(tmp_path, DEV0_ADDRESS, "pw")


def test_importing_an_existing_account_never_overwrites_it(tmp_path: Path) -> None:
    # Prepare
    first = import_account(tmp_path, DEV_PRIVATE_KEYS[0], "pw", scrypt_n=TEST_SCRYPT_N)
    before = (first.keystore_path.read_bytes(), first.x25519_path.read_bytes())
    # Execute
    with pytest.raises(KeystoreError, match="already exists"):
        import_account(tmp_path, DEV_PRIVATE_KEYS[0], "other", scrypt_n=TEST_SCRYPT_N)
    # Assert
    assert (first.keystore_path.read_bytes(), first.x25519_path.read_bytes()) == before
    assert unlock(tmp_path, first.address, "pw").address == first.address


def test_bad_private_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    # Prepare
    typo = DEV_PRIVATE_KEYS[0][:-1] + "z"
    # Execute
    with pytest.raises(KeystoreError, match="expected 64 hex digits") as err:
        import_account(tmp_path, typo, "pw", scrypt_n=TEST_SCRYPT_N)
    # Assert
    assert typo[4:20] not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_x25519_file_swapped_from_another_account_is_detected(tmp_path: Path) -> None:
    # Prepare: both accounts share a password, so only the bound address can tell the files apart
    a = new_account(tmp_path, "pw", scrypt_n=TEST_SCRYPT_N)
    b = new_account(tmp_path, "pw", scrypt_n=TEST_SCRYPT_N)
    swapped = json.loads(b.x25519_path.read_text())
    swapped["address"] = a.address
    a.x25519_path.chmod(0o600)
    a.x25519_path.write_text(json.dumps(swapped))
    # Execute / Assert
    with pytest.raises(KeystoreError, match="altered or belongs to another account"):
        unlock(tmp_path, a.address, "pw")


def test_empty_password_and_bad_address_are_refused(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(KeystoreError, match="empty password"):
        new_account(tmp_path, "", scrypt_n=TEST_SCRYPT_N)
    with pytest.raises(KeystoreError, match="not an Ethereum address"):
        unlock(tmp_path, "0xabc", "pw")
