// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./IAppAuth.sol";

/// Test only, written for tkms: an app controller with the public surface of dstack's
/// `DstackApp` where `IAppAuth` and its basic management interface are concerned (the same
/// function signatures and events, hence the same interface ids), so `tkms app register
/// --controller` is tested against a contract shaped like the one dstack apps deploy. Not
/// dstack's code (the project does not vendor other projects' code): no proxy, no upgrades,
/// plain single-step ownership.
interface IAppAuthBasicManagement {
    event ComposeHashAdded(bytes32 composeHash);
    event ComposeHashRemoved(bytes32 composeHash);
    event DeviceAdded(bytes32 deviceId);
    event DeviceRemoved(bytes32 deviceId);

    function addComposeHash(bytes32 composeHash) external;
    function removeComposeHash(bytes32 composeHash) external;
    function addDevice(bytes32 deviceId) external;
    function removeDevice(bytes32 deviceId) external;
}

contract DstackStyleApp is IAppAuth, IAppAuthBasicManagement {
    address public owner;
    mapping(bytes32 => bool) public allowedComposeHashes;
    bool public allowAnyDevice;
    mapping(bytes32 => bool) public allowedDeviceIds;
    bool public requireTcbUpToDate;

    event AllowAnyDeviceSet(bool allowAny);
    event RequireTcbUpToDateSet(bool requireUpToDate);

    error NotOwner(address caller);

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(bool anyDevice, bool tcbUpToDate, bytes32 composeHash) {
        owner = msg.sender;
        allowAnyDevice = anyDevice;
        requireTcbUpToDate = tcbUpToDate;
        if (composeHash != bytes32(0)) {
            allowedComposeHashes[composeHash] = true;
            emit ComposeHashAdded(composeHash);
        }
    }

    function version() external pure returns (uint256) {
        return 1;
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == type(IAppAuth).interfaceId
            || interfaceId == type(IAppAuthBasicManagement).interfaceId;
    }

    function addComposeHash(bytes32 composeHash) external onlyOwner {
        allowedComposeHashes[composeHash] = true;
        emit ComposeHashAdded(composeHash);
    }

    function removeComposeHash(bytes32 composeHash) external onlyOwner {
        allowedComposeHashes[composeHash] = false;
        emit ComposeHashRemoved(composeHash);
    }

    function setAllowAnyDevice(bool anyDevice) external onlyOwner {
        allowAnyDevice = anyDevice;
        emit AllowAnyDeviceSet(anyDevice);
    }

    function setRequireTcbUpToDate(bool tcbUpToDate) external onlyOwner {
        requireTcbUpToDate = tcbUpToDate;
        emit RequireTcbUpToDateSet(tcbUpToDate);
    }

    function addDevice(bytes32 deviceId) external onlyOwner {
        allowedDeviceIds[deviceId] = true;
        emit DeviceAdded(deviceId);
    }

    function removeDevice(bytes32 deviceId) external onlyOwner {
        allowedDeviceIds[deviceId] = false;
        emit DeviceRemoved(deviceId);
    }

    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        if (!allowedComposeHashes[bootInfo.composeHash]) return (false, "Compose hash not allowed");
        if (!allowAnyDevice && !allowedDeviceIds[bootInfo.deviceId]) {
            return (false, "Device not allowed");
        }
        if (requireTcbUpToDate && keccak256(bytes(bootInfo.tcbStatus)) != keccak256("UpToDate")) {
            return (false, "TCB status is not up to date");
        }
        return (true, "");
    }
}

/// Test only: claims every interface, which ERC-165 forbids (0xffffffff must be false).
contract ClaimsEverything {
    function supportsInterface(bytes4) external pure returns (bool) {
        return true;
    }
}

/// Test only: ERC-165 detection, but not IAppAuth.
contract OnlyErc165 {
    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7;
    }
}
