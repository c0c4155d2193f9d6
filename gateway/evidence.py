"""The gateway's evidence for its domain: what `/.dstack/acme-info`, `/.dstack/app-info` and the
challenge endpoint serve (docs/gateway-evidence.md).

dstack's shapes and bindings, so dstack's own verifiers (trust-center, ct_monitor) read them:

* the ACME account: a quote with report_data = SHA-512("acme-account:" ‖ account URI), made
  when the account is known (`quote_account`);
* every certificate key the gateway has served: a quote with report_data =
  SHA-512("zt-cert:" ‖ SPKI DER), made before the key is first used (`quote_certificate`), kept
  in the sealed store so the history survives restarts (`quoted_hist_keys`);
* the gateway CVM's own `/Info` (`app_info`).

Those quotes are as old as the key; anyone could replay them. The challenge adds freshness:
the verifier sends a nonce and gets a quote made now over SHA-512("tkms-zt-challenge:v1:" ‖
frame(nonce, live certificate SPKI, account URI)) (`attest.zt_challenge_content`).

Evidence is never optional: a quote the agent cannot make is an `EvidenceError`, which stops
the gateway at start (the operator sees it) and is answered as an error, never as an empty
field, by the endpoints.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest import BindingLabel, compute_report_data, zt_challenge_content
from attest.errors import AttestError
from gateway.agent import AgentError, GuestAgent
from gateway.keystore import SealedStore

#: The sealed item holding the quoted certificate keys (public data; sealed for integrity).
HISTORY_ITEM = "zt-cert-quotes"
#: How many past certificate keys stay listed.
HISTORY_LIMIT = 16


class EvidenceError(Exception):
    """The gateway cannot produce (or does not have) a piece of its evidence; says which."""


@dataclass(frozen=True)
class QuotedKey:
    """dstack's `QuotedPublicKey`: a certificate key with its `zt-cert:` quote and attestation."""

    public_key: bytes  # SPKI DER
    quote: str  # the agent's GetQuote answer, as JSON text
    attestation: str  # the agent's Attest answer, as JSON text

    def to_json(self) -> dict[str, str]:
        return {
            "public_key": self.public_key.hex(),
            "quote": self.quote,
            "attestation": self.attestation,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuotedKey:
        return cls(bytes.fromhex(data["public_key"]), data["quote"], data["attestation"])


def leaf_spki(chain_pem: bytes) -> bytes:
    """The SPKI DER of the first certificate of a PEM chain."""
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    return leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


class GatewayEvidence:
    """Quotes through the gateway's own guest agent, and the documents the endpoints serve.

    Thread-safe: quotes are taken in worker threads (the agent client blocks)."""

    def __init__(self, agent: GuestAgent, store: SealedStore | None = None) -> None:
        self._agent = agent
        self._store = store
        self._lock = threading.Lock()
        self._account: tuple[str, str, str] | None = None  # uri, quote, attestation
        self._history: list[QuotedKey] = self._load_history()
        self._quoted_now: set[bytes] = set()  # keys quoted by this process
        self._live: bytes | None = None

    def _load_history(self) -> list[QuotedKey]:
        raw = self._store.get(HISTORY_ITEM) if self._store is not None else None
        if raw is None:
            return []
        try:
            return [QuotedKey.from_json(entry) for entry in json.loads(raw)]
        except (ValueError, KeyError, TypeError) as exc:
            raise EvidenceError(f"sealed {HISTORY_ITEM} is unreadable: {exc}") from None

    def _quote(self, what: str, report_data: bytes, *, attest: bool = True) -> tuple[str, str]:
        """(GetQuote JSON, Attest JSON or "") for `report_data`; EvidenceError naming `what`."""
        body: dict[str, object] = {"report_data": report_data.hex()}
        try:
            quote = self._agent.call("/GetQuote", body)
            attestation = self._agent.call("/Attest", body) if attest else {}
        except AgentError as exc:
            raise EvidenceError(f"cannot quote {what}: {exc}") from None
        if not isinstance(quote.get("quote"), str) or not quote["quote"]:
            raise EvidenceError(f"cannot quote {what}: the agent's GetQuote has no quote")
        compact = (",", ":")
        return json.dumps(quote, separators=compact), (
            json.dumps(attestation, separators=compact) if attest else ""
        )

    def quote_account(self, account_uri: str) -> None:
        """Quote the ACME account URI (`acme-account:`); raises EvidenceError."""
        if not account_uri:
            raise EvidenceError("no ACME account URI to quote")
        report_data = compute_report_data(BindingLabel.ACME_ACCOUNT, account_uri.encode())
        quote, attestation = self._quote(f"the ACME account {account_uri}", report_data)
        with self._lock:
            self._account = (account_uri, quote, attestation)

    def quote_certificate(self, chain_pem: bytes) -> None:
        """Quote the key of `chain_pem`'s leaf (`zt-cert:`) unless this process already did,
        record it in the history, and make it the live key. Call before the key is served."""
        spki = leaf_spki(chain_pem)
        if spki not in self._quoted_now:
            report_data = compute_report_data(BindingLabel.ZT_CERT, spki)
            quote, attestation = self._quote("the certificate key", report_data)
            entry = QuotedKey(spki, quote, attestation)
            with self._lock:
                history = [e for e in self._history if e.public_key != spki]
                self._history = [entry, *history][:HISTORY_LIMIT]
                self._quoted_now.add(spki)
                if self._store is not None:
                    data = json.dumps([e.to_json() for e in self._history]).encode()
                    self._store.put(HISTORY_ITEM, data)
        with self._lock:
            self._live = spki

    @property
    def account_uri(self) -> str | None:
        with self._lock:
            return self._account[0] if self._account else None

    def acme_info(self) -> dict[str, Any]:
        """dstack's `AcmeInfoResponse` as JSON (bytes as hex), newest key first."""
        with self._lock:
            account, history = self._account, list(self._history)
        if account is None:
            raise EvidenceError("the ACME account is not quoted yet")
        uri, quote, attestation = account
        return {
            "account_uri": uri,
            "quoted_hist_keys": [entry.to_json() for entry in history],
            "account_quote": quote,
            "account_attestation": attestation,
        }

    def app_info(self) -> dict[str, Any]:
        """The gateway CVM's `/Info` from its agent (dstack's `/.dstack/app-info`)."""
        try:
            return self._agent.call("/Info", {})
        except AgentError as exc:
            raise EvidenceError(f"cannot read the gateway's app info: {exc}") from None

    def challenge(self, nonce: bytes) -> dict[str, Any]:
        """A quote made now binding `nonce`, the live certificate key and the account URI."""
        with self._lock:
            account, live = self._account, self._live
        if account is None or live is None:
            raise EvidenceError("no certificate or ACME account is in use yet")
        try:
            content = zt_challenge_content(nonce, live, account[0])
        except AttestError as exc:
            raise ValueError(str(exc)) from None
        report_data = compute_report_data(BindingLabel.ZT_CHALLENGE_V1, content)
        quote, _ = self._quote("the challenge", report_data, attest=False)
        return {
            "label": BindingLabel.ZT_CHALLENGE_V1.value.decode(),
            "nonce": nonce.hex(),
            "public_key": live.hex(),
            "account_uri": account[0],
            "report_data": report_data.hex(),
            "quote": quote,
        }
