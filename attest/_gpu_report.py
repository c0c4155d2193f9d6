"""NVIDIA Hopper (H100) attestation reports: strict parsing of SPDM GET_MEASUREMENTS evidence.

An H100 in confidential-computing mode answers the driver's attestation request with an SPDM
1.1 transcript (DMTF DSP0274): the GET_MEASUREMENTS request the driver sent, followed by the
GPU's MEASUREMENTS response, signed by the GPU's attestation key. All integers little-endian::

    request  (37 bytes)  0 SPDMVersion 0x11 | 1 code 0xE0 | 2 Param1 (bit 0: signature wanted)
                         3 Param2 (0xFF: all measurements) | 4 Nonce (32) | 36 SlotIDParam
    response             0 SPDMVersion | 1 code 0x60 | 2 Param1 | 3 Param2 | 4 NumberOfBlocks
                         5 MeasurementRecordLength (u24) | 8 MeasurementRecord
                         8+L Nonce (32, the GPU's) | 40+L OpaqueLength (u16) | 42+L OpaqueData
                         42+L+O Signature (96 bytes: r ‖ s, big-endian, ECDSA P-384/SHA-384)

Each measurement block is Index (1), MeasurementSpecification (1, must be 1 = DMTF),
MeasurementSize (u16), then the DMTF measurement: ValueType (1), ValueSize (u16), Value.
OpaqueData is a list of (DataType u16, DataSize u16, Data): NVIDIA's fields, among them the
driver and VBIOS versions (3, 6) and the FWID (20) that the attestation certificate names.
The signature covers everything before it: request ‖ response without the signature.

These are *unverified* values; `verify_gpu_report` (attest/_gpu_verify.py) vouches for one.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest.errors import AttestError

__all__ = [
    "GPU_REQUEST_SIZE",
    "GPU_SIGNATURE_SIZE",
    "GpuEvidenceError",
    "GpuMeasurement",
    "GpuReport",
    "parse_gpu_report",
]

GPU_REQUEST_SIZE = 37
GPU_SIGNATURE_SIZE = 96  # Hopper: ECDSA P-384, r ‖ s
SPDM_VERSION_1_1 = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
DMTF_SPECIFICATION = 1
#: OpaqueData types NVIDIA defines (nvtrust's verifier names them OPAQUE_FIELD_ID_*).
OPAQUE_DRIVER_VERSION = 3
OPAQUE_VBIOS_VERSION = 6
OPAQUE_FWID = 20


class GpuEvidenceError(AttestError):
    """GPU evidence that is malformed or does not verify; `field` and `offset` say where."""

    def __init__(self, message: str, *, field: str, offset: int | None = None) -> None:
        where = f"{field}" if offset is None else f"{field} at byte offset {offset}"
        super().__init__(f"{message} ({where})")
        self.field = field
        self.offset = offset

    def diagnostics(self) -> str:
        return f"GPU evidence rejected: {self}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuMeasurement:
    """One DMTF measurement block of the response."""

    index: int
    value_type: int
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuReport:
    """A parsed (unverified) Hopper attestation report."""

    raw: bytes
    spdm_version: int
    nonce: bytes  # the requester's (driver's) nonce: what binds the report to a request
    responder_nonce: bytes
    measurements: tuple[GpuMeasurement, ...]
    opaque: tuple[tuple[int, bytes], ...]
    signature: bytes

    @property
    def signed_region(self) -> bytes:
        return self.raw[: len(self.raw) - GPU_SIGNATURE_SIZE]

    def opaque_field(self, data_type: int) -> bytes | None:
        """The first OpaqueData field of `data_type`, or None."""
        return next((value for t, value in self.opaque if t == data_type), None)

    @property
    def fwid(self) -> bytes | None:
        return self.opaque_field(OPAQUE_FWID)

    @property
    def driver_version(self) -> str:
        """The driver version field (NUL-terminated ASCII), "" when absent."""
        value = self.opaque_field(OPAQUE_DRIVER_VERSION) or b""
        return value.split(b"\0", 1)[0].decode("ascii", "replace")

    @property
    def vbios_version(self) -> str:
        """The VBIOS version as NVIDIA prints it (``96.00.9f.00.01``), "" when absent: the
        8-byte little-endian value's low word, then its third byte, as dotted hex pairs."""
        value = self.opaque_field(OPAQUE_VBIOS_VERSION)
        if value is None or len(value) != 8:
            return ""
        digits = f"{int.from_bytes(value, 'little'):016x}"
        digits = digits[8:] + digits[6:8]
        return ".".join(digits[i : i + 2] for i in range(0, len(digits), 2))


