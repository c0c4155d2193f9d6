"""The `DnsProvider` a gateway configuration names (`[acme] dns_provider`), with its credential.

The credential (a TSIG secret, a Cloudflare API token) is read here, at start, from a file only
the gateway may read (`read_secret_file`: mode 0600 or stricter); it lives on in the provider
object only, which never shows it.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import AcmeConfig
from gateway.dns01 import DnsError, DnsProvider, read_secret_file
from gateway.dns_cloudflare import CloudflareProvider
from gateway.dns_rfc2136 import Rfc2136Provider


def open_dns_provider(acme: AcmeConfig) -> DnsProvider:
    """The provider `acme` configures; DnsError naming the file or the value that is wrong."""
    if acme.dns_provider == "rfc2136":
        secret = read_secret_file(Path(acme.tsig_key_file), "TSIG key file")
        try:
            return Rfc2136Provider(
                acme.dns_server,
                acme.dns_zone,
                acme.tsig_key_name,
                secret,
                algorithm=acme.tsig_algorithm,
            )
        except ValueError as exc:
            raise DnsError(f"TSIG key file {acme.tsig_key_file}: {exc}") from None
    if acme.dns_provider == "cloudflare":
        token = read_secret_file(Path(acme.cloudflare_token_file), "Cloudflare API token file")
        try:
            return CloudflareProvider(token, acme.dns_zone, api_url=acme.cloudflare_api_url)
        except ValueError as exc:
            raise DnsError(
                f"Cloudflare API token file {acme.cloudflare_token_file}: {exc}"
            ) from None
    raise DnsError(f"dns_provider {acme.dns_provider!r} is not supported")
