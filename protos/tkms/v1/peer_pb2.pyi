from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

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
