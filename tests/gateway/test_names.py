"""Routing names: the accepted forms, their routes, and a clear refusal for everything else."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.names import (
    Route,
    RouteError,
    app_name,
    instance_name,
    instance_route_id,
    parse_server_name,
)

BASE = "gw.example.test"
APP = "ab" * 20


@pytest.mark.parametrize(
    ("name", "route", "backend_port"),
    [
        (f"{APP}.{BASE}", Route(APP, None, passthrough=False), 443),
        (f"{APP}s.{BASE}", Route(APP, None, passthrough=True), 443),
        (f"{APP}-8080.{BASE}", Route(APP, 8080, passthrough=False), 8080),
        (f"{APP}-8443s.{BASE}", Route(APP, 8443, passthrough=True), 8443),
        (f"{APP}-1.{BASE}", Route(APP, 1, passthrough=False), 1),
        (f"{APP}-65535s.{BASE}", Route(APP, 65535, passthrough=True), 65535),
        (f"{APP.upper()}-443S.GW.Example.TEST.", Route(APP, 443, passthrough=True), 443),
        (f"i-{APP}.{BASE}", Route(APP, None, passthrough=False, instance=True), 443),
        (f"I-{APP}-8443s.{BASE}", Route(APP, 8443, passthrough=True, instance=True), 8443),
    ],
)
def test_accepted_names(name: str, route: Route, backend_port: int) -> None:
    assert parse_server_name(name, BASE) == route
    assert route.backend_port == backend_port


def test_the_base_domain_is_case_insensitive_with_an_optional_dot() -> None:
    assert parse_server_name(f"{APP}.{BASE}", "GW.example.test.") == Route(APP, None, False)


@given(
    st.binary(min_size=20, max_size=20),
    st.none() | st.integers(1, 65535),
    st.booleans(),
    st.booleans(),
)
def test_every_route_has_a_name_that_parses_back(
    raw: bytes, port: int | None, s: bool, instance: bool
) -> None:
    label = raw.hex() + (f"-{port}" if port is not None else "") + ("s" if s else "")
    name = ("i-" if instance else "") + label
    assert len(name) <= 63  # one DNS label
    assert parse_server_name(f"{name}.{BASE}", BASE) == Route(raw.hex(), port, s, instance)


@given(st.binary(min_size=20, max_size=20), st.binary(min_size=20, max_size=20))
def test_instance_names_are_derived_from_both_ids(app: bytes, instance: bytes) -> None:
    route_id = instance_route_id(app, instance)
    assert route_id == hashlib.sha256(instance + app).digest()[:20]
    assert parse_server_name(instance_name(route_id, BASE), BASE) == Route(
        route_id.hex(), None, passthrough=False, instance=True
    )
    assert parse_server_name(app_name(app, BASE), BASE) == Route(app.hex(), None, False)


def test_instance_route_id_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="must be 20 bytes"):
        instance_route_id(b"\x01" * 20, b"")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (f"{APP}.other.test", r"is not under 'gw\.example\.test'"),
        (f"{APP}.x{BASE}", r"is not under"),
        (BASE, r"is not under"),
        (
            f"a.{APP}.{BASE}",
            r"has extra labels .* one label \[i-\]<target>\[-<port>\]\[s\] is expected",
        ),
        (f"{APP[:-1]}.{BASE}", r"target '[0-9a-f]{39}' is not an app or instance id"),
        (f"0x{APP}.{BASE}", r"target '0x.*' is not an app or instance id"),
        (f"{APP[:-1]}g-80.{BASE}", r"is not an app or instance id \(40 hex characters\)"),
        (f"{APP}-0.{BASE}", r"port '0' is not in 1\.\.65535"),
        (f"{APP}-65536.{BASE}", r"port '65536' is not in 1\.\.65535"),
        (f"{APP}-0443.{BASE}", r"port '0443' is not in 1\.\.65535 \(without leading zeros\)"),
        (f"{APP}-.{BASE}", r"'-' after the target is not -<port>, s or -<port>s"),
        (f"{APP}-80x.{BASE}", r"'-80x' after the target is not -<port>, s or -<port>s"),
        (f"{APP}ss.{BASE}", r"is not an app or instance id"),
        (f"{APP}-123456.{BASE}", r"'-123456' after the target is not"),
        (f".{BASE}", r"target '' is not an app or instance id"),
        (f"i-{APP[:-1]}.{BASE}", r"target '[0-9a-f]{39}' is not an app or instance id"),
        (f"i{APP}.{BASE}", r"target 'i[0-9a-f]{40}' is not an app or instance id"),
        (f"i-i-{APP}.{BASE}", r"target 'i' is not an app or instance id"),
    ],
)
def test_refused_names_say_why(name: str, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        parse_server_name(name, BASE)


def test_long_names_are_cut_in_messages() -> None:
    with pytest.raises(RouteError, match=r"\.\.\. \(1014 characters\) is not under") as info:
        parse_server_name("a" * 1000 + ".other.example", BASE)
    assert len(str(info.value)) < 200
