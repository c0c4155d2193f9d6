"""Generation links: the owner publishes g-1's signature over generation g's key (design §7)."""

from __future__ import annotations

import pytest
from web3 import Web3

from contracts import EpochKind, GovernanceClient, InvalidInput, TransactionFailed
from tests.contracts.conftest import Poly
from tests.contracts.test_epochs import AsSigner, run_epoch

LINK = b"\x5a" * 48


def test_only_the_owner_links_only_activated_rotated_generations(
    w3: Web3, governance: GovernanceClient, as_signer: AsSigner, committee: list[str]
) -> None:
    with pytest.raises(TransactionFailed, match=r"NotALinkableGeneration\(generation=2\)"):
        governance.send_set_generation_link(2, LINK)  # no generation 2 yet
    run_epoch(w3, governance, as_signer, EpochKind.DKG, [2, 3, 4], 2, [2, 3, 4], Poly.make(1, 2))
    with pytest.raises(TransactionFailed, match=r"NotALinkableGeneration\(generation=1\)"):
        governance.send_set_generation_link(1, LINK)  # generation 1 is the fingerprint's
    run_epoch(w3, governance, as_signer, EpochKind.ROTATE, [2, 3, 4], 2, [2, 3, 4], Poly.make(2, 2))
    assert governance.get_generation_link(2) == b""
    with pytest.raises(TransactionFailed, match="NotOwner"):
        as_signer(2).send_set_generation_link(2, LINK)
    with pytest.raises(TransactionFailed, match=r"InvalidLength\(field='signature', length=47"):
        governance._send("setGenerationLink", 2, LINK[:47])
    with pytest.raises(InvalidInput, match="signature: must be 48 bytes, got 47"):
        governance.send_set_generation_link(2, LINK[:47])
    receipt = governance.send_set_generation_link(2, LINK)
    assert governance.event_args(receipt, "GenerationLinked") == [
        {"generation": 2, "signature": LINK}
    ]
    assert governance.get_generation_link(2) == LINK
    with pytest.raises(TransactionFailed, match=r"NotALinkableGeneration\(generation=3\)"):
        governance.send_set_generation_link(3, LINK)
