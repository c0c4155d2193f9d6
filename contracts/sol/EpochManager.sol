// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./NodeRegistry.sol";

/// @title Epochs and key generations: the on-chain half of DKG and resharing (design §3.2-3.3).
/// @notice The chain is the broadcast channel; it checks who may say what and when, never the
///         curve math, which every node verifies itself. Rules:
///         - one epoch runs at a time; the owner proposes it with its committee, threshold, kind
///           and phase lengths in blocks: Deal, then Complain, then Justify, then Confirm;
///         - DKG starts generation 1 and ROTATE generation g+1 (dealers: the new members);
///           RESHARE and REFRESH move the latest generation to a new committee (dealers: the
///           members of its active epoch); REFRESH keeps committee and threshold;
///         - an epoch activates as soon as `threshold` members confirmed the same
///           (digest, public polynomial, PK2); a reshare must keep the generation's key;
///         - after the Confirm deadline anyone may time a running epoch out (FAILED); the owner
///           may cancel it at any time;
///         - a node the owner removed can no longer deal, complain or confirm; an accused dealer
///           may still justify (publishing a share only informs);
///         - a rotation starts the retirement window of the previous generation; after it anyone
///           may retire that generation, and the owner may retire it at once.
abstract contract EpochManager is NodeRegistry {
    enum EpochKind {
        DKG,
        RESHARE,
        REFRESH,
        ROTATE
    }
    enum EpochStatus {
        None,
        Running,
        Active,
        Superseded,
        Failed
    }
    enum Phase {
        None,
        Deal,
        Complain,
        Justify,
        Confirm,
        Expired,
        Finished
    }
    enum GenerationStatus {
        None,
        Active,
        Retiring,
        Retired
    }
    enum FailReason {
        Timeout,
        Cancelled
    }

    struct Epoch {
        EpochKind kind;
        EpochStatus status;
        uint64 generation;
        uint64 previousEpoch;
        uint16 threshold;
        uint16 previousThreshold;
        uint64 proposedAt;
        uint64 dealDeadline;
        uint64 complaintDeadline;
        uint64 justifyDeadline;
        uint64 confirmDeadline;
        uint64 finishedAt;
        address[] members;
        address[] dealers;
        bytes32 digest;
        bytes publicPolynomial;
        bytes pk2;
    }

    struct Deal {
        bytes commitments;
        bytes pk2Part;
        bytes proof;
        uint64 submittedAt;
    }

    struct Complaint {
        address accuser;
        address accused;
        bool justified;
        bytes share;
    }

    struct Generation {
        GenerationStatus status;
        uint64 activeEpoch;
        uint64 activatedAt;
        uint64 retireAfter;
        bytes pk1;
        bytes pk2;
    }

    uint256 public constant G1_LENGTH = 48;
    uint256 public constant G2_LENGTH = 96;
    uint256 public constant SCALAR_LENGTH = 32;
    uint256 public constant MAX_PROOF_LENGTH = 512;
    uint256 public constant MAX_MEMBERS = 64;

    uint64 public epochCount;
    uint64 public runningEpoch;
    uint64 public latestGeneration;
    uint64 public retirementWindow;

    mapping(uint64 => Epoch) private _epochs;
    mapping(uint64 => Generation) private _generations;
    mapping(uint64 => mapping(address => uint256)) public memberIndex; // 1-based; 0 = not a member
    mapping(uint64 => mapping(address => uint256)) public dealerIndex;
    mapping(uint64 => mapping(address => Deal)) private _deals;
    mapping(uint64 => Complaint[]) private _complaints;
    mapping(uint64 => mapping(address => mapping(address => uint256))) private _complaintSlot;
    mapping(uint64 => mapping(address => bytes32)) public confirmationOf;
    mapping(uint64 => mapping(bytes32 => uint256)) private _votes;

    event EpochProposed(
        uint64 indexed epoch,
        uint64 indexed generation,
        EpochKind kind,
        address[] members,
        uint16 threshold,
        uint64 dealDeadline,
        uint64 complaintDeadline,
        uint64 justifyDeadline,
        uint64 confirmDeadline
    );
    event DealSubmitted(
        uint64 indexed epoch, address indexed dealer, bytes commitments, bytes pk2Part, bytes proof
    );
    event ComplaintFiled(uint64 indexed epoch, address indexed accuser, address indexed accused);
    event ComplaintJustified(
        uint64 indexed epoch, address indexed accuser, address indexed accused, bytes share
    );
    event Confirmed(uint64 indexed epoch, address indexed member, bytes32 digest, uint256 votes);
    event EpochActivated(
        uint64 indexed epoch, uint64 indexed generation, bytes32 digest, bytes publicPolynomial, bytes pk2
    );
    event EpochSuperseded(uint64 indexed epoch, uint64 indexed successor);
    event EpochFailed(uint64 indexed epoch, FailReason reason);
    event GenerationRetiring(uint64 indexed generation, uint64 retireAfter);
    event GenerationRetired(uint64 indexed generation);
    event RetirementWindowSet(uint64 blocks);

    error EpochInProgress(uint64 epoch);
    error NoSuchEpoch(uint64 epoch);
    error EpochNotRunning(uint64 epoch, EpochStatus status);
    error WrongPhase(uint64 epoch, Phase expected, Phase actual);
    error InvalidThreshold(uint256 threshold, uint256 members);
    error InvalidPhaseLength(uint256 phase);
    error DuplicateMember(address node);
    error GenerationExists(uint64 generation);
    error NoActiveGeneration();
    error RefreshChangesCommittee();
    error NotADealer(uint64 epoch, address caller);
    error NotAMember(uint64 epoch, address caller);
    error DealAlreadySubmitted(uint64 epoch, address dealer);
    error ComplaintExists(uint64 epoch, address accuser, address accused);
    error NoSuchComplaint(uint64 epoch, address accuser, address accused);
    error AlreadyJustified(uint64 epoch, address accuser, address accused);
    error AlreadyConfirmed(uint64 epoch, address member);
    error GroupKeyChanged(uint64 epoch);
    error DeadlineNotPassed(uint64 epoch, uint64 deadline);
    error GenerationNotRetiring(uint64 generation, GenerationStatus status);
    error RetirementWindowOpen(uint64 generation, uint64 retireAfter);

    function setRetirementWindow(uint64 blocks) external onlyOwner {
        _setRetirementWindow(blocks);
    }

    /// @param phaseBlocks lengths in blocks of Deal, Complain, Justify and Confirm (each >= 1).
    function proposeEpoch(
        EpochKind kind,
        address[] calldata members,
        uint16 threshold,
        uint64[4] calldata phaseBlocks
    ) external onlyOwner returns (uint64 epochId) {
        if (runningEpoch != 0) revert EpochInProgress(runningEpoch);
        uint256 n = members.length;
        if (n == 0 || n > MAX_MEMBERS) revert InvalidLength("members", n, 1, MAX_MEMBERS);
        if (threshold == 0 || threshold > n) revert InvalidThreshold(threshold, n);
        for (uint256 p = 0; p < 4; p++) {
            if (phaseBlocks[p] == 0) revert InvalidPhaseLength(p);
        }
        epochId = ++epochCount;
        Epoch storage epoch = _epochs[epochId];
        for (uint256 i = 0; i < n; i++) {
            _requireApproved(members[i]);
            if (memberIndex[epochId][members[i]] != 0) revert DuplicateMember(members[i]);
            memberIndex[epochId][members[i]] = i + 1;
        }
        epoch.members = members;
        epoch.kind = kind;
        epoch.threshold = threshold;
        _setDealers(epochId, epoch, kind);
        epoch.status = EpochStatus.Running;
        epoch.proposedAt = uint64(block.number);
        epoch.dealDeadline = uint64(block.number) + phaseBlocks[0];
        epoch.complaintDeadline = epoch.dealDeadline + phaseBlocks[1];
        epoch.justifyDeadline = epoch.complaintDeadline + phaseBlocks[2];
        epoch.confirmDeadline = epoch.justifyDeadline + phaseBlocks[3];
        runningEpoch = epochId;
        emit EpochProposed(
            epochId,
            epoch.generation,
            kind,
            members,
            threshold,
            epoch.dealDeadline,
            epoch.complaintDeadline,
            epoch.justifyDeadline,
            epoch.confirmDeadline
        );
    }

    function submitDeal(
        uint64 epochId,
        bytes calldata commitments,
        bytes calldata pk2Part,
        bytes calldata proof
    ) external {
        Epoch storage epoch = _inPhase(epochId, Phase.Deal);
        if (dealerIndex[epochId][msg.sender] == 0) revert NotADealer(epochId, msg.sender);
        _requireApproved(msg.sender);
        Deal storage deal = _deals[epochId][msg.sender];
        if (deal.submittedAt != 0) revert DealAlreadySubmitted(epochId, msg.sender);
        _requireLength("commitments", commitments.length, epoch.threshold * G1_LENGTH);
        _requireLength("pk2Part", pk2Part.length, G2_LENGTH);
        if (proof.length == 0 || proof.length > MAX_PROOF_LENGTH) {
            revert InvalidLength("proof", proof.length, 1, MAX_PROOF_LENGTH);
        }
        deal.commitments = commitments;
        deal.pk2Part = pk2Part;
        deal.proof = proof;
        deal.submittedAt = uint64(block.number);
        emit DealSubmitted(epochId, msg.sender, commitments, pk2Part, proof);
    }

    function complain(uint64 epochId, address accused) external {
        _inPhase(epochId, Phase.Complain);
        if (memberIndex[epochId][msg.sender] == 0) revert NotAMember(epochId, msg.sender);
        _requireApproved(msg.sender);
        if (dealerIndex[epochId][accused] == 0) revert NotADealer(epochId, accused);
        if (_complaintSlot[epochId][accused][msg.sender] != 0) {
            revert ComplaintExists(epochId, msg.sender, accused);
        }
        _complaints[epochId].push(Complaint(msg.sender, accused, false, ""));
        _complaintSlot[epochId][accused][msg.sender] = _complaints[epochId].length;
        emit ComplaintFiled(epochId, msg.sender, accused);
    }

    /// @notice The accused dealer answers a complaint by publishing the accuser's share.
    function justify(uint64 epochId, address accuser, bytes calldata share) external {
        _inPhase(epochId, Phase.Justify);
        uint256 slot = _complaintSlot[epochId][msg.sender][accuser];
        if (slot == 0) revert NoSuchComplaint(epochId, accuser, msg.sender);
        Complaint storage complaint = _complaints[epochId][slot - 1];
        if (complaint.justified) revert AlreadyJustified(epochId, accuser, msg.sender);
        _requireLength("share", share.length, SCALAR_LENGTH);
        complaint.justified = true;
        complaint.share = share;
        emit ComplaintJustified(epochId, accuser, msg.sender, share);
    }

    /// @notice Votes for (digest, public polynomial, PK2); `threshold` equal votes activate.
    function confirm(
        uint64 epochId,
        bytes32 digest,
        bytes calldata publicPolynomial,
        bytes calldata pk2
    ) external {
        Epoch storage epoch = _inPhase(epochId, Phase.Confirm);
        if (memberIndex[epochId][msg.sender] == 0) revert NotAMember(epochId, msg.sender);
        _requireApproved(msg.sender);
        if (confirmationOf[epochId][msg.sender] != bytes32(0)) {
            revert AlreadyConfirmed(epochId, msg.sender);
        }
        _requireLength("publicPolynomial", publicPolynomial.length, epoch.threshold * G1_LENGTH);
        _requireLength("pk2", pk2.length, G2_LENGTH);
        if (epoch.kind == EpochKind.RESHARE || epoch.kind == EpochKind.REFRESH) {
            Generation storage generation = _generations[epoch.generation];
            if (
                keccak256(publicPolynomial[0:G1_LENGTH]) != keccak256(generation.pk1)
                    || keccak256(pk2) != keccak256(generation.pk2)
            ) revert GroupKeyChanged(epochId);
        }
        // The tally key covers the polynomial and PK2, not only the digest: a member voting for
        // the honest digest with a forged polynomial only opens a bucket of its own.
        bytes32 key = keccak256(abi.encode(digest, publicPolynomial, pk2));
        confirmationOf[epochId][msg.sender] = key;
        uint256 votes = ++_votes[epochId][key];
        emit Confirmed(epochId, msg.sender, digest, votes);
        if (votes >= epoch.threshold) _activate(epochId, epoch, digest, publicPolynomial, pk2);
    }

    function timeoutEpoch(uint64 epochId) external {
        Epoch storage epoch = _running(epochId);
        if (block.number <= epoch.confirmDeadline) {
            revert DeadlineNotPassed(epochId, epoch.confirmDeadline);
        }
        _fail(epochId, epoch, FailReason.Timeout);
    }

    function cancelEpoch(uint64 epochId) external onlyOwner {
        _fail(epochId, _running(epochId), FailReason.Cancelled);
    }

    function retireGeneration(uint64 generationId) external {
        Generation storage generation = _generations[generationId];
        if (generation.status != GenerationStatus.Retiring) {
            revert GenerationNotRetiring(generationId, generation.status);
        }
        if (msg.sender != owner && block.number <= generation.retireAfter) {
            revert RetirementWindowOpen(generationId, generation.retireAfter);
        }
        generation.status = GenerationStatus.Retired;
        emit GenerationRetired(generationId);
    }

    function getEpoch(uint64 epochId) external view returns (Epoch memory) {
        return _epochs[epochId];
    }

    function epochPhase(uint64 epochId) public view returns (Phase) {
        Epoch storage epoch = _epochs[epochId];
        if (epoch.status == EpochStatus.None) return Phase.None;
        if (epoch.status != EpochStatus.Running) return Phase.Finished;
        if (block.number <= epoch.dealDeadline) return Phase.Deal;
        if (block.number <= epoch.complaintDeadline) return Phase.Complain;
        if (block.number <= epoch.justifyDeadline) return Phase.Justify;
        if (block.number <= epoch.confirmDeadline) return Phase.Confirm;
        return Phase.Expired;
    }

    function getDeal(uint64 epochId, address dealer) external view returns (Deal memory) {
        return _deals[epochId][dealer];
    }

    function getComplaints(uint64 epochId) external view returns (Complaint[] memory) {
        return _complaints[epochId];
    }

    function getGeneration(uint64 generationId) external view returns (Generation memory) {
        return _generations[generationId];
    }

    function voteCount(uint64 epochId, bytes32 digest, bytes calldata publicPolynomial, bytes calldata pk2)
        external
        view
        returns (uint256)
    {
        return _votes[epochId][keccak256(abi.encode(digest, publicPolynomial, pk2))];
    }

    function _setRetirementWindow(uint64 blocks) internal {
        retirementWindow = blocks;
        emit RetirementWindowSet(blocks);
    }

    function _setDealers(uint64 epochId, Epoch storage epoch, EpochKind kind) private {
        if (kind == EpochKind.DKG || kind == EpochKind.ROTATE) {
            if (kind == EpochKind.DKG && latestGeneration != 0) revert GenerationExists(latestGeneration);
            if (kind == EpochKind.ROTATE && latestGeneration == 0) revert NoActiveGeneration();
            epoch.generation = latestGeneration + 1;
            epoch.dealers = epoch.members;
            for (uint256 i = 0; i < epoch.members.length; i++) {
                dealerIndex[epochId][epoch.members[i]] = i + 1;
            }
            return;
        }
        if (latestGeneration == 0) revert NoActiveGeneration();
        uint64 previousId = _generations[latestGeneration].activeEpoch;
        Epoch storage previous = _epochs[previousId];
        if (
            kind == EpochKind.REFRESH
                && (
                    previous.threshold != epoch.threshold
                        || keccak256(abi.encode(previous.members)) != keccak256(abi.encode(epoch.members))
                )
        ) revert RefreshChangesCommittee();
        epoch.generation = latestGeneration;
        epoch.previousEpoch = previousId;
        epoch.previousThreshold = previous.threshold;
        epoch.dealers = previous.members;
        for (uint256 i = 0; i < previous.members.length; i++) {
            dealerIndex[epochId][previous.members[i]] = i + 1;
        }
    }

    function _activate(
        uint64 epochId,
        Epoch storage epoch,
        bytes32 digest,
        bytes calldata publicPolynomial,
        bytes calldata pk2
    ) private {
        epoch.status = EpochStatus.Active;
        epoch.digest = digest;
        epoch.publicPolynomial = publicPolynomial;
        epoch.pk2 = pk2;
        epoch.finishedAt = uint64(block.number);
        runningEpoch = 0;
        emit EpochActivated(epochId, epoch.generation, digest, publicPolynomial, pk2);
        Generation storage generation = _generations[epoch.generation];
        if (epoch.kind == EpochKind.RESHARE || epoch.kind == EpochKind.REFRESH) {
            _epochs[epoch.previousEpoch].status = EpochStatus.Superseded;
            generation.activeEpoch = epochId;
            emit EpochSuperseded(epoch.previousEpoch, epochId);
            return;
        }
        generation.status = GenerationStatus.Active;
        generation.activeEpoch = epochId;
        generation.activatedAt = uint64(block.number);
        generation.pk1 = publicPolynomial[0:G1_LENGTH];
        generation.pk2 = pk2;
        if (latestGeneration != 0) {
            Generation storage previous = _generations[latestGeneration];
            previous.status = GenerationStatus.Retiring;
            previous.retireAfter = uint64(block.number) + retirementWindow;
            emit GenerationRetiring(latestGeneration, previous.retireAfter);
        }
        latestGeneration = epoch.generation;
    }

    function _fail(uint64 epochId, Epoch storage epoch, FailReason reason) private {
        epoch.status = EpochStatus.Failed;
        epoch.finishedAt = uint64(block.number);
        runningEpoch = 0;
        emit EpochFailed(epochId, reason);
    }

    function _running(uint64 epochId) private view returns (Epoch storage epoch) {
        epoch = _epochs[epochId];
        if (epoch.status == EpochStatus.None) revert NoSuchEpoch(epochId);
        if (epoch.status != EpochStatus.Running) revert EpochNotRunning(epochId, epoch.status);
    }

    function _inPhase(uint64 epochId, Phase expected) private view returns (Epoch storage epoch) {
        epoch = _running(epochId);
        Phase actual = epochPhase(epochId);
        if (actual != expected) revert WrongPhase(epochId, expected, actual);
    }

    function _requireLength(string memory field, uint256 length, uint256 expected) private pure {
        if (length != expected) revert InvalidLength(field, length, expected, expected);
    }
}
