"""A node's registration document, and the owner's review of it before `approveNode`.

`tkms node init` writes the document (`registration.json`), `tkms node register` adds what it
registered (operator, endpoint, registration hash), and the governance owner approves the node
only through `review_registration` then `approve_reviewed` (`tkms node approve`, the testnet).
A review refuses with `RegistrationRejected` whose message starts with the step:

1. ``file``      the document parses: address, operator, endpoint, TLS public key (SPKI DER),
                 deal key, evidence (quote, event log); the fields it derives (TLS key hash,
                 evidence hash, report_data, registration hash), where present, match;
2. ``evidence``  the quote verifies with the chain's policy (tkms's default policy; simulator
                 quotes only while governance has ``simulatorAllowed``; hardware quotes by DCAP
                 with collateral), the event log replays, and the identity (mr_aggregated) is
                 derived: `attest.verify_evidence`, the verifier the node uses for apps;
3. ``binding``   report_data = SHA-512("tkms-node:v1:" ‖ framed TLS SPKI, deal key, address)
                 (design §4.4): the quote was made for exactly these keys;
4. ``chain``     getNode(address) is Pending with exactly this operator, endpoint, TLS key hash,
                 deal key and evidence hash (the registration hash of the reviewed file).

`review_document` makes steps 1-3 alone, from the file the node wrote before it registered
(`tkms node join` records its endpoint and operator first), so `tkms node admit` can review
while the node waits to be allowed, then make step 4 once it has registered.
`approve_reviewed` then sends ``approveNode(address, hash of the reviewed file)``: the
registration hash is pinned, so a node that re-registers after the review is refused by the
contract (``RegistrationChanged``, step ``pin``), never approved by accident. The KMS
measurement it may allow comes only from the verified evidence.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from eth_utils.address import is_address, to_checksum_address

from attest import (
    AllOf,
    AttestError,
    BindingLabel,
    Collateral,
    EvidenceError,
    Policy,
    SimulatorAllowed,
    VerifiedEvidence,
    compute_report_data,
    default_policy,
    is_simulator_quote,
    make_quote_verifier,
    node_binding_content,
    parse_quote,
    verify_evidence,
)
from contracts import NodeInfo, NodeStatus, TransactionFailed, node_registration_hash
from node.errors import PolicyDenied
from node.sealing import write_atomic

if TYPE_CHECKING:
    from contracts import GovernanceClient

__all__ = [
    "REGISTRATION_FILE",
    "Approval",
    "Registration",
    "RegistrationRejected",
    "ReviewedRegistration",
    "approval_calls",
    "approve_registration",
    "approve_reviewed",
    "check_on_chain",
    "evidence_hash",
    "parse_registration",
    "registered_document",
    "review_document",
    "review_registration",
    "verify_registration_evidence",
    "write_registration",
]

REGISTRATION_FILE: Final = "registration.json"


class RegistrationRejected(PolicyDenied):
    """The owner's review refused a registration; `step` is file, evidence, binding, chain
    or pin, and the message starts with it."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step


def evidence_hash(quote: bytes, event_log: str) -> bytes:
    """What the registry stores about a node's evidence: SHA-256(quote ‖ event log JSON)."""
    return hashlib.sha256(quote + event_log.encode()).digest()


@dataclass(frozen=True, slots=True)
class Registration:
    """The fields of a registration document (`registration.json`), parsed."""

    address: str  # the node's Ethereum address, 0x-hex
    operator: str  # "" until registered
    endpoint: str  # "" until registered
    tls_public_key: bytes  # SubjectPublicKeyInfo DER of the node's TLS key
    deal_public_key: bytes
    quote: bytes
    event_log: str

    @property
    def tls_key_hash(self) -> bytes:
        return hashlib.sha256(self.tls_public_key).digest()

    @property
    def evidence_hash(self) -> bytes:
        return evidence_hash(self.quote, self.event_log)

    @property
    def binding_content(self) -> bytes:
        """The key set the evidence must bind under ``tkms-node:v1:``."""
        address = bytes.fromhex(self.address.removeprefix("0x"))
        return node_binding_content(self.tls_public_key, self.deal_public_key, address)

    @property
    def registration_hash(self) -> bytes:
        """The hash NodeRegistry records for exactly this registration."""
        return node_registration_hash(
            node=self.address,
            operator=self.operator,
            endpoint=self.endpoint,
            tls_key_hash=self.tls_key_hash,
            deal_key=self.deal_public_key,
            evidence_hash=self.evidence_hash,
        )


