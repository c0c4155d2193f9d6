"""The KMS network behind an app: the committee its keys come from, every member attested and
approved, each checked the way peers check each other (design §6.4), from outside.

The network is the one the app measured: the `key-provider` id in its RTMR3 is the network's
fingerprint (docs/guest.md, Trust anchor), so the committee is read from chain and used only if
its PK2 chains to that fingerprint (`guest.committee`). For each member, in committee order:
its registration is approved on chain (with the transaction), its Kms port serves the TLS key it
registered, that certificate's RA-TLS evidence verifies (quote, replay, identity, key binding),
and governance allows its measurement now (`isKmsAllowed`, and the KMS-measurement event).
"""

from __future__ import annotations

import asyncio

from attest import (
    AttestError,
    BindingLabel,
    CertificateFetchError,
    check_key_pin,
    fetch_certificate,
    read_ratls_certificate,
)
from guest.committee import CommitteeError, UntrustedNetwork, committee_from_chain
from guest.kms_types import Committee
from verify.chain import ChainView, allowed_check, kms_measurement_check, node_check
from verify.quotes import TrustPolicy, check_evidence
from verify.report import Check, Compared, failed, judged, merged

FETCH_TIMEOUT = 5.0


def committee_check(view: ChainView, fingerprint: bytes | None) -> tuple[Check, Committee | None]:
    """The active committee, if the chain's network is the one `fingerprint` names."""
    name = "KMS network is the one the app measured"
    if fingerprint is None:
        return failed(name, "the evidence names no KMS network (no key-provider event)"), None
    try:
        committee = committee_from_chain(view.governance, fingerprint=fingerprint)
    except (CommitteeError, UntrustedNetwork) as exc:
        return failed(name, str(exc), Compared("fingerprint", fingerprint.hex(), "?")), None
    detail = (
        f"fingerprint {fingerprint.hex()[:16]}… = this chain's network: generation "
        f"{int(committee.network.generation)}, epoch {int(committee.network.epoch)}, "
        f"{committee.threshold} of {len(committee.members)}"
    )
    check = judged(name, True, detail, group_key=committee.group_key.to_bytes().hex())
    return check, committee


async def _served(endpoints: list[str]) -> list[bytes | CertificateFetchError]:
    async def one(endpoint: str) -> bytes | CertificateFetchError:
        try:
            return await fetch_certificate(endpoint, timeout=FETCH_TIMEOUT)
        except CertificateFetchError as exc:
            return exc

    return list(await asyncio.gather(*(one(e) for e in endpoints)))


def fetch_served(endpoints: list[str]) -> list[bytes | CertificateFetchError]:
    """The certificate (PEM) each endpoint serves, read concurrently, or why not."""
    return asyncio.run(_served(endpoints))


def active_members(view: ChainView) -> list[str]:
    """The addresses of the latest generation's active committee ([] before the first DKG)."""
    governance = view.governance
    latest = governance.get_latest_generation(block=view.head)
    if latest == 0:
        return []
    epoch = governance.get_generation(latest, block=view.head).active_epoch
    return list(governance.get_epoch(epoch, block=view.head).members) if epoch else []


def member_check(
    view: ChainView,
    trust: TrustPolicy,
    index: int,
    address: str,
    endpoint: str,
    tls_key_hash: bytes,
    served: bytes | CertificateFetchError,
) -> Check:
    """One row for a member: every step of the module docstring, the failing ones named."""
    subject = f"KMS member {index}"
    steps = [node_check(view, address, subject)]
    if isinstance(served, CertificateFetchError):
        steps.append(failed(f"{subject}: serves its registered key", f"{endpoint}: {served}"))
        return merged(f"KMS member {index} ({address})", steps, "")
    try:
        check_key_pin(served, tls_key_hash)
        steps.append(judged(f"{subject}: serves its registered key", True, f"{endpoint} serves it"))
        attestation = read_ratls_certificate(served)
    except AttestError as exc:
        steps.append(failed(f"{subject}: serves its registered key", f"{endpoint}: {exc}"))
        return merged(f"KMS member {index} ({address})", steps, "")
    attested = check_evidence(
        subject,
        attestation.quote,
        attestation.event_log,
        trust,
        binding=(BindingLabel.RATLS_CERT, attestation.public_key_der, "its TLS key"),
        vm_config=attestation.vm_config,
    )
    steps += attested.checks
    info = attested.boot_info()
    if info is not None:
        steps.append(allowed_check(view, info, subject, kms=True))
        steps.append(kms_measurement_check(view, info.mr_aggregated, subject))
    summary = (
        f"approved, serves its registered key at {endpoint}, evidence verified, "
        "measurement allowed now"
    )
    return merged(f"KMS member {index} ({address})", steps, summary)


def network_checks(view: ChainView, trust: TrustPolicy, fingerprint: bytes | None) -> list[Check]:
    """The committee row, then one row per member."""
    check, committee = committee_check(view, fingerprint)
    if committee is None:
        return [check]
    epoch = view.governance.get_epoch(int(committee.network.epoch), block=view.head)
    served = fetch_served([m.endpoint for m in committee.members])
    rows = [check]
    for member, address, cert in zip(committee.members, epoch.members, served, strict=True):
        rows.append(
            member_check(
                view, trust, member.index, address, member.endpoint, member.tls_key_hash, cert
            )
        )
    return rows
