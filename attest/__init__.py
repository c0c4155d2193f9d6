"""TEE evidence: TDX quotes, DCAP, event logs, app identity, RA-TLS, providers (design §4)."""

from attest._binding import (
    BindingError,
    BindingLabel,
    compute_report_data,
    node_binding_content,
    verify_report_data,
)
from attest._ccel import parse_ccel
from attest._collateral import Collateral, collateral_from_json, fetch_collateral, load_collateral
from attest._dcap import VerifiedQuote, verify_quote
from attest._eventlog import (
    DSTACK_RUNTIME_EVENT_TYPE,
    EventLogEntry,
    EventLogError,
    event_log_to_json,
    parse_event_log,
)
from attest._evidence import (
    EvidenceError,
    QuoteVerifier,
    VerifiedEvidence,
    is_simulator_quote,
    make_quote_verifier,
    verify_evidence,
)
from attest._identity import (
    AppIdentity,
    IdentityError,
    KeyProvider,
    compute_app_identity,
    expected_mr_config_id,
    has_runtime_events,
    os_image_hash_of,
)
from attest._quote import parse_quote
from attest._quote_pck import PckInfo, read_pck_info
from attest._quote_types import QeReport, Quote, QuoteHeader, QuoteSignature, TdReport
from attest._ratls import (
    RaTlsAttestation,
    RaTlsError,
    create_ratls_certificate,
    read_ratls_certificate,
    verify_ratls_certificate,
)
from attest._replay import (
    ReplayedRtmrs,
    ReplayError,
    replay_rtmrs,
    runtime_event_digest,
    verify_replay,
)
from attest._tls_pin import (
    NODE_TLS_NAME,
    CertificateFetchError,
    KeyPinError,
    check_key_pin,
    fetch_certificate,
    fetch_context,
    spki_hash,
)
from attest.errors import (
    AttestError,
    CollateralError,
    PolicyError,
    QuoteParseError,
    UnsupportedQuoteError,
    VerificationError,
)
from attest.policy import (
    AllOf,
    NoServiceTd,
    NotDebugTd,
    Policy,
    SeptVeDisabled,
    TcbStatusIn,
    default_policy,
)
from attest.providers import SimulatorAllowed

__all__ = [
    "NODE_TLS_NAME",
    "CertificateFetchError",
    "KeyPinError",
    "check_key_pin",
    "fetch_certificate",
    "fetch_context",
    "spki_hash",
    "EvidenceError",
    "QuoteVerifier",
    "RaTlsAttestation",
    "RaTlsError",
    "SimulatorAllowed",
    "VerifiedEvidence",
    "create_ratls_certificate",
    "is_simulator_quote",
    "make_quote_verifier",
    "read_ratls_certificate",
    "verify_evidence",
    "verify_ratls_certificate",
    "DSTACK_RUNTIME_EVENT_TYPE",
    "AllOf",
    "AppIdentity",
    "AttestError",
    "BindingError",
    "BindingLabel",
    "Collateral",
    "CollateralError",
    "EventLogEntry",
    "EventLogError",
    "IdentityError",
    "KeyProvider",
    "NoServiceTd",
    "NotDebugTd",
    "PckInfo",
    "Policy",
    "PolicyError",
    "QeReport",
    "Quote",
    "QuoteHeader",
    "QuoteParseError",
    "QuoteSignature",
    "ReplayError",
    "ReplayedRtmrs",
    "SeptVeDisabled",
    "TcbStatusIn",
    "TdReport",
    "UnsupportedQuoteError",
    "VerificationError",
    "VerifiedQuote",
    "collateral_from_json",
    "compute_app_identity",
    "compute_report_data",
    "default_policy",
    "event_log_to_json",
    "expected_mr_config_id",
    "fetch_collateral",
    "has_runtime_events",
    "load_collateral",
    "node_binding_content",
    "os_image_hash_of",
    "parse_ccel",
    "parse_event_log",
    "parse_quote",
    "read_pck_info",
    "replay_rtmrs",
    "runtime_event_digest",
    "verify_quote",
    "verify_replay",
    "verify_report_data",
]
