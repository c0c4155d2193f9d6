"""Fuzz targets for the gateway's boundaries: the ClientHello parser, the `Gateway` gRPC
service and the gateway's config loader.

* ClientHello: real hellos from Python's TLS client (several SNI/ALPN shapes, split over
  records) mutated at the record, handshake and extension headers, plus raw bytes. Documented
  answers: a `ClientHello`, None (a prefix: more bytes needed), or `HelloError`. A parsed
  hello must be a prefix-stable answer: the same bytes parse the same way twice.
* Gateway service: the real `GatewayServicer` over a real `Registrar` (simulator evidence
  verified in full, an in-process governance), fed through the method deserializers like
  the node's services (`tests.fuzz.targets_grpc`). Pools hold genuine registrations and
  evidence so that many cases reach the evidence, binding and approval steps.
* Config: `load_gateway_config` on TOML documents with odd values and keys; the documented
  error is `GatewayConfigError`.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from hypothesis import strategies as st

from gateway.backends import BackendPolicy, parse_networks
from gateway.clienthello import HelloError, parse_client_hello
from gateway.config import GatewayConfigError, load_gateway_config
from gateway.registration import GatewayServicer, Registrar
from gateway.table import RouteTable
from protos.tkms.v1 import gateway_pb2
from tests.fuzz.grpc_harness import FuzzContext, Handler, methods_of
from tests.fuzz.messages import Pools
from tests.fuzz.mutate import raw_or_mutant, rich_mutants, seeded
from tests.fuzz.runner import Prepared, Target
from tests.fuzz.targets_config import _odd, to_toml
from tests.fuzz.targets_grpc import _prepared

BASE = "gw.fuzz"

# -- ClientHello -----------------------------------------------------------------------------


def _hellos() -> list[bytes]:
    from tests.gateway.tlsfixtures import client_hello, record, resplit

    hellos = [
        client_hello("abababababababababababababababababababab-8080s.gw.fuzz", ["h2"]),
        client_hello("app.gw.fuzz", ["h2", "http/1.1"]),
        client_hello(None),
        client_hello("x." * 60 + "gw.fuzz"),
    ]
    split = resplit(hellos[0], [40, 41, 200])
    return [*hellos, split, hellos[1] + record(b"\x01\x00", content_type=0x17)]


def _parse_twice(data: bytes) -> None:
    first = parse_client_hello(data)
    if first != parse_client_hello(bytes(data)):
        raise AssertionError("the same bytes parsed two ways")


def _clienthello() -> Prepared:
    seeds = _hellos()
    hot = [0, 1, 3, 4, 5, 6, 9, 43, 44, 76, 77]  # record, handshake, session id, suites
    return Prepared(
        strategy=raw_or_mutant(seeds, hot, max_raw=600),
        rich=rich_mutants(seeds, hot, max_raw=600),
        check=_parse_twice,
        allowed=(HelloError,),
    )


# -- Gateway gRPC service --------------------------------------------------------------------


def _service() -> Prepared:
    from tests.gateway.test_registration import APP, FakeGovernance, cvm

    backends = BackendPolicy(parse_networks(["10.0.0.0/8"]))
    registrar = Registrar(BASE, RouteTable(), FakeGovernance().view(), ttl=60, backends=backends)
    servicer = GatewayServicer(registrar, proxy_port=lambda: 8443, app_id=b"\x77" * 20)
    approved, stranger = cvm(APP), cvm(b"\xcd" * 20)
    now = time.time()
    requests = [
        approved.request(base_domain=BASE, host="10.0.0.7"),
        approved.request(base_domain=BASE, host="app.internal"),
        approved.request(base_domain=BASE, host="169.254.169.254"),
        stranger.request(base_domain=BASE, host="10.0.0.7"),
        approved.request(base_domain="other.example", host="10.0.0.8"),
        approved.request(base_domain=BASE, host="10.0.0.9", issued_at=now - 3600),
    ]
    registrations = [r.registration for r in requests]
    pools = Pools(
        {
            "registration": [*registrations, b"", b"\x0a\x01"],
            "quote": [r.quote for r in requests],
            "event_log": [r.event_log for r in requests],
            "vm_config": ["", '{"cpu_count": 2}', "{"],
        },
        seeds={"Register": list(requests), "Info": [gateway_pb2.InfoRequest()]},
    )
    methods = methods_of(gateway_pb2.DESCRIPTOR, "Gateway")
    handlers = {m.name: cast(Handler, getattr(servicer, m.name)) for m in methods}
    return _prepared(methods, handlers, pools, lambda caller: FuzzContext())


# -- Gateway config --------------------------------------------------------------------------

_GOOD_TOP = {"base_domain": "tkms.localhost", "data_dir": "state"}
_GOOD_SECTIONS: dict[str, dict[str, Any]] = {
    "listen": {"proxy": "127.0.0.1:8443", "registration": "127.0.0.1:8444"},
    "chain": {"rpc_url": "http://127.0.0.1:8545", "governance": "0x" + "42" * 20},
    "agent": {"socket": "dstack.sock"},
    "acme": {
        "directory_url": "https://127.0.0.1:14000/dir",
        "dns_provider": "rfc2136",
        "dns_server": "127.0.0.1:5353",
        "tsig_key_name": "tkms-gateway",
        "tsig_key_file": "tsig.key",
        "renew_before_days": 30,
    },
    "registration": {
        "ttl_seconds": 300,
        "freshness_seconds": 120.0,
        "allowed_backend_networks": ["127.0.0.0/8", "fd00::/8"],
    },
}


def _config_case(rng: random.Random) -> bytes:
    top = dict(_GOOD_TOP)
    sections = {name: dict(values) for name, values in _GOOD_SECTIONS.items()}
    for _ in range(rng.randint(0, 3)):
        roll = rng.random()
        if roll < 0.5:
            where = rng.choice([top, *sections.values()])
            if where:
                where[rng.choice(list(where))] = _odd(rng)
        elif roll < 0.7:
            rng.choice([top, *sections.values()])[rng.choice(["x", "port", "ttl"])] = _odd(rng)
        elif roll < 0.85 and sections:
            del sections[rng.choice(list(sections))]
        elif top:
            del top[rng.choice(list(top))]
    data = to_toml(top, sections)
    if rng.random() < 0.1:
        raw = bytearray(data)
        raw[rng.randrange(len(raw))] = rng.randrange(256)
        data = bytes(raw)
    return data


def _config() -> Prepared:
    directory = Path(tempfile.mkdtemp(prefix="tkms-fuzz-gateway-"))
    path = directory / "gateway.toml"

    def check(data: bytes) -> None:
        path.write_bytes(data)
        load_gateway_config(path)

    return Prepared(
        strategy=seeded(_config_case),
        rich=st.binary(max_size=400),
        check=check,
        allowed=(GatewayConfigError,),
        close=lambda: shutil.rmtree(directory, ignore_errors=True),
    )


TARGETS = (
    Target("gateway-hello", "gateway ClientHello parser (SNI, ALPN)", _clienthello),
    Target("grpc-gateway", "gateway Gateway servicer: Register, Info", _service),
    Target("gateway-config", "gateway config loader (TOML)", _config),
)