def _field(document: Mapping[str, Any], name: str, where: str = "") -> Any:
    if name not in document:
        raise RegistrationRejected("file", f"{where}{name} is missing")
    return document[name]


def _hex(document: Mapping[str, Any], name: str, where: str = "") -> bytes:
    value = _field(document, name, where)
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError as exc:
        raise RegistrationRejected("file", f"{where}{name} is not hex ({exc})") from None


def _address(value: Any, name: str) -> str:
    """A 0x address (mixed case must be a valid EIP-55 checksum), checksummed."""
    if not isinstance(value, str) or not value.startswith("0x") or not is_address(value):
        raise RegistrationRejected(
            "file", f"{name} {value!r} is not a 0x address (or its checksum is wrong)"
        )
    return str(to_checksum_address(value))


def _text(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name, "")
    if not isinstance(value, str):
        raise RegistrationRejected("file", f"{name} is not a string")
    return value


def parse_registration(document: Any) -> Registration:
    """Parse a registration document strictly; raises `RegistrationRejected` (step ``file``)."""
    if not isinstance(document, Mapping):
        raise RegistrationRejected("file", "the registration is not a JSON object")
    evidence = _field(document, "evidence")
    if not isinstance(evidence, Mapping):
        raise RegistrationRejected("file", "evidence is not an object with quote and event_log")
    event_log = _field(evidence, "event_log", "evidence.")
    if not isinstance(event_log, str):
        raise RegistrationRejected("file", "evidence.event_log is not a JSON string")
    if "tls_public_key" not in document:
        raise RegistrationRejected(
            "file",
            "tls_public_key is missing: the evidence binds the TLS key itself, not its hash; "
            "the file predates this field (create the node with this version of `tkms node init`)",
        )
    registration = Registration(
        address=_address(_field(document, "address"), "address"),
        operator=_address(document["operator"], "operator") if "operator" in document else "",
        endpoint=_text(document, "endpoint"),
        tls_public_key=_hex(document, "tls_public_key"),
        deal_public_key=_hex(document, "deal_public_key"),
        quote=_hex(evidence, "quote", "evidence."),
        event_log=event_log,
    )
    if not registration.tls_public_key or not registration.deal_public_key:
        raise RegistrationRejected("file", "tls_public_key and deal_public_key must not be empty")
    claims = {
        "tls_key_hash": registration.tls_key_hash,
        "evidence_hash": registration.evidence_hash,
        "report_data": compute_report_data(BindingLabel.NODE_V1, registration.binding_content),
    }
    if registration.operator and registration.endpoint:
        claims["registration_hash"] = registration.registration_hash
    for name, derived in claims.items():
        if name in document and not hmac.compare_digest(_hex(document, name), derived):
            raise RegistrationRejected(
                "file", f"{name} {document[name]} does not match the file's keys and evidence"
            )
    return registration


def _require_registered(registration: Registration) -> None:
    if not registration.endpoint or not registration.operator:
        raise RegistrationRejected(
            "file",
            f"no endpoint or operator: {registration.address} has not been registered with "
            "`tkms node register`, which records them in the file",
        )


