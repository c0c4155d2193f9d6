// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Two-step ownership.
/// @notice The owner names a successor, who must accept: a typo in an address cannot lock the
///         contract. Naming address(0) cancels a pending transfer. There is no renounce: an
///         ownerless governance contract could never revoke anything again.
abstract contract Owned2Step {
    address public owner;
    address public pendingOwner;

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error NotPendingOwner(address caller);
    error ZeroAddress(string field);

    constructor(address initialOwner) {
        if (initialOwner == address(0)) revert ZeroAddress("owner");
        owner = initialOwner;
        emit OwnershipTransferred(address(0), initialOwner);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    function acceptOwnership() external {
        if (msg.sender != pendingOwner || msg.sender == address(0)) revert NotPendingOwner(msg.sender);
        address previous = owner;
        owner = msg.sender;
        pendingOwner = address(0);
        emit OwnershipTransferred(previous, msg.sender);
    }
}
