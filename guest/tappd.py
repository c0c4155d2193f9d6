"""dstack's legacy `Tappd` service, for apps written against `TappdClient`.

dstack serves it on `/var/run/tappd.sock` at `/prpc/Tappd.<Method>` (and `/prpc/<Method>`),
with JSON bodies and bytes as hex, beside the current `DstackGuest` API (`guest.api`). Here it
is served by the same agent with the same app keys:

| method        | request                                   | reply                          |
|---------------|-------------------------------------------|--------------------------------|
| DeriveKey     | path, subject, alt_names, usage_ra_tls,   | key (PKCS#8 PEM), certificate_ |
|               | usage_server_auth, usage_client_auth,     | chain [leaf, app CA]           |
|               | random_seed                               |                                |
| DeriveK256Key | path, purpose, algorithm (as GetKey)      | k256_key, k256_signature_chain |
| TdxQuote      | report_data, hash_algorithm, prefix       | quote, event_log,              |
|               |                                           | hash_algorithm, prefix         |
| RawQuote      | report_data (exactly 64 bytes)            | as TdxQuote                    |
| Info, Version | -                                         | as DstackGuest's               |

DeriveKey's key is P-256, derived from the app seed and `path` (`keys.tappd_tls_key`), so the
same in every instance of the app, unless `random_seed` asks for a fresh one; its certificate
is issued by the app CA as GetTlsKey's is. DeriveK256Key is GetKey under dstack's old field
names. TdxQuote quotes `guest.report_data.app_report_data` of the content; the reply's
`prefix` is the tag that was hashed in (`""` for raw).
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.asymmetric import ec

from guest import api, keys
from guest.agent import Agent
from guest.api import BadRequest, Body, Endpoint
from guest.report_data import APP_DATA_TAG, DEFAULT_HASH, app_report_data

#: dstack's DeriveKey certificates carry no validity request: ten years from now.
_TEN_YEARS = dt.timedelta(days=3650)


def derive_key(agent: Agent, body: Body) -> Body:
    path = api._str(body, "path", "")
    random_seed = api._bool(body, "random_seed", False)
    held = api.keys_for(agent, body)
    if random_seed:
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = keys.tappd_tls_key(held.seed, path)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return api.issue_tls_key(
        agent,
        held,
        key,
        body,
        with_app_info=False,
        validity=(start, start + _TEN_YEARS),
        server_auth_default=False,  # proto3 defaults: an absent flag is false
    )


def derive_k256_key(agent: Agent, body: Body) -> Body:
    got = api.get_key(agent, body)
    return {"k256_key": got["key"], "k256_signature_chain": got["signature_chain"]}


def tdx_quote(agent: Agent, body: Body) -> Body:
    content = api._hex(body, "report_data")
    algorithm = api._str(body, "hash_algorithm", "") or DEFAULT_HASH
    tag = "" if algorithm == "raw" else api._str(body, "prefix", "") or APP_DATA_TAG
    try:
        report_data = app_report_data(content, algorithm, tag)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    quote, log = agent.evidence(report_data)
    return {"quote": quote.hex(), "event_log": log, "hash_algorithm": algorithm, "prefix": tag}


def raw_quote(agent: Agent, body: Body) -> Body:
    return tdx_quote(agent, {"report_data": body.get("report_data"), "hash_algorithm": "raw"})


ENDPOINTS: dict[str, Endpoint] = {
    "DeriveKey": derive_key,
    "DeriveK256Key": derive_k256_key,
    "TdxQuote": tdx_quote,
    "RawQuote": raw_quote,
    "Info": api.info,
    "Version": api.get_version,
}
