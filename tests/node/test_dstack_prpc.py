"""dstack's pRPC wire forms (node.dstack_prpc): JSON with prpc's hex bytes, protobuf, the HTTP
request head, and the errors a malformed request gets (tests/node/test_dstack_kms.py runs the
same against real nodes)."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import empty_pb2
from hypothesis import given
from hypothesis import strategies as st

from node.dstack_prpc import (
    MAX_BODY,
    HttpError,
    _decode,
    _method_name,
    _read_request,
    _Request,
    message_from_json,
    message_to_json,
)
from node.errors import InvalidRequest
from protos.tkms.v1 import dstack_kms_rpc_pb2 as dstack

_bytes = st.binary(max_size=80)
_text = st.text(max_size=40)


@given(
    ca=_text,
    disk=_bytes,
    env=_bytes,
    k256=_bytes,
    sig=_bytes,
    gw=_text,
    image=_bytes,
)
def test_app_key_response_json_round_trips_with_0x_hex_bytes(
    ca: str, disk: bytes, env: bytes, k256: bytes, sig: bytes, gw: str, image: bytes
) -> None:
    reply = dstack.AppKeyResponse(
        ca_cert=ca,
        disk_crypt_key=disk,
        env_crypt_key=env,
        k256_key=k256,
        k256_signature=sig,
        tproxy_app_id=gw,
        gateway_app_id=gw,
        os_image_hash=image,
    )
    doc = message_to_json(reply)
    assert doc["k256_key"] == "0x" + k256.hex()  # prpc's bytes_as_hex_str
    assert set(doc) == {f.name for f in reply.DESCRIPTOR.fields}  # serde needs every field
    back = dstack.AppKeyResponse()
    message_from_json(doc, back)
    assert back == reply


def test_get_meta_writes_unset_optional_and_message_fields_as_null() -> None:
    doc = message_to_json(dstack.GetMetaResponse(ca_cert="x", chain_id=31337))
    assert doc["chain_id"] == 31337
    assert doc["gateway_app_id"] is None and doc["kms_contract_address"] is None
    assert doc["bootstrap_info"] is None
    assert doc["k256_pubkey"] == "0x" and doc["is_dev"] is False


def test_json_reads_hex_with_or_without_0x_defaults_for_null_and_ignores_unknown_fields() -> None:
    request = dstack.SignCertRequest()
    message_from_json(
        {"api_version": 2, "csr": "0xab01", "signature": "cd", "vm_config": None, "new": 1},
        request,
    )
    assert request == dstack.SignCertRequest(api_version=2, csr=b"\xab\x01", signature=b"\xcd")
    empty = dstack.GetAppKeyRequest()
    message_from_json(None, empty)  # serde's `()` / null body
    assert empty == dstack.GetAppKeyRequest()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"api_version": "1"}, "body.api_version: expected a whole number from 0 to 2^32-1"),
        ({"api_version": True}, "body.api_version: expected a whole number"),
        ({"api_version": -1}, "body.api_version: expected a whole number"),
        ({"api_version": 1 << 32}, "body.api_version: expected a whole number"),
        ({"vm_config": 5}, "body.vm_config: expected a string"),
        ([], "body: expected a JSON object"),
    ],
)
def test_json_that_does_not_fit_names_the_field(doc: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("^", r"\^")):
        message_from_json(doc, dstack.GetAppKeyRequest())


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"csr": "0xzz"}, "body.csr: not hex"),
        ({"csr": 12}, "body.csr: expected a hex string"),
        ({"signature": "abc"}, "body.signature: not hex"),
    ],
)
def test_bytes_that_are_not_hex_are_refused(doc: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        message_from_json(doc, dstack.SignCertRequest())


def test_nested_and_repeated_fields_name_their_path() -> None:
    with pytest.raises(InvalidRequest, match=r"body\.bootstrap_info\.ca_pubkey: not hex"):
        message_from_json({"bootstrap_info": {"ca_pubkey": "q"}}, dstack.GetMetaResponse())
    with pytest.raises(InvalidRequest, match=r"body\.certificate_chain: expected a list"):
        message_from_json({"certificate_chain": "x"}, dstack.SignCertResponse())
    with pytest.raises(InvalidRequest, match=r"body\.certificate_chain\[1\]: expected a string"):
        message_from_json({"certificate_chain": ["a", 1]}, dstack.SignCertResponse())


def _request(method: str = "POST", query: str = "", content: str = "") -> _Request:
    headers = {"content-type": content} if content else {}
    return _Request(method, "/prpc/GetAppKey", query, headers)


@pytest.mark.parametrize(
    ("request_", "is_json"),
    [
        (_request(query="json"), True),  # what dstack's RaClient sends
        (_request(query="json=true"), True),
        (_request(content="application/json; charset=utf-8"), True),
        (_request("GET"), True),
        (_request(), False),
        (_request(query="json=false"), False),
    ],
)
def test_which_requests_are_json(request_: _Request, is_json: bool) -> None:
    assert request_.is_json is is_json


def test_a_malformed_protobuf_body_is_an_invalid_request_naming_the_message() -> None:
    with pytest.raises(InvalidRequest, match="body is not a protobuf GetAppKeyRequest"):
        _decode(dstack.GetAppKeyRequest, _request(), b"\xff\xff\xff\xff")
    with pytest.raises(InvalidRequest, match="body is not JSON"):
        _decode(dstack.GetAppKeyRequest, _request(query="json"), b"{nope")
    ok = _decode(
        dstack.GetAppKeyRequest,
        _request(),
        dstack.GetAppKeyRequest(api_version=1, vm_config="{}").SerializeToString(),
    )
    assert ok == dstack.GetAppKeyRequest(api_version=1, vm_config="{}")
    assert _decode(empty_pb2.Empty, _request(query="json"), b"null") == empty_pb2.Empty()


def test_method_names_with_or_without_the_service_prefix() -> None:
    assert _method_name("/prpc/GetAppKey") == "GetAppKey"  # dstack's generated client
    assert _method_name("/prpc/KMS.GetMeta") == "GetMeta"
    with pytest.raises(HttpError, match="dstack's KMS is at /prpc/<Method>") as err:
        _method_name("/GetAppKey")
    assert err.value.status == 404


def _read(raw: bytes) -> tuple[_Request, bytes]:
    async def go() -> tuple[_Request, bytes]:
        reader = asyncio.StreamReader(limit=16 * 1024)
        reader.feed_data(raw)
        reader.feed_eof()
        return await _read_request(reader)

    return asyncio.run(go())


def test_a_request_head_and_body_are_read_as_sent() -> None:
    request, body = _read(
        b"POST /prpc/GetAppKey?json HTTP/1.1\r\nHost: kms\r\nContent-Length: 4\r\n\r\nnull"
    )
    assert (request.method, request.path, request.query) == ("POST", "/prpc/GetAppKey", "json")
    assert body == b"null" and request.is_json


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"POST /prpc/X HTTP/1.1\r\nX: " + b"a" * 17000 + b"\r\n\r\n", 400, "head longer than"),
        (b"POST /prpc/X HTTP/1.1\r\nHost: k\r\n", 400, "ended before the request head"),
        (b"POST /prpc/X\r\n\r\n", 400, "malformed request line"),
        (b"POST /prpc/X SPDY/3\r\n\r\n", 400, "unsupported protocol"),
        (b"PUT /prpc/X HTTP/1.1\r\n\r\n", 405, "PUT is not served"),
        (b"POST /prpc/X HTTP/1.1\r\nbad line\r\n\r\n", 400, "malformed header line"),
        (
            b"POST /prpc/X HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "chunked bodies are not supported",
        ),
        (b"POST /prpc/X HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length must be"),
        (
            b"POST /prpc/X HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
            400,
            "Content-Length must be",
        ),
        (b"POST /prpc/X HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc", 400, "ended before the body"),
    ],
)
def test_malformed_http_is_refused_with_a_reason(raw: bytes, status: int, message: str) -> None:
    with pytest.raises(HttpError, match=message) as err:
        _read(raw)
    assert err.value.status == status
