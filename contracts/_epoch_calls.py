"""KmsGovernance's epochs and key generations (design §3.2-3.3), as client calls.

Points are passed as sequences of compressed encodings (G1 48 bytes, G2 96 bytes) and checked
for length before anything is sent; the contract stores them as concatenated bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts._base import ContractClient
from contracts._calldata import Posted, Posting, posted_argument
from contracts._hexargs import parse_address, parse_bytes32
from contracts._tx import Receipt
from contracts._types import (
    BlockRef,
    ComplaintInfo,
    DealInfo,
    EpochInfo,
    EpochKind,
    EpochStatus,
    GenerationInfo,
    GenerationStatus,
    Phase,
    RefreshSchedule,
    split_points,
)
from contracts.errors import InvalidInput

G1_LENGTH = 48
G2_LENGTH = 96
REVEAL_LENGTH = 112
ANSWER_LENGTH = 32
#: EpochManager.MIN_PHASE_BLOCKS: the shortest phase the contract accepts.
MIN_PHASE_BLOCKS = 3
PHASE_NAMES = ("keys", "deal", "complain", "justify", "confirm")


def _require_length(argument: str, value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise InvalidInput(argument, f"expected {length} bytes, got {len(value)}")
    return value


def check_phase_blocks(phase_blocks: Sequence[int]) -> None:
    """Refuse (InvalidInput) what `proposeEpoch` would revert on, naming the phase."""
    if len(phase_blocks) != len(PHASE_NAMES):
        raise InvalidInput(
            "phase_blocks",
            f"need {len(PHASE_NAMES)} lengths {PHASE_NAMES}, got {len(phase_blocks)}",
        )
    for name, blocks in zip(PHASE_NAMES, phase_blocks, strict=True):
        if blocks < MIN_PHASE_BLOCKS:
            raise InvalidInput(
                "phase_blocks", f"{name} phase of {blocks} blocks, at least {MIN_PHASE_BLOCKS}"
            )


def _uint64(argument: str, value: int) -> int:
    if isinstance(value, bool) or not 0 <= value < 2**64:
        raise InvalidInput(argument, f"must be a whole number of blocks 0..2^64-1, got {value}")
    return value


def _points(argument: str, points: Sequence[bytes], size: int) -> bytes:
    for i, point in enumerate(points):
        _require_length(f"{argument}[{i}]", point, size)
    return b"".join(points)


class EpochCalls(ContractClient):
    """The epoch and generation functions of KmsGovernance."""

    def get_epoch_count(self, *, block: BlockRef = "latest") -> int:
        return int(self._read("epochCount", block=block))

    def get_running_epoch(self, *, block: BlockRef = "latest") -> int:
        return int(self._read("runningEpoch", block=block))

    def get_latest_generation(self, *, block: BlockRef = "latest") -> int:
        return int(self._read("latestGeneration", block=block))

    def get_retirement_window(self, *, block: BlockRef = "latest") -> int:
        return int(self._read("retirementWindow", block=block))

    def get_epoch(self, epoch: int, *, block: BlockRef = "latest") -> EpochInfo:
        raw = self._read("getEpoch", epoch, block=block)
        return EpochInfo(
            epoch=epoch,
            kind=EpochKind(raw[0]),
            status=EpochStatus(raw[1]),
            generation=int(raw[2]),
            previous_epoch=int(raw[3]),
            threshold=int(raw[4]),
            previous_threshold=int(raw[5]),
            participants=int(raw[6]),
            keys_posted=int(raw[7]),
            proposed_at=int(raw[8]),
            keys_deadline=int(raw[9]),
            deal_deadline=int(raw[10]),
            complaint_deadline=int(raw[11]),
            justify_deadline=int(raw[12]),
            confirm_deadline=int(raw[13]),
            finished_at=int(raw[14]),
            members=tuple(str(m) for m in raw[15]),
            dealers=tuple(str(d) for d in raw[16]),
            digest=bytes(raw[17]),
            public_polynomial=split_points(bytes(raw[18]), G1_LENGTH),
            pk2=bytes(raw[19]),
        )

    def get_phase(self, epoch: int, *, block: BlockRef = "latest") -> Phase:
        return Phase(self._read("epochPhase", epoch, block=block))

    def get_deal(self, epoch: int, dealer: str, *, block: BlockRef = "latest") -> DealInfo:
        raw = self._read("getDeal", epoch, parse_address("dealer", dealer), block=block)
        return DealInfo(
            commitments=split_points(bytes(raw[0]), G1_LENGTH),
            pk2_part=bytes(raw[1]),
            proof=bytes(raw[2]),
            shares_hash=bytes(raw[3]),
            submitted_at=int(raw[4]),
        )

    def get_epoch_key_hash(self, epoch: int, node: str, *, block: BlockRef = "latest") -> bytes:
        """keccak256 of the key `node` posted in `epoch`; 32 zero bytes if it posted none."""
        return bytes(self._read("epochKeyHash", epoch, parse_address("node", node), block=block))

    def get_complaints(self, epoch: int, *, block: BlockRef = "latest") -> list[ComplaintInfo]:
        return [
            ComplaintInfo(
                accuser=str(c[0]),
                accused=str(c[1]),
                reveal=bytes(c[2]),
                justified=bool(c[3]),
                answer=bytes(c[4]),
            )
            for c in self._read("getComplaints", epoch, block=block)
        ]

    def fetch_epoch_key(
        self, epoch: int, node: str, *, block: int | None = None, since: int | None = None
    ) -> Posted:
        """The key `node` posted in `epoch` as of `block` (default: the head), read from its
        transaction (`contracts._calldata`); `since` (default: the proposal block) bounds the
        search for its event."""
        end = self.w3.eth.block_number if block is None else block
        key_hash = self.get_epoch_key_hash(epoch, node, block=end)
        if key_hash == bytes(32):
            return None
        start = self.get_epoch(epoch, block=end).proposed_at if since is None else since
        return posted_argument(
            self,
            Posting("EpochKeyPosted", "postEpochKey", "key"),
            epoch=epoch,
            poster=node,
            blocks=(start, end),
            expected_hash=key_hash,
        )

    def fetch_deal_shares(self, epoch: int, dealer: str, *, deal: DealInfo) -> Posted:
        """The sealed shares sent with `deal`, read from its transaction and hash-checked."""
        if deal.submitted_at == 0:
            return None
        return posted_argument(
            self,
            Posting("DealSubmitted", "submitDeal", "shares"),
            epoch=epoch,
            poster=dealer,
            blocks=(deal.submitted_at, deal.submitted_at),
            expected_hash=deal.shares_hash,
        )

    def get_generation(self, generation: int, *, block: BlockRef = "latest") -> GenerationInfo:
        raw = self._read("getGeneration", generation, block=block)
        return GenerationInfo(
            generation=generation,
            status=GenerationStatus(raw[0]),
            active_epoch=int(raw[1]),
            activated_at=int(raw[2]),
            retire_after=int(raw[3]),
            pk1=bytes(raw[4]),
            pk2=bytes(raw[5]),
        )

    def get_vote_count(
        self,
        epoch: int,
        digest: bytes,
        public_polynomial: Sequence[bytes],
        pk2: bytes,
        *,
        block: BlockRef = "latest",
    ) -> int:
        poly = _points("public_polynomial", public_polynomial, G1_LENGTH)
        args = (
            epoch,
            parse_bytes32("digest", digest),
            poly,
            _require_length("pk2", pk2, G2_LENGTH),
        )
        return int(self._read("voteCount", *args, block=block))

    def has_confirmed(self, epoch: int, member: str, *, block: BlockRef = "latest") -> bool:
        key = self._read("confirmationOf", epoch, parse_address("member", member), block=block)
        return bytes(key) != bytes(32)

    def send_set_retirement_window(self, blocks: int) -> Receipt:
        return self._send("setRetirementWindow", _uint64("blocks", blocks))

    def get_refresh_schedule(self, *, block: BlockRef = "latest") -> RefreshSchedule:
        return RefreshSchedule(
            interval=int(self._read("refreshInterval", block=block)),
            phase_blocks=tuple(  # type: ignore[arg-type]
                int(self._read("refreshPhases", p, block=block)) for p in range(len(PHASE_NAMES))
            ),
        )

    def send_set_refresh_schedule(
        self, interval: int, phase_blocks: tuple[int, int, int, int, int]
    ) -> Receipt:
        """`interval` blocks from the end of an epoch to the next refresh anyone may propose
        (0 turns the schedule off); the contract checks `phase_blocks` only when that refresh
        is proposed, so they are checked here first."""
        _uint64("interval", interval)
        if interval:
            check_phase_blocks(phase_blocks)
        return self._send(
            "setRefreshSchedule", interval, [_uint64("phase_blocks", b) for b in phase_blocks]
        )

    def get_refresh_due_at(self, *, block: BlockRef = "latest") -> int | None:
        """The first block at which anyone may propose the scheduled refresh, or None without a
        schedule or while an epoch runs: `refreshInterval` after the last epoch ended."""
        interval = int(self._read("refreshInterval", block=block))
        if interval == 0 or self.get_running_epoch(block=block) != 0:
            return None
        last = self.get_epoch_count(block=block)
        finished = self.get_epoch(last, block=block).finished_at if last else 0
        return finished + interval

    def send_propose_epoch(
        self,
        kind: EpochKind,
        members: Sequence[str],
        threshold: int,
        phase_blocks: tuple[int, int, int, int, int],
    ) -> tuple[Receipt, int]:
        """Proposes an epoch; returns the receipt and the new epoch's id.

        `phase_blocks`: lengths of Keys, Deal, Complain, Justify and Confirm, each at least
        MIN_PHASE_BLOCKS.
        """
        addresses = [parse_address(f"members[{i}]", m) for i, m in enumerate(members)]
        if not 1 <= threshold <= len(addresses):
            raise InvalidInput("threshold", f"must be 1..{len(addresses)}, got {threshold}")
        check_phase_blocks(phase_blocks)
        receipt = self._send("proposeEpoch", int(kind), addresses, threshold, list(phase_blocks))
        (event,) = self.event_args(receipt, "EpochProposed")
        return receipt, int(event["epoch"])

    def send_post_epoch_key(self, epoch: int, key: bytes) -> Receipt:
        if not key:
            raise InvalidInput("key", "must not be empty")
        return self._send("postEpochKey", epoch, key)

    def send_submit_deal(
        self,
        epoch: int,
        commitments: Sequence[bytes],
        pk2_part: bytes,
        proof: bytes,
        shares: bytes,
    ) -> Receipt:
        if not shares:
            raise InvalidInput("shares", "must not be empty")
        return self._send(
            "submitDeal",
            epoch,
            _points("commitments", commitments, G1_LENGTH),
            _require_length("pk2_part", pk2_part, G2_LENGTH),
            proof,
            shares,
        )

    def send_complain(self, epoch: int, accused: str, reveal: bytes) -> Receipt:
        reveal = _require_length("reveal", reveal, REVEAL_LENGTH)
        return self._send("complain", epoch, parse_address("accused", accused), reveal)

    def send_justify(self, epoch: int, accuser: str, answer: bytes) -> Receipt:
        answer = _require_length("answer", answer, ANSWER_LENGTH)
        return self._send("justify", epoch, parse_address("accuser", accuser), answer)

    def send_confirm(
        self, epoch: int, digest: bytes, public_polynomial: Sequence[bytes], pk2: bytes
    ) -> Receipt:
        return self._send(
            "confirm",
            epoch,
            parse_bytes32("digest", digest),
            _points("public_polynomial", public_polynomial, G1_LENGTH),
            _require_length("pk2", pk2, G2_LENGTH),
        )

    def send_timeout_epoch(self, epoch: int) -> Receipt:
        return self._send("timeoutEpoch", epoch)

    def send_cancel_epoch(self, epoch: int) -> Receipt:
        return self._send("cancelEpoch", epoch)

    def send_retire_generation(self, generation: int) -> Receipt:
        return self._send("retireGeneration", generation)
