"""Platform data from the PCK leaf certificate's Intel SGX extension (OID 1.2.840.113741.1.13.1).

The extension is parsed by the dcap-qvl wheel (`parse_pck_extension_from_pem`); this module
only wraps the result in a frozen, typed record. Values are *unverified* until the quote has
passed `verify_quote`, which checks the certificate chain they come from.
"""

from __future__ import annotations

from dataclasses import dataclass

import dcap_qvl

from attest._quote_types import Quote
from attest.errors import QuoteParseError


@dataclass(frozen=True, slots=True, kw_only=True)
class PckInfo:
    """What Intel's PCK certificate says about the platform.

    `ppid` is the 16-byte Platform Provisioning ID (dstack's device_id is its SHA-256);
    `cpu_svn`/`pce_svn` are the platform TCB the certificate was issued for; `fmspc` selects
    the TCB info that applies.
    """

    ppid: bytes
    cpu_svn: bytes
    pce_svn: int
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None

    @property
    def fmspc_hex(self) -> str:
        """FMSPC as Intel PCS spells it (upper-case hex), e.g. ``B0C06F000000``."""
        return self.fmspc.hex().upper()


def read_pck_info(quote: Quote) -> PckInfo:
    """Read the SGX extension of the quote's PCK leaf certificate. Unverified."""
    try:
        ext = dcap_qvl.parse_pck_extension_from_pem(quote.pck_chain_pem.rstrip(b"\0"))
    except ValueError as exc:
        raise QuoteParseError(
            f"cannot read the Intel SGX extension of the PCK leaf certificate: {exc}",
            offset=quote.signed_length,
            field="pck_cert_chain",
        ) from exc
    return PckInfo(
        ppid=bytes(ext.ppid),
        cpu_svn=bytes(ext.cpu_svn),
        pce_svn=int(ext.pce_svn),
        pce_id=bytes(ext.pce_id),
        fmspc=bytes(ext.fmspc),
        sgx_type=int(ext.sgx_type),
        platform_instance_id=(
            None if ext.platform_instance_id is None else bytes(ext.platform_instance_id)
        ),
    )
