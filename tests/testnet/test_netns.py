"""The namespace helper itself (tests/testnet/netns.py): under pytest-xdist a worker may make
a module's hosts again right after tearing them down, or two sets may live in one process."""

from __future__ import annotations

import subprocess

from tests.testnet.netns import Hosts


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_hosts_made_again_at_once_and_side_by_side_do_not_collide() -> None:
    # Before: the veth pairs outlived `ip netns del` for a moment, so the second set's
    # `ip link add tkv<pid>1` failed with "File exists" (5 errors under `pytest -n 2`).
    for _ in range(3):
        with Hosts(3) as hosts:
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
            assert hosts.namespace(3) in listed.stdout
    with Hosts(2) as first, Hosts(2) as second:
        assert {first.namespace(1), first.namespace(2)}.isdisjoint(
            {second.namespace(1), second.namespace(2)}
        )
        assert first.subnet != second.subnet
        names = (first.bridge, second.bridge)
        assert all(f" {name}:" in _links() for name in names)
    assert not any(f" {name}:" in _links() for name in names)
