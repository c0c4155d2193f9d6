"""Errors of the KMS node, each with the gRPC status code the service edge answers with.

    NodeError                      INTERNAL
    ├── ConfigError                (start-up only) a config key is missing or invalid
    ├── StorageError               the data directory cannot be read or written safely
    ├── InvalidRequest             INVALID_ARGUMENT: malformed fields, bad points, oversize
    ├── Unauthenticated            UNAUTHENTICATED: a peer without a valid attested identity
    ├── PolicyDenied               PERMISSION_DENIED: evidence, approval or ownership refused
    ├── RateLimited                RESOURCE_EXHAUSTED: the app exceeded its request rate
    └── NotReady                   UNAVAILABLE: stale chain view, no active epoch, draining

Messages say what failed and where; they never contain secrets.
"""

from __future__ import annotations

import grpc


class NodeError(Exception):
    """Base class; anything unexpected is reported as INTERNAL."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class ConfigError(NodeError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key}: {problem}")
        self.key = key
        self.problem = problem


class StorageError(NodeError):
    """The data directory is unusable (unwritable, full, corrupt)."""


class InvalidRequest(NodeError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(NodeError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PolicyDenied(NodeError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class RateLimited(NodeError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotReady(NodeError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
