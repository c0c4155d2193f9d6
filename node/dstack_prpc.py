"""dstack's pRPC transport for the dstack-compatible KMS endpoint (docs/dstack-kms.md).

What a dstack guest's `RaClient` speaks: HTTPS, `POST /prpc/<Method>` (or
`/prpc/KMS.<Method>`), the body a protobuf message, or JSON when the query has `json` (what
dstack's client sends: `?json`), the Content-Type is JSON, or the method is GET. JSON uses the
proto field names and, for bytes, prpc's `bytes_as_hex_str`: written as "0x" and lowercase hex,
read with or without the "0x"; an absent or null field is its default, and
unknown fields are ignored (as serde does), so newer guests keep working. Success is 200 with
the response message; every error is 400 with `{"error": "..."}` (JSON) or a `ProtoError`
(protobuf), as pRPC answers, naming what was refused and why. One request per connection
(`Connection: close`), a request head of at most 16 KiB and a body of at most 4 MiB.

TLS: the server certificate is the node's TLS key issued by the network's dstack CA for
`server_names`, with special usage `kms:rpc` (`node.dstack_ca`). A background task builds the
context once the generation's KMS root is available and again when the CA changes; the
listener's ServerHello picks the current one (an SNI callback swaps it in, with or without SNI),
and a handshake that arrives before there is one is refused with an alert (the guest tries its
next KMS URL). Swapping in the handshake, not after accepting a plain connection, also keeps
a ClientHello that arrived early from being read as plaintext. A client
certificate is optional at the TLS layer (GetTempCaCert and GetMeta need none) and, when
presented, must be signed by the temporary CA the node gives out (dstack's RA-TLS client
certificate); GetAppKey reads the attestation inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf import empty_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from attest import load_pem_pair
from attest._ratls import OID_ATTESTATION
from node.dstack_ca import DstackCa
from node.dstack_service import DstackKmsService
from node.errors import InvalidRequest, NodeError
from node.identity import NodeIdentity
from node.logs import get_logger
from protos.tkms.v1 import dstack_kms_rpc_pb2 as dstack

log = get_logger("tkms.node.dstack_prpc")

MAX_HEAD: Final = 16 * 1024
MAX_BODY: Final = 4 * 1024 * 1024
TIMEOUT: Final = 60.0
#: Seconds between checks that the served CA is still the current one (and first tries).
REFRESH_EVERY: Final = 2.0
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}

Handler = Callable[[Message, bytes], Awaitable[Message]]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- JSON with hex bytes (pRPC's serde form) ------------------------------------------------


def message_to_json(message: Message) -> dict[str, Any]:
    """The JSON object pRPC writes for `message`: field names, hex bytes, null for an unset
    optional or message field."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            out[field.name] = [_value_to_json(field.type, v) for v in value]
        elif field.has_presence and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value_to_json(field.type, value)
    return out


def _value_to_json(kind: int, value: Any) -> Any:
    if kind == FieldDescriptor.TYPE_BYTES:
        return "0x" + bytes(value).hex()  # prpc's `bytes_as_hex_str`
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return message_to_json(value)
    return value


def message_from_json(doc: object, message: Message, where: str = "body") -> None:
    """Fill `message` from pRPC JSON; InvalidRequest naming the field that does not fit."""
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise InvalidRequest(f"{where}: expected a JSON object")
    for field in message.DESCRIPTOR.fields:
        if field.name not in doc or doc[field.name] is None:
            continue
        raw, name = doc[field.name], f"{where}.{field.name}"
        if field.is_repeated:
            if not isinstance(raw, list):
                raise InvalidRequest(f"{name}: expected a list")
            target = getattr(message, field.name)
            for i, item in enumerate(raw):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    message_from_json(item, target.add(), f"{name}[{i}]")
                else:
                    target.append(_value_from_json(field.type, item, f"{name}[{i}]"))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            message_from_json(raw, getattr(message, field.name), name)
        else:
            setattr(message, field.name, _value_from_json(field.type, raw, name))


def _value_from_json(kind: int, raw: object, name: str) -> Any:
    if kind == FieldDescriptor.TYPE_BYTES:
        if not isinstance(raw, str):
            raise InvalidRequest(f"{name}: expected a hex string")
        try:
            return bytes.fromhex(raw.removeprefix("0x"))
        except ValueError:
            raise InvalidRequest(f"{name}: not hex") from None
    if kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(raw, str):
            raise InvalidRequest(f"{name}: expected a string")
        return raw
    if kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(raw, bool):
            raise InvalidRequest(f"{name}: expected true or false")
        return raw
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64):
        bits = 32 if kind == FieldDescriptor.TYPE_UINT32 else 64
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < 1 << bits:
            raise InvalidRequest(f"{name}: expected a whole number from 0 to 2^{bits}-1")
        return raw
    raise InvalidRequest(f"{name}: unsupported field type")  # pragma: no cover


