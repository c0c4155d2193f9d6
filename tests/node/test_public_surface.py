"""Every name `node.__all__` promises resolves (they load lazily)."""

from __future__ import annotations

import node


def test_every_exported_name_resolves() -> None:
    for name in node.__all__:
        assert getattr(node, name) is not None, name
