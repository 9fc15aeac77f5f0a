"""Exceptions of the quorum client.

Every error the coordinator answers is an :class:`RpcError` subclass named
for its gRPC status code (:class:`NotFound`, :class:`PermissionDenied`...),
carrying the coordinator's own message; ``str(error)`` reads as the ``quorum``
CLI prints it: ``"project 'x' already exists (ALREADY_EXISTS)"``. Problems
found before anything is sent (a token file others can read, a bad URL) are
:class:`ConfigError`.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
    "QuorumError",
    "ConfigError",
    "InputFileError",
    "RpcError",
    "ProjectFailed",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
]


class QuorumError(Exception):
    """Base class of every error this package raises."""


class ConfigError(QuorumError, ValueError):
    """A problem with the client's own settings or input, found before any call."""


class InputFileError(ConfigError):
    """An input file :meth:`quorum.Client.submit` cannot send, found before
    the call that would name it: a name that is not one path component, a
    missing or unreadable file, a work unit's own file named as a shared
    one, inputs over the ``input_files`` limit.

    ``name`` is the file's name (as the app would see it under ``/input``)
    and ``path`` its path here, when known.
    """

    def __init__(self, message: str, name: Optional[str] = None, path: Optional[str] = None) -> None:
        super().__init__(message)
        #: The file's name under /input, and its local path, when known.
        self.name = name
        self.path = path


class ProjectFailed(QuorumError):
    """Work units of a project failed (:meth:`quorum.Client.map`).

    ``errors`` holds the project's :class:`quorum.ErrorGroup` list, the most
    frequent first.
    """

    def __init__(self, message: str, errors: list) -> None:
        super().__init__(message)
        #: The project's errors grouped by message (``quorum errors PROJECT``).
        self.errors = errors


class RpcError(QuorumError):
    """A call the coordinator refused or could not answer.

    ``code`` is the gRPC status code's name (``"NOT_FOUND"``), ``message``
    the coordinator's message.
    """

    #: The gRPC status code, as in the gRPC specification.
    code: str = "UNKNOWN"

    def __init__(self, message: str, url: Optional[str] = None) -> None:
        self.message = message
        #: The coordinator's URL.
        self.url = url
        super().__init__(self._text())

    def _text(self) -> str:
        return f"{self.message} ({self.code})"


def _code_class(name: str, code: str, doc: str) -> Type[RpcError]:
    return type(name, (RpcError,), {"code": code, "__doc__": doc, "__module__": __name__})


Cancelled = _code_class("Cancelled", "CANCELLED", "The call was cancelled (CANCELLED).")
Unknown = _code_class("Unknown", "UNKNOWN", "An unknown error (UNKNOWN).")
InvalidArgument = _code_class(
    "InvalidArgument", "INVALID_ARGUMENT", "The request is invalid, e.g. an app that is not a WASI command."
)
DeadlineExceeded = _code_class("DeadlineExceeded", "DEADLINE_EXCEEDED", "The call's deadline passed.")
NotFound = _code_class("NotFound", "NOT_FOUND", "No such project, batch or work unit.")
AlreadyExists = _code_class(
    "AlreadyExists", "ALREADY_EXISTS", "The project exists already (with another app, or cancelled)."
)
PermissionDenied = _code_class("PermissionDenied", "PERMISSION_DENIED", "The token's role does not allow the call.")
ResourceExhausted = _code_class(
    "ResourceExhausted", "RESOURCE_EXHAUSTED", "A rate limit, or the coordinator cannot write its database now."
)
FailedPrecondition = _code_class(
    "FailedPrecondition", "FAILED_PRECONDITION", "The project is not in a state that allows the call."
)
Aborted = _code_class("Aborted", "ABORTED", "The call was aborted (ABORTED).")
OutOfRange = _code_class("OutOfRange", "OUT_OF_RANGE", "A value out of range (OUT_OF_RANGE).")
Unimplemented = _code_class("Unimplemented", "UNIMPLEMENTED", "The coordinator does not know the call (older version).")
Internal = _code_class("Internal", "INTERNAL", "The coordinator failed; its log has the details.")
DataLoss = _code_class("DataLoss", "DATA_LOSS", "Data was lost (DATA_LOSS).")
Unauthenticated = _code_class("Unauthenticated", "UNAUTHENTICATED", "No API token, or an unknown or revoked one.")


class Unavailable(RpcError):
    """The coordinator cannot be reached (wrong address, down, shutting down)."""

    code = "UNAVAILABLE"

    def _text(self) -> str:
        return f"cannot reach coordinator at {self.url}: {self.message} ({self.code})"


_BY_CODE: Dict[grpc.StatusCode, Type[RpcError]] = {
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def from_rpc(error: grpc.RpcError, url: str) -> RpcError:
    """The exception for a failed gRPC call to the coordinator at ``url``."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or ""
    cls = _BY_CODE.get(code, Unknown)
    if not details:
        details = code.value[1] if isinstance(code.value, tuple) else str(code)
    return cls(details, url)
