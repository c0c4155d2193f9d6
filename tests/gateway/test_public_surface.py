"""Every name the gateway package exports resolves to what its module defines."""

from __future__ import annotations

import importlib

import pytest

import gateway


@pytest.mark.parametrize("name", gateway.__all__)
def test_exported_names_resolve(name: str) -> None:
    module = importlib.import_module(gateway._MODULES[name])
    assert getattr(gateway, name) is getattr(module, name)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        gateway.Nope  # noqa: B018
