"""The Cloudflare provider against a local HTTP fake of Cloudflare's documented v4 API (zones,
DNS records, the JSON envelope, paging, bearer tokens): TXT records, the CAA guard sequence
that never leaves the name without an issuer restriction, and errors that never show the token.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.config import AcmeConfig
from gateway.dns01 import DnsError, caa_value
from gateway.dns_cloudflare import CloudflareProvider
from gateway.dns_providers import open_dns_provider

TOKEN = "cf-token-" + "x" * 31
ZONE = "example.test"
ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"
OLD = "letsencrypt.org"


class FakeCloudflare:
    """The v4 endpoints the provider uses, with Cloudflare's envelope and error shapes."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []
        #: The CAA issuer values at the apex after every request that changed something.
        self.issuer_history: list[list[tuple[str, str]]] = []
        self.fail_post_of: str | None = None  # a CAA value whose creation fails
        self.echo_token = False
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/client/v4"
        self.thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def add(self, rtype: str, name: str, **fields: Any) -> None:
        self.records.append({"id": uuid.uuid4().hex, "type": rtype, "name": name, **fields})

    def issuers(self) -> list[tuple[str, str]]:
        return sorted(
            (r["data"]["tag"], r["data"]["value"])
            for r in self.records
            if r["type"] == "CAA" and r["name"] == ZONE and r["data"]["tag"] != "iodef"
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: int, message: str) -> None:
                body = {"success": False, "errors": [{"code": code, "message": message}]}
                self._reply(status, {**body, "messages": [], "result": None})

            def _ok(self, result: Any, info: dict[str, int] | None = None) -> None:
                body = {"success": True, "errors": [], "messages": [], "result": result}
                self._reply(200, {**body, **({"result_info": info} if info else {})})

            def _route(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((method, url.path, body))
                auth = self.headers.get("Authorization", "")
                if auth != f"Bearer {TOKEN}":
                    said = f" ({auth})" if fake.echo_token else ""
                    return self._error(403, 10000, "Authentication error" + said)
                query = dict(urllib.parse.parse_qsl(url.query))
                parts = url.path.removeprefix("/client/v4/").split("/")
                if method == "GET" and parts == ["zones"]:
                    zones = [{"id": ZONE_ID, "name": ZONE, "status": "active"}]
                    found = [z for z in zones if z["name"] == query.get("name", z["name"])]
                    info = {"page": 1, "per_page": 20, "count": len(found), "total_pages": 1}
                    return self._ok(found, {**info, "total_count": len(found)})
                if (
                    parts[:1] != ["zones"]
                    or parts[1:2] != [ZONE_ID]
                    or parts[2:3] != ["dns_records"]
                ):
                    return self._error(404, 7003, "Could not route to " + url.path)
                if method == "GET" and len(parts) == 3:
                    return self._list(query)
                if method == "POST" and len(parts) == 3:
                    return self._create(body)
                if method == "DELETE" and len(parts) == 4:
                    return self._delete(parts[3])
                return self._error(405, 10000, "Method not allowed")

            def _list(self, query: dict[str, str]) -> None:
                found = [
                    r
                    for r in fake.records
                    if r["type"] == query.get("type", r["type"])
                    and r["name"] == query.get("name", r["name"])
                ]
                page, per_page = int(query.get("page", 1)), int(query.get("per_page", 100))
                pages = max(1, -(-len(found) // per_page))
                chunk = found[(page - 1) * per_page : page * per_page]
                info = {"page": page, "per_page": per_page, "count": len(chunk)}
                self._ok(chunk, {**info, "total_count": len(found), "total_pages": pages})

            def _create(self, body: Any) -> None:
                rtype, name, ttl = body.get("type"), body.get("name"), body.get("ttl", 1)
                if rtype == "TXT" and isinstance(body.get("content"), str):
                    fake.add("TXT", name, content=body["content"], ttl=ttl)
                elif rtype == "CAA":
                    data = body.get("data")
                    if not (
                        isinstance(data, dict)
                        and isinstance(data.get("flags"), int)
                        and data.get("tag") in ("issue", "issuewild", "iodef")
                        and isinstance(data.get("value"), str)
                    ):
                        return self._error(400, 1004, "DNS Validation Error")
                    if data["value"] == fake.fail_post_of:
                        return self._error(400, 81057, "Record already exists.")
                    content = f'{data["flags"]} {data["tag"]} "{data["value"]}"'
                    fake.add("CAA", name, data=data, content=content, ttl=ttl)
                else:
                    return self._error(400, 1004, "DNS Validation Error")
                fake.issuer_history.append(fake.issuers())
                self._ok(fake.records[-1])

            def _delete(self, record_id: str) -> None:
                kept = [r for r in fake.records if r["id"] != record_id]
                if len(kept) == len(fake.records):
                    return self._error(404, 81044, "Record does not exist.")
                fake.records[:] = kept
                fake.issuer_history.append(fake.issuers())
                self._ok({"id": record_id})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler


@pytest.fixture
def cloudflare() -> Iterator[FakeCloudflare]:
    fake = FakeCloudflare()
    try:
        yield fake
    finally:
        fake.stop()


def provider(fake: FakeCloudflare, token: str = TOKEN) -> CloudflareProvider:
    return CloudflareProvider(token, ZONE, api_url=fake.url, propagation_seconds=0)


def test_txt_records_are_created_listed_and_removed(cloudflare: FakeCloudflare) -> None:
    cloudflare.add("TXT", "other.example.test", content="keep me")
    cf = provider(cloudflare)
    cf.set_txt("_acme-challenge.example.test", "first")
    cf.set_txt("_acme-challenge.Example.test.", "second")
    posts = [body for method, _, body in cloudflare.requests if method == "POST"]
    assert posts == [
        {"type": "TXT", "name": "_acme-challenge.example.test", "content": v, "ttl": 60}
        for v in ("first", "second")
    ]
    assert [r["content"] for r in cf.records("_acme-challenge.example.test", "TXT")] == [
        "first",
        "second",
    ]
    cf.clear_txt("_acme-challenge.example.test")
    assert [r["content"] for r in cloudflare.records] == ["keep me"]
    # The zone id was looked up once, by name.
    zone_lookups = [path for method, path, _ in cloudflare.requests if path.endswith("/zones")]
    assert zone_lookups == ["/client/v4/zones"]


def test_every_page_of_records_is_read(cloudflare: FakeCloudflare) -> None:
    for i in range(230):
        cloudflare.add("TXT", "_acme-challenge.example.test", content=f"v{i}")
    cf = provider(cloudflare)
    assert len(cf.records("_acme-challenge.example.test", "TXT")) == 230
    cf.clear_txt("_acme-challenge.example.test")
    assert cloudflare.records == []


def test_caa_pin_never_leaves_the_name_without_an_issuer_restriction(
    cloudflare: FakeCloudflare,
) -> None:
    cloudflare.add("CAA", ZONE, data={"flags": 0, "tag": "issue", "value": OLD})
    cloudflare.add("CAA", ZONE, data={"flags": 0, "tag": "iodef", "value": "mailto:ops@x.test"})
    new = caa_value("letsencrypt.org", "https://acme-v02.api.letsencrypt.org/acme/acct/1")
    provider(cloudflare).set_caa(ZONE, new)
    assert cloudflare.issuers() == [("issue", new), ("issuewild", new)]
    assert [r["data"]["tag"] for r in cloudflare.records if r["type"] == "CAA"] == [
        "iodef",
        "issue",
        "issuewild",
    ]
    # dstack's order: guards, delete the old issuers, write the new ones, remove the guards.
    changes = [(m, b["data"]["value"] if b else None) for m, _, b in cloudflare.requests]
    changes = [c for c in changes if c[0] != "GET"]
    assert changes == [
        ("POST", ";"),
        ("POST", ";"),
        ("DELETE", None),
        ("POST", new),
        ("POST", new),
        ("DELETE", None),
        ("DELETE", None),
    ]
    # After every single request some issue record existed (an empty set lets any CA issue),
    # and none allowed a CA other than the old one, the new one, or nobody (";").
    for issuers in cloudflare.issuer_history:
        assert any(tag == "issue" for tag, _ in issuers)
        assert {value for _, value in issuers} <= {OLD, new, ";"}
    posted = [b for m, _, b in cloudflare.requests if m == "POST"]
    assert posted[2] == {
        "type": "CAA",
        "name": ZONE,
        "data": {"flags": 0, "tag": "issue", "value": new},
        "ttl": 60,
    }


def test_a_name_already_pinned_is_not_touched(cloudflare: FakeCloudflare) -> None:
    value = caa_value("letsencrypt.org", "https://ca.test/acct/7")
    cf = provider(cloudflare)
    cf.set_caa(ZONE, value)
    cloudflare.requests.clear()
    cf.set_caa(ZONE, value)
    assert [method for method, _, _ in cloudflare.requests] == ["GET"]


def test_a_pin_failing_part_way_leaves_the_guards_so_no_ca_may_issue(
    cloudflare: FakeCloudflare,
) -> None:
    cloudflare.add("CAA", ZONE, data={"flags": 0, "tag": "issue", "value": OLD})
    new = caa_value("letsencrypt.org", "https://ca.test/acct/8")
    cloudflare.fail_post_of = new
    with pytest.raises(DnsError) as failed:
        provider(cloudflare).set_caa(ZONE, new)
    assert "81057: Record already exists." in str(failed.value)
    assert 'guard records example.test CAA 0 issue/issuewild ";" stay' in str(failed.value)
    assert cloudflare.issuers() == [("issue", ";"), ("issuewild", ";")]


def test_a_refused_token_is_named_and_never_shown(cloudflare: FakeCloudflare) -> None:
    cloudflare.echo_token = True  # a server that echoes the header back must not leak it
    wrong = "wrong-" + TOKEN
    cf = provider(cloudflare, token=wrong)
    with pytest.raises(DnsError) as refused:
        cf.set_txt("_acme-challenge.example.test", "x")
    assert str(refused.value) == (
        f"finding the zone example.test at {cloudflare.url}: HTTP 403 10000: "
        "Authentication error (Bearer [token])"
    )
    assert wrong not in repr(cf) and TOKEN not in repr(provider(cloudflare))
    assert cloudflare.records == []


def test_a_zone_the_token_does_not_see_and_names_outside_it(cloudflare: FakeCloudflare) -> None:
    other = CloudflareProvider(TOKEN, "other.test", api_url=cloudflare.url)
    with pytest.raises(DnsError, match="the token sees 0 zones of that name"):
        other.set_txt("_acme-challenge.other.test", "x")
    with pytest.raises(DnsError, match="_acme-challenge.evil.test is not in the Cloudflare zone"):
        provider(cloudflare).set_txt("_acme-challenge.evil.test", "x")
    with pytest.raises(ValueError, match="not an http"):
        CloudflareProvider(TOKEN, ZONE, api_url="file:///etc/passwd")


def test_the_configured_provider_reads_its_token_file(
    cloudflare: FakeCloudflare, tmp_path: Path
) -> None:
    token_file = tmp_path / "cloudflare.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, TOKEN.encode() + b"\n")
    os.close(fd)
    config = AcmeConfig(
        directory_url="https://ca.test/dir",
        dns_provider="cloudflare",
        dns_zone=ZONE,
        cloudflare_token_file=str(token_file),
        cloudflare_api_url=cloudflare.url,
    )
    cf = open_dns_provider(config)
    assert cf.propagation_seconds == 10.0  # Cloudflare's edge serves a change a little later
    cf.set_txt("_acme-challenge.example.test", "configured")
    assert [r["content"] for r in cloudflare.records] == ["configured"]
    token_file.chmod(0o604)
    with pytest.raises(DnsError, match="mode 0604 lets others read it"):
        open_dns_provider(config)
