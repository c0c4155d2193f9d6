// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./AppAuth.sol";

interface IAppRegistry {
    function registerApp(address appId) external;
}

/// @title Deploys one AppAuth per app and registers it with the governance in one transaction.
/// @notice The caller becomes the app's owner. The factory holds no privilege of its own:
///         registering an app is open to anyone, as in dstack.
contract AppAuthFactory {
    IAppRegistry public immutable governance;

    event AppDeployed(address indexed appId, address indexed appOwner);

    error ZeroAddress(string field);

    constructor(address governance_) {
        if (governance_ == address(0)) revert ZeroAddress("governance");
        governance = IAppRegistry(governance_);
    }

    function deployAndRegister(
        bytes32[] calldata composeHashes,
        bytes32[] calldata deviceIds,
        bool allowAnyDevice,
        bool requireTcbUpToDate
    ) external returns (address appId) {
        appId = address(
            new AppAuth(msg.sender, composeHashes, deviceIds, allowAnyDevice, requireTcbUpToDate)
        );
        emit AppDeployed(appId, msg.sender);
        governance.registerApp(appId);
    }
}
