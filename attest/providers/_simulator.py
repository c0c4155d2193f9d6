"""Simulated TDX: TDX-v4-shaped quotes signed by simulator keys, and a simulated RTMR state.

.. warning::
   Simulator quotes prove nothing: the root CA key is public (see `_simulator_ca`). They exist
   so that development and testnets run without TDX hardware, and they verify only under a
   policy that explicitly allows simulators (`SimulatorAllowed`).

The quotes are byte-compatible with real v4 quotes: header, TD 1.0 report, ECDSA-P256
signature by a per-instance attestation key, certification data type 6 (QE report signed by a
per-instance simulator PCK key, QE auth data, and type 5 PEM chain simulator PCK -> simulator
root). They go through the same parser, replay and identity code as real quotes; only the
signature chain differs. MRTD, RTMR0-2 and the other TD fields come from `SimulatorConfig`;
RTMR3 starts at zero and is extended by `extend_rtmr` with dstack's runtime-event digests.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attest._eventlog import DSTACK_RUNTIME_EVENT_TYPE, EventLogEntry
from attest._replay import runtime_event_digest
from attest.providers._base import check_report_data, check_runtime_index
from attest.providers._simulator_ca import issue_simulator_pck, simulator_root_ca

__all__ = ["SIMULATOR_USER_DATA", "SimulatorConfig", "SimulatorProvider"]

#: Header user_data of every simulator quote, so a human reading one knows what it is.
SIMULATOR_USER_DATA = b"tkms-simulator\x00\x00" + bytes(4)
_INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
_SEPT_VE_DISABLE = 1 << 28
_QE_MEASUREMENT = hashlib.sha256(b"tkms simulator quoting enclave").digest()


def _z48() -> bytes:
    return bytes(48)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """The measurements a simulated TD reports. RTMR0-2 stand for firmware/kernel/initrd."""

    mr_td: bytes = field(default_factory=lambda: hashlib.sha384(b"tkms simulator MRTD").digest())
    rtmr0: bytes = field(default_factory=_z48)
    rtmr1: bytes = field(default_factory=_z48)
    rtmr2: bytes = field(default_factory=_z48)
    mr_config_id: bytes = field(default_factory=_z48)
    mr_owner: bytes = field(default_factory=_z48)
    mr_owner_config: bytes = field(default_factory=_z48)
    tee_tcb_svn: bytes = bytes(16)
    td_attributes: int = _SEPT_VE_DISABLE
    xfam: int = 0x61AE7
    ppid: bytes = field(default_factory=lambda: os.urandom(16))

    def __post_init__(self) -> None:
        for name in ("mr_td", "rtmr0", "rtmr1", "rtmr2", "mr_config_id", "mr_owner"):
            if len(getattr(self, name)) != 48:
                raise ValueError(f"{name} must be 48 bytes")
        if len(self.mr_owner_config) != 48 or len(self.tee_tcb_svn) != 16:
            raise ValueError("mr_owner_config must be 48 bytes and tee_tcb_svn 16")
        if len(self.ppid) != 16:
            raise ValueError("ppid must be 16 bytes")


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]


class SimulatorProvider:
    """A `TeeProvider` that signs its own quotes. Thread-safe."""

    name = "simulator"

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._att_key = ec.generate_private_key(ec.SECP256R1())
        self._pck_key = ec.generate_private_key(ec.SECP256R1())
        pck = issue_simulator_pck(self._pck_key.public_key(), ppid=self.config.ppid)
        root, _ = simulator_root_ca()
        self._chain_pem = pck.public_bytes(serialization.Encoding.PEM) + root.public_bytes(
            serialization.Encoding.PEM
        )
        self._rtmr3 = bytes(48)
        self._log: list[EventLogEntry] = []
        self._lock = threading.Lock()
        self._qe_block = self._certification_data()

    @property
    def rtmr3(self) -> bytes:
        """The simulated RTMR3."""
        with self._lock:
            return self._rtmr3

    def extend_rtmr(
        self, index: int, event: str, payload: bytes, *, version: int = 1
    ) -> EventLogEntry:
        check_runtime_index(index)
        digest = runtime_event_digest(event, payload, version)
        entry = EventLogEntry(
            imr=index,
            event_type=DSTACK_RUNTIME_EVENT_TYPE,
            digest=digest,
            event=event,
            event_payload=bytes(payload),
            version=version,
        )
        with self._lock:
            self._rtmr3 = hashlib.sha384(self._rtmr3 + digest).digest()
            self._log.append(entry)
        return entry

    def event_log(self) -> tuple[EventLogEntry, ...]:
        """Runtime events only: the simulator has no boot log (RTMR0-2 come from the config)."""
        with self._lock:
            return tuple(self._log)

    def get_quote(self, report_data: bytes) -> bytes:
        report_data = check_report_data(report_data)
        header = struct.pack("<HHIHH", 4, 2, 0x81, 0, 0) + _INTEL_QE_VENDOR_ID + SIMULATOR_USER_DATA
        signed = header + self._td_report(report_data)
        signature = _raw_sig(self._att_key, signed)
        sig_data = signature + _raw_point(self._att_key.public_key()) + self._qe_block
        return signed + struct.pack("<I", len(sig_data)) + sig_data

    def _td_report(self, report_data: bytes) -> bytes:
        c = self.config
        with self._lock:
            rtmr3 = self._rtmr3
        parts: Sequence[bytes] = (
            c.tee_tcb_svn,
            bytes(48),  # MRSEAM
            bytes(48),  # MRSIGNERSEAM
            bytes(8),  # SEAMATTRIBUTES
            c.td_attributes.to_bytes(8, "little"),
            c.xfam.to_bytes(8, "little"),
            c.mr_td,
            c.mr_config_id,
            c.mr_owner,
            c.mr_owner_config,
            c.rtmr0,
            c.rtmr1,
            c.rtmr2,
            rtmr3,
            report_data,
        )
        return b"".join(parts)

    def _certification_data(self) -> bytes:
        """Type 6 data: QE report, its PCK signature, QE auth data, type 5 PEM chain."""
        auth_data = bytes(range(32))
        att_point = _raw_point(self._att_key.public_key())
        qe_report_data = hashlib.sha256(att_point + auth_data).digest() + bytes(32)
        qe_report = (
            bytes(16)  # CPUSVN
            + bytes(4)  # MISCSELECT
            + bytes(28)
            + bytes(16)  # ATTRIBUTES
            + _QE_MEASUREMENT  # MRENCLAVE
            + bytes(32)
            + _QE_MEASUREMENT  # MRSIGNER
            + bytes(96)
            + struct.pack("<HH", 2, 0)  # ISVPRODID (TD QE = 2), ISVSVN
            + bytes(60)
            + qe_report_data
        )
        inner = struct.pack("<HI", 5, len(self._chain_pem)) + self._chain_pem
        body = (
            qe_report
            + _raw_sig(self._pck_key, qe_report)
            + struct.pack("<H", len(auth_data))
            + auth_data
            + inner
        )
        return struct.pack("<HI", 6, len(body)) + body
