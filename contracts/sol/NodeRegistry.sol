// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./Owned2Step.sol";

/// @title KMS nodes: each registers itself from its own address; the owner approves or removes.
/// @notice Only addresses the owner allowed may register (`allowNodeRegistration`), so the registry
///         holds at most as many entries as the owner allowed, and nobody else can make it grow.
///         The owner approves one exact registration (its hash), so a node that re-registers with
///         other keys between the owner's review and the approval is not approved by accident.
///         Re-registering (new keys after a reboot) always returns the node to Pending.
abstract contract NodeRegistry is Owned2Step {
    enum NodeStatus {
        None,
        Pending,
        Approved,
        Removed
    }

    struct Node {
        NodeStatus status;
        address operator;
        string endpoint;
        bytes32 tlsKeyHash;
        bytes dealKey;
        bytes32 evidenceHash;
        bytes32 registrationHash;
        uint64 registeredAt;
    }

    uint256 public constant MAX_ENDPOINT_LENGTH = 256;
    uint256 public constant MAX_DEAL_KEY_LENGTH = 4096;

    mapping(address => Node) private _nodes;
    address[] private _nodeList;
    /// @notice Addresses the owner allowed to call `registerNode` (the node's own address).
    mapping(address => bool) public nodeRegistrationAllowed;

    event NodeRegistered(
        address indexed node,
        address indexed operator,
        string endpoint,
        bytes32 tlsKeyHash,
        bytes dealKey,
        bytes32 evidenceHash,
        bytes32 registrationHash
    );
    event NodeApproved(address indexed node, bytes32 registrationHash);
    event NodeRemoved(address indexed node);
    event NodeRegistrationAllowed(address indexed node);
    event NodeRegistrationDisallowed(address indexed node);

    error InvalidLength(string field, uint256 length, uint256 min, uint256 max);
    error NodeNotRegistered(address node);
    error NodeNotPending(address node, NodeStatus status);
    error NodeNotApproved(address node);
    error RegistrationChanged(address node, bytes32 expected, bytes32 actual);
    error NodeRegistrationNotAllowed(address node);

    /// @notice Lets `nodeAddress` register (and re-register after a reboot). Approval is separate.
    function allowNodeRegistration(address nodeAddress) external onlyOwner {
        nodeRegistrationAllowed[nodeAddress] = true;
        emit NodeRegistrationAllowed(nodeAddress);
    }

    /// @notice Stops further (re-)registrations from `nodeAddress`; its current entry is unchanged
    ///         (`removeNode` removes it).
    function disallowNodeRegistration(address nodeAddress) external onlyOwner {
        nodeRegistrationAllowed[nodeAddress] = false;
        emit NodeRegistrationDisallowed(nodeAddress);
    }

    function registerNode(
        address operator,
        string calldata endpoint,
        bytes32 tlsKeyHash,
        bytes calldata dealKey,
        bytes32 evidenceHash
    ) external {
        if (!nodeRegistrationAllowed[msg.sender]) revert NodeRegistrationNotAllowed(msg.sender);
        uint256 endpointLength = bytes(endpoint).length;
        if (endpointLength == 0 || endpointLength > MAX_ENDPOINT_LENGTH) {
            revert InvalidLength("endpoint", endpointLength, 1, MAX_ENDPOINT_LENGTH);
        }
        if (dealKey.length == 0 || dealKey.length > MAX_DEAL_KEY_LENGTH) {
            revert InvalidLength("dealKey", dealKey.length, 1, MAX_DEAL_KEY_LENGTH);
        }
        Node storage node = _nodes[msg.sender];
        if (node.status == NodeStatus.None) _nodeList.push(msg.sender);
        bytes32 registrationHash = keccak256(
            abi.encode(msg.sender, operator, endpoint, tlsKeyHash, dealKey, evidenceHash)
        );
        node.status = NodeStatus.Pending;
        node.operator = operator;
        node.endpoint = endpoint;
        node.tlsKeyHash = tlsKeyHash;
        node.dealKey = dealKey;
        node.evidenceHash = evidenceHash;
        node.registrationHash = registrationHash;
        node.registeredAt = uint64(block.number);
        emit NodeRegistered(
            msg.sender, operator, endpoint, tlsKeyHash, dealKey, evidenceHash, registrationHash
        );
    }

    function approveNode(address nodeAddress, bytes32 registrationHash) external onlyOwner {
        Node storage node = _nodes[nodeAddress];
        if (node.status != NodeStatus.Pending) revert NodeNotPending(nodeAddress, node.status);
        if (node.registrationHash != registrationHash) {
            revert RegistrationChanged(nodeAddress, registrationHash, node.registrationHash);
        }
        node.status = NodeStatus.Approved;
        emit NodeApproved(nodeAddress, registrationHash);
    }

    /// @notice Removes a node in any state but None: one call, like approving.
    function removeNode(address nodeAddress) external onlyOwner {
        Node storage node = _nodes[nodeAddress];
        if (node.status == NodeStatus.None) revert NodeNotRegistered(nodeAddress);
        node.status = NodeStatus.Removed;
        emit NodeRemoved(nodeAddress);
    }

    function getNode(address nodeAddress) external view returns (Node memory) {
        return _nodes[nodeAddress];
    }

    function getNodes() external view returns (address[] memory) {
        return _nodeList;
    }

    function isNodeApproved(address nodeAddress) public view returns (bool) {
        return _nodes[nodeAddress].status == NodeStatus.Approved;
    }

    function _requireApproved(address nodeAddress) internal view {
        if (!isNodeApproved(nodeAddress)) revert NodeNotApproved(nodeAddress);
    }
}
