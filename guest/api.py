"""The dstack guest API endpoints, shaped exactly as `dstack-sdk` 0.5.4 expects.

Every endpoint takes the request's JSON object and returns the reply's; bytes are lowercase
hex. A bad field raises `BadRequest` naming it (the server answers 400). Served over a unix
socket by `guest.agent_server`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from attest import (
    VersionedAttestation,
    create_ratls_certificate,
    encode_versioned_attestation,
    runtime_events_of,
)
from guest import keys
from guest.agent import Agent, compose_info, version


class BadRequest(ValueError):
    """The request body is not what the endpoint needs (the message names the field)."""


Body = dict[str, Any]
Endpoint = Callable[[Agent, Body], Body]


def _str(body: Body, name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    return value


def _hex(body: Body, name: str, *, required: bool = True) -> bytes:
    value = body.get(name, None if required else "")
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a hex string")
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise BadRequest(f"field {name!r} is not hex") from None


def _bool(body: Body, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"field {name!r} must be true or false")
    return value


#: 9999-12-31T23:59:59Z, the last instant an X.509 validity time can express.
_MAX_TIME = 253402300799


def _time(body: Body, name: str) -> dt.datetime | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_TIME:
        raise BadRequest(f"field {name!r} must be seconds since the epoch, at most {_MAX_TIME}")
    return dt.datetime.fromtimestamp(value, dt.UTC)


def get_key(agent: Agent, body: Body) -> Body:
    algorithm = _str(body, "algorithm", "secp256k1") or "secp256k1"
    if algorithm == "k256":
        algorithm = "secp256k1"
    purpose = _str(body, "purpose", "")
    key = keys.get_key(agent.seed, _str(body, "path", ""), algorithm)
    chain = agent.chain(purpose, key.public)
    # `tkms` is extra: dstack's SDKs ignore fields they do not know (guest.verify reads it).
    return {
        "key": key.private.hex(),
        "signature_chain": [c.hex() for c in chain],
        "tkms": agent.certificates(),
    }


def _report_data(body: Body) -> bytes:
    data = _hex(body, "report_data")
    if len(data) > 64:
        raise BadRequest(f"field 'report_data' must be at most 64 bytes, got {len(data)}")
    return data.ljust(64, b"\0")


def vm_config(agent: Agent) -> str:
    return agent.vm_config


def get_quote(agent: Agent, body: Body) -> Body:
    report_data = _report_data(body)
    quote, log = agent.evidence(report_data)
    return {
        "quote": quote.hex(),
        "event_log": log,
        "report_data": report_data.hex(),
        "vm_config": vm_config(agent),
    }


def attest(agent: Agent, body: Body) -> Body:
    """dstack's VersionedAttestation, V0 (SCALE): quote, event log, runtime events, report
    data and VM config, as a real dstack agent returns it (`attest._versioned`)."""
    report_data = _report_data(body)
    quote, entries = agent.evidence_entries(report_data)
    attestation = VersionedAttestation(
        quote=quote,
        event_log=tuple(entries),
        runtime_events=runtime_events_of(entries),
        report_data=report_data,
        vm_config=vm_config(agent),
    )
    return {"attestation": encode_versioned_attestation(attestation).hex()}


def gpu_info(agent: Agent, body: Body) -> Body:
    """The GPU evidence measured at boot (`gpu-attestation` event), exactly as measured, or
    "" without one: dstack's shape (docs/attest-gpu.md)."""
    return {"attestation": agent.gpu_attestation}


def info(agent: Agent, body: Body) -> Body:
    ident, report, log = agent.identity()
    name, compose_hash = compose_info(agent.compose)
    tcb = {
        "mrtd": report.mr_td.hex(),
        "rtmr0": report.rtmr0.hex(),
        "rtmr1": report.rtmr1.hex(),
        "rtmr2": report.rtmr2.hex(),
        "rtmr3": report.rtmr3.hex(),
        "mr_aggregated": ident.mr_aggregated.hex(),
        "os_image_hash": ident.os_image_hash.hex(),
        "compose_hash": compose_hash,
        "device_id": ident.device_id.hex(),
        "app_compose": agent.compose.decode("utf-8", "replace"),
        "event_log": json.loads(log),
    }
    return {
        "app_id": agent.app_id.hex(),
        "instance_id": agent.instance_id.hex(),
        "app_cert": agent.ca_cert.public_bytes(Encoding.PEM).decode(),
        "tcb_info": json.dumps(tcb),
        "app_name": name,
        "device_id": ident.device_id.hex(),
        "mr_aggregated": ident.mr_aggregated.hex(),
        "os_image_hash": ident.os_image_hash.hex(),
        "key_provider_info": ident.key_provider_info.decode("utf-8", "replace"),
        "compose_hash": compose_hash,
        "vm_config": vm_config(agent),
        "cloud_vendor": agent.cloud[0],
        "cloud_product": agent.cloud[1],
    }


