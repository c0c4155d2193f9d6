"""Every name `guest.__all__` promises resolves (they load lazily)."""

from __future__ import annotations

import guest


def test_every_exported_name_resolves() -> None:
    for name in guest.__all__:
        assert getattr(guest, name) is not None, name
