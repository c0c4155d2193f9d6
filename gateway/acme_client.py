"""Certificates from an ACME server (RFC 8555) with DNS-01 challenges, using certbot's `acme`.

DNS-01 is the challenge that can prove control of a wildcard name, so one order covers
`*.<base>` (terminated connections to any app) and `<base>`. The account key and the
certificate key are P-256 keys the caller keeps sealed (`gateway.keystore`); this module never
writes them anywhere.

CAA pinning (RFC 8659, with the `accounturi` and `validationmethods` parameters of RFC 8657):
with the records of `caa_record(...)` in the zone (`gateway.certs` writes them through the DNS
provider), a CA honouring CAA issues for the base domain only to this gateway's ACME account,
whose key never leaves the gateway's TEE, and only after a DNS-01 validation.

The `acme` library is synchronous (requests); async callers use `asyncio.to_thread`.
Every failure is an `AcmeError` carrying the server's problem detail where there is one.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import structlog
from acme import challenges, client, crypto_util, messages
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from gateway.dns01 import DnsError, DnsProvider, caa_value, caa_zone_lines

if TYPE_CHECKING:
    import requests

log = structlog.get_logger("tkms.gateway.acme")

_BAD_NONCE_ATTEMPTS = 6


class AcmeError(Exception):
    """The ACME server refused, failed or could not be reached; the message says which step."""


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate chain (leaf first, PEM) and the leaf's validity period (UTC)."""

    chain_pem: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime

    @classmethod
    def from_chain_pem(cls, chain_pem: bytes) -> IssuedCertificate:
        """Parse `chain_pem`; raises ValueError if it holds no certificate."""
        leaf = load_chain(chain_pem)[0]
        return cls(chain_pem, leaf.not_valid_before_utc, leaf.not_valid_after_utc)

    @property
    def leaf(self) -> x509.Certificate:
        return load_chain(self.chain_pem)[0]


