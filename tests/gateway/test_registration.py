"""Registration judged step by step: parse, freshness, evidence, binding, replay, approval;
refusals record nothing. Evidence comes from the simulator TEE; governance is an in-process fake
that counts its reads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from attest import BindingLabel, compute_report_data, event_log_to_json
from attest.providers import SimulatorProvider
from contracts import AppBootInfo, AuthDecision
from gateway.backends import BackendPolicy, parse_networks
from gateway.chain import NO_CHANGES, Changes, GovernanceView
from gateway.names import instance_route_id
from gateway.registration import Registrar, RegistrationRefused, registration_digest
from gateway.table import RouteTable
from guest.measure import measure_app_boot
from protos.tkms.v1 import gateway_pb2

APP = bytes.fromhex("ab" * 20)
BASE = "gw.test"


KEY = bytes(range(32))  # the SPKI hash of the TLS key the CVM serves


@dataclass
class FakeGovernance:
    """`GovernanceReads` in process: `reads` counts every call, `fail` makes each one raise."""

    simulator: bool = True
    allowed: set[str] = field(default_factory=lambda: {"0x" + APP.hex()})
    fail: bool = False
    asked: list[AppBootInfo] = field(default_factory=list)
    block: int = 1
    changed: Changes = NO_CHANGES
    reads: int = 0

    def _read(self) -> None:
        self.reads += 1
        if self.fail:
            raise ConnectionError("rpc down")

    def head(self) -> int:
        self._read()
        return self.block

    def simulator_allowed(self, block: int) -> bool:
        self._read()
        return self.simulator

    def is_app_allowed(self, info: AppBootInfo, block: int) -> AuthDecision:
        self._read()
        self.asked.append(info)
        ok = info.app_id.lower() in self.allowed
        return AuthDecision(ok, "" if ok else "app not registered")

    def changes(self, first: int, last: int, apps: object) -> Changes:
        self._read()
        return self.changed

    def view(self) -> GovernanceView:
        """A view that has read this chain once (unless it fails)."""
        view = GovernanceView(self)
        with contextlib.suppress(ConnectionError):
            view.refresh()
        return view


@dataclass
class Cvm:
    provider: SimulatorProvider
    instance_id: bytes

    def request(
        self,
        *,
        base_domain: str = BASE,
        host: str = "10.0.0.7",
        issued_at: float | None = None,
        quoted: bytes | None = None,
        tls_key_sha256: bytes = KEY,
        nonce: bytes | None = None,
    ) -> gateway_pb2.RegisterRequest:
        registration = gateway_pb2.Registration(
            base_domain=base_domain,
            host=host,
            issued_at=int(time.time() if issued_at is None else issued_at),
            tls_key_sha256=tls_key_sha256,
            nonce=os.urandom(16) if nonce is None else nonce,
        ).SerializeToString()
        digest = registration_digest(quoted if quoted is not None else registration)
        quote = self.provider.get_quote(compute_report_data(BindingLabel.GATEWAY_V1, digest))
        return gateway_pb2.RegisterRequest(
            registration=registration,
            quote=quote,
            event_log=event_log_to_json(self.provider.event_log()),
        )


def cvm(app_id: bytes = APP, instance_id: bytes | None = None) -> Cvm:
    provider = SimulatorProvider()
    instance_id = instance_id or os.urandom(20)
    measure_app_boot(
        provider,
        app_id=app_id,
        compose=b'{"services": {}}',
        instance_id=instance_id,
        kms_id="0x" + "42" * 20,
        os_image=b"\x11" * 32,
    )
    return Cvm(provider, instance_id)


def registrar(governance: FakeGovernance | None = None) -> tuple[Registrar, RouteTable]:
    table = RouteTable()
    backends = BackendPolicy(parse_networks(["10.0.0.0/8"]))
    view = (governance or FakeGovernance()).view()
    return Registrar(BASE, table, view, ttl=60, backends=backends), table


def refused(reg: Registrar, request: gateway_pb2.RegisterRequest) -> RegistrationRefused:
    with pytest.raises(RegistrationRefused) as info:
        reg.register(request)
    return info.value


def test_an_approved_cvm_is_routed_by_app_id_and_derived_instance_id() -> None:
    reg, table = registrar()
    machine = cvm()
    reply = reg.register(machine.request(host="10.0.0.7"))
    assert reply.app_id == APP and reply.instance_id == machine.instance_id
    route_id = instance_route_id(APP, machine.instance_id)
    assert list(reply.names) == [f"{APP.hex()}.{BASE}", f"i-{route_id.hex()}.{BASE}"]
    assert 55 < reply.expires_at - time.time() <= 60
    for target, instance in ((APP.hex(), False), (route_id.hex(), True)):
        [backend] = table.candidates(target, instance=instance)
        assert backend.host == "10.0.0.7" and backend.instance_id == route_id
        assert backend.tls_key_sha256 == KEY  # the key the proxy will accept on that host
    assert table.candidates(machine.instance_id.hex(), instance=True) == []


def test_the_instance_id_the_gateway_routes_by_is_bound_to_the_app() -> None:
    reg, table = registrar(FakeGovernance(allowed={"0x" + APP.hex(), "0x" + "cd" * 20}))
    shared = b"\x0e" * 20
    reg.register(cvm(APP, shared).request(host="10.0.0.1"))
    reg.register(cvm(b"\xcd" * 20, shared).request(host="10.0.0.2"))
    mine, theirs = instance_route_id(APP, shared), instance_route_id(b"\xcd" * 20, shared)
    assert mine != theirs
    assert [b.host for b in table.candidates(mine.hex(), instance=True)] == ["10.0.0.1"]
    assert [b.host for b in table.candidates(theirs.hex(), instance=True)] == ["10.0.0.2"]
    # dstack-util's formula, SHA-256(seed || app_id)[:20], with the measured id as the seed
    assert mine == hashlib.sha256(shared + APP).digest()[:20]


def test_an_app_measured_without_an_instance_id_is_refused() -> None:
    governance = FakeGovernance()
    reg, table = registrar(governance)
    provider = SimulatorProvider()
    for event, payload in (
        ("system-preparing", b""),
        ("app-id", APP),
        ("compose-hash", b"\x33" * 32),
        ("instance-id", b""),  # dstack's no_instance_id
        ("boot-mr-done", b""),
        ("system-ready", b""),
    ):
        provider.extend_rtmr(3, event, payload)
    error = refused(reg, Cvm(provider, b"").request())
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert str(error).startswith("identity: app-id and instance-id must be 20-byte events")
    assert governance.asked == []  # refused before the chain is asked
    assert len(table) == 0


def test_two_instances_of_an_app_are_both_routed() -> None:
    reg, table = registrar()
    first, second = cvm(), cvm()
    reg.register(first.request(host="10.0.0.1"))
    reg.register(second.request(host="10.0.0.2"))
    assert {b.host for b in table.candidates(APP.hex(), instance=False)} == {"10.0.0.1", "10.0.0.2"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"base_domain": "other.test"},
            "for base domain 'other.test', this gateway serves 'gw.test'",
        ),
        ({"host": "bad host!"}, "host 'bad host!' is not an IP address"),
        ({"host": "app.internal"}, "host 'app.internal' is not an IP address"),
        ({"issued_at": -3600}, r"issued_at is 3\d{3}s ago \(window 120s back"),
        (
            {"issued_at": 115},
            r"issued_at is 11\ds ahead \(window 120s back, 10s ahead",
        ),
        ({"tls_key_sha256": b""}, "tls_key_sha256 must be 32 bytes, got 0"),
        ({"tls_key_sha256": bytes(33)}, "tls_key_sha256 must be 32 bytes, got 33"),
        ({"nonce": b"\x01" * 8}, "nonce must be 16 bytes, got 8"),
    ],
)
def test_malformed_or_stale_registrations_are_invalid(
    changes: dict[str, Any], message: str
) -> None:
    reg, table = registrar()
    if "issued_at" in changes:  # an offset from now, taken when the test runs
        changes = {**changes, "issued_at": time.time() + changes["issued_at"]}
    error = refused(reg, cvm().request(**changes))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, str(error))
    assert len(table) == 0


def test_garbage_registration_bytes_are_invalid() -> None:
    reg, table = registrar()
    request = cvm().request()
    request.registration = b"\xff\xff\xff"
    error = refused(reg, request)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a tkms.v1.Registration" in str(error)
    assert len(table) == 0


def test_evidence_over_another_registration_is_refused_at_binding() -> None:
    reg, table = registrar()
    machine = cvm()
    other = gateway_pb2.Registration(base_domain=BASE, host="10.6.6.6", issued_at=int(time.time()))
    error = refused(reg, machine.request(quoted=other.SerializeToString()))
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert str(error).startswith("binding:")
    assert len(table) == 0


def test_an_unapproved_app_is_refused_after_asking_governance() -> None:
    governance = FakeGovernance()
    reg, table = registrar(governance)
    error = refused(reg, cvm(app_id=b"\x01" * 20).request())
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert "approval: app 0x" + "01" * 20 in str(error).lower()
    assert [i.app_id.lower() for i in governance.asked] == ["0x" + "01" * 20]
    assert len(table) == 0


def test_simulator_evidence_is_refused_when_governance_disallows_it() -> None:
    reg, table = registrar(FakeGovernance(simulator=False))
    error = refused(reg, cvm().request())
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert "simulator" in str(error).lower()
    assert len(table) == 0


def test_an_unreadable_chain_fails_closed() -> None:
    governance = FakeGovernance()
    reg, table = registrar(governance)
    governance.fail = True
    error = refused(reg, cvm().request())
    assert error.code is grpc.StatusCode.UNAVAILABLE
    # The kind of failure only: the transport's text may carry the RPC URL and its API key.
    assert "ConnectionError" in str(error) and "rpc down" not in str(error)
    assert len(table) == 0


def test_a_gateway_that_never_read_the_chain_fails_closed() -> None:
    reg, table = registrar(FakeGovernance(fail=True))
    error = refused(reg, cvm().request())
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert str(error) == "chain: the gateway has not read the chain yet"
    assert len(table) == 0


def test_a_stale_view_of_the_chain_fails_closed() -> None:
    governance = FakeGovernance()
    now = [0.0]
    view = GovernanceView(governance, max_age=30, clock=lambda: now[0])
    view.refresh()
    reg = Registrar(
        BASE, RouteTable(), view, backends=BackendPolicy(parse_networks(["10.0.0.0/8"]))
    )
    now[0] = 31.0
    error = refused(reg, cvm().request())
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert "view of the chain is 31s old (bound 30s)" in str(error)


def test_a_corrupted_quote_is_refused() -> None:
    reg, table = registrar()
    request = cvm().request()
    # a byte of the TD report (the signed body): the quote's signature no longer verifies
    request.quote = request.quote[:100] + bytes([request.quote[100] ^ 1]) + request.quote[101:]
    error = refused(reg, request)
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert str(error).startswith("quote:")
    assert len(table) == 0


def test_a_backend_outside_the_allowed_networks_is_refused_before_the_evidence() -> None:
    reg, table = registrar()
    request = cvm().request(host="169.254.169.254")
    request.quote = b"not even a quote"
    error = refused(reg, request)
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert str(error) == (
        "backend: host 169.254.169.254 is link-local: this gateway relays only to public "
        "addresses and to its allowed_backend_networks (10.0.0.0/8)"
    )
    assert len(table) == 0


def test_an_ipv4_mapped_host_is_recorded_as_ipv4() -> None:
    reg, table = registrar()
    reg.register(cvm().request(host="::ffff:10.0.0.9"))
    assert [b.host for b in table.snapshot()] == ["10.0.0.9"]


def test_junk_registrations_cost_no_chain_read() -> None:
    """G-06: every Register read simulatorAllowed from the chain before the quote was even
    parsed, so junk burnt the gateway's RPC quota."""
    governance = FakeGovernance()
    reg, table = registrar(governance)
    before = governance.reads
    for i in range(300):
        request = cvm().request()
        request.quote = os.urandom(64 + i)
        assert refused(reg, request).code is grpc.StatusCode.PERMISSION_DENIED
    assert governance.reads == before
    assert len(table) == 0


