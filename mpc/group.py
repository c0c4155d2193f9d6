"""The BLS12-381 group backend: scalars, G1, G2, GT, pairings, hashing to G1.

This is the only module that touches `py_arkworks_bls12381`; everything else in tkms uses the
types defined here. Rules kept by this module:

* Decoding is strict. Points are the 48/96-byte compressed ZCash/IETF encoding; we check the
  flag bits and that every coordinate is < p ourselves (so non-canonical encodings are
  rejected no matter what the backend tolerates), then the backend checks on-curve and
  prime-order subgroup membership. The identity is rejected unless the caller allows it.
  Scalars are 32-byte big-endian and must be < r.
* Every value that leaves this module as bytes goes through `to_bytes()`; there is no other
  serialization.
* `Scalar` hides its value in `repr`, because most scalars in this system are secrets.
  Python cannot wipe memory: "erasing" a scalar means dropping every reference to it.

Fixed-base multiplication by the generators uses precomputed 8-bit window tables built on
first use (~30 ms). That trades 32 point additions for a 255-bit double-and-add and makes
the generator multiplications in proofs and encryptions about 4x cheaper.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Self

import py_arkworks_bls12381 as _ark

from mpc.errors import EncodingError

#: Order of the prime-order subgroups (the scalar field modulus).
R: Final = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
#: The base field modulus.
P: Final = int(
    "1A0111EA397FE69A4B1BA7B6434BACD764774B84F38512BF6730D2A0F6B0F624"
    "1EABFFFEB153FFFFB9FEFFFFFFFFAAAB",
    16,
)

SCALAR_SIZE: Final = 32
G1_SIZE: Final = 48
G2_SIZE: Final = 96
GT_SIZE: Final = 576
_FIELD_SIZE: Final = 48
#: EIP-2537 pads each 48-byte field element to 64 bytes with leading zeros.
_EIP2537_FIELD: Final = 64
_EIP2537_PAD: Final = _EIP2537_FIELD - _FIELD_SIZE

Rng = Callable[[int], bytes]
"""A source of random bytes, `os.urandom` in production; tests inject seeded ones."""


class Scalar:
    """An element of the scalar field Z_r. Immutable; arithmetic is mod r."""

    __slots__ = ("_v",)

    def __init__(self, value: int) -> None:
        self._v = value % R

    @classmethod
    def random(cls, rng: Rng = os.urandom) -> Scalar:
        """A uniformly random non-zero scalar (64 bytes reduced mod r: bias < 2^-256)."""
        while True:
            value = int.from_bytes(rng(64), "big") % R
            if value:
                return cls(value)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "scalar", *, allow_zero: bool = True) -> Scalar:
        """Decode 32 big-endian bytes; rejects values >= r (non-canonical) and, if asked, zero."""
        if len(data) != SCALAR_SIZE:
            raise EncodingError(what, f"expected {SCALAR_SIZE} bytes, got {len(data)}")
        value = int.from_bytes(data, "big")
        if value >= R:
            raise EncodingError(what, "not canonical (value >= group order r)")
        if value == 0 and not allow_zero:
            raise EncodingError(what, "zero is not allowed here")
        return cls(value)

    def to_bytes(self) -> bytes:
        return self._v.to_bytes(SCALAR_SIZE, "big")

    def __int__(self) -> int:
        return self._v

    def is_zero(self) -> bool:
        return self._v == 0

    def inverse(self) -> Scalar:
        if self._v == 0:
            raise ZeroDivisionError("zero has no inverse mod r")
        return Scalar(pow(self._v, -1, R))

    def __add__(self, other: Scalar | int) -> Scalar:
        return Scalar(self._v + int(other))

    __radd__ = __add__

    def __sub__(self, other: Scalar | int) -> Scalar:
        return Scalar(self._v - int(other))

    def __rsub__(self, other: int) -> Scalar:
        return Scalar(other - self._v)

    def __mul__(self, other: Scalar | int) -> Scalar:
        return Scalar(self._v * int(other))

    __rmul__ = __mul__

    def __neg__(self) -> Scalar:
        return Scalar(-self._v)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scalar):
            return NotImplemented
        # Scalars are usually secret: compare without an early exit on the first byte.
        return hmac.compare_digest(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(("Scalar", self._v))

    def __repr__(self) -> str:
        return "Scalar(<redacted>)"

    def _ark(self) -> _ark.Scalar:
        return _ark.Scalar.from_be_bytes(self._v.to_bytes(SCALAR_SIZE, "big"))


def _as_scalar(k: Scalar | int) -> Scalar:
    return k if isinstance(k, Scalar) else Scalar(k)


def _check_compressed_flags(data: bytes, what: str, size: int) -> bool:
    """Validate the ZCash flag bits and coordinate ranges; return True for the identity."""
    if len(data) != size:
        raise EncodingError(what, f"expected {size} bytes, got {len(data)}")
    flags = data[0]
    if not flags & 0x80:
        raise EncodingError(what, "not in compressed form (compression flag unset)")
    if flags & 0x40:
        if flags & 0x3F or any(data[1:]):
            raise EncodingError(what, "non-canonical identity encoding")
        return True
    # Each 48-byte field element (x for G1; x.c1 then x.c0 for G2) must be < p.
    first = bytes([flags & 0x1F]) + data[1:48]
    if int.from_bytes(first, "big") >= P:
        raise EncodingError(what, "coordinate not canonical (>= field modulus p)")
    if size == G2_SIZE and int.from_bytes(data[48:], "big") >= P:
        raise EncodingError(what, "coordinate not canonical (>= field modulus p)")
    return False


class _FixedBaseTable:
    """Window-8 precomputation for multiplying one fixed point by many scalars."""

    __slots__ = ("_rows",)

    # Any: the same code serves both backend point types, which share no base class.
    def __init__(self, base: Any) -> None:
        rows = []
        window_base = base
        for _ in range(SCALAR_SIZE):
            row = [window_base * _ark.Scalar(0), window_base]
            for _ in range(254):
                row.append(row[-1] + window_base)
            rows.append(row)
            window_base = row[-1] + window_base  # 256 * previous base
        self._rows = rows

    def mul(self, k: int) -> Any:
        digits = k.to_bytes(SCALAR_SIZE, "little")
        rows = self._rows
        acc = rows[0][digits[0]]
        for i in range(1, SCALAR_SIZE):
            d = digits[i]
            if d:
                acc = acc + rows[i][d]
        return acc


class _Point:
    """What G1 and G2 share; a subclass names its backend type, size and name.

    Operations return the subclass (`Self`), and mixing groups is a type error.
    """

    __slots__ = ("_p",)
    _ark_type: ClassVar[Any]
    _size: ClassVar[int]
    _name: ClassVar[str]
    _table: ClassVar[_FixedBaseTable | None] = None

    # Any: arkworks' G1Point/G2Point share no base class.
    def __init__(self, point: Any) -> None:
        self._p = point

    @classmethod
    def generator(cls) -> Self:
        return cls(cls._ark_type())

    @classmethod
    def identity(cls) -> Self:
        return cls(cls._ark_type.identity())

    @classmethod
    def base_mul(cls, k: Scalar | int) -> Self:
        """k times the standard generator, using the precomputed table."""
        if cls._table is None:
            cls._table = _FixedBaseTable(cls._ark_type())
        return cls(cls._table.mul(int(_as_scalar(k))))

    @classmethod
    def from_bytes(
        cls, data: bytes, what: str | None = None, *, allow_identity: bool = False
    ) -> Self:
        """Strictly decode a compressed point (see the module docstring)."""
        what = what or f"{cls._name} point"
        if _check_compressed_flags(data, what, cls._size):
            if not allow_identity:
                raise EncodingError(what, "the identity is not allowed here")
            return cls.identity()
        return cls._checked(cls._ark_type.from_compressed_bytes_unchecked, bytes(data), what)

    @classmethod
    def _checked(cls, decode: Callable[[bytes], Any], raw: bytes, what: str) -> Self:
        """`decode(raw)` (the backend's unchecked decoder), on the curve and in the subgroup."""
        try:
            point = decode(raw)
        except ValueError:
            raise EncodingError(what, "not a point on the curve") from None
        if not point.is_in_subgroup():
            raise EncodingError(what, "not in the prime-order subgroup")
        return cls(point)

    @classmethod
    def msm(cls, points: Sequence[Self], scalars: Sequence[Scalar | int]) -> Self:
        """Σ scalars[i]·points[i] by multi-scalar multiplication."""
        if len(points) != len(scalars):
            raise ValueError(f"msm: {len(points)} points but {len(scalars)} scalars")
        if not points:
            return cls.identity()
        arks = [_as_scalar(s)._ark() for s in scalars]
        return cls(cls._ark_type.multiexp_unchecked([p._p for p in points], arks))

    def to_bytes(self) -> bytes:
        return bytes(self._p.to_compressed_bytes())

    def to_eip2537(self) -> bytes:
        """EIP-2537's uncompressed encoding (what the on-chain verifier takes): each coordinate
        (G2: x.c0, x.c1, y.c0, y.c1) as a 64-byte big-endian element, 16 zero bytes first; the
        identity is all zeros."""
        raw = bytes(self._p.to_xy_bytes_be())
        return b"".join(
            bytes(_EIP2537_PAD) + raw[i : i + _FIELD_SIZE] for i in range(0, len(raw), _FIELD_SIZE)
        )

    @classmethod
    def from_eip2537(cls, data: bytes, what: str | None = None) -> Self:
        """Strictly decode EIP-2537's uncompressed encoding: canonical coordinates, on the
        curve, in the subgroup, not the identity (the checks of `from_bytes`)."""
        what = what or f"{cls._name} point"
        size = 2 * cls._size // _FIELD_SIZE * _EIP2537_FIELD
        if len(data) != size:
            raise EncodingError(what, f"expected {size} bytes, got {len(data)}")
        raw = bytearray()
        for i in range(0, size, _EIP2537_FIELD):
            element = data[i : i + _EIP2537_FIELD]
            if any(element[:_EIP2537_PAD]) or int.from_bytes(element, "big") >= P:
                raise EncodingError(what, "coordinate not canonical (padding or >= p)")
            raw += element[_EIP2537_PAD:]
        if not any(raw):
            raise EncodingError(what, "the identity is not allowed here")
        return cls._checked(cls._ark_type.from_xy_bytes_unchecked_be, bytes(raw), what)

    def is_identity(self) -> bool:
        return bool(self._p == self._ark_type.identity())

    def __add__(self, other: Self) -> Self:
        return type(self)(self._p + other._p)

    def __sub__(self, other: Self) -> Self:
        return type(self)(self._p - other._p)

    def __neg__(self) -> Self:
        return type(self)(-self._p)

    def __mul__(self, k: Scalar | int) -> Self:
        return type(self)(self._p * _as_scalar(k)._ark())

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self._p == other._p)

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"{self._name}({self.to_bytes().hex()[:16]}…)"