def load_chain(chain_pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM chain; raises ValueError if there are none."""
    chain = x509.load_pem_x509_certificates(chain_pem)
    if not chain:
        raise ValueError("no certificate in the chain")
    return chain


def caa_record(base_domain: str, issuer_domain: str, account_uri: str) -> str:
    """The CAA zone lines pinning issuance for `base_domain` (and its wildcard) to one account."""
    return "\n".join(caa_zone_lines(base_domain, caa_value(issuer_domain, account_uri)))


class _Network(client.ClientNetwork):
    """acme's network, retrying `badNonce` answers more than once.

    RFC 8555 §6.5 makes badNonce retryable, and servers reject valid nonces now and then (Pebble
    rejects 5% on purpose); acme retries only once, so two rejections in a row would fail an
    issuance that a third attempt completes.
    """

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(1, _BAD_NONCE_ATTEMPTS + 1):
            try:
                return super().post(*args, **kwargs)
            except messages.Error as exc:
                if exc.code != "badNonce" or attempt == _BAD_NONCE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")


class AcmeIssuer:
    """An ACME account at `directory_url` that orders certificates with DNS-01 challenges."""

    def __init__(
        self,
        directory_url: str,
        account_key: ec.EllipticCurvePrivateKey,
        *,
        ca_bundle: str | None = None,
        contact: str | None = None,
        network_timeout: int = 30,
    ) -> None:
        self.directory_url = directory_url
        # An email address, with or without the mailto: scheme (acme adds it).
        self.contact = contact.removeprefix("mailto:") if contact else None
        self._jwk = JWKEC(key=account_key)
        # requests takes a CA bundle path where acme's annotation says bool.
        verify = cast(bool, ca_bundle) if ca_bundle else True
        self._net = _Network(
            self._jwk,
            alg=ES256,
            verify_ssl=verify,
            user_agent="tkms-gateway",
            timeout=network_timeout,
        )
        self._client: client.ClientV2 | None = None
        self._account_uri: str | None = None

    def __repr__(self) -> str:
        return f"AcmeIssuer({self.directory_url!r}, account={self._account_uri!r})"

    @property
    def account_uri(self) -> str | None:
        """The account URI once `register()` has run, else None."""
        return self._account_uri

    def register(self) -> str:
        """Create the account for our key, or find the existing one; returns its URI."""
        if self._account_uri is not None:
            return self._account_uri
        acme = self._directory()
        new = messages.NewRegistration.from_data(email=self.contact, terms_of_service_agreed=True)
        try:
            regr = acme.new_account(new)
        except acme_errors.ConflictError as exists:
            # The server already knows this key: RFC 8555 §7.3.1 answers with its URL.
            regr = messages.RegistrationResource(uri=exists.location, body=messages.Registration())
            self._net.account = regr
        except Exception as exc:
            raise _wrap("registering the account", self.directory_url, exc) from None
        if not regr.uri:
            raise AcmeError(f"registering the account at {self.directory_url}: no account URL")
        self._account_uri = str(regr.uri)
        log.info("acme_account", directory=self.directory_url, account=self._account_uri)
        return self._account_uri

    def issue(
        self,
        names: Sequence[str],
        cert_key: ec.EllipticCurvePrivateKey,
        dns: DnsProvider,
        *,
        timeout: float = 60,
    ) -> IssuedCertificate:
        """Order, prove with DNS-01 (TXT records cleared afterwards) and fetch a certificate."""
        if not names:
            raise AcmeError("issue: no names to certify")
        self.register()
        acme = self._directory()
        key_pem = cert_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        csr_pem = crypto_util.make_csr(key_pem, list(names))
        published: list[str] = []
        try:
            try:
                order = acme.new_order(csr_pem)
            except Exception as exc:
                raise _wrap(f"ordering {', '.join(names)}", self.directory_url, exc) from None
            answers = [self._publish(authz, dns, published) for authz in order.authorizations]
            if published and dns.propagation_seconds > 0:
                time.sleep(dns.propagation_seconds)  # until the provider's servers have them
            # The naive local clock is what acme's pollers compare the deadline against.
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
            try:
                for challenge, response in filter(None, answers):
                    acme.answer_challenge(challenge, response)
                order = acme.poll_and_finalize(order, deadline)
            except Exception as exc:
                raise _wrap(f"validating {', '.join(names)}", self.directory_url, exc) from None
        finally:
            for fqdn in dict.fromkeys(published):
                try:
                    dns.clear_txt(fqdn)
                except DnsError as exc:
                    log.warning("acme_txt_not_cleared", name=fqdn, error=str(exc))
        try:
            issued = IssuedCertificate.from_chain_pem(order.fullchain_pem.encode())
        except ValueError as exc:
            raise AcmeError(f"{self.directory_url} sent an unreadable chain: {exc}") from None
        if issued.leaf.public_key() != cert_key.public_key():
            raise AcmeError(f"{self.directory_url} issued a certificate for another key")
        log.info("acme_certificate", names=list(names), not_after=issued.not_after.isoformat())
        return issued

    def _directory(self) -> client.ClientV2:
        if self._client is None:
            try:
                directory = client.ClientV2.get_directory(self.directory_url, self._net)
            except Exception as exc:
                raise _wrap("reading the directory", self.directory_url, exc) from None
            self._client = client.ClientV2(directory, self._net)
        return self._client

    def _publish(
        self, authz: messages.AuthorizationResource, dns: DnsProvider, published: list[str]
    ) -> tuple[messages.ChallengeBody, challenges.ChallengeResponse] | None:
        """Publish the TXT record of one authorization; None if it is already valid."""
        name = authz.body.identifier.value
        if authz.body.status == messages.STATUS_VALID:
            return None  # RFC 8555 lets servers reuse a valid authorization
        for challenge in authz.body.challenges:
            if isinstance(challenge.chall, challenges.DNS01):
                fqdn = challenge.chall.validation_domain_name(name)
                response, value = challenge.chall.response_and_validation(self._jwk)
                try:
                    dns.set_txt(fqdn, value)
                except DnsError as exc:
                    raise AcmeError(f"publishing the DNS-01 record for {name}: {exc}") from None
                published.append(fqdn)
                return challenge, response
        offered = ", ".join(c.chall.typ for c in authz.body.challenges)
        raise AcmeError(f"{self.directory_url} offers no dns-01 challenge for {name} ({offered})")


def _wrap(step: str, directory_url: str, exc: Exception) -> AcmeError:
    """An AcmeError for `step` carrying the server's problem detail, or the transport error."""
    if isinstance(exc, AcmeError):
        return exc
    if isinstance(exc, acme_errors.ValidationError):
        failures = [
            f"{authz.body.identifier.value}: {challenge.error}"
            for authz in exc.failed_authzrs
            for challenge in authz.body.challenges
            if challenge.error is not None
        ]
        detail = "; ".join(failures) or "an authorization is invalid"
    elif isinstance(exc, acme_errors.IssuanceError):
        detail = str(exc.error)
    elif isinstance(exc, acme_errors.TimeoutError):
        detail = "timed out waiting for the server"
    elif isinstance(exc, OSError):
        # requests wraps urllib3's retry error; its `reason` is the failure itself.
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        detail = str(reason or exc) or type(exc).__name__
    elif isinstance(exc, messages.Error | acme_errors.Error | ValueError):
        detail = str(exc) or type(exc).__name__
    else:
        raise exc
    return AcmeError(f"{step} at {directory_url}: {detail}")
