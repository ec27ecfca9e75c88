"""ParticipantRegistry's errors, the reward token's (OpenZeppelin ERC-20/ERC-2612) and the
library errors every contract may raise (reentrancy guard, SafeERC20, ECDSA, Ownable)."""

from __future__ import annotations

from marketplace.chain.explain._words import BUG, Template, tok
from marketplace.units import describe_time, format_amount

TEMPLATES: dict[str, Template] = {
    "ParticipantRegistryInsufficientStake": lambda a: (
        f"{a[0]} has {tok(a[1])} of stake free, {tok(a[2])} asked: the rest is reserved by "
        f"tasks it takes part in; use at most {format_amount(int(a[1]))} now, or wait until they "
        "release it (see `fedmarket status`)"
    ),
    "ParticipantRegistryUnbondingNotReleased": lambda a: (
        f"the unbonding stake of {a[0]} is released at {describe_time(int(a[1]))}: run "
        "`fedmarket withdraw` after that"
    ),
    "ParticipantRegistryAlreadyRegistered": lambda a: (
        f"{a[0]} is already registered: see `fedmarket status`; add stake with `fedmarket stake N`"
    ),
    "ParticipantRegistryNotRegistered": lambda a: (
        f"{a[0]} is not registered: run `fedmarket register ROLE --stake N` first"
    ),
    "ParticipantRegistryNothingToWithdraw": lambda a: (
        f"{a[0]} has nothing to withdraw: start unbonding with `fedmarket unstake N` first"
    ),
    "ParticipantRegistryZeroAmount": lambda a: (
        "the amount must be more than 0: try again with a positive amount "
        "(e.g. `fedmarket stake 10`)"
    ),
    "ParticipantRegistryInvalidRole": lambda a: (
        "registering needs a role: run `fedmarket register trainer|oracle|requester`"
    ),
    "ParticipantRegistryZeroEncryptionKey": lambda a: (
        "the X25519 encryption key is zero: run `fedmarket register ROLE` without "
        "--encryption-key (the keystore's key is used) or give a real one"
    ),
    "ParticipantRegistryNotReserved": lambda a: (
        f"a market tried to release {tok(a[2])} of {a[0]}'s stake but only {tok(a[1])} is "
        f"reserved: {BUG}"
    ),
    "ParticipantRegistryNotMarket": lambda a: (
        f"{a[0]} is not a market of this registry (only markets reserve and slash stake): {BUG}"
    ),
    "ParticipantRegistryMarketNotActive": lambda a: (
        f"the market {a[0]} is retired from this registry and takes no new tasks: run "
        "`fedmarket status` to see the deployment in use (redeploy with `fedmarket deploy` on "
        "a devnet)"
    ),
    "ParticipantRegistryZeroAddress": lambda a: f"an address given to the registry is zero: {BUG}",
    "ParticipantRegistryScoreOutOfRange": lambda a: (
        f"a score of {a[0]} ppm is above 1,000,000 ppm (100%): {BUG}"
    ),
    "ParticipantRegistryFeeOnTransfer": lambda a: (
        f"the registry pulled {tok(a[0])} but received {tok(a[1])}: the stake token takes a fee "
        "on transfer, which the registry refuses; use the deployment's own reward token "
        "(`fedmarket status`) or report it"
    ),
    "ParticipantRegistryAmountTooLarge": lambda a: (
        f"{tok(a[0])} would bring the reserved stake above what the registry can account "
        "(about 309 million tokens): "
        "try again with a smaller amount"
    ),
    # --- the reward token (OpenZeppelin ERC20 / ERC20Permit / Nonces / ShortStrings) -----------
    "ERC20InsufficientBalance": lambda a: (
        f"{a[0]} holds {tok(a[1])}, needs {tok(a[2])}: get tokens (on a devnet: "
        "`fedmarket --dev-account 0 faucet N --to ADDRESS`)"
    ),
    "ERC20InsufficientAllowance": lambda a: (
        f"allowance of {a[0]} is {tok(a[1])}, needs {tok(a[2])}: the CLI approves what it "
        "spends, so another transaction used the allowance in between; try again"
    ),
    "ERC20InvalidApprover": lambda a: f"the token was asked to approve from address {a[0]}: {BUG}",
    "ERC20InvalidReceiver": lambda a: (
        f"tokens cannot be sent to {a[0]}: give a real recipient (e.g. `fedmarket faucet N --to "
        "ADDRESS`) and try again"
    ),
    "ERC20InvalidSender": lambda a: f"the token was asked to send from address {a[0]}: {BUG}",
    "ERC20InvalidSpender": lambda a: f"the token was asked to approve spender {a[0]}: {BUG}",
    "ERC2612ExpiredSignature": lambda a: (
        f"the permit signature expired at {describe_time(int(a[0]))}: try again (the CLI signs "
        "a fresh one; check the machine's clock)"
    ),
    "ERC2612InvalidSigner": lambda a: (
        f"the permit was signed by {a[0]}, not by the owner {a[1]}: try again with the owner's "
        "account (`fedmarket --account ADDRESS …`), or report it"
    ),
    "InvalidAccountNonce": lambda a: (
        f"the permit of {a[0]} used a stale nonce (the current one is {a[1]}): another permit "
        "went first; try again"
    ),
    "InvalidShortString": lambda a: f"the token's name or symbol is malformed: {BUG}",
    "StringTooLong": lambda a: (
        f"a token name or symbol of {len(str(a[0]))} characters is too long: {BUG}"
    ),
    # --- OpenZeppelin libraries all contracts use -------------------------------------------
    "ReentrancyGuardReentrantCall": lambda a: (
        f"a contract was re-entered during a call (a hostile token or callback): {BUG}"
    ),
    "SafeERC20FailedOperation": lambda a: (
        f"the token {a[0]} refused a transfer (returned false): check the balance and "
        "allowance with `fedmarket status`, try again, or report the token"
    ),
    "ECDSAInvalidSignature": lambda a: (
        "a signature does not recover to any address: sign again and try again; if it persists, "
        "report it (the transaction was not applied)"
    ),
    "ECDSAInvalidSignatureLength": lambda a: (
        f"a signature is {a[0]} bytes long, not 65: sign again and try again; if it persists, "
        "report it (the transaction was not applied)"
    ),
    "ECDSAInvalidSignatureS": lambda a: (
        f"a signature is malleable (its s value is in the upper half): {BUG}"
    ),
    "OwnableUnauthorizedAccount": lambda a: (
        f"{a[0]} is not the contract's owner (the deployer): run it with the deployer's "
        "account (`fedmarket --dev-account 0 …` on a devnet), or report it"
    ),
    "OwnableInvalidOwner": lambda a: f"the owner cannot be {a[0]}: {BUG}",
    "CheckpointUnorderedInsertion": lambda a: f"a checkpoint was written out of time order: {BUG}",
    "FinishedTaskStubNotHandler": lambda a: (
        f"{a[0]} is not the test handler of this test stub (a test-only contract): report it"
    ),
    "SwitchableTokenBlocked": lambda a: (
        f"the test token refuses transfers to {a[0]} (a test-only contract switched to refuse "
        "them): switch it back, then pay what the market deferred with `TaskMarket.sendOwed`; "
        "report it if this is not a test"
    ),
}