class G1(_Point):
    """A point of the prime-order subgroup G1 (48-byte compressed encoding)."""

    __slots__ = ()
    _ark_type = _ark.G1Point
    _size = G1_SIZE
    _name = "G1"
    _table = None


class G2(_Point):
    """A point of the prime-order subgroup G2 (96-byte compressed encoding)."""

    __slots__ = ()
    _ark_type = _ark.G2Point
    _size = G2_SIZE
    _name = "G2"
    _table = None


class GT:
    """An element of the target group, written multiplicatively.

    The backend offers no exponentiation in GT; protocols move scalars into the pairing's
    arguments instead (e(H, PK)^r == e(r·H, PK)), which is also cheaper.
    """

    __slots__ = ("_g",)

    def __init__(self, element: _ark.GT) -> None:
        self._g = element

    @classmethod
    def one(cls) -> GT:
        return cls(_ark.GT.one())

    def to_bytes(self) -> bytes:
        """The 576-byte canonical arkworks serialization of the Fp12 element.

        Used only as key-derivation input inside tkms (IBE), so it only has to be
        deterministic and injective, which the canonical serialization is.
        """
        return bytes.fromhex(str(self._g))

    def __mul__(self, other: GT) -> GT:
        return GT(self._g * other._g)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GT):
            return NotImplemented
        return bool(self._g == other._g)

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return "GT(…)"


def pairing(p: G1, q: G2) -> GT:
    """The optimal ate pairing e(p, q)."""
    return GT(_ark.GT.pairing(p._p, q._p))


def pairing_product_is_one(pairs: Sequence[tuple[G1, G2]]) -> bool:
    """True iff Π e(p_i, q_i) == 1, with one shared final exponentiation."""
    return bool(_ark.GT.pairing_check([p._p for p, _ in pairs], [q._p for _, q in pairs]))


def hash_to_g1_point(msg: bytes, dst: bytes) -> G1:
    """RFC 9380 hash_to_curve, suite BLS12381G1_XMD:SHA-256_SSWU_RO_, with tag `dst`."""
    if not 0 < len(dst) <= 255:
        raise ValueError(f"domain separation tag must be 1..255 bytes, got {len(dst)}")
    return G1(_ark.G1Point.hash_to_curve(bytes(msg), bytes(dst)))


def hash_to_g1(msg: bytes, dst: bytes) -> bytes:
    """RFC 9380 hash_to_curve to G1 (BLS12381G1_XMD:SHA-256_SSWU_RO_), compressed: 48 bytes."""
    return hash_to_g1_point(msg, dst).to_bytes()
