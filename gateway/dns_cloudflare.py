"""A `DnsProvider` for zones hosted at Cloudflare, through its v4 API with an API token.

Endpoints used (Cloudflare's documented v4 API, JSON envelopes `{success, errors, messages,
result, result_info}`): `GET /zones?name=` finds the zone's id; `GET /zones/{id}/dns_records?
type=&name=` lists records (paged: `page`, `per_page`, `result_info.total_pages`); `POST
/zones/{id}/dns_records` creates one (`content` for TXT, `data: {flags, tag, value}` for CAA);
`DELETE /zones/{id}/dns_records/{record}` removes one. The token needs Zone:DNS:Edit on the
zone and nothing more.

Cloudflare applies one record per request, so `set_caa` cannot swap the issuer records at
once. It keeps the zone restricted all along with dstack's sequence: add guard records
`0 issue ";"` and `0 issuewild ";"` (which authorize no CA), delete the old issuer records, add
the new ones, delete the guards. If it fails part-way the guards stay, so no CA may issue
until a new pin succeeds (fail closed), and the error says so.

The token is sent only in the Authorization header; it is never in an error, a log or a repr.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway.dns01 import DnsError, in_zone

DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"
_ISSUER_TAGS = ("issue", "issuewild")
_GUARD = ";"  # an issue value naming no CA: authorizes nobody (RFC 8659 §4.2)
_PER_PAGE = 100
_MAX_PAGES = 50
_MAX_BODY = 1 << 20


class CloudflareProvider:
    """TXT and CAA records in the Cloudflare zone `zone`, changed with the API token `token`."""

    def __init__(
        self,
        token: str,
        zone: str,
        *,
        api_url: str = DEFAULT_API_URL,
        ttl: int = 60,
        timeout: float = 15.0,
        propagation_seconds: float = 10.0,
    ) -> None:
        if not token or any(c.isspace() for c in token):
            raise ValueError("the Cloudflare API token is empty or contains whitespace")
        scheme = urllib.parse.urlsplit(api_url).scheme
        if scheme not in ("https", "http"):
            raise ValueError(f"Cloudflare API URL {api_url!r} is not an http(s) URL")
        self._token = token
        self.zone = zone.lower().rstrip(".")
        self.api_url = api_url.rstrip("/")
        self.ttl = ttl
        self.timeout = timeout
        #: Cloudflare serves a change from its edge a few seconds after the API accepts it.
        self.propagation_seconds = propagation_seconds
        self._zone_id: str | None = None

    def __repr__(self) -> str:
        return f"CloudflareProvider(zone={self.zone!r}, api_url={self.api_url!r})"

    # -- DnsProvider ----------------------------------------------------------------------

    def set_txt(self, fqdn: str, value: str) -> None:
        name = self._name(fqdn)
        body = {"type": "TXT", "name": name, "content": value, "ttl": self.ttl}
        self._call("POST", self._records_path(), f"adding TXT {name}", body)

    def clear_txt(self, fqdn: str) -> None:
        name = self._name(fqdn)
        for record in self.records(name, "TXT"):
            self._delete(record, f"removing TXT {name}")

    def set_caa(self, fqdn: str, value: str) -> None:
        name = self._name(fqdn)
        what = f"pinning CAA {name}"
        issuers = [r for r in self.records(name, "CAA") if _tag(r) in _ISSUER_TAGS]
        if sorted((_tag(r), _value(r)) for r in issuers) == [(t, value) for t in _ISSUER_TAGS]:
            return
        guards = [self._add_caa(name, tag, _GUARD, what) for tag in _ISSUER_TAGS]
        try:
            for record in issuers:
                self._delete(record, what)
            for tag in _ISSUER_TAGS:
                self._add_caa(name, tag, value, what)
        except DnsError as exc:
            raise DnsError(
                f'{exc}; the guard records {name} CAA 0 issue/issuewild ";" stay, so no CA may '
                "issue for the name until the CAA records are pinned again"
            ) from None
        for guard in guards:
            self._delete(guard, f"{what} (removing the guard)")

    # -- reading --------------------------------------------------------------------------

    def records(self, name: str, rtype: str) -> list[dict[str, Any]]:
        """Every `rtype` record named `name` (Cloudflare's record objects), all pages."""
        found: list[dict[str, Any]] = []
        for page in range(1, _MAX_PAGES + 1):
            query = urllib.parse.urlencode(
                {"type": rtype, "name": name, "page": page, "per_page": _PER_PAGE}
            )
            reply = self._call("GET", f"{self._records_path()}?{query}", f"listing {rtype} {name}")
            result = reply.get("result")
            if not isinstance(result, list):
                raise DnsError(f"listing {rtype} {name} at {self.api_url}: no record list")
            found += [
                r
                for r in result
                if isinstance(r, dict)
                and r.get("type") == rtype
                and str(r.get("name", "")).lower().rstrip(".") == name
            ]
            if page >= int((reply.get("result_info") or {}).get("total_pages") or 1):
                return found
        raise DnsError(f"listing {rtype} {name} at {self.api_url}: more than {_MAX_PAGES} pages")

    # -- the API --------------------------------------------------------------------------

    def _name(self, fqdn: str) -> str:
        if not in_zone(fqdn, self.zone):
            raise DnsError(f"{fqdn} is not in the Cloudflare zone {self.zone}")
        return fqdn.lower().rstrip(".")

    def _zone(self) -> str:
        if self._zone_id is None:
            query = urllib.parse.urlencode({"name": self.zone})
            reply = self._call("GET", f"/zones?{query}", f"finding the zone {self.zone}")
            zones = [
                z
                for z in reply.get("result") or []
                if isinstance(z, dict) and str(z.get("name", "")).lower() == self.zone
            ]
            if len(zones) != 1 or not isinstance(zones[0].get("id"), str):
                raise DnsError(
                    f"finding the zone {self.zone} at {self.api_url}: the token sees "
                    f"{len(zones)} zones of that name (it needs exactly one)"
                )
            self._zone_id = zones[0]["id"]
        return self._zone_id

    def _records_path(self) -> str:
        return f"/zones/{urllib.parse.quote(self._zone(), safe='')}/dns_records"

    def _add_caa(self, name: str, tag: str, value: str, what: str) -> dict[str, Any]:
        body = {
            "type": "CAA",
            "name": name,
            "data": {"flags": 0, "tag": tag, "value": value},
            "ttl": self.ttl,
        }
        reply = self._call("POST", self._records_path(), f"{what}: adding {tag} {value!r}", body)
        record = reply.get("result")
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise DnsError(f"{what} at {self.api_url}: the created record has no id")
        return record

    def _delete(self, record: dict[str, Any], what: str) -> None:
        record_id = urllib.parse.quote(str(record.get("id", "")), safe="")
        self._call("DELETE", f"{self._records_path()}/{record_id}", what)

    def _call(
        self, method: str, path: str, what: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One API request; the decoded envelope if `success`, else a DnsError saying `what`
        failed with Cloudflare's own error codes and messages."""
        where = f"{what} at {self.api_url}"
        request = urllib.request.Request(
            self.api_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        for attempt in range(3):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read(_MAX_BODY)
                break
            except urllib.error.HTTPError as exc:
                raw = exc.read(_MAX_BODY)
                if exc.code == 429 and attempt < 2:  # rate limited: Cloudflare asks to retry
                    time.sleep(1.0 + attempt)
                    continue
                detail = _errors(raw).replace(self._token, "[token]")
                raise DnsError(f"{where}: HTTP {exc.code}{detail}") from None
            except OSError as exc:
                reason = getattr(exc, "reason", None) or exc
                raise DnsError(f"{where}: {reason}") from None
        try:
            reply = json.loads(raw)
        except ValueError:
            raise DnsError(f"{where}: the answer is not JSON") from None
        if not isinstance(reply, dict) or reply.get("success") is not True:
            detail = _errors(raw).replace(self._token, "[token]")
            raise DnsError(f"{where}: not successful{detail}")
        return reply


def _tag(record: dict[str, Any]) -> str:
    return str((record.get("data") or {}).get("tag", ""))


def _value(record: dict[str, Any]) -> str:
    return str((record.get("data") or {}).get("value", ""))


def _errors(raw: bytes) -> str:
    """Cloudflare's `errors` (code: message, with their `error_chain`) from a reply body."""
    try:
        reply = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(reply, dict):
        return ""
    parts = []
    for error in reply.get("errors") or []:
        if isinstance(error, dict):
            chain = [
                f"{e.get('code')}: {e.get('message')}"
                for e in error.get("error_chain") or []
                if isinstance(e, dict)
            ]
            text = f"{error.get('code')}: {error.get('message')}"
            parts.append(text + (f" ({'; '.join(chain)})" if chain else ""))
    return (" " + "; ".join(parts))[:500] if parts else ""