# -- routing --------------------------------------------------------------------------------


def routes(service: DstackKmsService) -> dict[str, tuple[type[Message], Handler]]:
    """Method name -> (request type, handler(request, client certificate DER))."""

    async def app_key(request: Message, cert: bytes) -> Message:
        assert isinstance(request, dstack.GetAppKeyRequest)
        return await service.get_app_key(request, cert)

    async def kms_key(request: Message, cert: bytes) -> Message:
        assert isinstance(request, dstack.GetKmsKeyRequest)
        return service.get_kms_key(request)

    async def env_key(request: Message, cert: bytes) -> Message:
        assert isinstance(request, dstack.AppId)
        return service.get_app_env_encrypt_pub_key(request)

    async def meta(request: Message, cert: bytes) -> Message:
        return await service.get_meta()

    async def temp_ca(request: Message, cert: bytes) -> Message:
        return await service.get_temp_ca_cert()

    async def sign_cert(request: Message, cert: bytes) -> Message:
        assert isinstance(request, dstack.SignCertRequest)
        return await service.sign_cert(request)

    return {
        "GetAppKey": (dstack.GetAppKeyRequest, app_key),
        "GetKmsKey": (dstack.GetKmsKeyRequest, kms_key),
        "GetAppEnvEncryptPubKey": (dstack.AppId, env_key),
        "GetMeta": (empty_pb2.Empty, meta),
        "GetTempCaCert": (empty_pb2.Empty, temp_ca),
        "SignCert": (dstack.SignCertRequest, sign_cert),
    }


class _Request:
    def __init__(self, method: str, path: str, query: str, headers: dict[str, str]) -> None:
        self.method, self.path, self.query, self.headers = method, path, query, headers

    @property
    def is_json(self) -> bool:
        """pRPC's rule: GET, `?json` (or json=true/1), or a JSON Content-Type."""
        flag = parse_qs(self.query, keep_blank_values=True, max_num_fields=16).get("json", [])
        content = self.headers.get("content-type", "").split(";")[0].strip().lower()
        asked = any(v in ("", "true", "1") for v in flag)
        return self.method == "GET" or asked or content == "application/json"


