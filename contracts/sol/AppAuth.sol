// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./IAppAuth.sol";
import "./Owned2Step.sol";

/// @title The controller of one app; its address is the app_id.
/// @notice The app owner decides which compose hashes (code and configuration) may receive keys,
///         on which devices, and whether the TCB must be up to date. Adding and removing are the
///         same kind of single owner call. Encrypted env vars are authenticated: the guest agent
///         accepts only an env signed by `envSigner` for exactly the current `envVersion`, which
///         only grows, so an older env (or one the host made) does not start the app.
///         Live revocation is opt-in: with `liveRevocationBlocks` N > 0 a running guest agent
///         re-derives from the network every N/2 blocks and stops handing out keys within N
///         blocks of a revocation (docs/guest.md); with 0, as in dstack, a running agent keeps
///         the keys it fetched at boot and only new boots are refused.
contract AppAuth is Owned2Step, IAppAuth {
    bytes4 private constant ERC165_ID = 0x01ffc9a7;

    mapping(bytes32 => bool) public allowedComposeHashes;
    mapping(bytes32 => bool) public allowedDevices;
    bool public allowAnyDevice;
    bool public requireTcbUpToDate;
    /// @notice Who signs this app's encrypted env (design §7); zero: no env is accepted.
    address public envSigner;
    /// @notice The version an env must carry to be accepted; raised to publish a new env.
    uint64 public envVersion;
    /// @notice 0: off. N: running agents confirm every N/2 blocks that the network still
    ///         derives their keys, and stop serving keys after N blocks without that.
    uint64 public liveRevocationBlocks;
    /// @notice Whether a single KMS node may assemble this app's keys for an unmodified dstack
    ///         guest (the dstack-compatible KMS endpoint, docs/dstack-kms.md). Off by default:
    ///         then no node ever sees the app's keys. On, every committee node's TEE is trusted
    ///         with them, as a dstack app trusts its KMS.
    bool public dstackKmsRelease;

    event ComposeHashAdded(bytes32 indexed composeHash);
    event ComposeHashRemoved(bytes32 indexed composeHash);
    event DeviceAdded(bytes32 indexed deviceId);
    event DeviceRemoved(bytes32 indexed deviceId);
    event AllowAnyDeviceSet(bool allowAny);
    event TcbRequirementSet(bool requireUpToDate);
    event EnvSignerSet(address indexed signer);
    event EnvVersionSet(uint64 version);
    event LiveRevocationSet(uint64 blocks);
    event DstackKmsReleaseSet(bool allowed);

    error EnvVersionNotIncreasing(uint64 current, uint64 proposed);

    constructor(
        address initialOwner,
        bytes32[] memory composeHashes,
        bytes32[] memory deviceIds,
        bool allowAnyDevice_,
        bool requireTcbUpToDate_
    ) Owned2Step(initialOwner) {
        for (uint256 i = 0; i < composeHashes.length; i++) {
            allowedComposeHashes[composeHashes[i]] = true;
            emit ComposeHashAdded(composeHashes[i]);
        }
        for (uint256 i = 0; i < deviceIds.length; i++) {
            allowedDevices[deviceIds[i]] = true;
            emit DeviceAdded(deviceIds[i]);
        }
        allowAnyDevice = allowAnyDevice_;
        emit AllowAnyDeviceSet(allowAnyDevice_);
        requireTcbUpToDate = requireTcbUpToDate_;
        emit TcbRequirementSet(requireTcbUpToDate_);
        envSigner = initialOwner;
        emit EnvSignerSet(initialOwner);
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == ERC165_ID || interfaceId == type(IAppAuth).interfaceId;
    }

    function addComposeHash(bytes32 composeHash) external onlyOwner {
        allowedComposeHashes[composeHash] = true;
        emit ComposeHashAdded(composeHash);
    }

    function removeComposeHash(bytes32 composeHash) external onlyOwner {
        allowedComposeHashes[composeHash] = false;
        emit ComposeHashRemoved(composeHash);
    }

    function addDevice(bytes32 deviceId) external onlyOwner {
        allowedDevices[deviceId] = true;
        emit DeviceAdded(deviceId);
    }

    function removeDevice(bytes32 deviceId) external onlyOwner {
        allowedDevices[deviceId] = false;
        emit DeviceRemoved(deviceId);
    }

    function setAllowAnyDevice(bool allowAny) external onlyOwner {
        allowAnyDevice = allowAny;
        emit AllowAnyDeviceSet(allowAny);
    }

    function setRequireTcbUpToDate(bool requireUpToDate) external onlyOwner {
        requireTcbUpToDate = requireUpToDate;
        emit TcbRequirementSet(requireUpToDate);
    }

    function setEnvSigner(address signer) external onlyOwner {
        envSigner = signer;
        emit EnvSignerSet(signer);
    }

    /// @notice Only upwards: an env signed for an older version can never be accepted again.
    function setEnvVersion(uint64 version) external onlyOwner {
        if (version <= envVersion) revert EnvVersionNotIncreasing(envVersion, version);
        envVersion = version;
        emit EnvVersionSet(version);
    }

    /// @notice Opt in (N > 0) or out (0) of live revocation; the agents read it every block.
    function setLiveRevocationBlocks(uint64 blocks) external onlyOwner {
        liveRevocationBlocks = blocks;
        emit LiveRevocationSet(blocks);
    }

    function setDstackKmsRelease(bool allowed) external onlyOwner {
        dstackKmsRelease = allowed;
        emit DstackKmsReleaseSet(allowed);
    }

    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        // A controller answers only for its own app: a node asking about another app_id has a bug.
        if (bootInfo.appId != address(this)) return (false, "App id does not match this controller");
        if (!allowedComposeHashes[bootInfo.composeHash]) return (false, "Compose hash not allowed");
        if (!allowAnyDevice && !allowedDevices[bootInfo.deviceId]) return (false, "Device not allowed");
        if (requireTcbUpToDate && keccak256(bytes(bootInfo.tcbStatus)) != keccak256("UpToDate")) {
            return (false, "TCB status is not up to date");
        }
        return (true, "");
    }
}
