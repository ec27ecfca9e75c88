// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";
import {ReputationMath} from "./libraries/ReputationMath.sol";

/// @title ParticipantRegistry
/// @notice Roles, encryption keys, stake with unbonding, slashing (burn) and reputation.
/// @dev The owner (governance) can only authorize markets; nobody can move staked tokens except
///      the staker (after unbonding) and an authorized market's slash, which burns them.
contract ParticipantRegistry is IParticipantRegistry, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Where slashed tokens go: OpenZeppelin's ERC20 refuses transfers to address(0).
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;

    // Packed so that registration writes three slots and a lock or score update one.
    struct Account {
        Role role;
        uint64 unbondingReleaseAt;
        uint64 lockedUntil;
        uint32 reputationPpm;
        bytes32 encryptionKey;
        uint256 stake;
        uint256 unbonding;
    }

    IERC20 private immutable _stakeToken;
    uint64 private immutable _unbondingDelay;

    mapping(address account => Account) private _accounts;
    mapping(address market => bool) private _markets;

    modifier onlyMarket() {
        if (!_markets[msg.sender]) revert ParticipantRegistryNotMarket(msg.sender);
        _;
    }

    /// @param stakeToken_ The ERC-20 that stakes are held in (not fee-on-transfer).
    /// @param unbondingDelay_ Seconds between `requestUnstake` and `withdraw`.
    /// @param owner_ Governance: a timelock or multisig in production.
    constructor(IERC20 stakeToken_, uint64 unbondingDelay_, address owner_) Ownable(owner_) {
        _stakeToken = stakeToken_;
        _unbondingDelay = unbondingDelay_;
    }

    // --- participants ---------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function register(Role role, bytes32 encryptionKey, uint256 amount) external nonReentrant {
        if (role == Role.None) revert ParticipantRegistryInvalidRole();
        if (encryptionKey == bytes32(0)) revert ParticipantRegistryZeroEncryptionKey();
        Account storage a = _accounts[msg.sender];
        if (a.role != Role.None) revert ParticipantRegistryAlreadyRegistered(msg.sender);

        a.role = role;
        a.reputationPpm = ReputationMath.INITIAL;
        a.encryptionKey = encryptionKey;
        emit Registered(msg.sender, role, encryptionKey);
        if (amount > 0) {
            a.stake = amount;
            emit StakeDeposited(msg.sender, amount, amount);
            _pull(msg.sender, amount);
        }
    }

    /// @inheritdoc IParticipantRegistry
    function setEncryptionKey(bytes32 key) external {
        if (key == bytes32(0)) revert ParticipantRegistryZeroEncryptionKey();
        Account storage a = _registered(msg.sender);
        a.encryptionKey = key;
        emit EncryptionKeyChanged(msg.sender, key);
    }

    /// @inheritdoc IParticipantRegistry
    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ParticipantRegistryZeroAmount();
        Account storage a = _registered(msg.sender);
        uint256 newStake = a.stake + amount;
        a.stake = newStake;
        emit StakeDeposited(msg.sender, amount, newStake);
        _pull(msg.sender, amount);
    }

    /// @inheritdoc IParticipantRegistry
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert ParticipantRegistryZeroAmount();
        Account storage a = _registered(msg.sender);
        if (a.lockedUntil > block.timestamp) revert ParticipantRegistryStakeLocked(msg.sender, a.lockedUntil);
        uint256 staked = a.stake;
        if (amount > staked) revert ParticipantRegistryInsufficientStake(msg.sender, staked, amount);

        uint64 releaseAt = uint64(block.timestamp) + _unbondingDelay;
        // amount <= staked was checked just above; unbonding + amount <= total supply.
        unchecked {
            a.stake = staked - amount;
            a.unbonding += amount;
        }
        a.unbondingReleaseAt = releaseAt;
        emit UnstakeRequested(msg.sender, amount, releaseAt);
    }

    /// @inheritdoc IParticipantRegistry
    function withdraw() external nonReentrant {
        Account storage a = _accounts[msg.sender];
        uint256 amount = a.unbonding;
        if (amount == 0) revert ParticipantRegistryNothingToWithdraw(msg.sender);
        if (block.timestamp < a.unbondingReleaseAt) {
            revert ParticipantRegistryUnbondingNotReleased(msg.sender, a.unbondingReleaseAt);
        }

        a.unbonding = 0;
        emit Withdrawn(msg.sender, amount);
        _stakeToken.safeTransfer(msg.sender, amount);
    }

    // --- markets --------------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function lockStake(address account, uint64 until) external onlyMarket {
        Account storage a = _registered(account);
        if (until > a.lockedUntil) a.lockedUntil = until;
        emit StakeLocked(account, msg.sender, a.lockedUntil);
    }

    /// @inheritdoc IParticipantRegistry
    function slash(address account, uint256 amount, uint256 taskId, string calldata evidenceCid)
        external
        onlyMarket
        nonReentrant
        returns (uint256 slashed)
    {
        Account storage a = _registered(account);
        uint256 staked = a.stake;
        uint256 fromStake = amount < staked ? amount : staked;
        uint256 unbonding = a.unbonding;
        // fromStake <= amount and <= staked, so neither subtraction can underflow.
        unchecked {
            uint256 rest = amount - fromStake;
            uint256 fromUnbonding = rest < unbonding ? rest : unbonding;
            a.stake = staked - fromStake;
            a.unbonding = unbonding - fromUnbonding;
            slashed = fromStake + fromUnbonding; // <= amount
        }
        emit Slashed(account, slashed, taskId, evidenceCid);
        if (slashed > 0) _stakeToken.safeTransfer(BURN_ADDRESS, slashed);
    }

    /// @inheritdoc IParticipantRegistry
    function recordScore(address account, uint32 scorePpm) external onlyMarket {
        if (scorePpm > ReputationMath.ONE) revert ParticipantRegistryScoreOutOfRange(scorePpm);
        Account storage a = _registered(account);
        uint32 old = a.reputationPpm;
        uint32 updated = ReputationMath.ema(old, scorePpm);
        a.reputationPpm = updated;
        emit ReputationUpdated(account, old, updated);
    }

    // --- governance -----------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function setMarket(address market, bool authorized) external onlyOwner {
        if (market == address(0)) revert ParticipantRegistryZeroAddress();
        _markets[market] = authorized;
        emit MarketAuthorizationSet(market, authorized);
    }

    // --- views ----------------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
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
        )
    {
        Account storage a = _accounts[account];
        return (a.role, a.encryptionKey, a.stake, a.unbonding, a.unbondingReleaseAt, a.lockedUntil, a.reputationPpm);
    }

    /// @inheritdoc IParticipantRegistry
    function stakeOf(address account) external view returns (uint256) {
        return _accounts[account].stake;
    }

    /// @inheritdoc IParticipantRegistry
    function roleOf(address account) external view returns (Role) {
        return _accounts[account].role;
    }

    /// @inheritdoc IParticipantRegistry
    function reputationOf(address account) external view returns (uint32) {
        return _accounts[account].reputationPpm;
    }

    /// @inheritdoc IParticipantRegistry
    function encryptionKeyOf(address account) external view returns (bytes32) {
        return _accounts[account].encryptionKey;
    }

    /// @inheritdoc IParticipantRegistry
    function isMarket(address market) external view returns (bool) {
        return _markets[market];
    }

    /// @inheritdoc IParticipantRegistry
    function stakeToken() external view returns (IERC20) {
        return _stakeToken;
    }

    /// @inheritdoc IParticipantRegistry
    function unbondingDelay() external view returns (uint64) {
        return _unbondingDelay;
    }

    // --- internals ------------------------------------------------------------------------------

    function _registered(address account) private view returns (Account storage a) {
        a = _accounts[account];
        if (a.role == Role.None) revert ParticipantRegistryNotRegistered(account);
    }

    /// @dev Pulls `amount` from `from` and insists the balance grew by exactly that much, so a
    ///      fee-on-transfer token cannot leave stakes backed by fewer tokens than recorded.
    function _pull(address from, uint256 amount) private {
        uint256 before = _stakeToken.balanceOf(address(this));
        _stakeToken.safeTransferFrom(from, address(this), amount);
        uint256 received = _stakeToken.balanceOf(address(this)) - before;
        if (received != amount) revert ParticipantRegistryFeeOnTransfer(amount, received);
    }
}
