// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title ScoreCommitment
/// @notice The hash an oracle commits to before revealing its payout root.
/// @dev Binding the oracle's address means a commitment copied from another oracle's transaction
///      cannot be revealed by the copier; binding the task id stops replay across tasks.
library ScoreCommitment {
    /// @notice `keccak256(abi.encode(taskId, oracle, payoutRoot, keccak256(bytes(reportCid)), salt))`.
    /// @param taskId The task the score belongs to.
    /// @param oracle The committing oracle.
    /// @param payoutRoot The Merkle root of the payout table.
    /// @param reportCid The CID of the full scoring report.
    /// @param salt A secret random value that hides the root until the reveal.
    /// @return The commitment.
    function hash(uint256 taskId, address oracle, bytes32 payoutRoot, string calldata reportCid, bytes32 salt)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(taskId, oracle, payoutRoot, keccak256(bytes(reportCid)), salt));
    }
}
