"""The dstack endpoint in one process with fakes for the chain and the shares (unit level;
tests/node/test_dstack_kms.py runs real nodes): the TLS context appears once the KMS root can
be had and handshakes before that are refused, the opt-in fails closed, and the config keys."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from attest.providers import SimulatorProvider
from mpc.k256 import public_key
from node.config import DstackKmsConfig, load_config
from node.dstack_prpc import DstackKmsServer
from node.dstack_service import DstackKmsService
from node.errors import ConfigError, NotReady, PolicyDenied
from node.identity import NodeIdentity
from node.kms_root import KmsRoot
from node.ratls import make_node_certificate

ROOT = (0x1234).to_bytes(32, "big")
GOVERNANCE = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")


@dataclass
class _View:
    chain_id: int = 31337
    governance: bytes = GOVERNANCE
    simulator_allowed: bool = True


class _Authorizer:
    def fresh_view(self) -> _View:
        return _View()


@dataclass
class _Committee:
    generation: int = 1
    epoch: int = 1


class _Shares:
    """No share until `ready` (a node before its DKG), then generation 1's."""

    def __init__(self) -> None:
        self.ready = False

    def __call__(self, generation: int) -> Any:
        return (_Committee(), object()) if self.ready else None


def _service(shares: _Shares, opt_in: Any = None, attest: Any = None) -> DstackKmsService:
    async def roots(generation: int) -> KmsRoot:
        return KmsRoot(generation=1, public=public_key(ROOT), secret=ROOT)

    async def fetch(*args: object) -> Any:
        raise AssertionError("no partial is fetched in these tests")

    return DstackKmsService(
        authorizer=_Authorizer(),  # type: ignore[arg-type]
        shares=shares,
        roots=roots,
        fetch=fetch,
        opt_in=opt_in or (lambda app, head: False),
        config=DstackKmsConfig(),
        accept_simulator=True,
        attest_keys=attest,
    )


async def _post_json(port: int, method: str) -> tuple[int, dict[str, Any], bytes]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    ssl_object = writer.get_extra_info("ssl_object")
    cert = ssl_object.getpeercert(binary_form=True)
    writer.write(
        f"POST /prpc/{method}?json HTTP/1.1\r\nHost: kms\r\nContent-Length: 4\r\n\r\nnull".encode()
    )
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body), cert


def test_handshakes_are_refused_until_the_root_is_there_then_served_with_the_ca() -> None:
    async def go() -> None:
        shares = _Shares()
        identity = NodeIdentity.generate()
        cert_pem, _ = make_node_certificate(identity, SimulatorProvider())
        server = DstackKmsServer(
            _service(shares), identity=identity, node_cert_pem=cert_pem, server_names=("kms",)
        )
        port = await server.start("127.0.0.1:0")
        try:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _post_json(port, "GetMeta")  # no share yet: an alert, not a hang
            shares.ready = True
            for _ in range(50):  # the refresher picks the root up within REFRESH_EVERY
                try:
                    status, meta, der = await _post_json(port, "GetMeta")
                    break
                except (ssl.SSLError, ConnectionError):
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the endpoint never became ready")
            assert status == 200 and meta["k256_pubkey"] == "0x" + public_key(ROOT).hex()
            assert meta["bootstrap_info"] is None  # no attester given: nothing to vouch with
            ca = x509.load_pem_x509_certificate(meta["ca_cert"].encode())
            x509.load_der_x509_certificate(der).verify_directly_issued_by(ca)
            status, temp, _ = await _post_json(port, "GetTempCaCert")
            assert status == 200 and temp["ca_cert"] == meta["ca_cert"]
        finally:
            await server.stop()

    asyncio.run(go())


