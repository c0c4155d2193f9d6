"""Publishing ACME DNS-01 challenge records (RFC 8555 §8.4).

`Dns01Publisher` is what `AcmeIssuer` needs from a DNS provider. A name may hold several TXT
values at once: a wildcard `*.base` and `base` are both validated at `_acme-challenge.base`,
so `set_txt` adds a value and `clear_txt` removes every value of the name.

`ChallTestSrvPublisher` drives `pebble-challtestsrv`, the DNS server Pebble validates against
in development and tests. A production DNS provider is another class with the same two methods.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Protocol


class Dns01Error(Exception):
    """A TXT record could not be published or removed."""


class Dns01Publisher(Protocol):
    def set_txt(self, fqdn: str, value: str) -> None:
        """Add `value` to the TXT records of `fqdn` (a name without the trailing dot)."""
        ...

    def clear_txt(self, fqdn: str) -> None:
        """Remove every TXT record of `fqdn`."""
        ...


class ChallTestSrvPublisher:
    """TXT records on a `pebble-challtestsrv` through its management API at `management_url`."""

    def __init__(self, management_url: str, *, timeout: float = 5.0) -> None:
        self.management_url = management_url.rstrip("/")
        self.timeout = timeout

    def set_txt(self, fqdn: str, value: str) -> None:
        self._post("/set-txt", {"host": _absolute(fqdn), "value": value})

    def clear_txt(self, fqdn: str) -> None:
        self._post("/clear-txt", {"host": _absolute(fqdn)})

    def _post(self, path: str, body: dict[str, str]) -> None:
        url = self.management_url + path
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode(errors="replace").strip()
            raise Dns01Error(f"{url} for {body['host']}: HTTP {exc.code} {detail}") from None
        except OSError as exc:
            raise Dns01Error(f"{url} for {body['host']}: {exc}") from None


def _absolute(fqdn: str) -> str:
    """challtestsrv keys its records by the absolute name, with the trailing dot."""
    return fqdn.rstrip(".") + "."
