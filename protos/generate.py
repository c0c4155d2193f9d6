"""Generate the Python stubs for protos/tkms/v1/*.proto (`python -m protos.generate`).

The stubs are committed; `tests/protos/test_stubs.py` regenerates them into a temporary
directory and fails when they differ, so editing a .proto without regenerating is caught.
Proto files import each other by their path from the repository root, so the generated
modules live at `protos.tkms.v1.<name>_pb2` while the protobuf package stays `tkms.v1`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = Path("protos") / "tkms" / "v1"


def proto_files() -> list[Path]:
    return sorted((REPO_ROOT / PROTO_DIR).glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto file under `out_dir`."""
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{REPO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(REPO_ROOT)) for p in proto_files()),
    ]
    status = protoc.main(args)
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")


if __name__ == "__main__":
    generate(REPO_ROOT)
    sys.exit(0)
