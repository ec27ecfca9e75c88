// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IParticipantRegistry
/// @notice Who takes part in the marketplace: one primary role per address, an X25519 public key
///         for encrypted envelopes, a stake in the registry's token (with an unbonding delay), and a
///         reputation. Authorized markets lock stake for the duration of a task, slash it (the
///         slashed tokens are burned) and record scores.
interface IParticipantRegistry {
    /// @notice The primary role of an address. `None` means not registered.
    enum Role {
        None,
        Trainer,
        Oracle,
        Requester
    }

    // --- errors ---------------------------------------------------------------------------------

    /// @notice Thrown when `register` is called with `Role.None`.
    error ParticipantRegistryInvalidRole();
    /// @notice Thrown when an address registers a second time.
    /// @param account The already registered address.
    error ParticipantRegistryAlreadyRegistered(address account);
    /// @notice Thrown when an address that never registered acts as a participant.
    /// @param account The unregistered address.
    error ParticipantRegistryNotRegistered(address account);
    /// @notice Thrown when the encryption key is zero (not a valid X25519 public key).
    error ParticipantRegistryZeroEncryptionKey();
    /// @notice Thrown when an amount that must be positive is zero.
    error ParticipantRegistryZeroAmount();
    /// @notice Thrown when unstaking more than is staked.
    /// @param account The participant.
    /// @param stake Its current stake.
    /// @param requested The amount asked for.
    error ParticipantRegistryInsufficientStake(address account, uint256 stake, uint256 requested);
    /// @notice Thrown when unstaking while a market holds the stake locked.
    /// @param account The participant.
    /// @param lockedUntil The unix time the lock ends.
    error ParticipantRegistryStakeLocked(address account, uint64 lockedUntil);
    /// @notice Thrown when `withdraw` finds nothing unbonding.
    /// @param account The participant.
    error ParticipantRegistryNothingToWithdraw(address account);
    /// @notice Thrown when `withdraw` is called before the unbonding delay has passed.
    /// @param account The participant.
    /// @param releaseAt The unix time the unbonding tokens are released.
    error ParticipantRegistryUnbondingNotReleased(address account, uint64 releaseAt);
    /// @notice Thrown when a market-only function is called by an address that is not an authorized market.
    /// @param caller The caller.
    error ParticipantRegistryNotMarket(address caller);
    /// @notice Thrown when the market address given to `setMarket` is zero.
    error ParticipantRegistryZeroAddress();
    /// @notice Thrown when a score is above one million parts per million.
    /// @param scorePpm The score given.
    error ParticipantRegistryScoreOutOfRange(uint32 scorePpm);
    /// @notice Thrown when the registry received fewer tokens than it pulled (a fee-on-transfer or
    ///         rebasing token), which would break its accounting.
    /// @param expected The amount pulled.
    /// @param received The balance increase observed.
    error ParticipantRegistryFeeOnTransfer(uint256 expected, uint256 received);

    // --- events ---------------------------------------------------------------------------------

    /// @notice Emitted when an address registered.
    /// @param account The new participant.
    /// @param role Its primary role.
    /// @param encryptionKey Its X25519 public key.
    event Registered(address indexed account, Role role, bytes32 encryptionKey);
    /// @notice Emitted when a participant replaced its encryption key.
    /// @param account The participant.
    /// @param encryptionKey The new X25519 public key.
    event EncryptionKeyChanged(address indexed account, bytes32 encryptionKey);
    /// @notice Emitted when stake was deposited.
    /// @param account The participant.
    /// @param amount Tokens added.
    /// @param newStake The stake after the deposit.
    event StakeDeposited(address indexed account, uint256 amount, uint256 newStake);
    /// @notice Emitted when stake moved to unbonding.
    /// @param account The participant.
    /// @param amount Tokens moved.
    /// @param releaseAt When all unbonding tokens of the account can be withdrawn.
    event UnstakeRequested(address indexed account, uint256 amount, uint64 releaseAt);
    /// @notice Emitted when unbonded tokens were withdrawn.
    /// @param account The participant.
    /// @param amount Tokens paid out.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice Emitted when a market locked an account's stake.
    /// @param account The participant.
    /// @param market The market that locked it.
    /// @param lockedUntil The lock's end after the call (the later of the old and the new one).
    event StakeLocked(address indexed account, address indexed market, uint64 lockedUntil);
    /// @notice Emitted when stake was slashed; the tokens were burned (sent to 0x…dEaD).
    /// @param account The slashed participant.
    /// @param amount Tokens taken (from stake first, then from unbonding).
    /// @param taskId The task in which the misbehaviour happened.
    /// @param evidenceCid Where the evidence is (a report CID or a reference to it).
    event Slashed(address indexed account, uint256 amount, uint256 indexed taskId, string evidenceCid);
    /// @notice Emitted when a score moved an account's reputation.
    /// @param account The participant.
    /// @param oldReputationPpm The reputation before.
    /// @param newReputationPpm The reputation after.
    event ReputationUpdated(address indexed account, uint32 oldReputationPpm, uint32 newReputationPpm);
    /// @notice Emitted when governance authorized or deauthorized a market.
    /// @param market The market contract.
    /// @param authorized Whether it may now lock, slash and score.
    event MarketAuthorizationSet(address indexed market, bool authorized);

