"""An in-process stand-in for the KMS network (unit tests only): one secret x, PK2 = x·G2."""

from __future__ import annotations

from collections.abc import Sequence

from attest import BindingLabel, compute_report_data, parse_quote
from guest.evidence_source import QuoteSource
from guest.kms_client import (
    AppKeyRequest,
    Committee,
    DerivationError,
    DerivationResult,
    IssuedAppKey,
    SignedStatement,
)
from mpc import G2, NetworkContext, Scalar
from mpc.k256 import kms_issued_digest, public_key, sign_recoverable
from mpc.kmsroot import derive_kms_root, kms_root_request, kms_root_statement
from mpc.tsig import app_env_binding, app_env_statement, app_pubkey_statement, message_point
from mpc.types import Epoch, Generation

CONTRACT = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")


NETWORK = NetworkContext(
    chain_id=31337, contract=CONTRACT, generation=Generation(1), epoch=Epoch(1)
)


def fake_kms_root(group_secret: Scalar) -> tuple[bytes, bytes]:
    """(root secret, root public key) as nodes with group secret x derive them."""
    request = kms_root_request(NETWORK.chain_id, NETWORK.contract, NETWORK.generation)
    sigma = request.point() * group_secret
    secret = derive_kms_root(sigma, NETWORK.chain_id, NETWORK.contract, NETWORK.generation)
    return secret, public_key(secret)


class FakeKms:
    """Answers like a committee would: sigma = x·H(request), BLS signatures x·H(m), and the
    KMS root derived from x·H(root request) signs app keys."""

    def __init__(
        self,
        secret: Scalar,
        app_id: bytes,
        evidence: QuoteSource,
        *,
        refuse: str | None = None,
        env_policy: tuple[bytes, int] = (bytes(20), 0),
    ) -> None:
        self._secret = secret
        self.app_id = app_id
        #: (env signer, env version) the app's AppAuth names, as the nodes would read it.
        self.env_policy = env_policy
        self.env_requests = 0
        self._evidence = evidence
        self._refuse = refuse
        self.committee = Committee(
            network=NETWORK,
            threshold=1,
            members=(),
            group_key=G2.base_mul(secret),
        )

    def _check(self, report_data: bytes) -> None:
        quote, _ = self._evidence(report_data)
        if parse_quote(quote).td_report.report_data != report_data:
            raise AssertionError("evidence does not bind the request")
        if self._refuse is not None:
            raise DerivationError(0, 1, {1: self._refuse}, {1: "fake:1"})

    async def derive(self, keys: Sequence[AppKeyRequest]) -> DerivationResult:
        self._check(compute_report_data(BindingLabel.KDF_V1, b"\x02" * 48))
        return DerivationResult(
            sigmas=[k.to_request().point() * self._secret for k in keys], answered=[1]
        )

    async def sign_public_key(self, public_key: bytes, expected: bytes) -> SignedStatement:
        self._check(compute_report_data(BindingLabel.SIGN_V1, public_key))
        net = self.committee.network
        # Signs what the app_id it holds gives, whatever the caller expects (as nodes do).
        statement = app_pubkey_statement(net.chain_id, net.contract, self.app_id, public_key)
        signature = (message_point(statement) * self._secret).to_bytes()
        return SignedStatement(statement=statement, signature=signature, signers=(1,))

    async def sign_env_policy(self, app_id: bytes, signer: bytes, version: int) -> SignedStatement:
        self.env_requests += 1
        nonce = b"\x07" * 32
        self._check(
            compute_report_data(BindingLabel.SIGN_V1, app_env_binding(signer, version, nonce))
        )
        if (signer, version) != self.env_policy:
            named, current = self.env_policy
            raise DerivationError(
                0,
                1,
                {
                    1: f"permission_denied: env: app names env signer 0x{named.hex()} and "
                    f"envVersion {current}, not 0x{signer.hex()} and {version}"
                },
                {1: "fake:1"},
            )
        net = self.committee.network
        statement = app_env_statement(net.chain_id, net.contract, app_id, signer, version, nonce)
        signature = (message_point(statement) * self._secret).to_bytes()
        return SignedStatement(statement=statement, signature=signature, signers=(1,))

    async def issue_app_key(self, app_id: bytes, key: bytes) -> IssuedAppKey:
        self._check(compute_report_data(BindingLabel.SIGN_V1, key))
        net = self.committee.network
        secret, root = fake_kms_root(self._secret)
        statement = kms_root_statement(net.chain_id, net.contract, net.generation, root)
        return IssuedAppKey(
            root=root,
            signature=sign_recoverable(secret, kms_issued_digest(self.app_id, key)),
            certificate=(message_point(statement) * self._secret).to_bytes(),
            member=1,
        )

    async def close(self) -> None:
        pass
