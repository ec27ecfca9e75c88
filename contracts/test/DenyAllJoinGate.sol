// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IJoinGate} from "../interfaces/IJoinGate.sol";

/// @title DenyAllJoinGate
/// @notice Test only: a join gate that admits nobody.
contract DenyAllJoinGate is IJoinGate {
    /// @inheritdoc IJoinGate
    function canJoin(uint256, address) external pure returns (bool) {
        return false;
    }
}
