"""Protobuf requests with random field values, built from the message descriptors.

Two builders over the same field rules: `random_message` (fast, from a seeded
`random.Random`) and `message_strategy` (hypothesis strategies, the slower "rich" share).
Values come from boundary integers, random bytes and strings of telling lengths, and a
target's pools of meaningful values (real quotes, valid points, app ids), so requests reach
past the first size check. Any message can also be edited as bytes (`edited_wire`), which
yields unknown fields, bad varints and truncations for the deserializer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tests.fuzz.mutate import random_edits

_INT_LIMITS = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.CPPTYPE_ENUM: (-(2**31), 2**31 - 1),
}
_BYTE_SIZES = (0, 1, 19, 20, 21, 32, 47, 48, 49, 64, 96, 1024)


@dataclass(slots=True)
class Pools:
    """Meaningful values per field name (any message), tried about half of the time."""

    by_field: dict[str, list[Any]] = field(default_factory=dict)
    #: Valid requests by method name; a share of cases changes one field of one of these.
    seeds: dict[str, list[Message]] = field(default_factory=dict)


def _random_scalar(rng: random.Random, f: Any, pools: Pools) -> Any:
    pooled = pools.by_field.get(f.name)
    if pooled and rng.random() < 0.5:
        return rng.choice(pooled)
    kind = f.cpp_type
    if kind in _INT_LIMITS:
        low, high = _INT_LIMITS[kind]
        choice = rng.choice((0, 1, 2, 3, high, low, 2**31 - 1, rng.randint(low, high)))
        return max(low, min(high, choice))
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if kind in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return rng.uniform(-1e6, 1e6)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.choice(_BYTE_SIZES))
    size = rng.choice((0, 1, 5, 40, 300))
    return "".join(
        chr(rng.choice((rng.randint(32, 126), rng.randint(0, 0xD7FF)))) for _ in range(size)
    )


def random_message(rng: random.Random, cls: type[Message], pools: Pools, depth: int = 3) -> Message:
    """A `cls` whose fields are each set (or left unset) at random."""
    msg = cls()
    _fill(rng, msg, cls.DESCRIPTOR, pools, depth)
    return msg


def _fill(rng: random.Random, msg: Message, desc: Any, pools: Pools, depth: int) -> None:
    for f in desc.fields:
        if rng.random() >= 0.25:
            _fill_one(rng, msg, f, pools, depth)


def _fill_one(rng: random.Random, msg: Message, f: Any, pools: Pools, depth: int) -> None:
    repeated = f.is_repeated
    count = rng.choice((0, 1, 1, 1, 2, 3) * 8 + (17,)) if repeated else 1
    for _ in range(count):
        if f.message_type is not None:
            if depth <= 0:
                continue
            pooled = pools.by_field.get(f.name)
            target = getattr(msg, f.name).add() if repeated else getattr(msg, f.name)
            if pooled and rng.random() < 0.5:
                target.CopyFrom(rng.choice(pooled))
                if rng.random() < 0.3:
                    _fill(rng, target, f.message_type, pools, depth - 1)
            else:
                _fill(rng, target, f.message_type, pools, depth - 1)
        elif repeated:
            getattr(msg, f.name).append(_random_scalar(rng, f, pools))
        else:
            setattr(msg, f.name, _random_scalar(rng, f, pools))


def perturbed_seed(rng: random.Random, seed: Message, pools: Pools) -> Message:
    """A copy of a valid request with one field (maybe of a nested message) changed."""
    msg = type(seed)()
    msg.CopyFrom(seed)
    if not msg.DESCRIPTOR.fields:
        return msg
    target: Message = msg
    for _ in range(3):
        f: Any = rng.choice(target.DESCRIPTOR.fields)
        if f.message_type is None or rng.random() < 0.4:
            break
        if f.is_repeated:
            items = getattr(target, f.name)
            if not items:
                break
            target = items[rng.randrange(len(items))]
        else:
            target = getattr(target, f.name)
    if not target.DESCRIPTOR.fields:
        return msg
    f = rng.choice(target.DESCRIPTOR.fields)
    target.ClearField(f.name)
    if rng.random() < 0.8:
        holder = type(target)()
        _fill_one(rng, holder, f, pools, 2)
        target.MergeFrom(holder)
    return msg


def edited_wire(rng: random.Random, msg: Message) -> bytes:
    """`msg` serialized, then (a third of the time) edited as bytes."""
    data = msg.SerializeToString()
    return random_edits(rng, data, max_edits=3) if rng.random() < 0.33 else data


def _scalar_strategy(f: Any, pools: Pools) -> st.SearchStrategy[Any]:
    kind = f.cpp_type
    base: st.SearchStrategy[Any]
    if kind in _INT_LIMITS:
        low, high = _INT_LIMITS[kind]
        base = st.integers(low, high)
    elif kind == FieldDescriptor.CPPTYPE_BOOL:
        base = st.booleans()
    elif kind in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        base = st.floats(allow_nan=False, width=32)
    elif f.type == FieldDescriptor.TYPE_BYTES:
        base = st.binary(max_size=128)
    else:
        base = st.text(max_size=64)
    pooled = [v for v in pools.by_field.get(f.name, []) if not isinstance(v, Message)]
    return st.one_of(st.sampled_from(pooled), base) if pooled else base


def message_strategy(
    cls: type[Message], pools: Pools, depth: int = 3
) -> st.SearchStrategy[Message]:
    """Hypothesis-built `cls` messages: each field unset or drawn from its strategy."""
    desc: Any = cls.DESCRIPTOR

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        for f in desc.fields:
            if f.message_type is not None:
                if depth <= 0:
                    continue
                sub = message_strategy(GetMessageClass(f.message_type), pools, depth - 1)
                if f.is_repeated:
                    for item in draw(st.lists(sub, max_size=3)):
                        getattr(msg, f.name).add().CopyFrom(item)
                elif draw(st.booleans()):
                    getattr(msg, f.name).CopyFrom(draw(sub))
            elif f.is_repeated:
                getattr(msg, f.name).extend(draw(st.lists(_scalar_strategy(f, pools), max_size=3)))
            elif draw(st.booleans()):
                setattr(msg, f.name, draw(_scalar_strategy(f, pools)))
        return msg

    return build()
