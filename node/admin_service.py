"""The local `Admin` service on a unix socket: status, re-attest, drain (design §6.2).

Only processes that can open the socket file (mode 0600, in the data directory) reach it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from protos.tkms.v1 import admin_pb2, admin_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    health: str
    chain_head: int
    chain_head_age_seconds: int
    generation: int
    epoch: int
    my_index: int
    peers_reachable: int
    epoch_phase: str


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(
        self,
        *,
        status: Callable[[], NodeStatus],
        reattest: Callable[[], Awaitable[bytes]],
        drain: Callable[[], Awaitable[None]],
    ) -> None:
        self._status = status
        self._reattest = reattest
        self._drain = drain

    async def Status(
        self, request: admin_pb2.StatusRequest, context: Ctx
    ) -> admin_pb2.StatusResponse:
        s = self._status()
        return admin_pb2.StatusResponse(
            health=s.health,
            chain_head=s.chain_head,
            chain_head_age_seconds=s.chain_head_age_seconds,
            generation=s.generation,
            epoch=s.epoch,
            my_index=s.my_index,
            peers_reachable=s.peers_reachable,
            epoch_phase=s.epoch_phase,
        )

    async def Reattest(
        self, request: admin_pb2.ReattestRequest, context: Ctx
    ) -> admin_pb2.ReattestResponse:
        return admin_pb2.ReattestResponse(evidence_hash=await self._reattest())

    async def Drain(self, request: admin_pb2.DrainRequest, context: Ctx) -> admin_pb2.DrainResponse:
        await self._drain()
        return admin_pb2.DrainResponse()


def query_status(
    data_dir: Path, socket_path: Path | None = None, timeout: float = 5.0
) -> dict[str, object]:
    """Ask a running node for its status over its admin socket (used by `tkms node status`)."""
    from google.protobuf.json_format import MessageToDict

    from node.errors import NotReady

    path = socket_path or data_dir / "admin.sock"
    if not path.exists():
        raise NotReady(f"no admin socket at {path}: is the node running?")
    with grpc.insecure_channel(f"unix:{path}") as channel:
        stub = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        try:
            reply = stub.Status(admin_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise NotReady(f"admin socket {path}: {exc.code().name} {exc.details()}") from None
    return dict(
        MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )
