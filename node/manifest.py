"""What this node states for relays (docs/relay.md): its partial over the epoch manifest
(SignPartial KIND_EPOCH_MANIFEST, `mpc.manifest`) and over revocation notices
(KIND_REVOCATION, `mpc.revocation`), and its own health note (GetHealthNote,
`mpc.nodehealth`, signed with its TLS identity key).

A node states only what its own chain view shows: the active epoch of the generation it holds
a share of, that epoch's members in order with the KMS endpoints and TLS key hashes registered
now, the threshold and PK2. A relay gathers t such partials into the network's signature
(docs/relay.md); a member whose view differs (it has not seen the epoch yet, or a member has
since moved its endpoint) signs other bytes, and the relay asks again.
"""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric import ec

from mpc.manifest import EpochManifest, ManifestMember
from mpc.nodehealth import HEALTH_NAMES, HealthNote, sign_note
from mpc.revocation import NODE_REMOVED, RevocationNotice
from node.chainview import ChainView, Committee
from node.errors import InvalidRequest, NotReady, PolicyDenied
from node.health import HealthReport


def epoch_manifest(view: ChainView, held: Committee) -> EpochManifest:
    """The manifest of `held` (the committee of our share) as `view` shows it now."""
    active = view.committee(held.generation)
    if active is None or active.epoch != held.epoch:
        shown = "none" if active is None else str(active.epoch)
        raise NotReady(
            f"generation {held.generation}'s active epoch in this node's chain view is {shown}, "
            f"not epoch {held.epoch} of its share"
        )
    members = []
    for record in active.members:
        current = view.nodes.get(record.address, record)
        members.append(ManifestMember(current.address, current.kms_endpoint, current.tls_key_hash))
    return EpochManifest(
        chain_id=view.chain_id,
        governance=view.governance,
        generation=active.generation,
        epoch=active.epoch,
        threshold=active.threshold,
        group_key=active.pk2,
        members=tuple(members),
    )


def signed_health(
    view: ChainView | None, address: bytes, report: HealthReport, key: ec.EllipticCurvePrivateKey
) -> bytes:
    """This node's health now, as a note signed with its TLS key (`mpc.nodehealth`)."""
    if view is None:
        raise NotReady("no chain view yet")
    note = HealthNote(
        chain_id=view.chain_id,
        governance=view.governance,
        address=address,
        generation=report.generation,
        epoch=report.epoch,
        health=HEALTH_NAMES.index(report.health),
        reason=report.reason.encode("ascii", "replace").decode()[:200],
        head=view.head,
        issued_ms=int(time.time() * 1000),
    )
    return sign_note(note, key)


def revocation_notice(view: ChainView, held: Committee, subject: bytes) -> RevocationNotice:
    """The notice that `subject` is no longer an approved node, if our view shows exactly that
    (PolicyDenied while it is approved): for the epoch of our share."""
    if len(subject) != 20:
        raise InvalidRequest(f"subject must be a 20-byte node address, got {len(subject)} bytes")
    if subject in view.nodes:
        raise PolicyDenied(
            f"node 0x{subject.hex()} is approved at block {view.head}: not revoked here"
        )
    return RevocationNotice(
        chain_id=view.chain_id,
        governance=view.governance,
        generation=held.generation,
        epoch=held.epoch,
        kind=NODE_REMOVED,
        subject=subject,
    )
