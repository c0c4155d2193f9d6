"""`python -m mpc.bench`: measure the threshold-cryptography core, both backends side by side.

Every figure is the median CPU time (`time.process_time`) of several runs after a warm-up,
measured twice in the same run: with the blst path of `mpc.group` on (production) and with
arkworks alone. Each is also given in units, the CPU time of one arkworks G1 scalar
multiplication measured first in the same run, so figures from a loaded or a different
machine compare. Lines read `name: hybrid_value arkworks_value unit (hybrid_units arkworks_units
units)`. Nothing here is a test: it prints numbers for docs/perf.md and for regressions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from mpc import ibe
from mpc._combiner import Combiner
from mpc.derive import (
    EncryptedPartial,
    EphemeralKey,
    KeyRequest,
    NetworkContext,
    derive_partial,
    open_partial,
)
from mpc.dleq import DleqProof, DleqStatement, prove_dleq, verify_dleq_batch
from mpc.group import G1, G2, R, Scalar, hash_to_g1_point, use_blst
from mpc.sharing import Polynomial
from mpc.types import Epoch, Generation, MemberIndex

NET = NetworkContext(
    chain_id=31337, contract=b"\x42" * 20, generation=Generation(1), epoch=Epoch(1)
)
APP = b"\xaa" * 20

Bench = Callable[[], object]


def median_seconds(fn: Bench, repeat: int, warmup: int = 3) -> float:
    """Median CPU seconds of `fn` over `repeat` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def measure_unit(repeat: int = 200) -> float:
    """CPU seconds of one arkworks G1 scalar multiplication by a full-size scalar."""
    previous = use_blst(False)
    try:
        point = hash_to_g1_point(b"unit", b"tkms-bench-unit")
        k = Scalar(int.from_bytes(os.urandom(32), "big") % R)
        return median_seconds(lambda: point * k, repeat, warmup=20)
    finally:
        use_blst(previous)


def side_by_side(make: Callable[[], Bench], repeat: int) -> tuple[float, float]:
    """(hybrid, arkworks) CPU seconds; `make` builds the timed callable under each backend."""
    out = []
    for blst in (True, False):
        previous = use_blst(blst)
        try:
            out.append(median_seconds(make(), repeat))
        finally:
            use_blst(previous)
    return out[0], out[1]


class Report:
    def __init__(self, unit: float) -> None:
        self.unit = unit

    def emit(self, name: str, seconds: tuple[float, float]) -> None:
        fast, slow = seconds
        print(
            f"{name}: {fast * 1e3:.3f} {slow * 1e3:.3f} ms "
            f"({fast / self.unit:.1f} {slow / self.unit:.1f} units)",
            flush=True,
        )


def _request() -> KeyRequest:
    return KeyRequest.app_key(APP, os.urandom(8))


