// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title The tkms network's BLS signatures, checked on chain with the EIP-2537 precompiles.
/// @notice The network signs standard min-sig BLS (design §3.5): the signature in G1, the group
///         key PK2 in G2, messages hashed to G1 with RFC 9380's
///         `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_`. `verify` accepts iff
///         e(signature, -G2) · e(H(message), PK2) == 1, one PAIRING_CHECK.
///
///         Points are EIP-2537's uncompressed encoding: G1 is 128 bytes (x ‖ y), G2 256 bytes
///         (x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1), each coordinate a 64-byte big-endian field element whose
///         first 16 bytes are zero. Callers decompress the network's 48/96-byte encodings off
///         chain (`mpc.group`'s `to_eip2537`): decompressing here would cost a square root per
///         point, and a wrong decompression can only make a signature fail, because the
///         precompiles check that every point is on the curve and in the prime-order subgroup.
///
///         Well-formed inputs give true or false; malformed ones revert with an error naming the
///         input and what is wrong. Needs a chain with the Prague precompiles: on one without,
///         every check reverts `PrecompileUnavailable`, never answers.
contract BlsVerifier {
    address private constant MODEXP = address(0x05);
    address private constant BLS12_G1ADD = address(0x0b);
    address private constant BLS12_G1MSM = address(0x0c);
    address private constant BLS12_G2ADD = address(0x0d);
    address private constant BLS12_G2MSM = address(0x0e);
    address private constant BLS12_PAIRING_CHECK = address(0x0f);
    address private constant BLS12_MAP_FP_TO_G1 = address(0x10);

    // A precompile that fails consumes all the gas it was given, so each call gets a bounded
    // allowance: about twice its EIP-2537 (or EIP-2565) price, room for a later repricing.
    uint256 private constant MODEXP_GAS = 10_000;
    uint256 private constant G1ADD_GAS = 1_000;
    uint256 private constant G2ADD_GAS = 1_500;
    uint256 private constant G1MSM_GAS = 25_000;
    uint256 private constant G2MSM_GAS = 45_000;
    uint256 private constant MAP_FP_TO_G1_GAS = 11_000;
    uint256 private constant PAIRING_2_GAS = 210_000;

    uint256 public constant G1_POINT_SIZE = 128;
    uint256 public constant G2_POINT_SIZE = 256;

    /// @notice The hash-to-G1 tag of the network's signatures (standard min-sig BLS).
    bytes public constant SIGNATURE_DST = "BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";
    bytes18 private constant APP_PUBKEY_LABEL = "tkms-app-pubkey:v1";

    // The field modulus p as a 64-byte big-endian number: high and low 32-byte words.
    uint256 private constant P_HI = 0x1a0111ea397fe69a4b1ba7b6434bacd7;
    uint256 private constant P_LO = 0x64774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab;

    /// @dev -G2, the negated standard generator of G2, uncompressed.
    bytes private constant NEG_G2_GENERATOR =
        hex"00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8"
        hex"0000000000000000000000000000000013e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
        hex"000000000000000000000000000000000d1b3cc2c7027888be51d9ef691d77bcb679afda66c73f17f9ee3837a55024f78c71363275a75d75d86bab79f74782aa"
        hex"0000000000000000000000000000000013fa4d4a0ad8b1ce186ed5061789213d993923066dddaf1040bc3ff59f825c78df74f2d75467e25e0f55f8a00fa030ed";

    /// @notice The governance contract whose network `verifyAppKey` checks statements of.
    address public immutable governance;

    /// @notice `input` is not `expected` bytes long.
    error InvalidLength(string input, uint256 expected, uint256 actual);
    /// @notice A coordinate of `input` is not a canonical field element (padding not zero, or >= p).
    error NotCanonical(string input);
    /// @notice `input` is the point at infinity, which no honest key or signature is.
    error IdentityPoint(string input);
    /// @notice `input` is not a point of the curve.
    error NotOnCurve(string input);
    /// @notice `input` is on the curve but not in the prime-order subgroup.
    error NotInSubgroup(string input);
    /// @notice The domain separation tag is not 1..255 bytes (RFC 9380).
    error InvalidDst(uint256 length);
    /// @notice The key certified by a statement is empty.
    error EmptyKey();
    /// @notice The chain has no precompile at `precompile` (EIP-2537 needs the Prague hardfork).
    error PrecompileUnavailable(address precompile);
    /// @notice A precompile refused input this contract built itself (never with a correct chain).
    error PrecompileFailed(address precompile);

    constructor(address governance_) {
        governance = governance_;
    }

    /// @notice Whether `signature` is the network's signature of `message` under `publicKey`.
    /// @param publicKey PK2 of the generation that signed, G2 uncompressed (256 bytes).
    /// @param signature the combined threshold signature, G1 uncompressed (128 bytes).
    function verify(bytes calldata publicKey, bytes calldata message, bytes calldata signature)
        external
        view
        returns (bool)
    {
        return _verify(publicKey, hashToG1(message, SIGNATURE_DST), signature);
    }

    /// @notice Whether `signature` certifies that app `appId` of this network holds `key`
    ///         (the `tkms-app-pubkey:v1` statement on this chain and `governance`).
    function verifyAppKey(
        bytes calldata publicKey,
        address appId,
        bytes calldata key,
        bytes calldata signature
    ) external view returns (bool) {
        return _verify(publicKey, hashToG1(appKeyStatement(appId, key), SIGNATURE_DST), signature);
    }

    /// @notice `tkms-app-pubkey:v1` ‖ chain id ‖ governance ‖ app id ‖ key, each part preceded
    ///         by its length as 4 bytes (`mpc.encoding.frame`): what the network signs.
    function appKeyStatement(address appId, bytes memory key) public view returns (bytes memory) {
        if (key.length == 0) revert EmptyKey();
        return abi.encodePacked(
            uint32(18),
            APP_PUBKEY_LABEL,
            uint32(32),
            block.chainid,
            uint32(20),
            governance,
            uint32(20),
            appId,
            uint32(key.length),
            key
        );
    }

    /// @notice RFC 9380 hash_to_curve, suite BLS12381G1_XMD:SHA-256_SSWU_RO_, with tag `dst`;
    ///         the point uncompressed (128 bytes).
    function hashToG1(bytes memory message, bytes memory dst) public view returns (bytes memory) {
        bytes32[4] memory uniform = expandMessageXmd(message, dst);
        bytes memory q0 = _mapToG1(_reduce(uniform[0], uniform[1]));
        bytes memory q1 = _mapToG1(_reduce(uniform[2], uniform[3]));
        // MAP_FP_TO_G1 clears the cofactor of each point; clearing is linear, so the sum of the
        // cleared points is RFC 9380's clear_cofactor(Q0 + Q1).
        return _mustCall(BLS12_G1ADD, abi.encodePacked(q0, q1), G1_POINT_SIZE, G1ADD_GAS);
    }

    /// @notice RFC 9380 expand_message_xmd with SHA-256 and 128 output bytes (two field
    ///         elements of hash_to_field with L = 64), as four 32-byte blocks.
    function expandMessageXmd(bytes memory message, bytes memory dst)
        public
        pure
        returns (bytes32[4] memory blocks)
    {
        if (dst.length == 0 || dst.length > 255) revert InvalidDst(dst.length);
        bytes memory dstPrime = abi.encodePacked(dst, uint8(dst.length));
        // Z_pad (64 zero bytes) ‖ msg ‖ I2OSP(128, 2) ‖ I2OSP(0, 1) ‖ DST_prime
        bytes32 b0 = sha256(
            abi.encodePacked(bytes32(0), bytes32(0), message, uint16(128), uint8(0), dstPrime)
        );
        blocks[0] = sha256(abi.encodePacked(b0, uint8(1), dstPrime));
        for (uint8 i = 1; i < 4; ++i) {
            blocks[i] = sha256(abi.encodePacked(b0 ^ blocks[i - 1], i + 1, dstPrime));
        }
    }

    function _verify(bytes calldata publicKey, bytes memory messagePoint, bytes calldata signature)
        private
        view
        returns (bool)
    {
        _checkEncoding(publicKey, G2_POINT_SIZE, "public key");
        _checkEncoding(signature, G1_POINT_SIZE, "signature");
        bytes memory input = abi.encodePacked(signature, NEG_G2_GENERATOR, messagePoint, publicKey);
        (bool ok, bytes memory output) = _call(BLS12_PAIRING_CHECK, input, 32, PAIRING_2_GAS);
        if (!ok) _diagnose(publicKey, signature);
        return uint256(bytes32(output)) == 1;
    }

    /// @dev Length, canonical coordinates, not the identity: checked here, so the error is
    ///      precise; on-curve and subgroup membership are the precompile's checks.
    function _checkEncoding(bytes calldata point, uint256 size, string memory input) private pure {
        if (point.length != size) revert InvalidLength(input, size, point.length);
        bool identity = true;
        for (uint256 i = 0; i < size; i += 64) {
            uint256 hi = uint256(bytes32(point[i:i + 32]));
            uint256 lo = uint256(bytes32(point[i + 32:i + 64]));
            if (hi > P_HI || (hi == P_HI && lo >= P_LO)) revert NotCanonical(input);
            if (hi | lo != 0) identity = false;
        }
        if (identity) revert IdentityPoint(input);
    }

    /// @dev The pairing refused canonical, non-identity points: name the one that is off the
    ///      curve or outside the subgroup (only on this failure path, so valid calls pay nothing).
    function _diagnose(bytes calldata publicKey, bytes calldata signature) private view {
        if (!_succeeds(BLS12_G2ADD, abi.encodePacked(publicKey, new bytes(256)), 256, G2ADD_GAS)) {
            revert NotOnCurve("public key");
        }
        if (!_succeeds(BLS12_G1ADD, abi.encodePacked(signature, new bytes(128)), 128, G1ADD_GAS)) {
            revert NotOnCurve("signature");
        }
        if (!_succeeds(BLS12_G2MSM, abi.encodePacked(publicKey, uint256(1)), 256, G2MSM_GAS)) {
            revert NotInSubgroup("public key");
        }
        if (!_succeeds(BLS12_G1MSM, abi.encodePacked(signature, uint256(1)), 128, G1MSM_GAS)) {
            revert NotInSubgroup("signature");
        }
        revert PrecompileFailed(BLS12_PAIRING_CHECK);
    }

    /// @dev OS2IP(64 bytes) mod p with the modexp precompile (x^1 mod p), as a 64-byte element.
    function _reduce(bytes32 hi, bytes32 lo) private view returns (bytes memory) {
        bytes memory input =
            abi.encodePacked(uint256(64), uint256(1), uint256(64), hi, lo, uint8(1), P_HI, P_LO);
        return _mustCall(MODEXP, input, 64, MODEXP_GAS);
    }

    function _mapToG1(bytes memory element) private view returns (bytes memory) {
        return _mustCall(BLS12_MAP_FP_TO_G1, element, G1_POINT_SIZE, MAP_FP_TO_G1_GAS);
    }

    function _succeeds(address precompile, bytes memory input, uint256 size, uint256 gasLimit)
        private
        view
        returns (bool ok)
    {
        (ok,) = _call(precompile, input, size, gasLimit);
    }

    function _mustCall(address precompile, bytes memory input, uint256 size, uint256 gasLimit)
        private
        view
        returns (bytes memory output)
    {
        bool ok;
        (ok, output) = _call(precompile, input, size, gasLimit);
        if (!ok) revert PrecompileFailed(precompile);
    }

    /// @dev A call to an address without code succeeds with no output: a chain without the
    ///      precompile must not read as a failed or, worse, a passed check.
    function _call(address precompile, bytes memory input, uint256 size, uint256 gasLimit)
        private
        view
        returns (bool ok, bytes memory output)
    {
        (ok, output) = precompile.staticcall{gas: gasLimit}(input);
        if (ok && output.length != size) revert PrecompileUnavailable(precompile);
    }
}
