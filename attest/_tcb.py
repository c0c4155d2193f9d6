"""TDX TCB-status evaluation from already-authenticated collateral (Intel QVL rules).

Hazmat: this module trusts its inputs. It must only be given a `tcb_info`/`qe_identity` whose
signatures, chains and validity were checked, and platform values (PCK cpu_svn/pce_svn) from
a PCK certificate whose chain was checked; `verify_quote` calls it only after dcap-qvl has
done all of that for the same quote, collateral and `now` (see attest/_dcap.py for why).

Rules (Intel SGX/TDX DCAP QVL, `TcbLevelCheck` and the status convergence functions):
1. Platform level: the first TCB level (levels are ordered best first) with PCESVN and all 16
   SGX components <= the PCK certificate's, and all TDX components <= TEE_TCB_SVN; when
   TEE_TCB_SVN[1] (the TDX module major version) is non-zero, bytes 0-1 are skipped because
   the module is judged by its own identity (step 2).
2. TDX module: the identity ``TDX_<TEE_TCB_SVN[1]:02X>`` must match MRSIGNERSEAM and the masked
   SEAMATTRIBUTES; its first level with isvsvn <= TEE_TCB_SVN[0] gives the module status.
3. QE: the first QE identity level with isvsvn <= the QE report's ISVSVN.
4. Converge: an OutOfDate module or QE turns UpToDate/SWHardeningNeeded into OutOfDate and the
   Configuration* statuses into OutOfDateConfigurationNeeded; Revoked wins. Advisory IDs are
   the union, platform first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attest.errors import VerificationError


@dataclass(frozen=True, slots=True)
class TcbResult:
    """A TCB status with its advisory IDs."""

    status: str
    advisory_ids: tuple[str, ...]


def _fail(message: str) -> VerificationError:
    return VerificationError(message, reason=message)


def _svns(components: Sequence[Mapping[str, Any]]) -> list[int]:
    return [int(c["svn"]) for c in components]


def _result(level: Mapping[str, Any]) -> TcbResult:
    return TcbResult(str(level["tcbStatus"]), tuple(level.get("advisoryIDs", ())))


def match_platform_level(
    tcb_info: Mapping[str, Any], *, cpu_svn: bytes, pce_svn: int, tee_tcb_svn: bytes
) -> TcbResult:
    """Step 1: the platform TCB level for this PCK certificate and TD report."""
    skip = 2 if tee_tcb_svn[1] > 0 else 0
    for level in tcb_info["tcbLevels"]:
        tcb = level["tcb"]
        if pce_svn < int(tcb["pcesvn"]):
            continue
        sgx = _svns(tcb["sgxtcbcomponents"])
        if len(sgx) != len(cpu_svn):
            raise _fail(f"TCB info level has {len(sgx)} SGX components (expected 16)")
        if any(have < need for have, need in zip(cpu_svn, sgx, strict=True)):
            continue
        tdx = _svns(tcb.get("tdxtcbcomponents", ()))
        if not tdx:
            raise _fail("TCB info level has no TDX components")
        if any(tee_tcb_svn[i] < tdx[i] for i in range(skip, min(16, len(tdx)))):
            continue
        return _result(level)
    raise _fail("no matching TCB level")


def match_module_level(
    tcb_info: Mapping[str, Any],
    *,
    tee_tcb_svn: bytes,
    mr_signer_seam: bytes,
    seam_attributes: bytes,
) -> TcbResult | None:
    """Step 2: the TDX module status, or None when the module is judged by the platform level."""
    major = tee_tcb_svn[1]
    identities = tcb_info.get("tdxModuleIdentities") or []
    if major == 0 or not identities:
        return None
    wanted = f"TDX_{major:02X}"
    identity = next((i for i in identities if str(i.get("id", "")).upper() == wanted), None)
    if identity is None:
        raise _fail(f"TDX module {wanted} is not listed in the TCB info")
    if bytes.fromhex(identity["mrsigner"]) != mr_signer_seam:
        raise _fail(
            f"TDX module MRSIGNERSEAM {mr_signer_seam.hex()} does not match {wanted}'s "
            f"{identity['mrsigner'].lower()}"
        )
    mask = int.from_bytes(bytes.fromhex(identity["attributesMask"]), "little")
    want = int.from_bytes(bytes.fromhex(identity["attributes"]), "little")
    have = int.from_bytes(seam_attributes, "little")
    if have & mask != want & mask:
        raise _fail(f"SEAMATTRIBUTES {seam_attributes.hex()} do not match {wanted}'s identity")
    for level in identity.get("tcbLevels", ()):
        if tee_tcb_svn[0] >= int(level["tcb"]["isvsvn"]):
            return _result(level)
    raise _fail(f"TDX module {wanted} SVN {tee_tcb_svn[0]} is below every module TCB level")


def match_qe_level(qe_identity: Mapping[str, Any], *, isv_svn: int) -> TcbResult:
    """Step 3: the Quoting Enclave's status from its ISVSVN."""
    for level in qe_identity["tcbLevels"]:
        if isv_svn >= int(level["tcb"]["isvsvn"]):
            return _result(level)
    raise _fail(f"QE ISVSVN {isv_svn} is below every QE identity TCB level")


def converge(platform: TcbResult, other: TcbResult) -> TcbResult:
    """Step 4: fold a module or QE status into the platform status."""
    status = platform.status
    if other.status == "Revoked":
        status = "Revoked"
    elif other.status == "OutOfDate":
        if status in ("UpToDate", "SWHardeningNeeded"):
            status = "OutOfDate"
        elif status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            status = "OutOfDateConfigurationNeeded"
    advisories = list(platform.advisory_ids)
    advisories += [a for a in other.advisory_ids if a not in advisories]
    return TcbResult(status, tuple(advisories))


def evaluate_tdx_tcb(
    tcb_info: Mapping[str, Any],
    qe_identity: Mapping[str, Any],
    *,
    cpu_svn: bytes,
    pce_svn: int,
    tee_tcb_svn: bytes,
    mr_signer_seam: bytes,
    seam_attributes: bytes,
    qe_isv_svn: int,
) -> TcbResult:
    """The TCB status of a TDX quote: steps 1-4 above."""
    try:
        result = match_platform_level(
            tcb_info, cpu_svn=cpu_svn, pce_svn=pce_svn, tee_tcb_svn=tee_tcb_svn
        )
        module = match_module_level(
            tcb_info,
            tee_tcb_svn=tee_tcb_svn,
            mr_signer_seam=mr_signer_seam,
            seam_attributes=seam_attributes,
        )
        if module is not None:
            result = converge(result, module)
        return converge(result, match_qe_level(qe_identity, isv_svn=qe_isv_svn))
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(f"malformed TCB info or QE identity: {exc!r}") from exc
