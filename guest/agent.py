"""The guest agent's state and start-up: measure the app, get its keys from the network.

At start (`start_agent`): extend RTMR3 with dstack's boot events for this app (the key
provider is the network fingerprint); the committee, already checked against that fingerprint
(`guest.committee`), derives in one request the app's root seed (purpose `dstack-app-root`)
and its IBE identity key; the network certifies the app's secp256k1 key twice: with a
threshold BLS signature under PK2, and with dstack's KMS signature by the generation's KMS
root, whose own certificate the network signs (`guest.kms_root`); a signed env envelope is
accepted only if the network certifies that the app's AppAuth names its signer and version
now (`guest.env`), then decrypted. Everything after that is local (`guest.api`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attest import (
    AppIdentity,
    EventLogEntry,
    GpuEvidenceError,
    TdReport,
    compute_app_identity,
    event_log_to_json,
    gpu_event_payload,
    parse_quote,
    verify_gpu_evidence,
)
from attest.providers import TeeProvider
from guest import keys
from guest.config import AgentConfig, random_instance_id
from guest.env import EnvEnvelope, EnvError, open_env, parse_envelope, write_env
from guest.evidence_source import QuoteSource
from guest.kms_client import (
    AppKeyRequest,
    Committee,
    DerivationError,
    DerivationResult,
    IssuedAppKey,
    SignedStatement,
)
from guest.measure import compose_hash, measure_app_boot
from guest.vmconfig import (
    VmConfigError,
    cloud_names,
    image_only_vm_config,
    read_vm_config,
    simulated_vm_config,
)
from mpc import (
    G1,
    KeyRequest,
    MpcError,
    NetworkContext,
    derive_app_seed,
    is_consistent_with_group_key,
)
from mpc.k256 import kms_issued_digest, recover_signer
from mpc.kmsroot import verify_kms_root
from mpc.tsig import app_pubkey_statement


class KeyService(Protocol):
    """What start-up needs from the network: `KmsClient` (or a unit test's stand-in)."""

    committee: Committee

    async def derive(self, keys: Sequence[AppKeyRequest]) -> DerivationResult: ...

    async def sign_public_key(self, public_key: bytes, statement: bytes) -> SignedStatement: ...

    async def issue_app_key(self, app_id: bytes, public_key: bytes) -> IssuedAppKey: ...

    async def sign_env_policy(
        self, app_id: bytes, signer: bytes, version: int
    ) -> SignedStatement: ...

    async def close(self) -> None: ...


class AgentStartError(Exception):
    """The agent cannot serve: the message says why (e.g. what the KMS nodes answered)."""


def version() -> str:
    try:
        return metadata.version("tkms")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(repr=False)  # it holds the app seed and key material: never print them
class Agent:
    """Everything the API needs; the provider is shared, so calls into it take `lock`."""

    provider: TeeProvider
    app_id: bytes
    instance_id: bytes
    compose: bytes
    kms_id: str
    os_image: bytes
    seed: bytes
    ibe_key: G1
    #: Where the keys come from: chain id, governance and key generation.
    network: NetworkContext
    #: The network's BLS signature (under PK2) over the app key's `tkms-app-pubkey:v1`.
    app_certificate: bytes
    #: dstack's KMS signature over the app key (chain element 1), with the root's certificate.
    issued: IssuedAppKey
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    vm_config: str = ""
    #: The GPU evidence document, exactly as read and measured ("" without GPU evidence).
    gpu_attestation: str = ""
    cloud: tuple[str, str] = ("", "")
    env: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _signatures: dict[tuple[str, bytes], bytes] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def app_key(self) -> keys.DerivedKey:
        return keys.app_key(self.seed, self.app_id)

    def chain(self, purpose: str, public_key: bytes) -> list[bytes]:
        """dstack's signature chain of a derived key (see guest.keys)."""
        return [self._app_signature(purpose, public_key), self.issued.signature]

    def certificates(self) -> dict[str, object]:
        """What ties the chain to the network's PK2 (the GetKey/Sign reply's `tkms` field)."""
        return {
            "generation": self.network.generation,
            "app_public_key": self.app_key.public.hex(),
            "app_key_certificate": self.app_certificate.hex(),
            "kms_root": self.issued.root.hex(),
            "kms_root_certificate": self.issued.certificate.hex(),
        }

    def _app_signature(self, purpose: str, public_key: bytes) -> bytes:
        # Deterministic (RFC 6979) and ~5 ms in pure Python: worth remembering per key.
        cached = self._signatures.get((purpose, public_key))
        if cached is None:
            cached = keys.app_signature(self.app_key, purpose, public_key)
            with self.lock:
                if len(self._signatures) >= 4096:
                    self._signatures.clear()
                self._signatures[(purpose, public_key)] = cached
        return cached

    def evidence(self, report_data: bytes) -> tuple[bytes, str]:
        quote, entries = self.evidence_entries(report_data)
        return quote, event_log_to_json(entries)

    def evidence_entries(self, report_data: bytes) -> tuple[bytes, Sequence[EventLogEntry]]:
        """A quote of `report_data` and the event log as of that quote."""
        with self.lock:
            return self.provider.get_quote(report_data), self.provider.event_log()

    def identity(self) -> tuple[AppIdentity, TdReport, str]:
        """(identity, TD report, event log JSON) as of now; runtime events change RTMR3."""
        with self.lock:
            report = parse_quote(self.provider.get_quote(bytes(64))).td_report
            entries = self.provider.event_log()
        ident = compute_app_identity(entries, report, ppid=None)
        return ident, report, event_log_to_json(entries)


def app_ca(key: ec.EllipticCurvePrivateKey, app_id: bytes) -> x509.Certificate:
    """The app's CA certificate; its key is derived, so it is the same in every instance."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tkms app 0x{app_id.hex()} CA")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True, repr=False)  # the seed is secret
class NetworkKeys:
    seed: bytes
    ibe_key: G1
    app_certificate: bytes
    issued: IssuedAppKey


async def fetch_keys(client: KeyService, app_id: bytes) -> NetworkKeys:
    """The app's seed and IBE key, and its app key certified by the network both ways."""
    committee = client.committee
    result = await client.derive(
        [AppKeyRequest(app_id, keys.ROOT_PURPOSE), AppKeyRequest(app_id, ibe=True)]
    )
    sigma, ibe_key = result.sigmas
    if not is_consistent_with_group_key(
        sigma, KeyRequest.app_key(app_id, keys.ROOT_PURPOSE), committee.group_key
    ) or not is_consistent_with_group_key(ibe_key, KeyRequest.ibe_key(app_id), committee.group_key):
        raise AgentStartError("derived keys do not match the network's group key PK2")
    seed = derive_app_seed(
        sigma, generation=committee.network.generation, app_id=app_id, purpose=keys.ROOT_PURPOSE
    )
    app = keys.app_key(seed, app_id)
    net = committee.network
    expected = app_pubkey_statement(net.chain_id, net.contract, app_id, app.public)
    signed = await client.sign_public_key(app.public, expected)
    if signed.statement != expected:
        raise AgentStartError("the network signed a statement about another key or app")
    issued = await client.issue_app_key(app_id, app.public)
    # The client checked both; check again here, whoever the client is.
    try:
        if recover_signer(kms_issued_digest(app_id, app.public), issued.signature) != issued.root:
            raise AgentStartError("the KMS signature over the app key is not by its KMS root")
        verify_kms_root(
            committee.group_key,
            chain_id=net.chain_id,
            governance=net.contract,
            generation=net.generation,
            public=issued.root,
            certificate=issued.certificate,
        )
    except MpcError as exc:
        raise AgentStartError(f"the network's KMS root does not check: {exc}") from None
    return NetworkKeys(seed, ibe_key, signed.signature, issued)


#: A node whose chain view lags behind a just-published envVersion refuses; ask again.
ENV_TRIES = 3
ENV_RETRY_SECONDS = 1.0


async def confirm_env(
    client: KeyService, app_id: bytes, compose: bytes, envelope: EnvEnvelope
) -> None:
    """Raise EnvError unless `envelope` is this app's, for this compose, and the network
    certifies that the app's AppAuth names its signer and exactly its version now."""
    if envelope.app_id != app_id:
        raise EnvError(f"the env is for app 0x{envelope.app_id.hex()}, not 0x{app_id.hex()}")
    measured = compose_hash(compose)
    if envelope.compose_hash != measured:
        raise EnvError(
            f"the env is for compose hash {envelope.compose_hash.hex()}, not this app's "
            f"measured {measured.hex()}"
        )
    net = client.committee.network
    signer = envelope.signer(net.chain_id, net.contract)
    for attempt in range(ENV_TRIES):
        try:
            await client.sign_env_policy(app_id, signer, envelope.version)
            return
        except DerivationError as exc:
            if attempt == ENV_TRIES - 1:
                raise EnvError(
                    f"the network does not confirm env version {envelope.version} signed by "
                    f"0x{signer.hex()} as the app's current env: {exc}"
                ) from None
            await asyncio.sleep(ENV_RETRY_SECONDS)


def _read_envelope(config: AgentConfig) -> EnvEnvelope | None:
    if config.env_file is None:
        return None
    try:
        blob = config.env_file.read_bytes()
    except OSError as exc:
        raise AgentStartError(f"cannot read env file {config.env_file}: {exc.strerror}") from None
    return parse_envelope(blob)


def vm_description(config: AgentConfig, simulated_image: bytes) -> tuple[bytes, str]:
    """(the OS image digest to measure, the VM config text to report); see guest.vmconfig."""
    if config.vm_config is None:
        image = config.os_image_hash or simulated_image
        if config.tee == "simulator":
            return image, simulated_vm_config(image)
        return image, image_only_vm_config(image)
    try:
        text, claimed = read_vm_config(config.vm_config)
    except VmConfigError as exc:
        raise AgentStartError(str(exc)) from None
    if claimed and config.os_image_hash and claimed != config.os_image_hash:
        raise AgentStartError(
            f"vm_config {config.vm_config} names OS image {claimed.hex()}, but os_image_hash "
            f"is {config.os_image_hash.hex()}"
        )
    measured = config.os_image_hash or claimed
    if measured is not None:
        return measured, text
    if config.tee == "tdx":
        raise AgentStartError(
            f"vm_config {config.vm_config} has no os_image_hash and the config sets none"
        )
    return simulated_image, text


def read_gpu_evidence(config: AgentConfig, *, now: int) -> tuple[str, bytes] | None:
    """(the evidence text, its gpu-attestation payload) from `config.gpu_evidence`, verified
    (docs/attest-gpu.md), or None without one. Evidence that does not verify stops the agent:
    an app must not start believing it has a GPU that no one can confirm."""
    if config.gpu_evidence is None:
        return None
    try:
        text = config.gpu_evidence.read_bytes().decode("utf-8")
    except OSError as exc:
        raise AgentStartError(
            f"cannot read gpu_evidence {config.gpu_evidence}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError as exc:
        raise AgentStartError(
            f"gpu_evidence {config.gpu_evidence} is not UTF-8 (byte offset {exc.start})"
        ) from None
    try:
        verified = verify_gpu_evidence(text, now=now)
    except GpuEvidenceError as exc:
        raise AgentStartError(f"gpu_evidence {config.gpu_evidence}: {exc}") from None
    return text, gpu_event_payload(verified)


def start_agent(config: AgentConfig, provider: TeeProvider, client: KeyService) -> Agent:
    """Measure the app into `provider`, then get its keys through `client` (see module doc).

    `client` must draw its evidence from `provider` (see `provider_evidence`) and talk to a
    committee already checked against `config.network_fingerprint`.
    """
    from node.errors import StorageError
    from node.tee import SIMULATED_OS_IMAGE

    try:
        compose = config.compose.read_bytes()
    except OSError as exc:
        raise AgentStartError(
            f"cannot read compose file {config.compose}: {exc.strerror}"
        ) from None
    envelope = _read_envelope(config)
    instance_id = config.instance_id or random_instance_id()
    os_image, vm_config = vm_description(config, SIMULATED_OS_IMAGE)
    gpu = read_gpu_evidence(config, now=int(time.time()))
    kms_id = config.network_fingerprint.hex()
    measure_app_boot(
        provider,
        app_id=config.app_id,
        compose=compose,
        instance_id=instance_id,
        kms_id=kms_id,
        os_image=os_image,
        gpu_event=None if gpu is None else gpu[1],
    )

    async def go() -> NetworkKeys:
        try:
            found = await fetch_keys(client, config.app_id)
            if envelope is not None:
                await confirm_env(client, config.app_id, compose, envelope)
            return found
        finally:
            await client.close()

    found = asyncio.run(go())
    ca_key = keys.ca_key(found.seed)
    agent = Agent(
        provider=provider,
        app_id=config.app_id,
        instance_id=instance_id,
        compose=compose,
        kms_id=kms_id,
        os_image=os_image,
        seed=found.seed,
        ibe_key=found.ibe_key,
        network=client.committee.network,
        app_certificate=found.app_certificate,
        issued=found.issued,
        ca_key=ca_key,
        ca_cert=app_ca(ca_key, config.app_id),
        vm_config=vm_config,
        gpu_attestation="" if gpu is None else gpu[0],
        cloud=cloud_names(config.tee),
    )
    if envelope is not None:
        assert config.env_out is not None  # load_config requires it with env_file
        agent.env = open_env(found.ibe_key, envelope)
        try:
            write_env(config.env_out, agent.env)
        except StorageError as exc:
            raise AgentStartError(str(exc)) from None
    return agent


def provider_evidence(provider: TeeProvider) -> QuoteSource:
    def evidence(report_data: bytes) -> tuple[bytes, str]:
        return provider.get_quote(report_data), event_log_to_json(provider.event_log())

    return evidence


def compose_info(compose: bytes) -> tuple[str, str]:
    """(app name from the compose JSON if any, compose hash hex)."""
    try:
        doc = json.loads(compose)
        name = doc.get("name", "") if isinstance(doc, dict) else ""
    except ValueError:
        name = ""
    return (name if isinstance(name, str) else ""), compose_hash(compose).hex()