def verify_registration_evidence(
    registration: Registration,
    *,
    simulator_allowed: bool,
    now: int,
    collateral: Collateral | None = None,
    policy: Policy | None = None,
) -> VerifiedEvidence:
    """Steps 2 and 3: the evidence verifies and binds the file's keys and address.

    `policy` defaults to tkms's default policy; `SimulatorAllowed` is added only when the chain
    allows simulators. Hardware quotes need `collateral` (DCAP).
    """
    try:
        simulated = is_simulator_quote(parse_quote(registration.quote))
    except AttestError as exc:
        raise RegistrationRejected("evidence", f"the quote does not parse: {exc}") from None
    if simulated and not simulator_allowed:
        raise RegistrationRejected(
            "evidence", "simulator quote, but governance has simulatorAllowed = false"
        )
    if not simulated and collateral is None:
        raise RegistrationRejected(
            "evidence",
            "hardware TDX quote: DCAP verification needs collateral "
            "(tkms node approve --collateral FILE or --pccs-url URL)",
        )
    checks: list[Policy] = [policy or default_policy()]
    if simulator_allowed:
        checks.append(SimulatorAllowed())
    verifier = make_quote_verifier(now=now, policy=AllOf(checks), collateral=collateral)
    try:
        verified = verify_evidence(
            registration.quote,
            registration.event_log,
            verify_quote=verifier,
            binding=(BindingLabel.NODE_V1, registration.binding_content),
        )
    except EvidenceError as exc:
        step = "binding" if exc.step == "binding" else "evidence"
        raise RegistrationRejected(step, str(exc)) from None
    except AttestError as exc:
        raise RegistrationRejected("evidence", str(exc)) from None
    if verified.identity is None:  # verify_evidence requires it; kept explicit for the reader
        raise RegistrationRejected("evidence", "no dstack identity, so no KMS measurement")
    return verified


def check_on_chain(registration: Registration, info: NodeInfo) -> None:
    """Step 4: the chain holds exactly the reviewed registration, still Pending."""
    node = registration.address
    if info.status is NodeStatus.NONE:
        raise RegistrationRejected("chain", f"{node} has not registered on chain")
    if info.status is NodeStatus.APPROVED:
        raise RegistrationRejected("chain", f"{node} is already approved: nothing to approve")
    if info.status is NodeStatus.REMOVED:
        raise RegistrationRejected("chain", f"{node} was removed and has not registered since")
    differences = [
        f"{name} is {on_chain!r} on chain but {reviewed!r} in the file"
        for name, on_chain, reviewed in (
            ("operator", info.operator.lower(), registration.operator.lower()),
            ("endpoint", info.endpoint, registration.endpoint),
            ("tls_key_hash", info.tls_key_hash.hex(), registration.tls_key_hash.hex()),
            ("deal_key", _short(info.deal_key), _short(registration.deal_public_key)),
            ("evidence_hash", info.evidence_hash.hex(), registration.evidence_hash.hex()),
        )
        if on_chain != reviewed
    ]
    if differences or info.registration_hash != registration.registration_hash:
        raise RegistrationRejected(
            "chain",
            f"the registration of {node} on chain is not the reviewed one ("
            + ("; ".join(differences) or "registration hash differs")
            + "): review the node's current registration.json",
        )


def _short(data: bytes) -> str:
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class ReviewedRegistration:
    """A registration whose evidence verified and which the chain holds exactly, at `block`."""

    registration: Registration
    evidence: VerifiedEvidence
    block: int

    @property
    def measurement(self) -> bytes:
        """The KMS measurement (mr_aggregated) of the verified evidence."""
        assert self.evidence.identity is not None  # verify_registration_evidence ensures it
        return self.evidence.identity.mr_aggregated


def review_document(
    client: GovernanceClient,
    document: Any,
    *,
    now: int,
    collateral: Collateral | None = None,
    node: str | None = None,
    block: int | None = None,
) -> ReviewedRegistration:
    """Steps 1-3 (module docstring), before the node has registered: the file, the evidence
    with the chain's policy at `block` (default: the head), and the binding. `node`, when
    given, must be the document's address (what the owner typed)."""
    registration = parse_registration(document)
    if node is not None and node.lower() != registration.address.lower():
        raise RegistrationRejected(
            "file", f"the file is the registration of {registration.address}, not of {node}"
        )
    _require_registered(registration)
    at = int(client.w3.eth.block_number) if block is None else block
    evidence = verify_registration_evidence(
        registration,
        simulator_allowed=client.get_simulator_allowed(block=at),
        now=now,
        collateral=collateral,
    )
    return ReviewedRegistration(registration=registration, evidence=evidence, block=at)


