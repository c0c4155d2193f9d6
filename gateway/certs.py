"""The gateway's wildcard certificate: reuse the sealed one, or issue, seal and renew it.

Rules:
* The certificate key is generated inside the gateway and kept only in the sealed store
  (item `tls-key`); the chain is sealed beside it (`tls-chain`) so that it cannot be swapped
  for one of another key, and so that a restart does not order a new certificate.
* A sealed chain is reused only if it came from the same ACME directory, its leaf is for the
  sealed key, names `*.<base>` and `<base>`, and is more than `renew_before` seconds away from
  expiry. Otherwise a new one is issued for the same key.
* CAA pinning: before the account orders anything, the base domain's CAA `issue` and
  `issuewild` records are set through the DNS provider to allow only this account, only by
  DNS-01 (`gateway.dns01.caa_value`). This happens before every issuance, and at start-up
  whenever the sealed record of the last pin (`caa-pinned`) differs from what the current
  account and issuer need: a new ACME account is pinned before it is used.
* Whenever a certificate is taken into use, `on_certificate(chain_pem, key_pem)` is called so
  the TLS front can load it; `key_pem` is the unsealed key and must not be logged or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Callable

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.acme_client import AcmeError, AcmeIssuer, IssuedCertificate, caa_record
from gateway.dns01 import DnsError, DnsProvider, caa_value
from gateway.keystore import SealedStore

log = structlog.get_logger("tkms.gateway.certs")

KEY_ITEM = "tls-key"
CHAIN_ITEM = "tls-chain"
CHAIN_CA_ITEM = "tls-chain-ca"  # the ACME directory URL the sealed chain came from
ACCOUNT_ITEM = "acme-account-uri"
CAA_ITEM = "caa-pinned"  # the CAA value last written to the zone (issuer, account, method)
_DAY = 86400.0


class CertificateManager:
    """Keeps a valid certificate for `*.base_domain` and `base_domain` (see module rules)."""

    def __init__(
        self,
        store: SealedStore,
        issuer: AcmeIssuer,
        base_domain: str,
        dns: DnsProvider,
        on_certificate: Callable[[bytes, bytes], None],
        *,
        renew_before: float = 30 * _DAY,
        caa_issuer: str = "letsencrypt.org",
        retry_after: float = 300.0,
        issue_timeout: float = 60.0,
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.base_domain = base_domain.lower().rstrip(".")
        self.names = (f"*.{self.base_domain}", self.base_domain)
        self.dns = dns
        self.on_certificate = on_certificate
        self.renew_before = renew_before
        self.caa_issuer = caa_issuer
        self.retry_after = retry_after
        self.issue_timeout = issue_timeout
        self._current: IssuedCertificate | None = None
        self._account_uri: str | None = None

    @property
    def current(self) -> IssuedCertificate | None:
        """The certificate in use, once `ensure()` has run."""
        return self._current

    @property
    def account_uri(self) -> str | None:
        """The ACME account URI (from the sealed store or the server), once `ensure()` has run."""
        return self._account_uri

    def caa_records(self) -> str:
        """The CAA zone lines the gateway pins for the base domain (for the operator to see)."""
        if self._account_uri is None:
            raise AcmeError("the ACME account is not known yet: call ensure() first")
        return caa_record(self.base_domain, self.caa_issuer, self._account_uri)

    def seconds_until_renewal(self, now: datetime.datetime | None = None) -> float:
        """Seconds until the current certificate is due for renewal (<= 0: due; no cert: 0)."""
        return 0.0 if self._current is None else self._due_in(self._current, now)

    def _due_in(self, cert: IssuedCertificate, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return (cert.not_after - now).total_seconds() - self.renew_before

    def ensure(self) -> IssuedCertificate:
        """Load a usable sealed certificate or issue one; hand it to `on_certificate`."""
        key = self.store.load_or_create_key(KEY_ITEM)
        cert = self._sealed_certificate(key)
        stored_uri = self.store.get(ACCOUNT_ITEM)
        if cert is None or stored_uri is None:
            self._account_uri = self.issuer.register()
            if stored_uri is None or stored_uri.decode() != self._account_uri:
                self.store.put(ACCOUNT_ITEM, self._account_uri.encode())
        else:
            self._account_uri = stored_uri.decode()
        try:
            pin = caa_value(self.caa_issuer, self._account_uri)
        except ValueError as exc:
            raise AcmeError(f"cannot pin CAA for {self.base_domain}: {exc}") from None
        pinned = self.store.get(CAA_ITEM)
        if cert is None or pinned is None or pinned.decode() != pin:
            # Before the account orders: a CA checking CAA must find this account allowed.
            self.dns.set_caa(self.base_domain, pin)
            self.store.put(CAA_ITEM, pin.encode())
            log.info("caa_pinned", base=self.base_domain, value=pin)
        if cert is None:
            cert = self.issuer.issue(self.names, key, self.dns, timeout=self.issue_timeout)
            self.store.put(CHAIN_ITEM, cert.chain_pem)
            self.store.put(CHAIN_CA_ITEM, self.issuer.directory_url.encode())
            log.info("certificate_issued", base=self.base_domain, not_after=_iso(cert))
        else:
            log.info("certificate_reused", base=self.base_domain, not_after=_iso(cert))
        self._current = cert
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.on_certificate(cert.chain_pem, key_pem)
        return cert

    def _sealed_certificate(self, key: ec.EllipticCurvePrivateKey) -> IssuedCertificate | None:
        """The sealed chain if it may still be used, else None (with the reason logged)."""
        chain_pem = self.store.get(CHAIN_ITEM)
        if chain_pem is None:
            return None
        source = self.store.get(CHAIN_CA_ITEM)
        if source is None or source.decode() != self.issuer.directory_url:
            # Another CA (or another Pebble run, whose root is new): clients trust that one now.
            log.info(
                "certificate_other_ca", base=self.base_domain, directory=self.issuer.directory_url
            )
            return None
        try:
            cert = IssuedCertificate.from_chain_pem(chain_pem)
        except ValueError:
            log.warning("certificate_unreadable", base=self.base_domain)
            return None
        leaf = cert.leaf
        if leaf.public_key() != key.public_key():
            log.warning("certificate_other_key", base=self.base_domain)
            return None
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = set(san.value.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = set()
        if not set(self.names) <= names:
            log.info("certificate_other_names", base=self.base_domain, names=sorted(names))
            return None
        if self._due_in(cert) <= 0:
            log.info("certificate_due", base=self.base_domain, not_after=_iso(cert))
            return None
        return cert

    async def run(self, stop: asyncio.Event) -> None:
        """Renew in the background until `stop` is set.

        ACME and DNS failures are logged and retried every `retry_after` seconds while the old
        certificate keeps serving; a sealed-store failure (tampering, wrong key) propagates.
        """
        while not stop.is_set():
            delay = self.seconds_until_renewal()
            if delay > 0:
                # Sleep in bounded steps so that a changed clock is noticed within a day.
                await _wait(stop, min(delay, _DAY))
                continue
            try:
                await asyncio.to_thread(self.ensure)
            except (AcmeError, DnsError, OSError) as exc:
                log.warning("certificate_renewal_failed", base=self.base_domain, error=str(exc))
                await _wait(stop, self.retry_after)
                continue
            if self.seconds_until_renewal() <= 0:
                # A certificate shorter-lived than renew_before: do not re-order in a loop.
                await _wait(stop, self.retry_after)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))


def _iso(cert: IssuedCertificate) -> str:
    return cert.not_after.isoformat()
