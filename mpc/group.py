"""The BLS12-381 group backend: scalars, G1, G2, GT, pairings, hashing to G1.

This is the only module that touches the curve libraries; everything else in tkms uses the
types defined here. Two libraries serve it (see "Two backends" below). Rules kept here:

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

Two backends. blst (`pyblst`) hashes to G1 about 3.5x faster than arkworks, multiplies a
point by a full-size scalar about 2x faster (G2: 3x), checks a two-pairing product 1.8x
faster and decodes wire points (G2 in ~80 µs against ~140 µs), but exposes nothing more;
arkworks (`py_arkworks_bls12381`) does multi-scalar multiplication, single pairings, GT, the
fixed-base tables and the EIP-2537 encodings. A point holds whichever representations it has
needed so far, plus its encoding, and crosses between the libraries as its compressed bytes:

* blst -> arkworks: `from_compressed_bytes_unchecked`, without the subgroup check (~20 µs).
  That is sound only because every point object is either decoded from the wire through a
  checked path (our flag/range checks, then blst's `uncompress`, or arkworks' decoder and its
  subgroup check) or computed here from such points: an object never holds an unvalidated
  point.
* arkworks -> blst: blst's `uncompress` always checks the subgroup (~60 µs), so a point that
  lives in arkworks stays there; only points that are already in blst multiply in blst.

A point in blst multiplied by a scalar of at most 8 bits (Lagrange numerators of small
committees) stays there through additions; other scalars of at most 128 bits go to arkworks,
whose cost follows the scalar's length (blst's binding always runs the full 255-bit ladder).
`use_blst(False)` turns the blst path off, for the benchmark's side-by-side and the
cross-check tests.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Self

import py_arkworks_bls12381 as _ark
import pyblst as _blst

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

#: Scalars up to this many bits are multiplied in arkworks, whose cost follows their length.
_SHORT_SCALAR_BITS: Final = 128
#: A point only in blst is multiplied by a scalar this short with blst additions rather than
#: brought into arkworks (~20 µs): Lagrange numerators of small committees, e.g. (3, -3, 1).
_ADDITION_CHAIN_BITS: Final = 8
_use_blst = True


def use_blst(enabled: bool) -> bool:
    """Turn the blst path on or off (process-wide); returns the previous setting.

    Off, every operation runs in arkworks as before blst was added. For the benchmark and
    the tests that cross-check the two; production leaves it on.
    """
    global _use_blst
    previous, _use_blst = _use_blst, enabled
    return previous


def blst_enabled() -> bool:
    return _use_blst


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
    """What G1 and G2 share; a subclass names its backend types, size and name.

    Holds the point in arkworks (`_a`), in blst (`_b`), or both, and its compressed
    encoding (`_enc`) once computed; at least one of `_a` and `_b` is set. Each is filled on
    first need and never changes (the point is immutable). Operations return the subclass
    (`Self`), and mixing groups is a type error.
    """

    __slots__ = ("_a", "_b", "_enc")
    _ark_type: ClassVar[Any]
    _blst_type: ClassVar[Any]
    _size: ClassVar[int]
    _name: ClassVar[str]
    _table: ClassVar[_FixedBaseTable | None] = None
    #: Whether wire points are decoded (and checked) by blst; see G1 and G2.
    _decode_in_blst: ClassVar[bool]
    #: CPU µs to bring a point that is only in arkworks into blst (a checked uncompress).
    _blst_entry_us: ClassVar[int]
    _generator: ClassVar[Any] = None

    # Any: the backends' point types share no base class.
    def __init__(self, point: Any = None, *, blst: Any = None, encoded: bytes | None = None):
        if point is None and blst is None:
            raise ValueError("a point needs at least one representation")
        self._a = point
        self._b = blst
        self._enc = encoded

    def _ark(self) -> Any:
        """The arkworks point, decoded from our own encoding on first need.

        Unchecked decoding is sound here: this object's point was validated when it came
        in or computed from validated points (see the module docstring).
        """
        if self._a is None:
            self._a = self._ark_type.from_compressed_bytes_unchecked(self.to_bytes())
        return self._a

    def _blst(self) -> Any:
        """The blst point; from arkworks this costs a checked uncompress (`_blst_entry_us`)."""
        if self._b is None:
            self._b = self._blst_type.uncompress(self.to_bytes())
        return self._b

    @classmethod
    def generator(cls) -> Self:
        # One shared instance (points are immutable), so its blst form is made once.
        if cls.__dict__.get("_generator") is None:
            cls._generator = cls(cls._ark_type())
        generator: Self = cls._generator
        return generator

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
        data = bytes(data)
        if _use_blst and cls._decode_in_blst:
            try:
                # blst's uncompress checks on-curve and then subgroup membership.
                decoded = cls._blst_type.uncompress(data)
            except ValueError as exc:
                if "NOT_IN_GROUP" in str(exc):
                    raise EncodingError(what, "not in the prime-order subgroup") from None
                raise EncodingError(what, "not a point on the curve") from None
            return cls(blst=decoded, encoded=data)
        return cls._checked(cls._ark_type.from_compressed_bytes_unchecked, data, what, data)

    @classmethod
    def _checked(
        cls, decode: Callable[[bytes], Any], raw: bytes, what: str, encoded: bytes | None = None
    ) -> Self:
        """`decode(raw)` (arkworks' unchecked decoder), on the curve and in the subgroup."""
        try:
            point = decode(raw)
        except ValueError:
            raise EncodingError(what, "not a point on the curve") from None
        if not point.is_in_subgroup():
            raise EncodingError(what, "not in the prime-order subgroup")
        return cls(point, encoded=encoded)

    @classmethod
    def msm(cls, points: Sequence[Self], scalars: Sequence[Scalar | int]) -> Self:
        """Σ scalars[i]·points[i] by multi-scalar multiplication."""
        if len(points) != len(scalars):
            raise ValueError(f"msm: {len(points)} points but {len(scalars)} scalars")
        if not points:
            return cls.identity()
        arks = [_as_scalar(s)._ark() for s in scalars]
        return cls(cls._ark_type.multiexp_unchecked([p._ark() for p in points], arks))

    def to_bytes(self) -> bytes:
        if self._enc is None:
            if self._b is not None:
                self._enc = bytes(self._b.compress())
            else:
                self._enc = bytes(self._a.to_compressed_bytes())
        return self._enc

    def to_eip2537(self) -> bytes:
        """EIP-2537's uncompressed encoding (what the on-chain verifier takes): each coordinate
        (G2: x.c0, x.c1, y.c0, y.c1) as a 64-byte big-endian element, 16 zero bytes first; the
        identity is all zeros."""
        raw = bytes(self._ark().to_xy_bytes_be())
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
        return bool(self.to_bytes()[0] & 0x40)

    def __add__(self, other: Self) -> Self:
        if self._b is not None and other._b is not None and self._a is None:
            return type(self)(blst=self._b + other._b)
        return type(self)(self._ark() + other._ark())

    def __sub__(self, other: Self) -> Self:
        return self + (-other)

    def __neg__(self) -> Self:
        return type(self)(
            None if self._a is None else -self._a,
            blst=None if self._b is None else -self._b,
        )

    def __mul__(self, k: Scalar | int) -> Self:
        value = int(_as_scalar(k))
        # Only a point already in blst multiplies there (see the module docstring).
        if _use_blst and self._b is not None:
            bits = value.bit_length()
            if bits > _SHORT_SCALAR_BITS:
                return type(self)(blst=self._b.scalar_mul(value))
            if 0 < bits <= _ADDITION_CHAIN_BITS:
                return type(self)(blst=_double_and_add(self._b, value))
        return type(self)(self._ark() * Scalar(value)._ark())

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Point)
        if self._a is not None and other._a is not None:
            return bool(self._a == other._a)
        if self._b is not None and other._b is not None:
            return bool(self._b == other._b)
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"{self._name}({self.to_bytes().hex()[:16]}…)"


