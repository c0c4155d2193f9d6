"""The HKDF key schedule, checked against RFC 5869."""

from __future__ import annotations

import pytest

from mpc.errors import ProtocolMisuse
from mpc.group import G1
from mpc.keyschedule import derive_app_seed, derive_child_key, hkdf_sha256
from mpc.types import Generation
from tests.mpc.vectors import load_vectors


@pytest.mark.parametrize("vector", load_vectors("rfc5869_sha256"), ids=["A.1", "A.2", "A.3"])
def test_hkdf_matches_rfc5869(vector: dict[str, str]) -> None:
    from cryptography.hazmat.primitives import hashes, hmac

    ikm, salt, info = (bytes.fromhex(vector[k]) for k in ("ikm", "salt", "info"))
    okm = hkdf_sha256(ikm, salt=salt, info=info, length=int(vector["length"]))
    assert okm.hex() == vector["okm"]
    # The extract step on its own, to pin down the PRK the RFC lists.
    mac = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    mac.update(ikm)
    assert mac.finalize().hex() == vector["prk"]


SIGMA = G1.base_mul(123456789)


def test_seed_depends_on_every_input() -> None:
    base = derive_app_seed(SIGMA, generation=Generation(1), app_id=b"a" * 20, purpose=b"disk")
    assert len(base) == 32
    variants = {
        derive_app_seed(SIGMA, generation=Generation(2), app_id=b"a" * 20, purpose=b"disk"),
        derive_app_seed(SIGMA, generation=Generation(1), app_id=b"b" * 20, purpose=b"disk"),
        derive_app_seed(SIGMA, generation=Generation(1), app_id=b"a" * 20, purpose=b"tls"),
        derive_app_seed(
            G1.base_mul(2), generation=Generation(1), app_id=b"a" * 20, purpose=b"disk"
        ),
    }
    assert base not in variants and len(variants) == 4
    assert base == derive_app_seed(
        SIGMA, generation=Generation(1), app_id=b"a" * 20, purpose=b"disk"
    )


def test_child_keys_are_separated_by_label_and_context() -> None:
    seed = derive_app_seed(SIGMA, generation=Generation(1), app_id=b"a" * 20, purpose=b"disk")
    keys = {
        derive_child_key(seed, b"path", b"/a"),
        derive_child_key(seed, b"path", b"/b"),
        derive_child_key(seed, b"disk", b"/a"),
        derive_child_key(seed, b"path", b"/", b"a"),
    }
    assert len(keys) == 4
    assert len(derive_child_key(seed, b"path", length=64)) == 64


def test_bad_inputs() -> None:
    with pytest.raises(ProtocolMisuse, match="identity"):
        derive_app_seed(G1.identity(), generation=Generation(1), app_id=b"a", purpose=b"p")
    with pytest.raises(ProtocolMisuse, match="32 bytes"):
        derive_child_key(b"short", b"x")
    with pytest.raises(ProtocolMisuse, match="non-empty label"):
        derive_child_key(bytes(32), b"")
