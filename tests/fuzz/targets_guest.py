"""Fuzz target for the guest agent's HTTP API, served in process by its real request handler.

A case is the raw bytes a client writes on the agent's socket: one or more requests (method,
path, headers, body), built from the endpoints' field names with random JSON values, often
edited as bytes. `guest.agent_server.Handler` reads them from an in-memory socket, with the
agent of `tests/guest/agent_harness.py` (simulated TEE, in-process KMS stand-in) behind it.

Documented answers (agent_server's docstring): 200 with JSON, 400 `{"error": ...}` for a
malformed request, 404 for an unknown path, and http.server's own 4xx/501 errors as JSON. A
500 is the endpoint's catch-all for an unexpected exception: a finding, reported with the
traceback captured where the handler formats the reply. So is an exception escaping the
handler, or a reply that is not a status line with a JSON body.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tempfile
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import strategies as st

from guest import tappd
from guest.agent_server import DSTACK_ROUTES, Handler
from guest.api import ENDPOINTS, Body
from mpc import Scalar
from tests.fuzz.mutate import random_edits, random_json, seeded
from tests.fuzz.runner import Prepared, Target
from tests.fuzz.targets_attest import JSON_VALUES

FIELDS = (
    "path",
    "purpose",
    "algorithm",
    "report_data",
    "event",
    "payload",
    "subject",
    "alt_names",
    "usage_ra_tls",
    "usage_server_auth",
    "usage_client_auth",
    "with_app_info",
    "not_before",
    "not_after",
    "data",
    "signature",
    "public_key",
    "hash_algorithm",
    "prefix",
    "random_seed",
)
GOOD_VALUES: dict[str, list[Any]] = {
    "path": ["", "a/b", "wallet/eth"],
    "purpose": ["", "signing", "ethereum"],
    "algorithm": ["secp256k1", "ed25519", "k256", "ecdsa", "sha256", ""],
    "report_data": ["00" * 64, "11" * 65, "abc", ""],
    "event": ["app-ready", "", "x" * 300],
    "payload": ["00", "", "zz"],
    "alt_names": [["a.example"], [], "not-a-list", [1, 2]],
    "data": ["00" * 32, "", "0x1234"],
    "signature": ["00" * 64, "11" * 65],
    "public_key": ["02" + "11" * 32, "00" * 33, ""],
    "not_before": [0, 1_700_000_000, 2**40, -1],
    "not_after": [0, 1_800_000_000, 2**63, 2**70],
    "hash_algorithm": ["sha512", "raw", "keccak384", "sha3-256", "md5", ""],
    "prefix": ["", "mine", "x" * 300],
    "random_seed": [True, False, "yes"],
}
METHODS = (b"POST", b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"POST", b"POST")


class FuzzSocket:
    """A connection whose input is `data` and whose output is collected in `sent`."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.sent = bytearray()

    def makefile(self, mode: str, buffering: int = -1) -> io.BytesIO:
        return io.BytesIO(self._data)

    def sendall(self, data: bytes) -> None:
        self.sent += data


class CapturingHandler(Handler):
    """The real handler; a 500 keeps the traceback of the exception it is answering."""

    last_traceback = ""

    def _reply(self, status: int, doc: Body) -> None:
        if status >= 500:
            CapturingHandler.last_traceback = traceback.format_exc()
        super()._reply(status, doc)


def _body(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randint(0, 100))
    if roll < 0.2:
        return json.dumps(random_json(rng)).encode()
    doc: dict[str, Any] = {}
    for name in rng.sample(FIELDS, rng.randint(0, 5)):
        pooled = GOOD_VALUES.get(name)
        doc[name] = rng.choice(pooled) if pooled and rng.random() < 0.6 else random_json(rng, 1)
    return json.dumps(doc).encode()


def _request(rng: random.Random) -> bytes:
    method = rng.choice(METHODS)
    name = rng.choice([*ENDPOINTS, *tappd.ENDPOINTS, "Nope", ""])
    path = rng.choice(
        (f"/{name}", f"/prpc/Tappd.{name}", f"/{name}?json", f"//{name}/", "/" + "a" * 5000)
    )
    body = _body(rng)
    headers = [b"Host: localhost"]
    length = rng.random()
    if length < 0.75:
        headers.append(b"Content-Length: %d" % len(body))
    elif length < 0.85:
        headers.append(b"Content-Length: " + rng.choice((b"-1", b"x", b"99999999", b"5", b"")))
    elif length < 0.9:
        headers.append(b"Transfer-Encoding: chunked")
    if rng.random() < 0.5:
        headers.append(b"Content-Type: application/json")
    version = rng.choice((b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"FOO"))
    return b"%s %s %s\r\n%s\r\n\r\n%s" % (
        method,
        path.encode(),
        version,
        b"\r\n".join(headers),
        body,
    )


def _wire(rng: random.Random) -> bytes:
    data = b"".join(_request(rng) for _ in range(rng.choice((1, 1, 1, 2, 3))))
    return random_edits(rng, data, max_edits=3) if rng.random() < 0.25 else data


def _replies(out: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each reply in `out`; raises AssertionError if one is malformed."""
    replies = []
    while out:
        head, sep, rest = out.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"reply without end of headers: {out[:200]!r}")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise AssertionError(f"bad status line {lines[0][:200]!r}")
        length = 0
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        body, out = rest[:length], rest[length:]
        replies.append((int(parts[1]), body))
    return replies


def _agent() -> Prepared:
    from tests.guest.agent_harness import boot, make_config

    workdir = Path(tempfile.mkdtemp(prefix="tkms-fuzz-agent-"))
    agent = boot(make_config(workdir), Scalar(424242))
    server = SimpleNamespace(agent=agent, routes=DSTACK_ROUTES)

    def check(data: bytes) -> None:
        CapturingHandler.last_traceback = ""
        sock = FuzzSocket(data)
        CapturingHandler(cast(Any, sock), "unix", cast(Any, server))
        for status, body in _replies(bytes(sock.sent)):
            if status == 500:
                raise AssertionError(
                    f"HTTP {status} {body[:300]!r}\n{CapturingHandler.last_traceback}"
                )
            if body:
                doc = json.loads(body)
                if status >= 400 and not (isinstance(doc, dict) and doc.get("error")):
                    raise AssertionError(f"HTTP {status} without an error message: {body!r}")

    return Prepared(
        strategy=seeded(_wire),
        rich=st.tuples(
            st.sampled_from([m.decode() for m in METHODS]),
            st.sampled_from([f"/{n}" for n in DSTACK_ROUTES]),
            st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=4),
        ).map(_as_request),
        check=check,
        allowed=(),
        close=lambda: shutil.rmtree(workdir, ignore_errors=True),
    )


def _as_request(case: tuple[str, str, dict[str, Any]]) -> bytes:
    method, path, doc = case
    body = json.dumps(doc).encode()
    return b"%s %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (
        method.encode(),
        path.encode(),
        len(body),
        body,
    )


TARGETS = (Target("guest-agent-http", "guest agent HTTP API (every endpoint), in process", _agent),)
