"""`mpc.__all__` is exactly the public surface, and every name in it exists (httpx style)."""

from __future__ import annotations

import mpc


def test_all_names_exist_and_are_public() -> None:
    assert len(set(mpc.__all__)) == len(mpc.__all__)
    for name in mpc.__all__:
        assert hasattr(mpc, name), name
        assert not name.startswith("_")


def test_no_public_name_is_left_out() -> None:
    exported = {n for n in vars(mpc) if not n.startswith("_")}
    submodules = {n for n, v in vars(mpc).items() if type(v).__name__ == "module"}
    assert exported - submodules == set(mpc.__all__)
