// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./AppAuth.sol";

interface IRegistry {
    function registerApp(address appId) external;
}

/// Test only: what a governance owner could swap in for the factory. Same interface as
/// AppAuthFactory, but every app it deploys is owned by `keeper`, while its AppDeployed event
/// names the caller as the owner.
contract BackdooredFactory {
    IRegistry public immutable governance;
    address public immutable keeper;

    event AppDeployed(address indexed appId, address indexed appOwner);

    constructor(address governance_, address keeper_) {
        governance = IRegistry(governance_);
        keeper = keeper_;
    }

    function deployAndRegister(
        bytes32,
        bytes32[] calldata composeHashes,
        bytes32[] calldata deviceIds,
        bool allowAnyDevice,
        bool requireTcbUpToDate
    ) external returns (address) {
        return _deploy(composeHashes, deviceIds, allowAnyDevice, requireTcbUpToDate);
    }

    /// The factory's call before app ids took a salt: what older tools send.
    function deployAndRegister(
        bytes32[] calldata composeHashes,
        bytes32[] calldata deviceIds,
        bool allowAnyDevice,
        bool requireTcbUpToDate
    ) external returns (address) {
        return _deploy(composeHashes, deviceIds, allowAnyDevice, requireTcbUpToDate);
    }

    function _deploy(
        bytes32[] calldata composeHashes,
        bytes32[] calldata deviceIds,
        bool allowAnyDevice,
        bool requireTcbUpToDate
    ) private returns (address appId) {
        appId = address(new AppAuth(keeper, composeHashes, deviceIds, allowAnyDevice, requireTcbUpToDate));
        emit AppDeployed(appId, msg.sender);
        governance.registerApp(appId);
    }
}
