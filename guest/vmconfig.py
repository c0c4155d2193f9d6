"""The VM description the agent reports: dstack's `vm_config` and the cloud's DMI names.

dstack's host (its VMM) hands each CVM a `sys-config.json` whose `vm_config` field is a JSON
object describing the VM: the OS image digest and the shape verifiers need to recompute MRTD
and RTMR0-2 (`os_image_hash`, `cpu_count`, `memory_size`, `pci_hole64_size`, `hugepages`,
`num_gpus`, `num_nvswitches`, `hotplug_off`, `image`, `spec_version`, ...). The guest agent
returns it verbatim in GetQuote, Info and Attest. The host writes it unmeasured, so it is a
claim: tkms authorizes on the OS image recomputed from the quote, never on this text.

The agent's `vm_config` config key names that file (a VmConfig object, or a whole
sys-config.json). Without it, a simulated TD reports `simulated_vm_config` (the nominal shape
of the simulated platform, whose registers do not depend on it) and a real TD the image digest
alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: dstack's DMI files for the cloud's names (`/sys/class/dmi/id/sys_vendor`, `product_name`).
DMI_DIR = Path("/sys/class/dmi/id")
_MAX_VM_CONFIG = 64 * 1024


class VmConfigError(ValueError):
    """The VM config file cannot be read or is not a VM config (the message says why)."""


def simulated_vm_config(os_image: bytes) -> str:
    """The simulated TD's VM config, with dstack's VMM's fields and order."""
    shape: dict[str, Any] = {
        "os_image_hash": os_image.hex(),
        "cpu_count": 1,
        "memory_size": 2 * 1024**3,
        "pci_hole64_size": 0,
        "hugepages": False,
        "num_gpus": 0,
        "num_nvswitches": 0,
        "hotplug_off": False,
        "image": "tkms-simulated-tdx",
        "host_share_mode": "",
        "spec_version": 1,
    }
    return json.dumps(shape, separators=(",", ":"))


def image_only_vm_config(os_image: bytes) -> str:
    return json.dumps({"os_image_hash": os_image.hex()}, separators=(",", ":"))


def read_vm_config(path: Path) -> tuple[str, bytes | None]:
    """(the VM config text, its `os_image_hash` if it has one) from `path`.

    The file is a VmConfig JSON object, or dstack's sys-config.json, whose `vm_config` field
    holds the VmConfig as a JSON string; the text is returned as the file has it.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise VmConfigError(f"cannot read vm_config {path}: {exc.strerror}") from None
    if len(raw) > _MAX_VM_CONFIG:
        raise VmConfigError(f"vm_config {path} is over {_MAX_VM_CONFIG} bytes")
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text)
        if isinstance(doc, dict) and isinstance(doc.get("vm_config"), str):
            text = doc["vm_config"]  # a sys-config.json
            doc = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise VmConfigError(f"vm_config {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise VmConfigError(f"vm_config {path} must be a JSON object")
    image = doc.get("os_image_hash")
    if image is None:
        return text, None
    try:
        digest = bytes.fromhex(image.removeprefix("0x")) if isinstance(image, str) else b""
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise VmConfigError(f"vm_config {path}: os_image_hash must be 32 bytes of hex")
    return text, digest


def cloud_names(tee: str, dmi: Path = DMI_DIR) -> tuple[str, str]:
    """(cloud_vendor, cloud_product): the VM's DMI names on a real TD, as dstack reads them.

    A simulated TD runs as a process on some host whose firmware names are not the TD's: "".
    """
    if tee != "tdx":
        return "", ""

    def read(name: str) -> str:
        try:
            return (dmi / name).read_text(encoding="utf-8", errors="replace").strip()[:256]
        except OSError:
            return ""

    return read("sys_vendor"), read("product_name")
