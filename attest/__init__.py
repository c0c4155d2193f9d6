"""TEE evidence: TDX quotes, DCAP, event logs, app identity, RA-TLS, providers (DESIGN §4)."""

from attest._quote import parse_quote
from attest._quote_pck import PckInfo, read_pck_info
from attest._quote_types import QeReport, Quote, QuoteHeader, QuoteSignature, TdReport
from attest.errors import (
    AttestError,
    CollateralError,
    PolicyError,
    QuoteParseError,
    UnsupportedQuoteError,
    VerificationError,
)

__all__ = [
    "AttestError",
    "CollateralError",
    "PckInfo",
    "PolicyError",
    "QeReport",
    "Quote",
    "QuoteHeader",
    "QuoteParseError",
    "QuoteSignature",
    "TdReport",
    "UnsupportedQuoteError",
    "VerificationError",
    "parse_quote",
    "read_pck_info",
]
