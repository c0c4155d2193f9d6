"""App identity of an SEV-SNP guest (dstack-compatible), and its platform hash for governance.

SEV-SNP has no runtime measurement register: nothing the guest does after launch is in the
report. dstack therefore binds the app at launch instead (`dstack-types/src/mr_config.rs`,
`dstack-attest/src/attestation.rs` `decode_app_info_sev_snp`): the host launches the guest with
HOST_DATA = SHA-256("dstack-mr-config-v3:" ‖ 0x00 ‖ document), where the document is the exact
UTF-8 text of an MrConfigV3 JSON object::

    {"app_id": hex(20), "compose_hash": hex(32), "instance_id": hex(20),
     "key_provider": "none"|"kms"|"local"|"tpm", "key_provider_id": hex,
     "gpu_policy_hash": hex(32), "init_script_hashes": [hex(32), ...], "version": 3}

(every field but compose_hash and key_provider optional; unknown fields refused). The firmware
puts HOST_DATA into every report, so the document the evidence carries is checked against it
byte for byte (never re-serialized), and the identity is read from it:

* app_id, compose_hash, instance_id from the document; key_provider_info =
  ``{"name": <kind, "local" is "local-sgx">, "id": hex(key_provider_id)}`` (serde_json's text);
* device_id = SHA-256(CHIP_ID); mr_system = SHA-256(MEASUREMENT);
  mr_aggregated = SHA-256(MEASUREMENT ‖ HOST_DATA) (dstack's `decode_mr_sev_snp`);
* os_image_hash = the **SEV-SNP platform hash** (`snp_platform_hash`), tkms' departure from
  dstack as for TDX (docs/security.md): recomputed from the signed report, never taken from the
  host's VM config, which only gives `claimed_os_image_hash`.

The platform hash is what governance approves with ``addOsImage``, in the same 32-byte slot as a
TDX platform hash, so the two must never be confusable: ::

    snp_platform_hash = SHA-256("tkms-platform:amd-sev-snp:v1" ‖ 0x00 ‖ MEASUREMENT ‖ u64le(POLICY))

against TDX's SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ 0³²): the preimages differ in length (85
vs 224 bytes) and the SNP one starts with its platform tag, so a value approving one platform is
a SHA-256 collision away from approving the other. MEASUREMENT covers the firmware, the kernel,
initrd and command line hashes and the initial vCPU state (count and type); the guest POLICY
(debug, SMT, migration agent, ABI minimum, ...) is the launch configuration the image runs under,
so each (image, vCPU shape, policy) is its own approved value, as each (image, VM shape) is on
TDX. HOST_DATA is the app's, not the platform's: it is in mr_aggregated, not here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from attest._identity import AppIdentity, IdentityError, KeyProvider
from attest._snp_report import SnpReport

__all__ = [
    "MR_CONFIG_V3_DOMAIN",
    "SNP_PLATFORM_TAG",
    "MrConfigV3",
    "compute_snp_identity",
    "make_mr_config",
    "mr_config_document",
    "parse_mr_config",
    "snp_host_data",
    "snp_platform_hash",
]

MR_CONFIG_V3_DOMAIN = b"dstack-mr-config-v3:"
SNP_PLATFORM_TAG = b"tkms-platform:amd-sev-snp:v1"
PLATFORM = "amd-sev-snp"
_KEY_PROVIDER_NAMES = {"none": "none", "kms": "kms", "local": "local-sgx", "tpm": "tpm"}
_HEX_FIELDS = {
    "app_id": 20,
    "compose_hash": 32,
    "instance_id": 20,
    "gpu_policy_hash": 32,
    "key_provider_id": None,  # any length (the fingerprint for tkms, a SPKI for dstack's KMS)
}
_FIELDS = {*_HEX_FIELDS, "key_provider", "init_script_hashes", "version"}


@dataclass(frozen=True, slots=True, kw_only=True)
class MrConfigV3:
    """The launch-time app binding document (module docstring). Bytes fields are raw."""

    document: str
    compose_hash: bytes
    key_provider: str
    app_id: bytes = b""
    instance_id: bytes = b""
    key_provider_id: bytes = b""
    gpu_policy_hash: bytes | None = None
    init_script_hashes: tuple[bytes, ...] | None = None

    @property
    def key_provider_info(self) -> bytes:
        """dstack's ``KeyProviderInfo`` as serde_json writes it: ``{"name":…,"id":…}``."""
        info = {"name": _KEY_PROVIDER_NAMES[self.key_provider], "id": self.key_provider_id.hex()}
        return json.dumps(info, separators=(",", ":")).encode()


def make_mr_config(
    *,
    app_id: bytes,
    compose_hash: bytes,
    key_provider: str,
    key_provider_id: bytes = b"",
    instance_id: bytes = b"",
) -> str:
    """The document a host launches an SEV-SNP guest with, in dstack's JCS form (sorted keys,
    no spaces; empty optional fields left out). HOST_DATA = `snp_host_data` of exactly this."""
    doc: dict[str, object] = {
        "app_id": app_id.hex(),
        "compose_hash": compose_hash.hex(),
        "instance_id": instance_id.hex(),
        "key_provider": key_provider,
        "key_provider_id": key_provider_id.hex(),
        "version": 3,
    }
    document = json.dumps(
        {k: v for k, v in doc.items() if v != ""}, sort_keys=True, separators=(",", ":")
    )
    parse_mr_config(document)  # refuse what a verifier would refuse
    return document


