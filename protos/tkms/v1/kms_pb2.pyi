from protos.tkms.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetHealthNoteRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHealthNoteResponse(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    def __init__(self, envelope: _Optional[bytes] = ...) -> None: ...

class GetMetaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMetaResponse(_message.Message):
    __slots__ = ("chain_id", "governance", "generation", "epoch", "threshold", "members", "group_public_key_g1", "group_public_key_g2", "my_index")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    GOVERNANCE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    GROUP_PUBLIC_KEY_G1_FIELD_NUMBER: _ClassVar[int]
    GROUP_PUBLIC_KEY_G2_FIELD_NUMBER: _ClassVar[int]
    MY_INDEX_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    governance: bytes
    generation: int
    epoch: int
    threshold: int
    members: _containers.RepeatedCompositeFieldContainer[_common_pb2.Member]
    group_public_key_g1: bytes
    group_public_key_g2: bytes
    my_index: int
    def __init__(self, chain_id: _Optional[int] = ..., governance: _Optional[bytes] = ..., generation: _Optional[int] = ..., epoch: _Optional[int] = ..., threshold: _Optional[int] = ..., members: _Optional[_Iterable[_Union[_common_pb2.Member, _Mapping]]] = ..., group_public_key_g1: _Optional[bytes] = ..., group_public_key_g2: _Optional[bytes] = ..., my_index: _Optional[int] = ...) -> None: ...

class KeyRequest(_message.Message):
    __slots__ = ("kind", "app_id", "purpose")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[KeyRequest.Kind]
        KIND_KDF: _ClassVar[KeyRequest.Kind]
        KIND_IBE: _ClassVar[KeyRequest.Kind]
    KIND_UNSPECIFIED: KeyRequest.Kind
    KIND_KDF: KeyRequest.Kind
    KIND_IBE: KeyRequest.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    kind: KeyRequest.Kind
    app_id: bytes
    purpose: bytes
    def __init__(self, kind: _Optional[_Union[KeyRequest.Kind, str]] = ..., app_id: _Optional[bytes] = ..., purpose: _Optional[bytes] = ...) -> None: ...

class DerivePartialRequest(_message.Message):
    __slots__ = ("evidence", "requester_key", "generation", "keys")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    evidence: _common_pb2.Evidence
    requester_key: bytes
    generation: int
    keys: _containers.RepeatedCompositeFieldContainer[KeyRequest]
    def __init__(self, evidence: _Optional[_Union[_common_pb2.Evidence, _Mapping]] = ..., requester_key: _Optional[bytes] = ..., generation: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[KeyRequest, _Mapping]]] = ...) -> None: ...

class Partial(_message.Message):
    __slots__ = ("generation", "epoch", "member", "y", "z", "proof")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    generation: int
    epoch: int
    member: int
    y: bytes
    z: bytes
    proof: bytes
    def __init__(self, generation: _Optional[int] = ..., epoch: _Optional[int] = ..., member: _Optional[int] = ..., y: _Optional[bytes] = ..., z: _Optional[bytes] = ..., proof: _Optional[bytes] = ...) -> None: ...

class DerivePartialResponse(_message.Message):
    __slots__ = ("partials",)
    PARTIALS_FIELD_NUMBER: _ClassVar[int]
    partials: _containers.RepeatedCompositeFieldContainer[Partial]
    def __init__(self, partials: _Optional[_Iterable[_Union[Partial, _Mapping]]] = ...) -> None: ...

class SignPartialRequest(_message.Message):
    __slots__ = ("evidence", "public_key", "generation", "kind", "env_signer", "env_version", "nonce", "subject")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_APP_PUBKEY: _ClassVar[SignPartialRequest.Kind]
        KIND_APP_ENV: _ClassVar[SignPartialRequest.Kind]
        KIND_GENERATION: _ClassVar[SignPartialRequest.Kind]
        KIND_KMS_ROOT: _ClassVar[SignPartialRequest.Kind]
        KIND_EPOCH_MANIFEST: _ClassVar[SignPartialRequest.Kind]
        KIND_REVOCATION: _ClassVar[SignPartialRequest.Kind]
    KIND_APP_PUBKEY: SignPartialRequest.Kind
    KIND_APP_ENV: SignPartialRequest.Kind
    KIND_GENERATION: SignPartialRequest.Kind
    KIND_KMS_ROOT: SignPartialRequest.Kind
    KIND_EPOCH_MANIFEST: SignPartialRequest.Kind
    KIND_REVOCATION: SignPartialRequest.Kind
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENV_SIGNER_FIELD_NUMBER: _ClassVar[int]
    ENV_VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    evidence: _common_pb2.Evidence
    public_key: bytes
    generation: int
    kind: SignPartialRequest.Kind
    env_signer: bytes
    env_version: int
    nonce: bytes
    subject: bytes
    def __init__(self, evidence: _Optional[_Union[_common_pb2.Evidence, _Mapping]] = ..., public_key: _Optional[bytes] = ..., generation: _Optional[int] = ..., kind: _Optional[_Union[SignPartialRequest.Kind, str]] = ..., env_signer: _Optional[bytes] = ..., env_version: _Optional[int] = ..., nonce: _Optional[bytes] = ..., subject: _Optional[bytes] = ...) -> None: ...

class SignPartialResponse(_message.Message):
    __slots__ = ("generation", "epoch", "member", "statement", "sigma", "proof")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    generation: int
    epoch: int
    member: int
    statement: bytes
    sigma: bytes
    proof: bytes
    def __init__(self, generation: _Optional[int] = ..., epoch: _Optional[int] = ..., member: _Optional[int] = ..., statement: _Optional[bytes] = ..., sigma: _Optional[bytes] = ..., proof: _Optional[bytes] = ...) -> None: ...

class SignAppKeyRequest(_message.Message):
    __slots__ = ("evidence", "public_key", "generation")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    evidence: _common_pb2.Evidence
    public_key: bytes
    generation: int
    def __init__(self, evidence: _Optional[_Union[_common_pb2.Evidence, _Mapping]] = ..., public_key: _Optional[bytes] = ..., generation: _Optional[int] = ...) -> None: ...

class SignAppKeyResponse(_message.Message):
    __slots__ = ("generation", "root_public_key", "signature")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ROOT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    generation: int
    root_public_key: bytes
    signature: bytes
    def __init__(self, generation: _Optional[int] = ..., root_public_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
