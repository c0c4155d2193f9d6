"""Registration judged step by step: parse, freshness, evidence, binding, approval; refusals
record nothing. Evidence comes from the simulator TEE; governance is an in-process fake."""

from __future__ import annotations

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
from gateway.registration import Registrar, RegistrationRefused, check_host, registration_digest
from gateway.table import RouteTable
from guest.measure import measure_app_boot
from protos.tkms.v1 import gateway_pb2

APP = bytes.fromhex("ab" * 20)
BASE = "gw.test"


@dataclass
class FakeGovernance:
    simulator: bool = True
    allowed: set[str] = field(default_factory=lambda: {"0x" + APP.hex()})
    fail: bool = False
    asked: list[AppBootInfo] = field(default_factory=list)

    def get_simulator_allowed(self) -> bool:
        if self.fail:
            raise ConnectionError("rpc down")
        return self.simulator

    def is_app_allowed(self, info: AppBootInfo) -> AuthDecision:
        self.asked.append(info)
        ok = info.app_id.lower() in self.allowed
        return AuthDecision(ok, "" if ok else "app not registered")


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
    ) -> gateway_pb2.RegisterRequest:
        registration = gateway_pb2.Registration(
            base_domain=base_domain,
            host=host,
            issued_at=int(time.time() if issued_at is None else issued_at),
        ).SerializeToString()
        digest = registration_digest(quoted if quoted is not None else registration)
        quote = self.provider.get_quote(compute_report_data(BindingLabel.GATEWAY_V1, digest))
        return gateway_pb2.RegisterRequest(
            registration=registration,
            quote=quote,
            event_log=event_log_to_json(self.provider.event_log()),
        )


def cvm(app_id: bytes = APP) -> Cvm:
    provider = SimulatorProvider()
    instance_id = os.urandom(20)
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
    return Registrar(BASE, table, governance or FakeGovernance(), ttl=60), table


def refused(reg: Registrar, request: gateway_pb2.RegisterRequest) -> RegistrationRefused:
    with pytest.raises(RegistrationRefused) as info:
        reg.register(request)
    return info.value


def test_an_approved_cvm_is_routed_by_app_id_and_instance_id() -> None:
    reg, table = registrar()
    machine = cvm()
    reply = reg.register(machine.request(host="10.0.0.7"))
    assert reply.app_id == APP and reply.instance_id == machine.instance_id
    assert set(reply.names) == {f"{APP.hex()}.{BASE}", f"{machine.instance_id.hex()}.{BASE}"}
    assert 55 < reply.expires_at - time.time() <= 60
    for target in (APP.hex(), machine.instance_id.hex()):
        [backend] = table.candidates(target)
        assert backend.host == "10.0.0.7" and backend.instance_id == machine.instance_id


def test_two_instances_of_an_app_are_both_routed() -> None:
    reg, table = registrar()
    first, second = cvm(), cvm()
    reg.register(first.request(host="10.0.0.1"))
    reg.register(second.request(host="10.0.0.2"))
    assert {b.host for b in table.candidates(APP.hex())} == {"10.0.0.1", "10.0.0.2"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"base_domain": "other.test"},
            "for base domain 'other.test', this gateway serves 'gw.test'",
        ),
        ({"host": "bad host!"}, "'bad host!' is neither an IP address nor a DNS name"),
        ({"issued_at": time.time() - 3600}, r"issued_at is 3\d{3}s from now \(window 120s\)"),
    ],
)
def test_malformed_or_stale_registrations_are_invalid(
    changes: dict[str, Any], message: str
) -> None:
    reg, table = registrar()
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
    reg, table = registrar(FakeGovernance(fail=True))
    error = refused(reg, cvm().request())
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert "rpc down" in str(error)
    assert len(table) == 0


def test_a_corrupted_quote_is_refused() -> None:
    reg, table = registrar()
    request = cvm().request()
    # a byte of the TD report (the signed body): the quote's signature no longer verifies
    request.quote = request.quote[:100] + bytes([request.quote[100] ^ 1]) + request.quote[101:]
    error = refused(reg, request)
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert str(error).startswith("quote:")
    assert len(table) == 0


def test_hosts_are_ip_addresses_or_dns_names() -> None:
    assert check_host("127.0.0.1") == "127.0.0.1"
    assert check_host("::1") == "::1"
    assert check_host("App-1.Internal.") == "app-1.internal"
    for bad in ("", "a b", "x" * 300, "-a.b", "a..b", "host:80"):
        with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
            check_host(bad)
