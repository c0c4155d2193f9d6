from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Evidence(_message.Message):
    __slots__ = ("quote", "event_log", "vm_config", "attestation")
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    EVENT_LOG_FIELD_NUMBER: _ClassVar[int]
    VM_CONFIG_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    quote: bytes
    event_log: str
    vm_config: str
    attestation: bytes
    def __init__(self, quote: _Optional[bytes] = ..., event_log: _Optional[str] = ..., vm_config: _Optional[str] = ..., attestation: _Optional[bytes] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("index", "node_address", "endpoint", "verification_key")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_KEY_FIELD_NUMBER: _ClassVar[int]
    index: int
    node_address: bytes
    endpoint: str
    verification_key: bytes
    def __init__(self, index: _Optional[int] = ..., node_address: _Optional[bytes] = ..., endpoint: _Optional[str] = ..., verification_key: _Optional[bytes] = ...) -> None: ...