def emit_event(agent: Agent, body: Body) -> Body:
    event = _str(body, "event")
    if not event:
        raise BadRequest("field 'event' must not be empty")
    payload = _hex(body, "payload", required=False)
    with agent.lock:
        agent.provider.extend_rtmr(3, event, payload)
    return {}


def _validity(body: Body) -> tuple[dt.datetime, dt.datetime]:
    """(not_before, not_after): the request's, else 5 minutes ago and ten years on."""
    not_before = _time(body, "not_before")
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ten_years = min(start.timestamp() + 3650 * 86400, _MAX_TIME)  # datetime stops at 9999
    end = _time(body, "not_after") or dt.datetime.fromtimestamp(ten_years, dt.UTC)
    if end < start:
        raise BadRequest(
            f"field 'not_after' ({end.isoformat()}) is before 'not_before' ({start.isoformat()})"
        )
    return start, end


def get_tls_key(agent: Agent, body: Body) -> Body:
    """A fresh P-256 key; its RA-TLS certificate (quote of the key) is issued by the app CA."""
    return issue_tls_key(
        agent,
        ec.generate_private_key(ec.SECP256R1()),
        body,
        with_app_info=_bool(body, "with_app_info", False),
        validity=_validity(body),
        server_auth_default=True,
    )


def issue_tls_key(
    agent: Agent,
    key: ec.EllipticCurvePrivateKey,
    body: Body,
    *,
    with_app_info: bool,
    validity: tuple[dt.datetime, dt.datetime],
    server_auth_default: bool,
) -> Body:
    """`key` (PKCS#8 PEM) and [its RA-TLS certificate from the app CA, the app CA]."""
    alt_names = body.get("alt_names", [])
    if not isinstance(alt_names, list) or not all(isinstance(n, str) for n in alt_names):
        raise BadRequest("field 'alt_names' must be a list of strings")
    subject = _str(body, "subject", "") or "tkms app"
    if len(subject) > 64:  # X.509's upper bound for a common name (RFC 5280, ub-common-name)
        raise BadRequest(f"field 'subject' is {len(subject)} characters, at most 64")
    server_auth = _bool(body, "usage_server_auth", server_auth_default)
    client_auth = _bool(body, "usage_client_auth", False)
    app_info = agent.identity()[0] if with_app_info else None
    with agent.lock:
        cert = create_ratls_certificate(
            key,
            agent.provider,
            subject=subject,
            alt_names=alt_names,
            issuer=(agent.ca_cert, agent.ca_key),
            not_before=validity[0],
            not_after=validity[1],
            app_id=agent.app_id,
            app_info=app_info,
            vm_config=vm_config(agent),
            server_auth=server_auth,
            client_auth=client_auth,
        )
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return {
        "key": pem,
        "certificate_chain": [
            cert.public_bytes(Encoding.PEM).decode(),
            agent.ca_cert.public_bytes(Encoding.PEM).decode(),
        ],
    }


def sign(agent: Agent, body: Body) -> Body:
    """dstack's Sign: the key is GetKey("vms") and the chain is [signature, GetKey's chain
    for purpose "signing"]."""
    algorithm = _str(body, "algorithm")
    if algorithm == "k256":
        algorithm = "secp256k1"
    key = keys.signing_key(agent.seed, algorithm)
    signature = keys.sign(key, algorithm, _hex(body, "data"))
    chain = [signature, *agent.chain(keys.SIGN_PURPOSE, key.public)]
    return {
        "signature": signature.hex(),
        "signature_chain": [c.hex() for c in chain],
        "public_key": key.public.hex(),
        "tkms": agent.certificates(),
    }


def verify(agent: Agent, body: Body) -> Body:
    valid = keys.verify(
        _str(body, "algorithm"),
        _hex(body, "data"),
        _hex(body, "signature"),
        _hex(body, "public_key"),
    )
    return {"valid": valid}


def get_version(agent: Agent, body: Body) -> Body:
    return {"version": version(), "rev": "tkms"}


ENDPOINTS: dict[str, Endpoint] = {
    "GetKey": get_key,
    "GetQuote": get_quote,
    "GetTlsKey": get_tls_key,
    "Info": info,
    "Attest": attest,
    "GpuInfo": gpu_info,
    "Sign": sign,
    "Verify": verify,
    "Version": get_version,
    "EmitEvent": emit_event,
}
