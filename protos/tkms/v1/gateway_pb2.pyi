from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Registration(_message.Message):
    __slots__ = ("base_domain", "host", "issued_at", "tls_key_sha256", "nonce")
    BASE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    TLS_KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    base_domain: str
    host: str
    issued_at: int
    tls_key_sha256: bytes
    nonce: bytes
    def __init__(self, base_domain: _Optional[str] = ..., host: _Optional[str] = ..., issued_at: _Optional[int] = ..., tls_key_sha256: _Optional[bytes] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("registration", "quote", "event_log", "vm_config")
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    EVENT_LOG_FIELD_NUMBER: _ClassVar[int]
    VM_CONFIG_FIELD_NUMBER: _ClassVar[int]
    registration: bytes
    quote: bytes
    event_log: str
    vm_config: str
    def __init__(self, registration: _Optional[bytes] = ..., quote: _Optional[bytes] = ..., event_log: _Optional[str] = ..., vm_config: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("app_id", "instance_id", "expires_at", "names")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    app_id: bytes
    instance_id: bytes
    expires_at: int
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, app_id: _Optional[bytes] = ..., instance_id: _Optional[bytes] = ..., expires_at: _Optional[int] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("base_domain", "proxy_port", "registration_ttl_seconds", "app_id")
    BASE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PROXY_PORT_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    base_domain: str
    proxy_port: int
    registration_ttl_seconds: int
    app_id: bytes
    def __init__(self, base_domain: _Optional[str] = ..., proxy_port: _Optional[int] = ..., registration_ttl_seconds: _Optional[int] = ..., app_id: _Optional[bytes] = ...) -> None: ...
