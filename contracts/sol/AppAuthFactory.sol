// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./AppAuth.sol";

interface IAppRegistry {
    function registerApp(address appId) external;
}

/// @title Deploys one AppAuth per app and registers it with the governance in one transaction.
/// @notice The caller becomes the app's owner. The factory holds no privilege of its own:
///         registering an app is open to anyone, as in dstack.
/// @dev App ids are bound to their owner: the AppAuth is created by a one-use proxy that the
///      factory places with CREATE2 at salt keccak256(abi.encode(owner, salt)), so the id
///      depends only on (factory, owner, salt), never on the initial settings, and no other
///      sender can make the factory deploy at an id someone computed with `predictAppId`.
///      (With plain CREATE the next id was the factory's next nonce, claimable by anyone.)
contract AppAuthFactory {
    /// Creation code of the proxy: its runtime (`363d3d37363d34f0`) runs CREATE with the
    /// calldata as init code, so the app lands at the proxy's first CREATE address.
    bytes private constant PROXY_INIT_CODE = hex"67363d3d37363d34f03d5260086018f3";
    bytes32 private constant PROXY_INIT_CODE_HASH = keccak256(PROXY_INIT_CODE);

    IAppRegistry public immutable governance;

    event AppDeployed(address indexed appId, address indexed appOwner);

    error ZeroAddress(string field);
    error AppIdTaken(address appOwner, bytes32 salt);
    error AppDeploymentFailed(address appId);

    constructor(address governance_) {
        if (governance_ == address(0)) revert ZeroAddress("governance");
        governance = IAppRegistry(governance_);
    }

    function deployAndRegister(
        bytes32 salt,
        bytes32[] calldata composeHashes,
        bytes32[] calldata deviceIds,
        bool allowAnyDevice,
        bool requireTcbUpToDate
    ) external returns (address appId) {
        bytes memory proxyCode = PROXY_INIT_CODE;
        bytes32 ownerSalt = _ownerSalt(msg.sender, salt);
        address proxy;
        assembly {
            proxy := create2(0, add(proxyCode, 32), mload(proxyCode), ownerSalt)
        }
        if (proxy == address(0)) revert AppIdTaken(msg.sender, salt);
        bytes memory initCode = abi.encodePacked(
            type(AppAuth).creationCode,
            abi.encode(msg.sender, composeHashes, deviceIds, allowAnyDevice, requireTcbUpToDate)
        );
        (bool called,) = proxy.call(initCode);
        appId = _createdBy(proxy);
        if (!called || appId.code.length == 0) revert AppDeploymentFailed(appId);
        emit AppDeployed(appId, msg.sender);
        governance.registerApp(appId);
    }

    /// @notice The app id `deployAndRegister(salt, ...)` gives when `owner` sends it, whatever
    ///         the app's initial settings.
    function predictAppId(address owner, bytes32 salt) external view returns (address) {
        bytes32 hash = keccak256(
            abi.encodePacked(bytes1(0xff), address(this), _ownerSalt(owner, salt), PROXY_INIT_CODE_HASH)
        );
        return _createdBy(address(uint160(uint256(hash))));
    }

    function _ownerSalt(address owner, bytes32 salt) private pure returns (bytes32) {
        return keccak256(abi.encode(owner, salt));
    }

    /// The address of the first contract `deployer` creates (nonce 1): RLP([deployer, 1]).
    function _createdBy(address deployer) private pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encodePacked(hex"d694", deployer, hex"01")))));
    }
}