    // --- participants ---------------------------------------------------------------------------

    /// @notice Register the caller with a primary role, its X25519 public key and an initial stake.
    /// @dev Pulls `amount` of the stake token (approve first). Reputation starts at 500,000 ppm.
    /// @param role The primary role (not `None`).
    /// @param encryptionKey The X25519 public key that peers encrypt envelopes to (not zero).
    /// @param amount Initial stake, may be zero.
    function register(Role role, bytes32 encryptionKey, uint256 amount) external;

    /// @notice Replace the caller's X25519 public key.
    /// @param key The new key (not zero).
    function setEncryptionKey(bytes32 key) external;

    /// @notice Add `amount` to the caller's stake (approve first).
    /// @param amount Tokens to deposit (positive).
    function stake(uint256 amount) external;

    /// @notice Move `amount` of stake to unbonding; all unbonding tokens of the caller are released
    ///         `unbondingDelay` seconds from now. Reverts while a market holds the stake locked.
    /// @param amount Tokens to unbond (positive, at most the stake).
    function requestUnstake(uint256 amount) external;

    /// @notice Withdraw all released unbonding tokens to the caller.
    function withdraw() external;

    // --- markets --------------------------------------------------------------------------------

    /// @notice Lock `account`'s stake until at least `until` (a market holds it for a task).
    /// @param account The participant (registered).
    /// @param until Unix time; the lock becomes the later of the current lock and this.
    function lockStake(address account, uint64 until) external;

    /// @notice Slash up to `amount` from `account`: from stake first, then from unbonding. The
    ///         tokens are burned, so no party gains from a slash.
    /// @param account The participant (registered).
    /// @param amount The most to take.
    /// @param taskId The task in which the misbehaviour happened.
    /// @param evidenceCid Where the evidence is.
    /// @return slashed The amount actually taken.
    function slash(address account, uint256 amount, uint256 taskId, string calldata evidenceCid)
        external
        returns (uint256 slashed);

    /// @notice Move `account`'s reputation towards `scorePpm` (EMA with weight 0.2).
    /// @param account The participant (registered).
    /// @param scorePpm The normalized score, at most 1,000,000.
    function recordScore(address account, uint32 scorePpm) external;

    // --- governance -----------------------------------------------------------------------------

    /// @notice Authorize or deauthorize a market (owner only: governance, a timelock or multisig).
    /// @dev The owner's only power. It cannot move staked tokens itself.
    /// @param market The market contract.
    /// @param authorized Whether it may lock, slash and score.
    function setMarket(address market, bool authorized) external;

    // --- views ----------------------------------------------------------------------------------

    /// @notice Everything the registry knows about `account`.
    /// @param account The address.
    /// @return role Its primary role (`None` if unregistered).
    /// @return encryptionKey Its X25519 public key.
    /// @return stakeAmount Tokens staked.
    /// @return unbonding Tokens unbonding.
    /// @return unbondingReleaseAt When the unbonding tokens can be withdrawn.
    /// @return lockedUntil Until when the stake cannot be unbonded.
    /// @return reputationPpm Reputation in parts per million.
    function participant(address account)
        external
        view
        returns (
            Role role,
            bytes32 encryptionKey,
            uint256 stakeAmount,
            uint256 unbonding,
            uint64 unbondingReleaseAt,
            uint64 lockedUntil,
            uint32 reputationPpm
        );

    /// @notice Tokens `account` has staked.
    /// @param account The address.
    /// @return The stake.
    function stakeOf(address account) external view returns (uint256);

    /// @notice The primary role of `account`.
    /// @param account The address.
    /// @return The role (`None` if unregistered).
    function roleOf(address account) external view returns (Role);

    /// @notice The reputation of `account` in parts per million.
    /// @param account The address.
    /// @return The reputation (0 if unregistered).
    function reputationOf(address account) external view returns (uint32);

    /// @notice The X25519 public key of `account`.
    /// @param account The address.
    /// @return The key (zero if unregistered).
    function encryptionKeyOf(address account) external view returns (bytes32);

    /// @notice Whether `market` is an authorized market.
    /// @param market The address.
    /// @return True if authorized.
    function isMarket(address market) external view returns (bool);

    /// @notice The token stakes are held in.
    /// @return The stake token.
    function stakeToken() external view returns (IERC20);

    /// @notice Seconds between `requestUnstake` and the earliest `withdraw`.
    /// @return The delay.
    function unbondingDelay() external view returns (uint64);
}
