"""The routing table: lookup by app or instance, round robin, expiry, and dead backends."""

from __future__ import annotations

import pytest

from gateway.table import Registration, RouteTable

APP = bytes.fromhex("aa" * 20)
OTHER_APP = bytes.fromhex("bb" * 20)
KEY = bytes(32)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reg(n: int, app: bytes = APP, *, expires_at: float = 2000.0, host: str = "") -> Registration:
    return Registration(
        app_id=app,
        instance_id=bytes([n]) * 20,
        host=host or f"10.0.0.{n}",
        expires_at=expires_at,
        tls_key_sha256=KEY,
    )


def hosts(regs: list[Registration]) -> list[str]:
    return [r.host for r in regs]


def app_hosts(table: RouteTable, app: bytes = APP) -> list[str]:
    """The hosts an app name tries, in order (one rotation step)."""
    return hosts(table.candidates(app.hex(), instance=False))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(clock: Clock) -> RouteTable:
    table = RouteTable(clock=clock, dead_for=5.0)
    for n in (1, 2, 3):
        table.upsert(reg(n))
    table.upsert(reg(9, OTHER_APP))
    return table


def test_an_app_id_rotates_over_its_instances(table: RouteTable) -> None:
    orders = [app_hosts(table) for _ in range(4)]
    assert orders == [
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        ["10.0.0.2", "10.0.0.3", "10.0.0.1"],
        ["10.0.0.3", "10.0.0.1", "10.0.0.2"],
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
    ]
    assert app_hosts(table, OTHER_APP) == ["10.0.0.9"]


def test_an_instance_id_routes_to_that_instance_only(table: RouteTable) -> None:
    assert hosts(table.candidates("02" * 20, instance=True)) == ["10.0.0.2"]
    assert table.candidates("cc" * 20, instance=True) == []


def test_app_ids_and_instance_ids_are_separate_namespaces(table: RouteTable) -> None:
    table.upsert(Registration(OTHER_APP, APP, "10.6.6.6", 2000.0, KEY))  # instance = APP
    assert app_hosts(table) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert hosts(table.candidates(APP.hex(), instance=True)) == ["10.6.6.6"]
    assert table.candidates("01" * 20, instance=False) == []


def test_expired_registrations_are_not_routed_and_expire_drops_them(
    table: RouteTable, clock: Clock
) -> None:
    table.upsert(reg(4, expires_at=1500.0))
    table.upsert(reg(5, expires_at=3000.0))
    clock.now = 2000.0  # 1..3 and 9 expire exactly now, 4 earlier
    assert app_hosts(table) == ["10.0.0.5"]
    assert table.candidates("04" * 20, instance=True) == []
    assert len(table) == 6
    assert table.expire() == 5
    assert hosts(table.snapshot()) == ["10.0.0.5"]
    assert table.expire() == 0


def test_a_dead_backend_goes_last_until_dead_for_passes(table: RouteTable, clock: Clock) -> None:
    table.mark_dead(bytes([1]) * 20)
    assert app_hosts(table) == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    assert app_hosts(table) == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    clock.now += 4.9
    assert app_hosts(table)[-1] == "10.0.0.1"
    clock.now += 0.2
    assert app_hosts(table) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_mark_alive_restores_the_turn(table: RouteTable) -> None:
    table.mark_dead(bytes([1]) * 20)
    table.mark_dead(bytes([2]) * 20)
    assert app_hosts(table) == ["10.0.0.3", "10.0.0.1", "10.0.0.2"]
    table.mark_alive(bytes([1]) * 20)
    orders = [app_hosts(table) for _ in range(3)]
    assert orders == [  # rotations [2, 3, 1], [3, 1, 2], [1, 2, 3] with 2 still last
        ["10.0.0.3", "10.0.0.1", "10.0.0.2"],
        ["10.0.0.3", "10.0.0.1", "10.0.0.2"],
        ["10.0.0.1", "10.0.0.3", "10.0.0.2"],
    ]


def test_upsert_replaces_and_remove_forgets(table: RouteTable) -> None:
    table.upsert(reg(2, host="10.9.9.9"))
    assert len(table) == 4
    assert hosts(table.candidates("02" * 20, instance=True)) == ["10.9.9.9"]
    assert table.remove(bytes([2]) * 20)
    assert not table.remove(bytes([2]) * 20)
    assert table.remove(bytes([9]) * 20)
    assert table.candidates(OTHER_APP.hex(), instance=False) == []
    assert hosts(table.snapshot()) == ["10.0.0.1", "10.0.0.3"]


def test_an_instance_cannot_move_to_another_app(table: RouteTable) -> None:
    with pytest.raises(ValueError, match=r"instance 0101.* is registered for app aaaa.*, not bbbb"):
        table.upsert(reg(1, OTHER_APP))
    assert hosts(table.candidates("01" * 20, instance=True)) == ["10.0.0.1"]


@pytest.mark.parametrize("target", ["AA" * 20, "aa" * 19, "0x" + "aa" * 19, "zz" * 20])
def test_a_bad_target_is_refused(table: RouteTable, target: str) -> None:
    with pytest.raises(ValueError, match=r"is not 40 lowercase hex characters"):
        table.candidates(target, instance=False)


def test_registrations_check_their_ids() -> None:
    with pytest.raises(ValueError, match=r"app_id must be 20 bytes"):
        Registration(b"\x01" * 19, b"\x02" * 20, "::1", 0, KEY)
    with pytest.raises(ValueError, match=r"instance_id must be 20 bytes"):
        Registration(b"\x01" * 20, b"", "::1", 0, KEY)
    with pytest.raises(ValueError, match=r"tls_key_sha256 must be 32 bytes"):
        Registration(b"\x01" * 20, b"\x02" * 20, "::1", 0, b"\x00" * 31)
    for host in ("", "h", "app.internal", "10.0.0.1:80"):
        with pytest.raises(ValueError, match=r"host .* is not an IP address"):
            Registration(b"\x01" * 20, b"\x02" * 20, host, 0, KEY)