class _Reader:
    """Bounds-checked reads; `base` makes the offsets in errors the report's."""

    def __init__(self, raw: bytes, base: int = 0) -> None:
        self.raw = raw
        self.pos = 0
        self.base = base

    def take(self, n: int, field: str) -> bytes:
        if n > len(self.raw) - self.pos:
            raise GpuEvidenceError(
                f"report truncated: {field} needs {n} bytes, {len(self.raw) - self.pos} left",
                field=field,
                offset=self.base + self.pos,
            )
        chunk = self.raw[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int, field: str) -> int:
        return int.from_bytes(self.take(n, field), "little")

    def expect(self, n: int, field: str, wanted: int, what: str) -> int:
        start = self.base + self.pos
        value = self.uint(n, field)
        if value != wanted:
            raise GpuEvidenceError(
                f"{field} is 0x{value:x}, expected 0x{wanted:x} ({what})", field=field, offset=start
            )
        return value


def _measurements(record: bytes, count: int, base: int) -> tuple[GpuMeasurement, ...]:
    r = _Reader(record, base)
    blocks = []
    for i in range(count):
        where = f"measurement_record[{i}]"
        start = base + r.pos
        index = r.uint(1, f"{where}.index")
        r.expect(1, f"{where}.specification", DMTF_SPECIFICATION, "DMTF")
        size = r.uint(2, f"{where}.size")
        body = _Reader(r.take(size, f"{where}.measurement"), base + r.pos)
        value_type = body.uint(1, f"{where}.value_type")
        value_size = body.uint(2, f"{where}.value_size")
        if value_size != size - 3:
            raise GpuEvidenceError(
                f"DMTF value size {value_size} does not fill the block of {size} bytes",
                field=f"{where}.value_size",
                offset=start + 5,
            )
        blocks.append(
            GpuMeasurement(index=index, value_type=value_type, value=body.take(value_size, where))
        )
    if r.pos != len(record):
        raise GpuEvidenceError(
            f"{len(record) - r.pos} bytes after the last of {count} measurement blocks",
            field="measurement_record",
            offset=base + r.pos,
        )
    return tuple(blocks)


def _opaque(data: bytes, base: int) -> tuple[tuple[int, bytes], ...]:
    r = _Reader(data, base)
    fields: list[tuple[int, bytes]] = []
    while r.pos < len(data):
        i = len(fields)
        data_type = r.uint(2, f"opaque_data[{i}].type")
        size = r.uint(2, f"opaque_data[{i}].size")
        fields.append((data_type, r.take(size, f"opaque_data[{i}] (type {data_type})")))
    return tuple(fields)


def parse_gpu_report(raw: bytes) -> GpuReport:
    """Parse a Hopper attestation report; `GpuEvidenceError` names the field and offset."""
    raw = bytes(raw)
    r = _Reader(raw)
    version = r.expect(1, "request.spdm_version", SPDM_VERSION_1_1, "SPDM 1.1")
    r.expect(1, "request.code", GET_MEASUREMENTS, "GET_MEASUREMENTS")
    param1 = r.uint(1, "request.param1")
    if not param1 & 1:
        raise GpuEvidenceError(
            "the request did not ask for a signature", field="request.param1", offset=2
        )
    r.uint(1, "request.param2")
    nonce = r.take(32, "request.nonce")
    r.take(1, "request.slot_id")
    r.expect(1, "response.spdm_version", version, "the request's version")
    r.expect(1, "response.code", MEASUREMENTS, "MEASUREMENTS")
    r.take(2, "response.params")
    count = r.uint(1, "response.number_of_blocks")
    length = r.uint(3, "response.measurement_record_length")
    base = r.pos
    measurements = _measurements(r.take(length, "response.measurement_record"), count, base)
    responder_nonce = r.take(32, "response.nonce")
    opaque_length = r.uint(2, "response.opaque_length")
    base = r.pos
    opaque = _opaque(r.take(opaque_length, "response.opaque_data"), base)
    left = len(raw) - r.pos
    if left != GPU_SIGNATURE_SIZE:
        raise GpuEvidenceError(
            f"{left} bytes follow the opaque data; the signature is {GPU_SIGNATURE_SIZE}",
            field="response.signature",
            offset=r.pos,
        )
    return GpuReport(
        raw=raw,
        spdm_version=version,
        nonce=nonce,
        responder_nonce=responder_nonce,
        measurements=measurements,
        opaque=opaque,
        signature=r.take(GPU_SIGNATURE_SIZE, "response.signature"),
    )
