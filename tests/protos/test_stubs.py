"""The committed gRPC stubs are exactly what protoc generates from the .proto files."""

from __future__ import annotations

from pathlib import Path

from protos.generate import PROTO_DIR, REPO_ROOT, generate, proto_files


def test_committed_stubs_match_the_proto_sources(tmp_path: Path) -> None:
    generate(tmp_path)
    generated = sorted(p.name for p in (tmp_path / PROTO_DIR).iterdir())
    assert generated, "protoc produced nothing"
    stale = [
        name
        for name in generated
        if (tmp_path / PROTO_DIR / name).read_bytes() != (REPO_ROOT / PROTO_DIR / name).read_bytes()
    ]
    assert not stale, f"regenerate with `python -m protos.generate`; stale: {stale}"
    assert len(generated) == 3 * len(proto_files())


def test_services_are_versioned_and_importable() -> None:
    from protos.tkms.v1 import admin_pb2, gateway_pb2, kms_pb2, peer_pb2

    assert kms_pb2.DESCRIPTOR.package == "tkms.v1"
    assert set(kms_pb2.DESCRIPTOR.services_by_name) == {"Kms"}
    assert set(peer_pb2.DESCRIPTOR.services_by_name) == {"Peer"}
    assert set(admin_pb2.DESCRIPTOR.services_by_name) == {"Admin"}
    assert set(gateway_pb2.DESCRIPTOR.services_by_name) == {"Gateway"}
