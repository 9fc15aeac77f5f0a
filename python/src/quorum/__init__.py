"""quorum: submit, follow and collect volunteer-computing projects from Python.

A client of a quorum coordinator (``quorum-server``) speaking its gRPC
``Projects`` service, with the conventions of ``concurrent.futures`` and
Dask::

    import quorum

    client = quorum.Client("http://127.0.0.1:7737", token_file="quorum.db.admin-token")
    project = client.submit("primes", "primes.wasm", (f"{i} {i + 1000}\\n" for i in range(0, 10**6, 1000)))
    project.wait()                          # a progress bar
    df = project.to_pandas()                # the canonical results
    outputs = client.map("square.wasm", ["1", "2", "3"], min_quorum=2)   # in input order

Layout: :class:`Client` (connection, ``submit``, ``submit_manifest``,
``map``), :class:`Project` (``status``, ``wait``, ``as_completed``,
``results``, ``download_files``, ``to_pandas``, ``errors``, ``cancel``),
the records (:class:`CanonicalResult` with its :class:`OutputFile` list,
:class:`Status`, :class:`ErrorGroup`), and the exceptions, named for gRPC
status codes (:mod:`quorum.errors`; :class:`InputFileError` for input files
that cannot be sent). Input files: ``submit(..., files={NAME: PATH})`` and
inputs given as dicts with their own ``"files"``.
"""

from .client import Client, Input
from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    ConfigError,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InputFileError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ProjectFailed,
    QuorumError,
    ResourceExhausted,
    RpcError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from .project import Project
from .records import Batch, CanonicalResult, ErrorGroup, Hold, OutputFile, Status

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Input",
    "Project",
    "CanonicalResult",
    "OutputFile",
    "Status",
    "Batch",
    "Hold",
    "ErrorGroup",
    "QuorumError",
    "ConfigError",
    "InputFileError",
    "ProjectFailed",
    "RpcError",
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