def test_the_simulator_flag_is_read_with_the_view_not_per_registration() -> None:
    governance = FakeGovernance()
    reg, _ = registrar(governance)
    reads = governance.reads  # the view's first refresh: head + simulatorAllowed
    for _ in range(5):
        reg.register(cvm().request())
    assert governance.reads - reads == 5  # one approval read each, nothing else
    reg.chain.refresh()  # no governance event: the flag is not read again
    assert governance.reads - reads == 6
    governance.block, governance.changed, governance.simulator = (
        2,
        Changes(True, frozenset()),
        False,
    )
    reg.chain.refresh()  # SimulatorAllowedSet (a governance change): read again
    error = refused(reg, cvm().request())
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert str(error) == (
        "quote: simulator quote, but governance does not allow simulators (block 2)"
    )


def test_a_replayed_registration_is_refused_within_its_window() -> None:
    """G-06: the same bytes and quote were accepted again until issued_at + 120 s."""
    governance = FakeGovernance()
    reg, table = registrar(governance)
    request = cvm().request(host="10.0.0.7")
    reg.register(request)
    asked = len(governance.asked)
    error = refused(reg, request)
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert str(error) == "replay: this registration was already accepted (register anew)"
    assert len(governance.asked) == asked  # refused before the chain is asked
    assert len(table) == 1
    reg.register(cvm().request(host="10.0.0.8"))  # a fresh registration is accepted


def test_the_replay_cache_forgets_digests_when_their_window_closes() -> None:
    from gateway.registration import ReplayCache

    now = [1000.0]
    cache = ReplayCache(lambda: now[0], limit=3)
    assert cache.claim(b"a", 1100.0) and not cache.claim(b"a", 1100.0)
    now[0] = 1100.0
    assert cache.claim(b"a", 1200.0)  # the old entry lapsed
    for digest in (b"b", b"c", b"d"):
        assert cache.claim(digest, 1300.0)
    assert cache.claim(b"a", 1300.0)  # evicted as the oldest when the cache was full
