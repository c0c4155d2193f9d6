"""TEE evidence: TDX quotes, DCAP, event logs, app identity, RA-TLS, providers (DESIGN §4)."""

from attest._binding import (
    BindingError,
    BindingLabel,
    compute_report_data,
    node_binding_content,
    verify_report_data,
)
from attest._ccel import parse_ccel
from attest._eventlog import (
    DSTACK_RUNTIME_EVENT_TYPE,
    EventLogEntry,
    EventLogError,
    event_log_to_json,
    parse_event_log,
)
from attest._identity import (
    AppIdentity,
    IdentityError,
    KeyProvider,
    compute_app_identity,
    expected_mr_config_id,
    has_runtime_events,
)
from attest._quote import parse_quote
from attest._quote_pck import PckInfo, read_pck_info
from attest._quote_types import QeReport, Quote, QuoteHeader, QuoteSignature, TdReport
from attest._replay import (
    ReplayedRtmrs,
    ReplayError,
    replay_rtmrs,
    runtime_event_digest,
    verify_replay,
)
from attest.errors import (
    AttestError,
    CollateralError,
    PolicyError,
    QuoteParseError,
    UnsupportedQuoteError,
    VerificationError,
)

__all__ = [
    "DSTACK_RUNTIME_EVENT_TYPE",
    "AppIdentity",
    "BindingError",
    "BindingLabel",
    "EventLogEntry",
    "EventLogError",
    "IdentityError",
    "KeyProvider",
    "ReplayError",
    "ReplayedRtmrs",
    "compute_app_identity",
    "compute_report_data",
    "event_log_to_json",
    "expected_mr_config_id",
    "has_runtime_events",
    "node_binding_content",
    "parse_ccel",
    "parse_event_log",
    "replay_rtmrs",
    "runtime_event_digest",
    "verify_replay",
    "verify_report_data",
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
