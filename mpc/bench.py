"""`python -m mpc.bench`: measure the threshold-cryptography core and print `name: value unit`.

Each figure is the median of several timed runs after a warm-up, on whatever machine runs
it. Nothing here is a test: it prints numbers for the README and for regressions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from mpc import ibe
from mpc.derive import (
    EphemeralKey,
    KeyRequest,
    NetworkContext,
    VerifiedPartial,
    combine_partials,
    derive_partial,
    open_partial,
)
from mpc.group import G1, G2
from mpc.sharing import Polynomial
from mpc.types import Epoch, Generation, MemberIndex

NET = NetworkContext(
    chain_id=31337, contract=b"\x42" * 20, generation=Generation(1), epoch=Epoch(1)
)
APP = b"\xaa" * 20


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _emit(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.3f} {unit}", flush=True)


def bench_derivation(repeat: int) -> None:
    f = Polynomial.random(10, os.urandom)
    public = f.commitments()
    share = f.share(MemberIndex(1))
    vk = public.verification_key(share.member)
    eph = EphemeralKey.generate(os.urandom)

    def one_partial() -> object:
        # A fresh request each time so hash-to-curve is included, as on a node.
        request = KeyRequest.app_key(APP, os.urandom(8))
        return derive_partial(share, request, requester=eph.public, network=NET, rng=os.urandom)

    _emit("partial_derive_ms", median_seconds(one_partial, repeat) * 1e3, "ms")

    request = KeyRequest.app_key(APP, b"disk")
    request.point()  # the app hashes once per request, not once per partial
    partial = derive_partial(share, request, requester=eph.public, network=NET, rng=os.urandom)

    def one_open() -> object:
        return open_partial(partial, request, ephemeral=eph, verification_key=vk, network=NET)

    _emit("partial_decrypt_verify_ms", median_seconds(one_open, repeat) * 1e3, "ms")

    for t in (3, 11):
        g = Polynomial.random(t - 1, os.urandom)
        verified = [
            VerifiedPartial(MemberIndex(i), request.point() * g.evaluate(i))
            for i in range(1, t + 1)
        ]
        seconds = median_seconds(lambda v=verified, t=t: combine_partials(v, t), repeat)  # type: ignore[misc]
        _emit(f"combine_t{t}_ms", seconds * 1e3, "ms")


def bench_ibe(repeat: int) -> None:
    f = Polynomial.random(2, os.urandom)
    pk2 = G2.base_mul(f.secret)
    sk = ibe.identity_point(APP) * f.secret
    ct = ibe.encrypt(pk2, APP, b"x" * 64)
    _emit(
        "ibe_encrypt_ms",
        median_seconds(lambda: ibe.encrypt(pk2, APP, b"x" * 64), repeat) * 1e3,
        "ms",
    )
    _emit("ibe_decrypt_ms", median_seconds(lambda: ibe.decrypt(sk, APP, ct), repeat) * 1e3, "ms")


def bench_protocols(repeat: int) -> None:
    from mpc.bench_dkg import bench_dkg, bench_reshare

    for n, t in ((5, 3), (16, 11)):
        runs = [bench_dkg(n, t) for _ in range(repeat)]
        _emit(f"dkg_n{n}_t{t}_s", statistics.median(runs), "s")
    _emit("reshare_n16_s", statistics.median(bench_reshare(16) for _ in range(repeat)), "s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpc.bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per micro-benchmark")
    parser.add_argument("--protocol-repeat", type=int, default=3, help="timed runs per DKG/reshare")
    args = parser.parse_args(argv)
    G1.base_mul(1)  # build the fixed-base tables before timing
    G2.base_mul(1)
    bench_derivation(args.repeat)
    bench_ibe(args.repeat)
    bench_protocols(args.protocol_repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
