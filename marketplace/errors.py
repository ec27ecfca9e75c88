"""The library's exceptions: one root, one subclass per kind of failure.

Every message is one line that names the cause and, where there is one, the fix; the CLI prints it
as ``Error: <message>`` with no traceback.
"""

from __future__ import annotations


class FedMarketError(Exception):
    """Root of every error the library raises on purpose."""


# --- toolchain / configuration -------------------------------------------------------------
class ToolchainError(FedMarketError):
    """A tool the project needs (solc-js, Anvil, Kubo, ...) is missing or failed."""


class ConfigError(FedMarketError):
    """A configuration value or file is missing or invalid."""


# --- chain ---------------------------------------------------------------------------------
class ChainError(FedMarketError):
    """Anything that went wrong talking to the chain."""


class RpcUnreachableError(ChainError):
    """The JSON-RPC endpoint did not answer."""


class ChainLagError(ChainError):
    """The node's event logs do not yet show what its state already does (a view answered at
    the head counts a block whose logs are not indexed yet): retry shortly."""


class TransactionRevertedError(ChainError):
    """A transaction or call reverted; ``error_name`` and ``args`` decode its custom error."""

    def __init__(
        self, message: str, *, error_name: str | None = None, args: tuple[object, ...] = ()
    ):
        super().__init__(message)
        self.error_name = error_name
        self.error_args = args


class BatchError(ChainError):
    """A round's batch (leaves, tree, bitmap, closer) cannot be built or used as given."""


class DeploymentNotFoundError(ChainError):
    """No deployments file for this chain id."""


# --- keys and crypto -----------------------------------------------------------------------
class KeystoreError(FedMarketError):
    """A keystore is missing, corrupt, or the password is wrong."""


class CryptoError(FedMarketError):
    """Decryption, signature or envelope checks failed."""


class SignatureError(CryptoError):
    """A signed message did not verify (forged, replayed or malformed)."""


# --- storage -------------------------------------------------------------------------------
class StorageError(FedMarketError):
    """A content-store operation failed."""


class StoreUnreachableError(StorageError):
    """The IPFS daemon (or store) did not answer."""


class ContentNotFoundError(StorageError):
    """No content under that CID."""


class ContentUnavailableError(ContentNotFoundError):
    """No provider served the content yet; retried before it counts against anyone."""


class DigestMismatchError(StorageError):
    """Fetched bytes do not hash to the expected digest."""


# --- models and updates --------------------------------------------------------------------
class InvalidUpdateError(FedMarketError):
    """A model or update failed validation (format, shape, dtype, NaN/Inf, size, norm)."""


# --- privacy -------------------------------------------------------------------------------
class PrivacyBudgetError(FedMarketError):
    """Training again would spend more differential-privacy budget (ε) than the task allows."""


# --- valuation -----------------------------------------------------------------------------
class ValuationError(FedMarketError):
    """Contribution valuation could not run (bad utility value, too many players, bad inputs)."""


# --- sourcing ------------------------------------------------------------------------------
class SourcingError(FedMarketError):
    """Sourcing (data request, offers, selection) could not proceed with these inputs."""


class InvalidSketchError(SourcingError):
    """An offer's data sketch is malformed, for another task, or disagrees with the offer."""
