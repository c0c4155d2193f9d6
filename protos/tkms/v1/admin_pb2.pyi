from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("health", "chain_head", "chain_head_age_seconds", "generation", "epoch", "my_index", "peers_reachable", "epoch_phase")
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    CHAIN_HEAD_FIELD_NUMBER: _ClassVar[int]
    CHAIN_HEAD_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    MY_INDEX_FIELD_NUMBER: _ClassVar[int]
    PEERS_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_PHASE_FIELD_NUMBER: _ClassVar[int]
    health: str
    chain_head: int
    chain_head_age_seconds: int
    generation: int
    epoch: int
    my_index: int
    peers_reachable: int
    epoch_phase: str
    def __init__(self, health: _Optional[str] = ..., chain_head: _Optional[int] = ..., chain_head_age_seconds: _Optional[int] = ..., generation: _Optional[int] = ..., epoch: _Optional[int] = ..., my_index: _Optional[int] = ..., peers_reachable: _Optional[int] = ..., epoch_phase: _Optional[str] = ...) -> None: ...

class ReattestRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReattestResponse(_message.Message):
    __slots__ = ("evidence_hash",)
    EVIDENCE_HASH_FIELD_NUMBER: _ClassVar[int]
    evidence_hash: bytes
    def __init__(self, evidence_hash: _Optional[bytes] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DrainResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
