// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import "./NodeRegistry.sol";

/// @title Epochs and key generations: the on-chain half of DKG and resharing (design §3.2-3.3).
/// @notice The chain is the broadcast channel; it checks who may say what and when, never the
///         curve math, which every node verifies itself. Rules:
///         - one epoch runs at a time; the owner proposes it with its committee, threshold, kind
///           and phase lengths in blocks (each at least MIN_PHASE_BLOCKS): Keys, then Deal, then
///           Complain, then Justify, then Confirm;
///         - Keys: every member and dealer posts its per-epoch key once; the Deal phase starts
///           as soon as all have (or when the Keys phase ends);
///         - Deal: each dealer posts its commitments and, in the same call, its sealed shares;
///           the contract keeps only their hash (nodes read the bytes from the transaction);
///         - a complaint carries the accuser's reveal of one pair's key half, an answer the
///           dealer's other half: no share is ever published;
///         - DKG starts generation 1 and ROTATE generation g+1 (dealers: the new members);
///           RESHARE and REFRESH move the latest generation to a new committee (dealers: the
///           members of its active epoch); REFRESH keeps committee and threshold;
///         - an epoch activates as soon as `threshold` members confirmed the same
///           (digest, public polynomial, PK2); a reshare must keep the generation's key;
///         - after the Confirm deadline anyone may time a running epoch out (FAILED); the owner
///           may cancel it at any time;
///         - with a refresh schedule set by the owner, anyone may propose the REFRESH once it
///           is due (a keeper: proactive security needs no online owner key);
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
        Keys,
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
        uint16 participants;
        uint16 keysPosted;
        uint64 proposedAt;
        uint64 keysDeadline;
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
        bytes32 sharesHash;
        uint64 submittedAt;
    }

    struct Complaint {
        address accuser;
        address accused;
        bytes reveal;
        bool justified;
        bytes answer;
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
    uint256 public constant MAX_PROOF_LENGTH = 512;
    uint256 public constant MAX_MEMBERS = 64;
    /// @notice A member's key is 1296 bytes (X, its proof, an ML-KEM-768 key), a dealer's 112.
    uint256 internal constant MAX_EPOCH_KEY_LENGTH = 2048;
    /// @notice Sealed shares of one dealer: 38 bytes of header and 1137 per member (72,806 at 64).
    uint256 internal constant MAX_SHARES_LENGTH = 73728;
    /// @notice The accuser's DH secret of one pair (48 bytes) and its DLEQ proof (64).
    uint256 internal constant REVEAL_LENGTH = 112;
    /// @notice The accused dealer's ML-KEM secret of that pair.
    uint256 internal constant ANSWER_LENGTH = 32;
    /// @notice Nodes judge a phase once its deadline block has a few confirmations and must get
    ///         their write mined before the next deadline (docs/node-epochs.md): shorter phases
    ///         leave no block for that and make the protocol silently unusable.
    uint64 internal constant MIN_PHASE_BLOCKS = 3;

    uint64 public epochCount;
    uint64 public runningEpoch;
    uint64 public latestGeneration;
    uint64 public retirementWindow;
    /// @notice Blocks from the end of the last epoch to the next scheduled refresh; 0: none.
    uint64 public refreshInterval;
    uint64[5] public refreshPhases;

    mapping(uint64 => Epoch) private _epochs;
    mapping(uint64 => Generation) private _generations;
    mapping(uint64 => mapping(address => uint256)) public memberIndex; // 1-based; 0 = not a member
    mapping(uint64 => mapping(address => uint256)) public dealerIndex;
    mapping(uint64 => mapping(address => Deal)) private _deals;
    /// @notice epoch => node => keccak256 of the key it posted (zero: none).
    mapping(uint64 => mapping(address => bytes32)) public epochKeyHash;
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
        uint64 keysDeadline,
        uint64 dealDeadline,
        uint64 complaintDeadline,
        uint64 justifyDeadline,
        uint64 confirmDeadline
    );
    event EpochKeyPosted(uint64 indexed epoch, address indexed node, bytes32 keyHash);
    event DealSubmitted(
        uint64 indexed epoch,
        address indexed dealer,
        bytes commitments,
        bytes pk2Part,
        bytes proof,
        bytes32 sharesHash
    );
    event ComplaintFiled(
        uint64 indexed epoch, address indexed accuser, address indexed accused, bytes reveal
    );
    event ComplaintJustified(
        uint64 indexed epoch, address indexed accuser, address indexed accused, bytes answer
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
    event RefreshScheduleSet(uint64 interval, uint64[5] phaseBlocks);

    error EpochInProgress(uint64 epoch);
    error NoSuchEpoch(uint64 epoch);
    error EpochNotRunning(uint64 epoch, EpochStatus status);
    error WrongPhase(uint64 epoch, Phase expected, Phase actual);
    error InvalidThreshold(uint256 threshold, uint256 members);
    error PhaseTooShort(uint256 phase, uint64 blocks, uint64 minimum);
    error DuplicateMember(address node);
    error GenerationExists(uint64 generation);
    error NoActiveGeneration();
    error RefreshChangesCommittee();
    error NotADealer(uint64 epoch, address caller);
    error NotAMember(uint64 epoch, address caller);
    error NotAParticipant(uint64 epoch, address caller);
    error EpochKeyAlreadyPosted(uint64 epoch, address node);
    error DealAlreadySubmitted(uint64 epoch, address dealer);
    error ComplaintExists(uint64 epoch, address accuser, address accused);
    error NoSuchComplaint(uint64 epoch, address accuser, address accused);
    error AlreadyJustified(uint64 epoch, address accuser, address accused);
    error AlreadyConfirmed(uint64 epoch, address member);
    error GroupKeyChanged(uint64 epoch);
    error DeadlineNotPassed(uint64 epoch, uint64 deadline);
    error GenerationNotRetiring(uint64 generation, GenerationStatus status);
    error RetirementWindowOpen(uint64 generation, uint64 retireAfter);
    error RefreshNotDue(uint64 dueAt);
    error RefreshPhasesDiffer();

    function setRetirementWindow(uint64 blocks) external onlyOwner {
        _setRetirementWindow(blocks);
    }

    /// @notice Turns the refresh schedule on (`interval` > 0) or off (0): see `proposeEpoch`.
    ///         The phase lengths are checked when the refresh is proposed (EIP-170 bytes).
    function setRefreshSchedule(uint64 interval, uint64[5] calldata phaseBlocks) external onlyOwner {
        refreshInterval = interval;
        refreshPhases = phaseBlocks;
        emit RefreshScheduleSet(interval, phaseBlocks);
    }

    /// @notice The owner proposes any epoch. Anyone may propose the scheduled refresh: a REFRESH
    ///         (same committee and threshold, checked below) with the schedule's phase lengths,
    ///         once `refreshInterval` blocks passed since the last epoch ended, whatever its
    ///         outcome (a failing refresh is retried no faster than the schedule).
    /// @param phaseBlocks lengths in blocks of Keys, Deal, Complain, Justify and Confirm (each
    ///        >= MIN_PHASE_BLOCKS).
    function proposeEpoch(
        EpochKind kind,
        address[] calldata members,
        uint16 threshold,
        uint64[5] calldata phaseBlocks
    ) external returns (uint64 epochId) {
        if (runningEpoch != 0) revert EpochInProgress(runningEpoch);
        if (msg.sender != owner) _requireScheduledRefresh(kind, phaseBlocks);
        uint256 n = members.length;
        if (n == 0 || n > MAX_MEMBERS) revert InvalidLength("members", n, 1, MAX_MEMBERS);
        if (threshold == 0 || threshold > n) revert InvalidThreshold(threshold, n);
        for (uint256 p = 0; p < 5; p++) {
            if (phaseBlocks[p] < MIN_PHASE_BLOCKS) {
                revert PhaseTooShort(p, phaseBlocks[p], MIN_PHASE_BLOCKS);
            }
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
        epoch.keysDeadline = uint64(block.number) + phaseBlocks[0];
        epoch.dealDeadline = epoch.keysDeadline + phaseBlocks[1];
        epoch.complaintDeadline = epoch.dealDeadline + phaseBlocks[2];
        epoch.justifyDeadline = epoch.complaintDeadline + phaseBlocks[3];
        epoch.confirmDeadline = epoch.justifyDeadline + phaseBlocks[4];
        runningEpoch = epochId;
        emit EpochProposed(
            epochId,
            epoch.generation,
            kind,
            members,
            threshold,
            epoch.keysDeadline,
            epoch.dealDeadline,
            epoch.complaintDeadline,
            epoch.justifyDeadline,
            epoch.confirmDeadline
        );
    }

    /// @notice A member or dealer posts its key for this epoch, once. Only its hash is stored;
    ///         nodes find this call through its event and check its bytes against the hash.
    function postEpochKey(uint64 epochId, bytes calldata key) external {
        Epoch storage epoch = _inPhase(epochId, Phase.Keys);
        if (memberIndex[epochId][msg.sender] == 0 && dealerIndex[epochId][msg.sender] == 0) {
            revert NotAParticipant(epochId, msg.sender);
        }
        _requireApproved(msg.sender);
        if (epochKeyHash[epochId][msg.sender] != 0) revert EpochKeyAlreadyPosted(epochId, msg.sender);
        _requireNonEmpty("key", key.length, MAX_EPOCH_KEY_LENGTH);
        bytes32 keyHash = keccak256(key);
        epochKeyHash[epochId][msg.sender] = keyHash;
        epoch.keysPosted += 1;
        emit EpochKeyPosted(epochId, msg.sender, keyHash);
    }

    /// @param shares the dealer's sealed shares (one bundle); only its hash is stored, nodes
    ///        read the bytes from this call's transaction and check them against it.
    function submitDeal(
        uint64 epochId,
        bytes calldata commitments,
        bytes calldata pk2Part,
        bytes calldata proof,
        bytes calldata shares
    ) external {
        Epoch storage epoch = _inPhase(epochId, Phase.Deal);
        if (dealerIndex[epochId][msg.sender] == 0) revert NotADealer(epochId, msg.sender);
        _requireApproved(msg.sender);
        Deal storage deal = _deals[epochId][msg.sender];
        if (deal.submittedAt != 0) revert DealAlreadySubmitted(epochId, msg.sender);
        _requireLength("commitments", commitments.length, epoch.threshold * G1_LENGTH);
        _requireLength("pk2Part", pk2Part.length, G2_LENGTH);
        _requireNonEmpty("proof", proof.length, MAX_PROOF_LENGTH);
        _requireNonEmpty("shares", shares.length, MAX_SHARES_LENGTH);
        deal.commitments = commitments;
        deal.pk2Part = pk2Part;
        deal.proof = proof;
        deal.sharesHash = keccak256(shares);
        deal.submittedAt = uint64(block.number);
        emit DealSubmitted(epochId, msg.sender, commitments, pk2Part, proof, deal.sharesHash);
    }

    /// @param reveal the accuser's Diffie-Hellman secret with the accused and its DLEQ proof.
    function complain(uint64 epochId, address accused, bytes calldata reveal) external {
        _inPhase(epochId, Phase.Complain);
        if (memberIndex[epochId][msg.sender] == 0) revert NotAMember(epochId, msg.sender);
        _requireApproved(msg.sender);
        if (dealerIndex[epochId][accused] == 0) revert NotADealer(epochId, accused);
        if (_complaintSlot[epochId][accused][msg.sender] != 0) {
            revert ComplaintExists(epochId, msg.sender, accused);
        }
        _requireLength("reveal", reveal.length, REVEAL_LENGTH);
        _complaints[epochId].push(Complaint(msg.sender, accused, reveal, false, ""));
        _complaintSlot[epochId][accused][msg.sender] = _complaints[epochId].length;
        emit ComplaintFiled(epochId, msg.sender, accused, reveal);
    }

    /// @notice The accused dealer answers a complaint with its ML-KEM secret of that one pair;
    ///         with the complaint's reveal everyone can open (only) the disputed share.
    function justify(uint64 epochId, address accuser, bytes calldata answer) external {
        _inPhase(epochId, Phase.Justify);
        uint256 slot = _complaintSlot[epochId][msg.sender][accuser];
        if (slot == 0) revert NoSuchComplaint(epochId, accuser, msg.sender);
        Complaint storage complaint = _complaints[epochId][slot - 1];
        if (complaint.justified) revert AlreadyJustified(epochId, accuser, msg.sender);
        _requireLength("answer", answer.length, ANSWER_LENGTH);
        complaint.justified = true;
        complaint.answer = answer;
        emit ComplaintJustified(epochId, accuser, msg.sender, answer);
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
        if (block.number <= epoch.keysDeadline && epoch.keysPosted < epoch.participants) {
            return Phase.Keys;
        }
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

    function _requireScheduledRefresh(EpochKind kind, uint64[5] calldata phaseBlocks) private view {
        if (kind != EpochKind.REFRESH || refreshInterval == 0) revert NotOwner(msg.sender);
        uint64 dueAt = _epochs[epochCount].finishedAt + refreshInterval;
        if (block.number < dueAt) revert RefreshNotDue(dueAt);
        for (uint256 p = 0; p < 5; p++) {
            if (phaseBlocks[p] != refreshPhases[p]) revert RefreshPhasesDiffer();
        }
    }

    function _setRetirementWindow(uint64 blocks) internal {
        retirementWindow = blocks;
        emit RetirementWindowSet(blocks);
    }

    /// @dev Also counts the participants: the members plus the dealers that are not members.
    function _setDealers(uint64 epochId, Epoch storage epoch, EpochKind kind) private {
        uint256 participants = epoch.members.length;
        if (kind == EpochKind.DKG || kind == EpochKind.ROTATE) {
            if (kind == EpochKind.DKG && latestGeneration != 0) revert GenerationExists(latestGeneration);
            if (kind == EpochKind.ROTATE && latestGeneration == 0) revert NoActiveGeneration();
            epoch.generation = latestGeneration + 1;
            epoch.dealers = epoch.members;
            for (uint256 i = 0; i < epoch.members.length; i++) {
                dealerIndex[epochId][epoch.members[i]] = i + 1;
            }
            epoch.participants = uint16(participants);
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
            if (memberIndex[epochId][previous.members[i]] == 0) participants++;
        }
        epoch.participants = uint16(participants);
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

    function _requireNonEmpty(string memory field, uint256 length, uint256 max) private pure {
        if (length == 0 || length > max) revert InvalidLength(field, length, 1, max);
    }

    function _requireLength(string memory field, uint256 length, uint256 expected) private pure {
        if (length != expected) revert InvalidLength(field, length, expected, expected);
    }
}