def review_registration(
    client: GovernanceClient,
    document: Any,
    *,
    now: int,
    collateral: Collateral | None = None,
    node: str | None = None,
) -> ReviewedRegistration:
    """Steps 1-4 (module docstring); reads the chain once, at one block. `node`, when given,
    must be the document's address (what the owner typed)."""
    block = int(client.w3.eth.block_number)
    reviewed = review_document(
        client, document, now=now, collateral=collateral, node=node, block=block
    )
    check_on_chain(
        reviewed.registration, client.get_node(reviewed.registration.address, block=block)
    )
    return reviewed


@dataclass(frozen=True, slots=True)
class Approval:
    node: str
    registration_hash: bytes
    measurement: bytes
    measurement_added: bool  # False: governance allowed it already (or it was not asked)


def approve_reviewed(
    client: GovernanceClient, reviewed: ReviewedRegistration, *, allow_measurement: bool = True
) -> Approval:
    """``approveNode(node, reviewed hash)``; then, with `allow_measurement`, allow the verified
    evidence's KMS measurement if governance does not yet. Raises step ``pin`` if the node
    re-registered after the review (the contract refuses; nothing changed)."""
    registration = reviewed.registration
    pinned = registration.registration_hash
    try:
        client.send_approve_node(registration.address, pinned)
    except TransactionFailed as exc:
        if exc.error_name != "RegistrationChanged":
            raise
        now_on_chain = client.get_node(registration.address).registration_hash
        raise RegistrationRejected(
            "pin",
            f"{registration.address} registered again after the review (registration hash "
            f"0x{now_on_chain.hex()} on chain, 0x{pinned.hex()} reviewed); nothing was "
            "approved: review its new registration.json",
        ) from None
    added = False
    if allow_measurement and not client.is_kms_measurement_allowed(reviewed.measurement):
        client.send_add_kms_measurement(reviewed.measurement)
        added = True
    return Approval(
        node=registration.address,
        registration_hash=pinned,
        measurement=reviewed.measurement,
        measurement_added=added,
    )


def approval_calls(
    client: GovernanceClient, reviewed: ReviewedRegistration
) -> list[tuple[str, tuple[Any, ...]]]:
    """What `approve_reviewed` sends, as (function, arguments), for an owner that signs elsewhere
    (a multisig or timelock): approveNode with the reviewed hash pinned, and addKmsMeasurement
    if governance does not allow the verified measurement yet."""
    registration = reviewed.registration
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("approveNode", (registration.address, registration.registration_hash))
    ]
    if not client.is_kms_measurement_allowed(reviewed.measurement):
        calls.append(("addKmsMeasurement", (reviewed.measurement,)))
    return calls


def approve_registration(
    client: GovernanceClient,
    document: Any,
    *,
    now: int,
    collateral: Collateral | None = None,
    allow_measurement: bool = True,
) -> Approval:
    """Review, then approve with the reviewed hash pinned (what `tkms node approve` does)."""
    reviewed = review_registration(client, document, now=now, collateral=collateral)
    return approve_reviewed(client, reviewed, allow_measurement=allow_measurement)


def registered_document(
    document: Mapping[str, Any], *, operator: str, endpoint: str
) -> dict[str, Any]:
    """The registration document with what is registered (operator, endpoint, registration
    hash) added: the file the owner reviews. Raises `RegistrationRejected` (step ``file``)
    if the document is malformed, so a caller can check it before registering."""
    recorded = {**document, "operator": operator, "endpoint": endpoint}
    recorded.pop("registration_hash", None)  # of an earlier registration
    recorded["registration_hash"] = parse_registration(recorded).registration_hash.hex()
    return recorded


def write_registration(data_dir: Path, document: Mapping[str, Any]) -> None:
    text = json.dumps(document, indent=2).encode()
    write_atomic(data_dir / REGISTRATION_FILE, text, mode=0o644)
