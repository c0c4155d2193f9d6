"""Shamir sharing, Feldman commitments and Lagrange interpolation (design §3.1).

A dealer's secret polynomial f has degree t-1. Its Feldman commitments are C_j = a_j·G1, and
member i (1-based) holds f(i). A share is valid iff f(i)·G1 == Σ_j i^j·C_j. Summing the
commitments of several dealers gives the public polynomial of the summed secret: its
constant term is the group public key and its value at i is member i's verification key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mpc.errors import EncodingError, NotEnoughShares, ProtocolMisuse
from mpc.group import G1, G1_SIZE, R, Rng, Scalar
from mpc.types import MemberIndex


@dataclass(frozen=True, slots=True)
class Share:
    """Member `member`'s share f(member). Secret: its repr hides the value."""

    member: MemberIndex
    value: Scalar

    def __post_init__(self) -> None:
        if not 1 <= self.member < R:
            raise ProtocolMisuse(f"member index must be >= 1, got {self.member}")

    def __repr__(self) -> str:
        return f"Share(member={self.member}, <redacted>)"


class Polynomial:
    """A secret polynomial over Z_r, lowest coefficient first."""

    __slots__ = ("_coeffs",)

    def __init__(self, coefficients: Sequence[Scalar]) -> None:
        if not coefficients:
            raise ProtocolMisuse("a polynomial needs at least one coefficient")
        self._coeffs = tuple(coefficients)

    @classmethod
    def random(cls, degree: int, rng: Rng, secret: Scalar | None = None) -> Polynomial:
        """A random polynomial of `degree`; its constant term is `secret` if given."""
        if degree < 0:
            raise ProtocolMisuse(f"degree must be >= 0, got {degree}")
        first = secret if secret is not None else Scalar.random(rng)
        return cls([first, *(Scalar.random(rng) for _ in range(degree))])

    @property
    def degree(self) -> int:
        return len(self._coeffs) - 1

    @property
    def secret(self) -> Scalar:
        return self._coeffs[0]

    def evaluate(self, x: int) -> Scalar:
        acc = 0
        for c in reversed(self._coeffs):
            acc = (acc * x + int(c)) % R
        return Scalar(acc)

    def share(self, member: MemberIndex) -> Share:
        return Share(member, self.evaluate(member))

    def commitments(self) -> PublicPolynomial:
        return PublicPolynomial(tuple(G1.base_mul(c) for c in self._coeffs))

    def __repr__(self) -> str:
        return f"Polynomial(degree={self.degree}, <redacted>)"


def evaluate_at_index(commitments: Sequence[G1], x: int) -> G1:
    """Σ_k x^k·C_k by Horner's rule. For a small public index x each step is a cheap
    multiplication by a small integer, ~15x faster than a multi-scalar multiplication."""
    acc = commitments[-1]
    for c in reversed(commitments[:-1]):
        acc = acc * x + c
    return acc


@dataclass(frozen=True, slots=True)
class PublicPolynomial:
    """Feldman commitments (A_0..A_{t-1}) in G1; A_0 is the public key of the secret."""

    commitments: tuple[G1, ...]

    def __post_init__(self) -> None:
        if not self.commitments:
            raise ProtocolMisuse("a public polynomial needs at least one commitment")

    @property
    def threshold(self) -> int:
        return len(self.commitments)

    @property
    def public_key(self) -> G1:
        return self.commitments[0]

    def evaluate(self, x: int) -> G1:
        """Σ_j x^j·A_j: the public image of f(x) (member x's verification key)."""
        return evaluate_at_index(self.commitments, x)

    def verification_key(self, member: MemberIndex) -> G1:
        return self.evaluate(member)

    def is_valid_share(self, share: Share) -> bool:
        return G1.base_mul(share.value) == self.evaluate(share.member)

    def __add__(self, other: PublicPolynomial) -> PublicPolynomial:
        if self.threshold != other.threshold:
            raise ProtocolMisuse(
                f"cannot add public polynomials of {self.threshold} and {other.threshold} terms"
            )
        return PublicPolynomial(
            tuple(a + b for a, b in zip(self.commitments, other.commitments, strict=True))
        )

    def to_bytes(self) -> bytes:
        return b"".join(c.to_bytes() for c in self.commitments)

    @classmethod
    def from_bytes(cls, data: bytes, threshold: int, what: str = "commitments") -> PublicPolynomial:
        if len(data) != threshold * G1_SIZE:
            raise EncodingError(what, f"expected {threshold * G1_SIZE} bytes, got {len(data)}")
        return cls(
            tuple(
                G1.from_bytes(data[j * G1_SIZE : (j + 1) * G1_SIZE], f"{what} C_{j}")
                for j in range(threshold)
            )
        )


def sum_public_polynomials(polys: Iterable[PublicPolynomial]) -> PublicPolynomial:
    polys = list(polys)
    if not polys:
        raise ProtocolMisuse("cannot sum an empty set of public polynomials")
    total = polys[0]
    for p in polys[1:]:
        total = total + p
    return total


def lagrange_coefficients_at_zero(indices: Sequence[int]) -> dict[int, Scalar]:
    """λ_i for interpolation at 0 over the distinct, non-zero `indices`."""
    if len(set(indices)) != len(indices):
        raise ProtocolMisuse(f"duplicate indices in {sorted(indices)}")
    if any(i % R == 0 for i in indices):
        raise ProtocolMisuse("index 0 cannot hold a share")
    coefficients = {}
    for i in indices:
        num, den = 1, 1
        for j in indices:
            if j != i:
                num = num * j % R
                den = den * (j - i) % R
        coefficients[i] = Scalar(num * pow(den, -1, R))
    return coefficients


def recover_secret(shares: Sequence[Share], threshold: int) -> Scalar:
    """Interpolate f(0) from the first `threshold` shares."""
    if len(shares) < threshold:
        raise NotEnoughShares(len(shares), threshold)
    chosen = shares[:threshold]
    lambdas = lagrange_coefficients_at_zero([s.member for s in chosen])
    acc = 0
    for s in chosen:
        acc += int(lambdas[s.member]) * int(s.value)
    return Scalar(acc)


def interpolate_g1_at_zero(points: Mapping[int, G1]) -> G1:
    """Lagrange interpolation in the exponent: Σ λ_i·P_i."""
    indices = list(points)
    lambdas = lagrange_coefficients_at_zero(indices)
    return G1.msm([points[i] for i in indices], [lambdas[i] for i in indices])
