"""RPC URLs in messages: credentials redacted, cleartext transport flagged.

Providers put credentials in the URL (`https://user:pass@host`, `https://host/v3/<api key>`,
`?apikey=...`), and errors from web3/requests quote the URL or its path. Every message a CLI
prints about an RPC goes through `redact_in`, which keeps scheme, host and port (what a reader
needs to tell which endpoint failed) and replaces userinfo, path, query and fragment by `***`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit

REDACTED = "***"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Shorter components (a path "/", a port) are not secrets and would match unrelated text.
_MIN_SECRET = 4


def redact_url(url: str) -> str:
    """`url` with userinfo, path, query and fragment replaced by `***` (scheme, host, port
    kept). Something that does not parse as a URL is redacted whole."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not parts.hostname:
        return REDACTED
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    text = f"{parts.scheme}://"
    if parts.username is not None or parts.password is not None:
        text += f"{REDACTED}@"
    text += host if port is None else f"{host}:{port}"
    if parts.path not in ("", "/"):
        text += f"/{REDACTED}"
    if parts.query:
        text += f"?{REDACTED}"
    if parts.fragment:
        text += f"#{REDACTED}"
    return text


def _secrets(url: str) -> list[str]:
    """The parts of `url` that may be credentials, as they may appear in other messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.path, parts.query, parts.fragment]
    if parts.query:
        found.append(f"{parts.path}?{parts.query}")
    found += [parts.username or "", parts.password or ""]
    found += [unquote(item) for item in list(found)]
    return [item for item in found if len(item.strip("/")) >= _MIN_SECRET]


def redact_in(text: str, url: str | None) -> str:
    """`text` with `url` and each of its secret parts replaced (see `redact_url`)."""
    if not url:
        return text
    text = text.replace(url, redact_url(url))
    for secret in sorted(set(_secrets(url)), key=len, reverse=True):
        text = text.replace(secret, f"/{REDACTED}" if secret.startswith("/") else REDACTED)
    return text


def is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_rpc_warning(url: str, argument: str = "--rpc") -> str | None:
    """A warning if `url` is cleartext HTTP to a host other than this machine, else None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname or is_loopback_host(parts.hostname):
        return None
    return (
        f"warning: {argument} {redact_url(url)} is plain http to another machine: anyone on the "
        "network path can read and rewrite what the chain tells this command; use https://"
    )
