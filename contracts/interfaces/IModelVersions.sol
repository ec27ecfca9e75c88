// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title IModelVersions
/// @notice Which versions of a task's model may still be sold (a version trained on data whose
///         owner withdrew consent, or whose licence expired, is not sellable).
interface IModelVersions {
    /// @notice Whether `version` of the model of `taskId` may be sold now.
    /// @param taskId The task that produced the model.
    /// @param version The model version.
    /// @return True if sales of that version are allowed.
    function isSellable(uint256 taskId, uint256 version) external view returns (bool);

    /// @notice How many trainers have withdrawn consent from `taskId` so far.
    /// @param taskId The task.
    /// @return The number of withdrawals recorded (withdrawals are numbered 1, 2, …).
    function withdrawalCount(uint256 taskId) external view returns (uint32);

    /// @notice The withdrawal number of `trainer` (0: none).
    /// @param taskId The task.
    /// @param trainer The trainer.
    /// @return The number.
    function withdrawalOf(uint256 taskId, address trainer) external view returns (uint32);
}