def bench_primitives(report: Report, repeat: int) -> None:
    k = Scalar(int.from_bytes(os.urandom(32), "big") % R)

    def h2c() -> Bench:
        return lambda: hash_to_g1_point(os.urandom(16), b"tkms-bench")

    def g1_mul() -> Bench:
        point = hash_to_g1_point(b"p", b"tkms-bench")
        return lambda: point * k

    def g2_mul() -> Bench:
        point = G2.from_bytes(G2.base_mul(k).to_bytes())
        return lambda: point * k

    def g1_decode() -> Bench:
        data = G1.base_mul(k).to_bytes()
        return lambda: G1.from_bytes(data)

    def pairing_check() -> Bench:
        from mpc.group import pairing_product_is_one

        a, b = G1.base_mul(k), G2.base_mul(k)
        return lambda: pairing_product_is_one([(a, G2.generator()), (-G1.generator(), b)])

    report.emit("hash_to_g1", side_by_side(h2c, repeat))
    report.emit("g1_mul", side_by_side(g1_mul, repeat))
    report.emit("g2_mul", side_by_side(g2_mul, repeat))
    report.emit("g1_decode_checked", side_by_side(g1_decode, repeat))
    report.emit("pairing_check_2", side_by_side(pairing_check, max(5, repeat // 4)))


def bench_derivation(report: Report, repeat: int, threshold: int = 3) -> None:
    """One derivation's cryptography: a node's partial, and the client's combination."""
    f = Polynomial.random(threshold - 1, os.urandom)
    public = f.commitments()
    members = [MemberIndex(i) for i in range(1, threshold + 1)]
    shares = [f.share(m) for m in members]
    keys: dict[int, G1] = {m: public.verification_key(m) for m in members}
    pk2 = G2.base_mul(f.secret)
    eph = EphemeralKey.generate(os.urandom)

    def node() -> Bench:
        # As a node serves an app: E decoded once and multiplied through its table (the
        # node's requester cache), V_i cached, and a fresh request each time so that hash to
        # G1 is included.
        from mpc._fixedbase import PreparedPoint

        requester = PreparedPoint(G1.from_bytes(eph.public.to_bytes()), table_after=1)

        def one() -> object:
            return derive_partial(
                shares[0],
                _request(),
                requester=requester,
                network=NET,
                rng=os.urandom,
                verification_key=keys[members[0]],
            )

        return one

    def wire_answers(
        request: KeyRequest, *, forged: bool = False
    ) -> dict[int, list[EncryptedPartial]]:
        answers: dict[int, list[EncryptedPartial]] = {}
        for share in shares:
            partial = derive_partial(
                share, request, requester=eph.public, network=NET, rng=os.urandom
            )
            if forged and share.member == members[-1]:
                partial = derive_partial(
                    f.share(MemberIndex(99)),
                    request,
                    requester=eph.public,
                    network=NET,
                    rng=os.urandom,
                )
                partial = EncryptedPartial(
                    partial.generation,
                    partial.epoch,
                    share.member,
                    partial.y,
                    partial.z,
                    partial.proof,
                )
            # Decoded from bytes, as a client receives them.
            answers[share.member] = [EncryptedPartial.from_bytes(partial.to_bytes())]
        return answers

    def client(forged: bool) -> Bench:
        request = KeyRequest.app_key(APP, b"disk")
        encoded = {
            m: [p.to_bytes() for p in ps] for m, ps in wire_answers(request, forged=forged).items()
        }

        def one() -> object:
            # What the client does per derivation: hash, decode t answers, combine, check.
            req = KeyRequest.app_key(APP, b"disk")
            answers = {
                m: [EncryptedPartial.from_bytes(b, defer_proof=True) for b in bs]
                for m, bs in encoded.items()
            }
            combiner = Combiner(
                [req],
                ephemeral=eph,
                network=NET,
                group_key=pk2,
                threshold=threshold,
                verification_keys=keys,
            )
            return combiner.check(answers)

        return one

    def open_one() -> Bench:
        request = KeyRequest.app_key(APP, b"disk")
        request.point()
        partial = wire_answers(request)[members[0]][0]
        return lambda: open_partial(
            partial, request, ephemeral=eph, verification_key=keys[members[0]], network=NET
        )

    node_s = side_by_side(node, repeat)
    client_s = side_by_side(lambda: client(False), repeat)
    report.emit("node_partial", node_s)
    report.emit(f"client_combine_t{threshold}_optimistic", client_s)
    report.emit(
        f"client_combine_t{threshold}_one_forged", side_by_side(lambda: client(True), repeat)
    )
    report.emit("client_open_one_partial", side_by_side(open_one, repeat))
    total = tuple(threshold * n + c for n, c in zip(node_s, client_s, strict=True))
    report.emit(f"derivation_t{threshold}_nodes_plus_client", (total[0], total[1]))


def bench_dleq(report: Report, repeat: int, threshold: int) -> None:
    """t partials' DLEQ proofs (one key): checked one by one, and in one batch."""
    f = Polynomial.random(threshold - 1, os.urandom)
    public = f.commitments()
    request = KeyRequest.app_key(APP, b"disk")
    h = request.point()
    items = []
    for m in range(1, threshold + 1):
        share = f.share(MemberIndex(m))
        vk, sigma = public.verification_key(MemberIndex(m)), h * share.value
        proof = prove_dleq(share.value, h, vk=vk, sigma=sigma, context=b"c", rng=os.urandom)
        items.append((proof.to_bytes(), vk.to_bytes(), sigma.to_bytes()))

    def statements() -> list[DleqStatement]:
        # Decoded under the backend being measured, as a client receives them.
        return [
            DleqStatement(DleqProof.from_bytes(p), h, G1.from_bytes(v), G1.from_bytes(s), b"c")
            for p, v, s in items
        ]

    def one_by_one() -> Bench:
        decoded = statements()
        return lambda: all(s.holds() for s in decoded)

    def batch() -> Bench:
        decoded = statements()
        return lambda: verify_dleq_batch(decoded, os.urandom)

    report.emit(f"dleq_verify_t{threshold}_one_by_one", side_by_side(one_by_one, repeat))
    report.emit(f"dleq_verify_t{threshold}_batch", side_by_side(batch, repeat))


def bench_steps(unit: float, repeat: int) -> None:
    """Where one derivation's cryptography goes, step by step, with the blst path on (units)."""
    from mpc._fixedbase import PreparedPoint
    from mpc._lagrange import integer_lagrange_at_zero, small_combination
    from mpc.derive import _proof_context
    from mpc.group import pairing_product_is_one

    f = Polynomial.random(2, os.urandom)
    share = f.share(MemberIndex(1))
    vk = G1.base_mul(share.value)
    eph = EphemeralKey.generate(os.urandom)
    prepared = PreparedPoint(G1.from_bytes(eph.public.to_bytes()), table_after=1)
    prepared.mul(Scalar(1))
    k = Scalar.random(os.urandom)
    request = KeyRequest.app_key(APP, b"disk")
    h = request.point()
    sigma = h * share.value
    y_point = G1.base_mul(k)
    encoded = y_point.to_bytes()
    pk2 = G2.from_bytes(G2.base_mul(f.secret).to_bytes())
    members = [1, 2, 3]
    wire = [G1.from_bytes(G1.base_mul(Scalar.random(os.urandom)).to_bytes()) for _ in members]
    mus, _ = integer_lagrange_at_zero(members) or ([], 1)
    context = _proof_context(NET, 1, eph.public.to_bytes(), request)
    y_e = prepared.mul(k)

    steps: list[tuple[str, Bench]] = [
        ("node: hash to G1", lambda: hash_to_g1_point(os.urandom(16), DST)),
        ("node: x_i*H (blst)", lambda: h * share.value),
        ("node: proof k*H (blst)", lambda: h * k),
        ("node: proof k*G1 (table)", lambda: G1.base_mul(k)),
        ("node: Y = y*G1 (table)", lambda: G1.base_mul(k)),
        ("node: y*E (E's table, blst additions)", lambda: prepared.mul(k)),
        ("node: Z = sigma + y*E (blst)", lambda: sigma + y_e),
        (
            "node: proof challenge (6 encodings, hash)",
            DleqStatement(DleqProof(y_point, y_point, k), h, vk, sigma, context).challenge,
        ),
        ("node: proof context", lambda: _proof_context(NET, 1, eph.public.to_bytes(), request)),
        ("client: hash to G1", lambda: hash_to_g1_point(os.urandom(16), DST)),
        ("client: decode one wire point (checked)", lambda: G1.from_bytes(encoded)),
        ("client: sum mu_i*Z_i (3 short)", lambda: small_combination(wire, mus)),
        ("client: (a/d)*sum mu_i*Y_i (blst)", lambda: wire[0] * k),
        (
            "client: two-pairing check (blst)",
            lambda: pairing_product_is_one([(sigma, G2.generator()), (-h, pk2)]),
        ),
        ("(encode a point computed in blst)", lambda: G1(None, blst=sigma._b).to_bytes()),
    ]
    for name, fn in steps:
        seconds = median_seconds(fn, repeat)
        print(f"step {name}: {seconds * 1e3:.3f} ms ({seconds / unit:.2f} units)", flush=True)


DST = b"tkms-bench"


def bench_ibe(report: Report, repeat: int) -> None:
    f = Polynomial.random(2, os.urandom)

    def enc() -> Bench:
        pk2 = G2.from_bytes(G2.base_mul(f.secret).to_bytes())
        return lambda: ibe.encrypt(pk2, APP, b"x" * 64)

    def dec() -> Bench:
        pk2 = G2.base_mul(f.secret)
        sk = ibe.identity_point(APP) * f.secret
        ct = ibe.encrypt(pk2, APP, b"x" * 64)
        return lambda: ibe.decrypt(sk, APP, ct)

    report.emit("ibe_encrypt", side_by_side(enc, repeat))
    report.emit("ibe_decrypt", side_by_side(dec, repeat))


def bench_protocols(repeat: int) -> None:
    from mpc.bench_dkg import bench_dkg, bench_reshare

    for n, t in ((5, 3), (16, 11)):
        runs = [bench_dkg(n, t) for _ in range(repeat)]
        print(f"dkg_n{n}_t{t}_s: {statistics.median(runs):.3f} s", flush=True)
    reshare = statistics.median(bench_reshare(16) for _ in range(repeat))
    print(f"reshare_n16_s: {reshare:.3f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpc.bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per micro-benchmark")
    parser.add_argument("--protocol-repeat", type=int, default=3, help="timed runs per DKG/reshare")
    parser.add_argument("--no-protocols", action="store_true", help="skip the DKG and reshare")
    args = parser.parse_args(argv)
    G1.base_mul(1)  # build the fixed-base tables before timing
    G2.base_mul(1)
    unit = measure_unit()
    print(f"unit_g1_mul_arkworks: {unit * 1e3:.4f} ms (CPU)", flush=True)
    print("# name: hybrid arkworks ms (hybrid arkworks units)", flush=True)
    report = Report(unit)
    bench_primitives(report, args.repeat)
    bench_derivation(report, args.repeat)
    for threshold in (3, 5):
        bench_dleq(report, args.repeat, threshold)
    bench_ibe(report, args.repeat)
    bench_steps(unit, args.repeat)
    if not args.no_protocols:
        bench_protocols(args.protocol_repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