def snp_host_data(document: str) -> bytes:
    """The HOST_DATA that binds `document` (dstack's `snp_host_data_from_document`)."""
    return hashlib.sha256(MR_CONFIG_V3_DOMAIN + b"\x00" + document.encode()).digest()


def snp_platform_hash(measurement: bytes, policy: int) -> bytes:
    """The SEV-SNP platform hash governance approves (module docstring)."""
    if len(measurement) != 48:
        raise IdentityError(f"MEASUREMENT must be 48 bytes, got {len(measurement)}")
    if not 0 <= policy < 1 << 64:
        raise IdentityError(f"POLICY must be a 64-bit value, got {policy}")
    return hashlib.sha256(
        SNP_PLATFORM_TAG + b"\x00" + measurement + policy.to_bytes(8, "little")
    ).digest()


def _hex(doc: dict[str, object], name: str, size: int | None) -> bytes:
    value = doc[name]
    if not isinstance(value, str):
        raise IdentityError(f"mr_config field {name!r} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise IdentityError(f"mr_config field {name!r} is not hex: {value[:80]!r}") from None
    if size is not None and len(raw) != size:
        raise IdentityError(f"mr_config field {name!r} must be {size} bytes, got {len(raw)}")
    return raw


def parse_mr_config(document: str) -> MrConfigV3:
    """Parse an MrConfigV3 document strictly; `IdentityError` names the field at fault."""
    try:
        doc = json.loads(document)
    except ValueError as exc:
        raise IdentityError(f"mr_config is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IdentityError("mr_config must be a JSON object")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise IdentityError(f"mr_config has unknown fields: {', '.join(unknown)}")
    version = doc.get("version", 3)
    if version != 3 or isinstance(version, bool):
        raise IdentityError(f"mr_config version must be 3, got {version!r}")
    for required in ("compose_hash", "key_provider"):
        if required not in doc:
            raise IdentityError(f"mr_config has no {required!r}")
    kind = doc["key_provider"]
    if kind not in _KEY_PROVIDER_NAMES:
        raise IdentityError(
            f"mr_config key_provider must be one of {sorted(_KEY_PROVIDER_NAMES)}, got {kind!r}"
        )
    fields = {name: _hex(doc, name, size) for name, size in _HEX_FIELDS.items() if name in doc}
    scripts: tuple[bytes, ...] | None = None
    if "init_script_hashes" in doc:
        listed = doc["init_script_hashes"]
        if not isinstance(listed, list):
            raise IdentityError("mr_config field 'init_script_hashes' must be a list")
        scripts = tuple(_hex({"init_script_hashes": h}, "init_script_hashes", 32) for h in listed)
    return MrConfigV3(
        document=document,
        compose_hash=fields["compose_hash"],
        key_provider=kind,
        app_id=fields.get("app_id", b""),
        instance_id=fields.get("instance_id", b""),
        key_provider_id=fields.get("key_provider_id", b""),
        gpu_policy_hash=fields.get("gpu_policy_hash"),
        init_script_hashes=scripts,
    )


def _claimed_os_image_hash(vm_config: str | None) -> tuple[bytes, str]:
    """dstack's image digest as the host's VM config claims it (shown, never authorized on)."""
    try:
        doc = json.loads(vm_config) if vm_config else {}
        text = doc.get("os_image_hash", "") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            raise ValueError("os_image_hash is not a string")
        claimed = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise IdentityError(f"vm_config has no usable os_image_hash: {exc}") from None
    return claimed, "vm_config" if claimed else "none"


def mr_config_document(carried: str, config: str) -> str:
    """The MrConfigV3 document: the one the quote carries, else the config's ``mr_config``
    (dstack's fallback). Unverified until `compute_snp_identity` checks it against HOST_DATA."""
    if carried:
        return carried
    try:
        doc = json.loads(config) if config else {}
    except ValueError:
        doc = {}
    document = doc.get("mr_config") if isinstance(doc, dict) else None
    if not isinstance(document, str) or not document:
        raise IdentityError("the attestation carries no mr_config document (SEV-SNP app identity)")
    return document


def compute_snp_identity(
    report: SnpReport, document: str, *, vm_config: str | None = None
) -> tuple[AppIdentity, MrConfigV3]:
    """The identity of a (verified) report whose HOST_DATA binds `document` (module docstring).

    `IdentityError` when the document is not the one HOST_DATA binds, is malformed, or names
    no app_id (an SNP guest without one has no identity to release keys to).
    """
    expected = snp_host_data(document)
    if not hmac.compare_digest(expected, report.host_data):
        raise IdentityError(
            f"the mr_config document is not the one the report binds: HOST_DATA (offset 0xc0) "
            f"is {report.host_data.hex()}, the document hashes to {expected.hex()}"
        )
    config = parse_mr_config(document)
    if not config.app_id:
        raise IdentityError("the mr_config document names no app_id")
    info = config.key_provider_info
    claimed, source = _claimed_os_image_hash(vm_config)
    identity = AppIdentity(
        app_id=config.app_id,
        compose_hash=config.compose_hash,
        instance_id=config.instance_id,
        device_id=hashlib.sha256(report.chip_id).digest(),
        mr_system=hashlib.sha256(report.measurement).digest(),
        mr_aggregated=hashlib.sha256(report.measurement + report.host_data).digest(),
        os_image_hash=snp_platform_hash(report.measurement, report.policy),
        key_provider_info=info,
        key_provider=KeyProvider(
            name=_KEY_PROVIDER_NAMES[config.key_provider], id=config.key_provider_id.hex()
        ),
        claimed_os_image_hash=claimed,
        claimed_os_image_hash_source=source,
        platform=PLATFORM,
    )
    return identity, config