async def _read_request(reader: asyncio.StreamReader) -> tuple[_Request, bytes]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(400, f"request head longer than {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError:
        raise HttpError(400, "the connection ended before the request head did") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise HttpError(400, f"unsupported protocol {version[:16]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    url = urlsplit(target)
    request = _Request(method, url.path, url.query, headers)
    if method not in ("GET", "POST"):
        raise HttpError(405, f"{method[:16]} is not served: POST (or GET) only")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError(400, "chunked bodies are not supported: send Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or int(length_text) > MAX_BODY:
        raise HttpError(400, f"Content-Length must be a number up to {MAX_BODY}")
    length = int(length_text)
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise HttpError(400, "the connection ended before the body did") from None
    return request, body


def _response(status: int, body: bytes, is_json: bool) -> bytes:
    kind = "application/json" if is_json else "application/octet-stream"
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _error_body(message: str, is_json: bool) -> bytes:
    if is_json:
        return json.dumps({"error": message}, indent=1).encode()
    return dstack.ProtoError(message=message).SerializeToString()


def _method_name(path: str) -> str:
    if not path.startswith("/prpc/"):
        raise HttpError(404, f"no such path {path[:64]!r}: dstack's KMS is at /prpc/<Method>")
    return path.removeprefix("/prpc/").removeprefix("KMS.")


def _decode(kind: type[Message], request: _Request, body: bytes) -> Message:
    message = kind()
    if request.is_json:
        if request.method == "GET" or not body.strip():
            return message  # GET carries no body; an empty body is the empty message
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"body is not JSON: {exc}") from None
        message_from_json(doc, message)
        return message
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise InvalidRequest(f"body is not a protobuf {kind.DESCRIPTOR.name}: {exc}") from None
    return message


class DstackKmsServer:
    """The dstack KMS listener of a node (module docstring)."""

    def __init__(
        self,
        service: DstackKmsService,
        *,
        identity: NodeIdentity,
        node_cert_pem: bytes,
        server_names: tuple[str, ...],
        timeout: float = TIMEOUT,
    ) -> None:
        self._service = service
        self._routes = routes(service)
        self._key = identity.tls_key
        self._key_pem = identity.tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert = x509.load_pem_x509_certificate(node_cert_pem)
        try:
            ext = cert.extensions.get_extension_for_oid(OID_ATTESTATION).value
            self._attestation = ext if isinstance(ext, x509.UnrecognizedExtension) else None
        except x509.ExtensionNotFound:
            self._attestation = None
        self._names = server_names
        self._timeout = timeout
        self._context: tuple[tuple[int, str], ssl.SSLContext] | None = None
        self._context_lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.port = 0

    async def context(self) -> ssl.SSLContext:
        """The TLS context for the CA of the generation served (made once per CA)."""
        async with self._context_lock:
            ca, _ = await self._service.ca()
            key = (ca.generation, ca.key_provider_id)
            if self._context is None or self._context[0] != key:
                context = await asyncio.to_thread(self._make_context, ca)
                self._context = (key, context)
                log.info(
                    "dstack_kms_tls_ready",
                    generation=ca.generation,
                    key_provider=ca.key_provider_id,
                    names=list(self._names),
                )
            return self._context[1]

    async def _refresh(self) -> None:
        """Keep the context current: first as soon as the KMS root can be had, then on a CA
        change (a new generation served)."""
        reason = ""
        while True:
            try:
                await self.context()
                reason = ""
            except NodeError as exc:
                if str(exc) != reason:  # log a new reason once, not every round
                    log.info("dstack_kms_not_ready", reason=str(exc))
                reason = str(exc)
            except Exception:
                log.exception("dstack_kms_context_failed")
            await asyncio.sleep(REFRESH_EVERY)

    def _pick_context(
        self, ssl_object: ssl.SSLObject, server_name: str | None, listener: ssl.SSLContext
    ) -> int | None:
        """The SNI callback: the current context, or an alert while there is none yet."""
        current = self._context
        if current is None:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        ssl_object.context = current[1]
        return None

    def _listener_context(self) -> ssl.SSLContext:
        """The context the listener starts every handshake with; `_pick_context` swaps in the
        current one. Client-certificate checking is set here: OpenSSL keeps an SSL's verify
        mode from the context it was created with (the CA store comes from the swapped one)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_RENEGOTIATION
        context.verify_mode = ssl.CERT_OPTIONAL
        context.sni_callback = self._pick_context
        return context

    def _make_context(self, ca: DstackCa) -> ssl.SSLContext:
        cert = ca.server_certificate(
            self._key, self._names, attestation=self._attestation, now=dt.datetime.now(dt.UTC)
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + ca.ca_pem.encode()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_RENEGOTIATION
        load_pem_pair(context, chain, self._key_pem)
        # Client certificates: optional, and only those the (public) temporary CA signed, as
        # dstack's KMS configures its listener; the attestation inside is what counts.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=ca.temp_pem)
        return context

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(
            self._accept,
            host.strip("[]"),
            int(port),
            limit=MAX_HEAD,
            ssl=self._listener_context(),
            ssl_handshake_timeout=self._timeout,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._refresher = asyncio.create_task(self._refresh(), name="dstack-kms-context")
        log.info("dstack_kms_started", listen=listen, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(self._timeout):
                await self._serve(reader, writer)
        except (TimeoutError, ssl.SSLError, ConnectionError) as exc:
            log.info("dstack_kms_connection_ended", client=str(client), reason=type(exc).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        is_json = True
        name = "?"
        try:
            request, body = await _read_request(reader)
            is_json = request.is_json
            name = _method_name(request.path)
            route = self._routes.get(name)
            if route is None:
                methods = ", ".join(sorted(self._routes))
                raise HttpError(400, f"no such method {name[:64]!r} (KMS methods: {methods})")
            kind, handler = route
            message = _decode(kind, request, body)
            ssl_object = writer.get_extra_info("ssl_object")
            cert = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            reply = await handler(message, cert or b"")
            payload = (
                json.dumps(message_to_json(reply)).encode()
                if is_json
                else reply.SerializeToString()
            )
            writer.write(_response(200, payload, is_json))
            log.info("dstack_kms_answered", method=name)
        except HttpError as exc:
            writer.write(_response(exc.status, _error_body(str(exc), is_json), is_json))
        except NodeError as exc:
            log.info("dstack_kms_refused", method=name, reason=str(exc))
            writer.write(_response(400, _error_body(str(exc), is_json), is_json))
        except Exception:
            log.exception("dstack_kms_failed", method=name)
            writer.write(_response(400, _error_body(f"{name}: internal error", is_json), is_json))
        await writer.drain()
