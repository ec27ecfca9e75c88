// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title IJoinGate
/// @notice An optional gate on who may join a task (e.g. the trainers a sourcing round selected).
///         A task names its gate at creation (`TaskParams.joinGate`); zero means open joining.
/// @dev Called by `TaskMarket.join` as a view: keep it cheap (a mapping read), it runs in every join.
interface IJoinGate {
    /// @notice Whether `trainer` may join task `taskId`.
    /// @param taskId The task.
    /// @param trainer The joining trainer.
    /// @return True to admit it.
    function canJoin(uint256 taskId, address trainer) external view returns (bool);
}
