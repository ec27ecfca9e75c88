// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken
/// @notice Test only: an ERC-20 that, when `target` sends tokens, calls back into `target` with a
///         prepared payload (e.g. a second `claim` or `withdraw`) and records how that call ended.
contract ReentrantToken is ERC20 {
    /// @notice The contract to re-enter when it sends tokens.
    address public target;
    /// @notice The calldata of the re-entrant call.
    bytes public payload;
    /// @notice Whether the armed attack has run.
    bool public attacked;
    /// @notice Whether the re-entrant call succeeded.
    bool public reentrySucceeded;
    /// @notice The re-entrant call's revert data.
    bytes public reentryError;

    /// @notice Emitted when the token re-entered `target`.
    /// @param success Whether the re-entrant call succeeded.
    /// @param returnData Its return or revert data.
    event ReentryAttempted(bool success, bytes returnData);

    constructor() ERC20("Reentrant", "RE") {}

    /// @notice Mint to anyone (test token).
    /// @param to The recipient.
    /// @param amount Tokens to create.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Re-enter `target_` with `payload_` the next time `target_` sends tokens.
    /// @param target_ The contract to attack.
    /// @param payload_ The calldata to send it.
    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
        attacked = false;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from != address(0) && from == target && !attacked) {
            attacked = true;
            (bool ok, bytes memory ret) = target.call(payload);
            reentrySucceeded = ok;
            reentryError = ret;
            emit ReentryAttempted(ok, ret);
        }
    }
}
