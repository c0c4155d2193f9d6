// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./IAppAuth.sol";
import "./Owned2Step.sol";

/// @title What the governance allows: KMS measurements, OS images, simulators, TCB policy.
/// @notice Every setter is one owner call, and each "add" has a "remove" of the same shape: taking
///         a permission away is never harder than granting it. Setters are idempotent.
abstract contract GovernancePolicy is Owned2Step {
    mapping(bytes32 => bool) public kmsMeasurementAllowed;
    mapping(bytes32 => bool) public osImageAllowed;
    bool public simulatorAllowed;
    mapping(bytes32 => bool) private _tcbStatusAllowed;
    mapping(bytes32 => bool) private _advisoryBlocked;

    event KmsMeasurementAdded(bytes32 indexed mrAggregated);
    event KmsMeasurementRemoved(bytes32 indexed mrAggregated);
    event OsImageAdded(bytes32 indexed osImageHash);
    event OsImageRemoved(bytes32 indexed osImageHash);
    event SimulatorAllowedSet(bool allowed);
    event TcbStatusAllowed(string status);
    event TcbStatusDisallowed(string status);
    event AdvisoryBlocked(string advisoryId);
    event AdvisoryUnblocked(string advisoryId);

    function addKmsMeasurement(bytes32 mrAggregated) external onlyOwner {
        kmsMeasurementAllowed[mrAggregated] = true;
        emit KmsMeasurementAdded(mrAggregated);
    }

    function removeKmsMeasurement(bytes32 mrAggregated) external onlyOwner {
        kmsMeasurementAllowed[mrAggregated] = false;
        emit KmsMeasurementRemoved(mrAggregated);
    }

    function addOsImage(bytes32 osImageHash) external onlyOwner {
        osImageAllowed[osImageHash] = true;
        emit OsImageAdded(osImageHash);
    }

    function removeOsImage(bytes32 osImageHash) external onlyOwner {
        osImageAllowed[osImageHash] = false;
        emit OsImageRemoved(osImageHash);
    }

    function setSimulatorAllowed(bool allowed) external onlyOwner {
        _setSimulatorAllowed(allowed);
    }

    function allowTcbStatus(string calldata status) external onlyOwner {
        _tcbStatusAllowed[keccak256(bytes(status))] = true;
        emit TcbStatusAllowed(status);
    }

    function disallowTcbStatus(string calldata status) external onlyOwner {
        _tcbStatusAllowed[keccak256(bytes(status))] = false;
        emit TcbStatusDisallowed(status);
    }

    function blockAdvisory(string calldata advisoryId) external onlyOwner {
        _advisoryBlocked[keccak256(bytes(advisoryId))] = true;
        emit AdvisoryBlocked(advisoryId);
    }

    function unblockAdvisory(string calldata advisoryId) external onlyOwner {
        _advisoryBlocked[keccak256(bytes(advisoryId))] = false;
        emit AdvisoryUnblocked(advisoryId);
    }

    function isTcbStatusAllowed(string calldata status) external view returns (bool) {
        return _tcbStatusAllowed[keccak256(bytes(status))];
    }

    function isAdvisoryBlocked(string calldata advisoryId) external view returns (bool) {
        return _advisoryBlocked[keccak256(bytes(advisoryId))];
    }

    /// @notice Whether a KMS node's measured platform may join the network (peers check peers).
    function isKmsAllowed(IAppAuth.AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        (isAllowed, reason) = _checkPlatform(bootInfo);
        if (isAllowed && !kmsMeasurementAllowed[bootInfo.mrAggregated]) {
            return (false, "KMS measurement not allowed");
        }
    }

    function _setSimulatorAllowed(bool allowed) internal {
        simulatorAllowed = allowed;
        emit SimulatorAllowedSet(allowed);
    }

    function _allowTcbStatus(string memory status) internal {
        _tcbStatusAllowed[keccak256(bytes(status))] = true;
        emit TcbStatusAllowed(status);
    }

    /// @dev The checks every booting CVM passes, app or KMS node: OS image, TCB status, advisories.
    function _checkPlatform(IAppAuth.AppBootInfo calldata bootInfo)
        internal
        view
        returns (bool, string memory)
    {
        if (!osImageAllowed[bootInfo.osImageHash]) return (false, "OS image is not allowed");
        if (!_tcbStatusAllowed[keccak256(bytes(bootInfo.tcbStatus))]) {
            return (false, string.concat("TCB status not allowed: ", bootInfo.tcbStatus));
        }
        for (uint256 i = 0; i < bootInfo.advisoryIds.length; i++) {
            if (_advisoryBlocked[keccak256(bytes(bootInfo.advisoryIds[i]))]) {
                return (false, string.concat("Advisory blocked: ", bootInfo.advisoryIds[i]));
            }
        }
        return (true, "");
    }
}