def _double_and_add(base: Any, value: int) -> Any:
    """value·base in blst for a small positive value, by additions (~1 µs each)."""
    acc = base
    for bit in bin(value)[3:]:
        acc = acc + acc
        if bit == "1":
            acc = acc + base
    return acc


class G1(_Point):
    """A point of the prime-order subgroup G1 (48-byte compressed encoding)."""

    __slots__ = ()
    _ark_type = _ark.G1Point
    _blst_type = _blst.BlstP1Element
    _size = G1_SIZE
    _name = "G1"
    _table = None
    # Same cost either way (~60 µs); in blst, a partial's Y and Z are combined (short
    # scalars by additions, then one full multiplication) into a sigma that is already in
    # blst for the pairing check, and a requester key's table adds in blst, so Z = sigma +
    # y·E is formed where sigma is.
    _decode_in_blst = True
    _blst_entry_us = 60
    _generator = None


class G2(_Point):
    """A point of the prime-order subgroup G2 (96-byte compressed encoding)."""

    __slots__ = ()
    _ark_type = _ark.G2Point
    _blst_type = _blst.BlstP2Element
    _size = G2_SIZE
    _name = "G2"
    _table = None
    # blst checks a G2 point in ~80 µs, arkworks in ~140 µs.
    _decode_in_blst = True
    _blst_entry_us = 80
    _generator = None


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
    return GT(_ark.GT.pairing(p._ark(), q._ark()))