def test_the_opt_in_fails_closed_and_is_read_once_per_app_and_block() -> None:
    reads: list[tuple[bytes, int]] = []

    def broken(app: bytes, head: int) -> bool:
        raise ConnectionError("rpc down")

    def chain(app: bytes, head: int) -> bool:
        reads.append((app, head))
        return app == b"\x01" * 20

    async def go() -> None:
        with pytest.raises(NotReady, match="cannot read whether app 0x0101.* opted in: rpc down"):
            await _service(_Shares(), broken)._opted_in(b"\x01" * 20, 7)
        service = _service(_Shares(), chain)
        await service._opted_in(b"\x01" * 20, 7)
        await service._opted_in(b"\x01" * 20, 7)
        with pytest.raises(PolicyDenied, match="has not opted in .* at block 8"):
            await service._opted_in(b"\x02" * 20, 8)
        assert reads == [(b"\x01" * 20, 7), (b"\x02" * 20, 8)]

    asyncio.run(go())


GOOD = """
data_dir = "/var/lib/tkms"
[chain]
rpc_url = "http://127.0.0.1:8545"
governance = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
[listen]
public = "127.0.0.1:7000"
dstack_kms = "0.0.0.0:8000"
[dstack_kms]
server_names = "kms1.example, 10.0.0.5"
gateway_app_id = "0xAB00000000000000000000000000000000000001"
generation = 2
"""


def test_the_dstack_kms_keys_are_read_and_normalized(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(GOOD)
    cfg = load_config(path, environ={})
    assert cfg.listen.dstack_kms == "0.0.0.0:8000"
    assert cfg.dstack_kms.server_names == ("kms1.example", "10.0.0.5")
    assert cfg.dstack_kms.gateway_app_id == "ab" + "00" * 18 + "01"
    assert cfg.dstack_kms.generation == 2
    path.write_text(GOOD.split("dstack_kms =")[0])
    off = load_config(path, environ={})
    assert off.listen.dstack_kms == "" and off.dstack_kms == DstackKmsConfig()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"kms1.example, 10.0.0.5"', '"a b"', "dstack_kms.server_names: must be comma-separated"),
        ('"kms1.example, 10.0.0.5"', '"a,,b"', "dstack_kms.server_names: must be comma-separated"),
        ('"0xAB00000000000000000000000000000000000001"', '"0x12"', "must be a 20-byte hex app id"),
        ("generation = 2", "generation = -1", "dstack_kms.generation: must be a whole number"),
        (
            'dstack_kms = "0.0.0.0:8000"',
            'dstack_kms = "8000"',
            "listen.dstack_kms: must be host:port",
        ),
    ],
)
def test_bad_dstack_kms_keys_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_the_bootstrap_report_data_is_dstacks_attest_keys_digest() -> None:
    from eth_hash.auto import keccak

    from node.dstack_ca import bootstrap_report_data

    spki, root = b"\x30\x59" + b"\x01" * 89, public_key(ROOT)
    text = b"dstack-kms-genereted-keys-v1:" + spki.hex().encode() + b";" + root.hex().encode()
    assert bootstrap_report_data(spki, root) == keccak(text + b";") + bytes(32)


def test_get_meta_carries_the_bootstrap_attestation_and_serves_without_one_if_quoting_fails() -> (
    None
):
    from node.dstack_ca import bootstrap_report_data

    asked: list[bytes] = []

    def attest(report_data: bytes) -> bytes:
        asked.append(report_data)
        return b"attestation of " + report_data

    def broken(report_data: bytes) -> bytes:
        raise OSError("the TDX quote device is gone")

    async def go() -> None:
        shares = _Shares()
        shares.ready = True
        meta = await _service(shares, attest=attest).get_meta()
        spki = bytes(meta.bootstrap_info.ca_pubkey)
        assert asked == [bootstrap_report_data(spki, public_key(ROOT))]
        assert meta.bootstrap_info.attestation == b"attestation of " + asked[0]
        assert meta.bootstrap_info.k256_pubkey == public_key(ROOT)
        plain = await _service(shares, attest=broken).get_meta()
        assert not plain.HasField("bootstrap_info") and plain.ca_cert == meta.ca_cert

    asyncio.run(go())
