"""A simulated app CVM for the process-level fault tests, and raw calls to one node.

The app has its own simulator TEE with a measured boot (dstack's RTMR3 events), so its
requests go through a node's whole authorization pipeline like a real app's.
"""

from __future__ import annotations

import asyncio
import os

import grpc

from attest import BindingLabel, compute_report_data, event_log_to_json
from attest.providers import SimulatorProvider
from guest.kms_channel import ChannelRefused, blocking_channel
from guest.kms_client import AppKeyRequest, Committee, KmsClient
from guest.measure import measure_app_boot
from mpc import G1
from node.tee import SIMULATED_OS_IMAGE
from protos.tkms.v1 import common_pb2, kms_pb2, kms_pb2_grpc
from testnet.cluster import NodeProcess

__all__ = ["COMPOSE", "App", "derive", "only", "raw_derive"]

COMPOSE = b'{"services": {"vault": {"image": "vault@sha256:0f"}}}'
#: gRPC shares subchannels (and their reconnect backoff, up to 120 s by default) between all
#: channels of a process: a node restarted after a crash would stay unused by every new
#: client until its backoff ran out. Each client here gets its own, with a short backoff.
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1), ("grpc.max_reconnect_backoff_ms", 1000))


class App:
    """A simulated app CVM: its TEE, measured boot, and KMS clients."""

    def __init__(self, app_id: str, network: bytes) -> None:
        self.app_id = bytes.fromhex(app_id.removeprefix("0x"))
        self.provider = SimulatorProvider()
        measure_app_boot(
            self.provider,
            app_id=self.app_id,
            compose=COMPOSE,
            instance_id=os.urandom(20),
            kms_id=network.hex(),
            os_image=SIMULATED_OS_IMAGE,
        )

    def evidence(self, report_data: bytes) -> tuple[bytes, str]:
        return self.provider.get_quote(report_data), event_log_to_json(self.provider.event_log())

    def client(self, committee: Committee, timeout: float = 10.0) -> KmsClient:
        return KmsClient(committee, self.evidence, timeout=timeout, channel_options=CHANNEL_OPTIONS)


def only(committee: Committee, indices: set[int]) -> Committee:
    members = tuple(m for m in committee.members if m.index in indices)
    return Committee(
        network=committee.network,
        threshold=committee.threshold,
        members=members,
        group_key=committee.group_key,
    )


def derive(app: App, committee: Committee, purposes: list[bytes]) -> list[G1]:
    async def go() -> list[G1]:
        client = app.client(committee)
        try:
            result = await client.derive([AppKeyRequest(app.app_id, p) for p in purposes])
            return result.sigmas
        finally:
            await client.close()

    return asyncio.run(go())


def raw_derive(
    app: App, node: NodeProcess, timeout: float = 5.0
) -> grpc.RpcError | ChannelRefused | None:
    """One DerivePartial straight to one node over its pinned channel: None if it answered,
    else its error (`ChannelRefused` when its Kms port is unreachable or not its key's)."""
    e = G1.base_mul(4242)
    quote, log = app.evidence(compute_report_data(BindingLabel.KDF_V1, e.to_bytes()))
    request = kms_pb2.DerivePartialRequest(
        evidence=common_pb2.Evidence(quote=quote, event_log=log),
        requester_key=e.to_bytes(),
        keys=[
            kms_pb2.KeyRequest(kind=kms_pb2.KeyRequest.KIND_KDF, app_id=app.app_id, purpose=b"k")
        ],
    )
    try:
        channel = blocking_channel(node.endpoints.kms, node.tls_key_hash)
    except ChannelRefused as exc:
        return exc
    with channel:
        stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
        try:
            stub.DerivePartial(request, timeout=timeout)
        except grpc.RpcError as exc:
            return exc
    return None
