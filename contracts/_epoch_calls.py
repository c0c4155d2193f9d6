"""KmsGovernance's epochs and key generations (design §3.2-3.3), as client calls.

Points are passed as sequences of compressed encodings (G1 48 bytes, G2 96 bytes) and checked
for length before anything is sent; the contract stores them as concatenated bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts._base import ContractClient
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
    split_points,
)
from contracts.errors import InvalidInput

G1_LENGTH = 48
G2_LENGTH = 96
SCALAR_LENGTH = 32


def _require_length(argument: str, value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise InvalidInput(argument, f"expected {length} bytes, got {len(value)}")
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
            proposed_at=int(raw[6]),
            deal_deadline=int(raw[7]),
            complaint_deadline=int(raw[8]),
            justify_deadline=int(raw[9]),
            confirm_deadline=int(raw[10]),
            finished_at=int(raw[11]),
            members=tuple(str(m) for m in raw[12]),
            dealers=tuple(str(d) for d in raw[13]),
            digest=bytes(raw[14]),
            public_polynomial=split_points(bytes(raw[15]), G1_LENGTH),
            pk2=bytes(raw[16]),
        )

    def get_phase(self, epoch: int, *, block: BlockRef = "latest") -> Phase:
        return Phase(self._read("epochPhase", epoch, block=block))

    def get_deal(self, epoch: int, dealer: str, *, block: BlockRef = "latest") -> DealInfo:
        raw = self._read("getDeal", epoch, parse_address("dealer", dealer), block=block)
        return DealInfo(
            commitments=split_points(bytes(raw[0]), G1_LENGTH),
            pk2_part=bytes(raw[1]),
            proof=bytes(raw[2]),
            submitted_at=int(raw[3]),
        )

    def get_complaints(self, epoch: int, *, block: BlockRef = "latest") -> list[ComplaintInfo]:
        return [
            ComplaintInfo(
                accuser=str(c[0]), accused=str(c[1]), justified=bool(c[2]), share=bytes(c[3])
            )
            for c in self._read("getComplaints", epoch, block=block)
        ]

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
        return self._send("setRetirementWindow", blocks)

    def send_propose_epoch(
        self,
        kind: EpochKind,
        members: Sequence[str],
        threshold: int,
        phase_blocks: tuple[int, int, int, int],
    ) -> tuple[Receipt, int]:
        """Proposes an epoch; returns the receipt and the new epoch's id."""
        addresses = [parse_address(f"members[{i}]", m) for i, m in enumerate(members)]
        if not 1 <= threshold <= len(addresses):
            raise InvalidInput("threshold", f"must be 1..{len(addresses)}, got {threshold}")
        receipt = self._send("proposeEpoch", int(kind), addresses, threshold, list(phase_blocks))
        (event,) = self.event_args(receipt, "EpochProposed")
        return receipt, int(event["epoch"])

    def send_submit_deal(
        self, epoch: int, commitments: Sequence[bytes], pk2_part: bytes, proof: bytes
    ) -> Receipt:
        return self._send(
            "submitDeal",
            epoch,
            _points("commitments", commitments, G1_LENGTH),
            _require_length("pk2_part", pk2_part, G2_LENGTH),
            proof,
        )

    def send_complain(self, epoch: int, accused: str) -> Receipt:
        return self._send("complain", epoch, parse_address("accused", accused))

    def send_justify(self, epoch: int, accuser: str, share: bytes) -> Receipt:
        share = _require_length("share", share, SCALAR_LENGTH)
        return self._send("justify", epoch, parse_address("accuser", accuser), share)

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
