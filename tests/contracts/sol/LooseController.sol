// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./IAppAuth.sol";

interface ILooseRegistry {
    function registerApp(address appId) external;
}

/// Test only: a custom app controller (any IAppAuth may be registered, for dstack
/// compatibility) that changes its decision without emitting anything.
contract LooseController is IAppAuth {
    bool public allowed = true;

    function flip() external {
        allowed = !allowed;
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == type(IAppAuth).interfaceId;
    }

    function isAppAllowed(AppBootInfo calldata) external view returns (bool, string memory) {
        return (allowed, allowed ? "" : "flipped");
    }
}

/// Test only: a contract that registers an app and emits events with the signatures of the
/// factory's and the governance's, claiming things that never happened.
contract SpoofingRegistrar {
    event AppDeployed(address indexed appId, address indexed appOwner);
    event SimulatorAllowedSet(bool allowed);

    function register(address governance, address app, address claimedApp) external {
        emit AppDeployed(claimedApp, msg.sender);
        emit SimulatorAllowedSet(false);
        ILooseRegistry(governance).registerApp(app);
    }
}
