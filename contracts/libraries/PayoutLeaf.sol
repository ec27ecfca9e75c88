// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title PayoutLeaf
/// @notice Leaf hashing of the payout table, identical to OpenZeppelin's StandardMerkleTree for the
///         leaf type `(uint256 chainId, address market, uint256 taskId, uint256 index,
///         address account, uint256 amount, uint32 scorePpm, uint256 flags)`.
/// @dev The leaf is hashed twice so that it can never be confused with an inner node (64 bytes),
///      which would allow a second-preimage proof. The first three values are the leaf's domain:
///      a leaf (and its proof) built for one task of one TaskMarket on one chain verifies nowhere
///      else, even under a root of the same layout. Every contract that checks a payout leaf
///      (TaskMarket's claims, ModelMarket's royalty claims) hashes it here.
library PayoutLeaf {
    /// @notice Flag bit: the trainer submitted an invalid update (format, shape, NaN/Inf, bounds).
    uint256 internal constant FLAG_INVALID_UPDATE = 1;
    /// @notice Flag bit: the trainer's update was judged a poisoning attempt.
    uint256 internal constant FLAG_POISONER = 2;
    /// @notice Flag bit: the trainer committed updates that carry no training (free rider).
    uint256 internal constant FLAG_FREE_RIDER = 4;
    /// @notice Flag bit: the trainer copied another trainer's update.
    uint256 internal constant FLAG_COPIER = 8;

    /// @notice The leaf of one payout row of one task.
    /// @param chainId The chain the task lives on (`block.chainid`).
    /// @param market The TaskMarket that holds the task (and its payout root).
    /// @param taskId The task.
    /// @param index Position of the row in the table (also its bit in the claimed bitmap).
    /// @param account Who is paid.
    /// @param amount Tokens paid, in the task's token units.
    /// @param scorePpm Normalized contribution score in parts per million (feeds reputation).
    /// @param flags Misbehaviour bits (`FLAG_*`); any set bit slashes the account.
    /// @return The double-hashed leaf.
    function hash(
        uint256 chainId,
        address market,
        uint256 taskId,
        uint256 index,
        address account,
        uint256 amount,
        uint32 scorePpm,
        uint256 flags
    ) internal pure returns (bytes32) {
        return keccak256(
            bytes.concat(keccak256(abi.encode(chainId, market, taskId, index, account, amount, scorePpm, flags)))
        );
    }
}
