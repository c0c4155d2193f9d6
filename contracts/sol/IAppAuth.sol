// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ERC-165 interface detection.
interface IERC165 {
    function supportsInterface(bytes4 interfaceId) external view returns (bool);
}

/// @title The app authorization interface of dstack.
/// @notice Same struct layout and function signature as dstack's `IAppAuth`, so the interface id is
///         the same (0x1e079198) and a dstack app contract can be registered as an app controller.
interface IAppAuth is IERC165 {
    /// @notice The identity of a booting app, as a KMS node computed it from verified evidence.
    struct AppBootInfo {
        address appId;
        bytes32 composeHash;
        address instanceId;
        bytes32 deviceId;
        bytes32 mrAggregated;
        bytes32 mrSystem;
        bytes32 osImageHash;
        string tcbStatus;
        string[] advisoryIds;
    }

    /// @return isAllowed whether the app may receive keys; reason says why not (empty if allowed).
    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason);
}
