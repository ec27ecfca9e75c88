// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IModelVersions} from "../interfaces/IModelVersions.sol";

/// @title ModelVersionsSwitch
/// @notice Test-only IModelVersions whose answers a test sets (stands in for the unlearning
///         engineer's version registry, which is built elsewhere).
contract ModelVersionsSwitch is IModelVersions {
    mapping(uint256 taskId => mapping(uint256 version => bool)) private _blocked;

    /// @notice Emitted when a version's sellability was set.
    /// @param taskId The task.
    /// @param version The version.
    /// @param sellable Whether it may be sold.
    event SellableSet(uint256 indexed taskId, uint256 version, bool sellable);

    /// @notice Set whether `version` of `taskId` may be sold (default: yes).
    /// @param taskId The task.
    /// @param version The version.
    /// @param sellable Whether it may be sold.
    function setSellable(uint256 taskId, uint256 version, bool sellable) external {
        _blocked[taskId][version] = !sellable;
        emit SellableSet(taskId, version, sellable);
    }

    /// @inheritdoc IModelVersions
    function isSellable(uint256 taskId, uint256 version) external view returns (bool) {
        return !_blocked[taskId][version];
    }

    /// @inheritdoc IModelVersions
    function withdrawalCount(uint256) external pure returns (uint32) {
        return 0;
    }

    /// @inheritdoc IModelVersions
    function withdrawalOf(uint256, address) external pure returns (uint32) {
        return 0;
    }
}
