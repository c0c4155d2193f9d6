"""Documented custom types shared by the protocols."""

from __future__ import annotations

from typing import NewType

MemberIndex = NewType("MemberIndex", int)
"""1-based position of a member in an epoch's ordered member list; also its evaluation point."""

Epoch = NewType("Epoch", int)
"""Sequence number of a committee epoch on chain (DKG, reshare, refresh or rotation)."""

Generation = NewType("Generation", int)
"""Key generation: a fresh DKG (rotation) starts generation g+1; reshares keep it."""