def pairing_product_is_one(pairs: Sequence[tuple[G1, G2]]) -> bool:
    """True iff Π e(p_i, q_i) == 1, with one shared final exponentiation.

    blst does this about 1.8x faster than arkworks (two pairs: ~0.75 ms against ~1.35 ms):
    Miller loops for all pairs but the last multiplied together, and blst's final_verify
    checks FE(that product) == FE(ML(-p_n, q_n)). It is used when that saving is not eaten by
    bringing arkworks-only points into blst; with an identity argument, arkworks decides.
    """
    if _use_blst and len(pairs) >= 2 and _blst_pairing_pays(pairs):
        *head, (p_last, q_last) = pairs
        product = None
        for p, q in head:
            loop = _blst.miller_loop(p._blst(), q._blst())
            product = loop if product is None else product * loop
        return bool(
            _blst.final_verify(product, _blst.miller_loop((-p_last)._blst(), q_last._blst()))
        )
    return bool(_ark.GT.pairing_check([p._ark() for p, _ in pairs], [q._ark() for _, q in pairs]))


#: What blst saves per pair on a pairing product, in CPU µs (measured; see docs/perf.md).
_BLST_PAIRING_SAVING_US: Final = 250


def _blst_pairing_pays(pairs: Sequence[tuple[G1, G2]]) -> bool:
    entry = 0
    for p, q in pairs:
        if p.is_identity() or q.is_identity():
            return False
        entry += (p._b is None) * G1._blst_entry_us + (q._b is None) * G2._blst_entry_us
    return entry < _BLST_PAIRING_SAVING_US * len(pairs)


def hash_to_g1_point(msg: bytes, dst: bytes) -> G1:
    """RFC 9380 hash_to_curve, suite BLS12381G1_XMD:SHA-256_SSWU_RO_, with tag `dst`."""
    if not 0 < len(dst) <= 255:
        raise ValueError(f"domain separation tag must be 1..255 bytes, got {len(dst)}")
    if _use_blst:
        # pyblst's binding takes (msg, dst) and refuses a dst over 255 bytes, as we do.
        return G1(blst=_blst.BlstP1Element.hash_to_group(bytes(msg), bytes(dst)))
    return G1(_ark.G1Point.hash_to_curve(bytes(msg), bytes(dst)))


def hash_to_g1(msg: bytes, dst: bytes) -> bytes:
    """RFC 9380 hash_to_curve to G1 (BLS12381G1_XMD:SHA-256_SSWU_RO_), compressed: 48 bytes."""
    return hash_to_g1_point(msg, dst).to_bytes()
