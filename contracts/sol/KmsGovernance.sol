// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./IAppAuth.sol";
import "./Owned2Step.sol";
import "./GovernancePolicy.sol";
import "./NodeRegistry.sol";
import "./EpochManager.sol";

/// @title The governance of a tkms network (design §5).
/// @notice Platform policy, the node registry, epochs and generations, and the app registry.
///         `isAppAllowed` answers for any registered app: platform checks here, then the app's own
///         controller (an AppAuth, or any contract implementing dstack's IAppAuth) decides.
contract KmsGovernance is GovernancePolicy, EpochManager, IAppAuth {
    enum AppStatus {
        None,
        Registered,
        Removed
    }

    bytes4 private constant ERC165_ID = 0x01ffc9a7;

    mapping(address => AppStatus) public appStatus;
    /// @notice Where tools find the factory that deploys AppAuth controllers for this governance.
    address public appFactory;
    /// @notice Per generation g >= 2: generation g-1's threshold signature over g's
    ///         `tkms-generation:v1` statement, so apps can chain PK2_g to the network's
    ///         fingerprint (design §7). Checked by its readers, not here (no pairing on chain).
    mapping(uint64 => bytes) private _generationLinks;
    /// @notice Per generation: its secp256k1 KMS root (33 bytes, compressed) and the network's
    ///         threshold signature over its `tkms-k256-root:v1` statement (design §3.5). The
    ///         anchor dstack-style verifiers compare a key chain's KMS signature with. Set once
    ///         per generation; checked by its readers (no pairing on chain).
    mapping(uint64 => KmsRoot) private _kmsRoots;

    struct KmsRoot {
        bytes k256Pubkey;
        bytes certificate;
    }

    event AppFactorySet(address indexed appFactory);
    event AppRegistered(address indexed appId, address indexed registrar);
    event AppRemoved(address indexed appId);
    event GenerationLinked(uint64 indexed generation, bytes signature);
    event KmsRootSet(uint64 indexed generation, bytes k256Pubkey, bytes certificate);

    error NotAContract(address appId);
    error AppAlreadyRegistered(address appId);
    error AppRemovedByOwner(address appId);
    error AppNotRegistered(address appId);
    error NotALinkableGeneration(uint64 generation);
    error NotAKeyGeneration(uint64 generation);
    error KmsRootAlreadySet(uint64 generation);
    error NotACompressedKey();

    constructor(address initialOwner, bool allowSimulator, uint64 retirementWindowBlocks)
        Owned2Step(initialOwner)
    {
        _setSimulatorAllowed(allowSimulator);
        _allowTcbStatus("UpToDate");
        _setRetirementWindow(retirementWindowBlocks);
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == ERC165_ID || interfaceId == type(IAppAuth).interfaceId;
    }

    function setAppFactory(address factory) external onlyOwner {
        appFactory = factory;
        emit AppFactorySet(factory);
    }

    /// @notice Open to anyone, as in dstack: an app's own controller decides who boots it. Only
    ///         the owner can bring back an app the owner removed.
    function registerApp(address appId) external {
        if (appId.code.length == 0) revert NotAContract(appId);
        AppStatus status = appStatus[appId];
        if (status == AppStatus.Registered) revert AppAlreadyRegistered(appId);
        if (status == AppStatus.Removed && msg.sender != owner) revert AppRemovedByOwner(appId);
        appStatus[appId] = AppStatus.Registered;
        emit AppRegistered(appId, msg.sender);
    }

    function removeApp(address appId) external onlyOwner {
        if (appStatus[appId] != AppStatus.Registered) revert AppNotRegistered(appId);
        appStatus[appId] = AppStatus.Removed;
        emit AppRemoved(appId);
    }

    function generationLink(uint64 generation) external view returns (bytes memory) {
        return _generationLinks[generation];
    }

    /// @notice The owner publishes the link of an activated generation (`tkms chain
    ///         link-generation`); a wrong one only makes apps refuse that generation.
    function setGenerationLink(uint64 generation, bytes calldata signature) external onlyOwner {
        if (generation < 2 || generation > latestGeneration) {
            revert NotALinkableGeneration(generation);
        }
        if (signature.length != G1_LENGTH) {
            revert InvalidLength("signature", signature.length, G1_LENGTH, G1_LENGTH);
        }
        _generationLinks[generation] = signature;
        emit GenerationLinked(generation, signature);
    }

    function kmsRoot(uint64 generation)
        external
        view
        returns (bytes memory k256Pubkey, bytes memory certificate)
    {
        KmsRoot storage root = _kmsRoots[generation];
        return (root.k256Pubkey, root.certificate);
    }

    /// @notice The owner publishes an activated generation's KMS root with the network's
    ///         certificate (`tkms chain publish-kms-root`), once: nobody can swap the anchor
    ///         later.
    function setKmsRoot(uint64 generation, bytes calldata k256Pubkey, bytes calldata certificate)
        external
        onlyOwner
    {
        if (generation < 1 || generation > latestGeneration) revert NotAKeyGeneration(generation);
        if (_kmsRoots[generation].k256Pubkey.length != 0) revert KmsRootAlreadySet(generation);
        if (k256Pubkey.length != 33 || (k256Pubkey[0] != 0x02 && k256Pubkey[0] != 0x03)) {
            revert NotACompressedKey();
        }
        if (certificate.length != G1_LENGTH) {
            revert InvalidLength("certificate", certificate.length, G1_LENGTH, G1_LENGTH);
        }
        _kmsRoots[generation] = KmsRoot(k256Pubkey, certificate);
        emit KmsRootSet(generation, k256Pubkey, certificate);
    }

    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        AppStatus status = appStatus[bootInfo.appId];
        if (status == AppStatus.None) return (false, "App not registered");
        if (status == AppStatus.Removed) return (false, "App removed by governance");
        (isAllowed, reason) = _checkPlatform(bootInfo);
        if (!isAllowed) return (isAllowed, reason);
        try IAppAuth(bootInfo.appId).isAppAllowed(bootInfo) returns (bool allowed, string memory why) {
            return (allowed, why);
        } catch {
            return (false, "App controller call failed");
        }
    }
}
