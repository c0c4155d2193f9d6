from protos.tkms.v1 import kms_pb2 as _kms_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EpochStatusRequest(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class EpochStatusResponse(_message.Message):
    __slots__ = ("epoch", "phase", "deals_received_from")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DEALS_RECEIVED_FROM_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    phase: str
    deals_received_from: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, epoch: _Optional[int] = ..., phase: _Optional[str] = ..., deals_received_from: _Optional[_Iterable[int]] = ...) -> None: ...

class KmsRootPartialRequest(_message.Message):
    __slots__ = ("generation", "epoch", "requester_key")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_KEY_FIELD_NUMBER: _ClassVar[int]
    generation: int
    epoch: int
    requester_key: bytes
    def __init__(self, generation: _Optional[int] = ..., epoch: _Optional[int] = ..., requester_key: _Optional[bytes] = ...) -> None: ...

class KmsRootPartialResponse(_message.Message):
    __slots__ = ("partial",)
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    partial: _kms_pb2.Partial
    def __init__(self, partial: _Optional[_Union[_kms_pb2.Partial, _Mapping]] = ...) -> None: ...

class DstackAppPartialRequest(_message.Message):
    __slots__ = ("generation", "epoch", "requester_key", "client_certificate", "vm_config")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_KEY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    VM_CONFIG_FIELD_NUMBER: _ClassVar[int]
    generation: int
    epoch: int
    requester_key: bytes
    client_certificate: bytes
    vm_config: str
    def __init__(self, generation: _Optional[int] = ..., epoch: _Optional[int] = ..., requester_key: _Optional[bytes] = ..., client_certificate: _Optional[bytes] = ..., vm_config: _Optional[str] = ...) -> None: ...

class DstackAppPartialResponse(_message.Message):
    __slots__ = ("partial",)
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    partial: _kms_pb2.Partial
    def __init__(self, partial: _Optional[_Union[_kms_pb2.Partial, _Mapping]] = ...) -> None: ...
