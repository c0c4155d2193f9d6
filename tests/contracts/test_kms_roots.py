"""KMS roots: the owner publishes each generation's certified secp256k1 root once (design §3.5)."""

from __future__ import annotations

import pytest
from web3 import Web3

from contracts import EpochKind, GovernanceClient, InvalidInput, TransactionFailed
from tests.contracts.conftest import Poly
from tests.contracts.test_epochs import AsSigner, run_epoch

ROOT = b"\x02" + b"\x5a" * 32
CERTIFICATE = b"\x77" * 48


def test_only_the_owner_sets_an_activated_generations_root_once(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    with pytest.raises(TransactionFailed, match=r"NotAKeyGeneration\(generation=1\)"):
        governance.send_set_kms_root(1, ROOT, CERTIFICATE)  # no generation yet
    run_epoch(w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], Poly.make(1, 2))
    assert governance.get_kms_root(1) == (b"", b"")
    with pytest.raises(TransactionFailed, match=r"NotAKeyGeneration\(generation=0\)"):
        governance.send_set_kms_root(0, ROOT, CERTIFICATE)
    with pytest.raises(TransactionFailed, match=r"NotAKeyGeneration\(generation=2\)"):
        governance.send_set_kms_root(2, ROOT, CERTIFICATE)
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(2).send_set_kms_root(1, ROOT, CERTIFICATE)
    for bad in (b"\x04" + ROOT[1:], ROOT[:32], ROOT + b"\x00"):
        with pytest.raises(TransactionFailed, match="NotACompressedKey"):
            governance._send("setKmsRoot", 1, bad, CERTIFICATE)
    with pytest.raises(TransactionFailed, match=r"InvalidLength\(field='certificate', length=47"):
        governance._send("setKmsRoot", 1, ROOT, CERTIFICATE[:47])
    with pytest.raises(InvalidInput, match="root: must be a 33-byte compressed"):
        governance.send_set_kms_root(1, ROOT[:32], CERTIFICATE)
    with pytest.raises(InvalidInput, match="certificate: must be 48 bytes, got 47"):
        governance.send_set_kms_root(1, ROOT, CERTIFICATE[:47])
    receipt = governance.send_set_kms_root(1, ROOT, CERTIFICATE)
    assert governance.event_args(receipt, "KmsRootSet") == [
        {"generation": 1, "k256Pubkey": ROOT, "certificate": CERTIFICATE}
    ]
    assert governance.get_kms_root(1) == (ROOT, CERTIFICATE)
    # The anchor cannot be swapped later, not even by the owner.
    other = b"\x03" + b"\x11" * 32
    with pytest.raises(TransactionFailed, match=r"KmsRootAlreadySet\(generation=1\)"):
        governance.send_set_kms_root(1, other, CERTIFICATE)
    assert governance.get_kms_root(1) == (ROOT, CERTIFICATE)
    run_epoch(w3, governance, as_signer, EpochKind.ROTATE, [2, 3, 4], 2, [2, 3, 4], Poly.make(2, 2))
    governance.send_set_kms_root(2, other, CERTIFICATE)
    assert governance.get_kms_root(2) == (other, CERTIFICATE)
    assert governance.get_kms_root(1) == (ROOT, CERTIFICATE)
