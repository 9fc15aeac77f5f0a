"""Input files, as ``quorum submit`` sends them: a project's shared files
(every work unit's app sees ``/input/NAME``) and work units' own. Each name
is checked and each file hashed (SHA-256, read in 1 MiB chunks, never whole
in memory, each path once) before the call that names it; the coordinator is
asked which contents it lacks (``FindFiles``, 10,000 digests a call) and
only those are uploaded (``UploadFile``, streamed in 1 MiB chunks), each
content once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import grpc

from ._config import PathLike
from .errors import InputFileError, from_rpc
from .v1 import quorum_pb2 as pb

if TYPE_CHECKING:
    from .client import Client

#: The longest file name, in bytes (UTF-8).
MAX_NAME_BYTES = 255
#: Size of the chunks files are read, hashed and uploaded in.
CHUNK_BYTES = 1 << 20
#: Most digests asked about per ``FindFiles`` call.
FIND_FILES_BATCH = 10_000


@dataclass(frozen=True)
class LocalFile:
    """A file to send: the name the app sees, where it is here, its hex
    SHA-256 digest and size."""

    name: str
    path: str
    digest: str
    size: int

    def ref(self) -> "pb.FileRef":
        return pb.FileRef(name=self.name, digest=self.digest, size=self.size)


def check_name(name: object, what: str = "") -> str:
    """A file name as the app sees it under ``/input``: one path component,
    1 to 255 bytes, no control character, neither ``.`` nor ``..`` (the
    CLI's and the coordinator's rule). Raises :class:`InputFileError`."""
    prefix = f"{what}: " if what else ""
    if not isinstance(name, str):
        raise InputFileError(f"{prefix}a file name must be a str, got {type(name).__name__}", name=None)
    if not name:
        problem = "it is empty"
    elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = "it is longer than 255 bytes"
    elif name in (".", ".."):
        problem = "it is a reference to a directory"
    elif "/" in name or "\\" in name:
        problem = "it holds a path separator (a file name is one path component)"
    elif any(_is_control(char) for char in name):
        problem = "it holds a control character"
    else:
        return name
    raise InputFileError(f"{prefix}file name {name!r} is not allowed: {problem}", name=name)


def _is_control(char: str) -> bool:
    # Rust's char::is_control: the Unicode general category Cc.
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


class Hasher:
    """Hashes files, each path once."""

    def __init__(self) -> None:
        self._known: Dict[str, Tuple[str, int]] = {}

    def local_file(self, name: str, path: PathLike, what: str = "") -> LocalFile:
        """The file at ``path``, hashed, under ``name`` (checked)."""
        prefix = f"{what}: " if what else ""
        check_name(name, what)
        if not isinstance(path, (str, os.PathLike)):
            raise InputFileError(
                f"{prefix}file {name!r}: expected a path, got {type(path).__name__}", name=name
            )
        shown = os.fspath(path)
        if not shown:
            raise InputFileError(f"{prefix}file {name!r}: the path is empty", name=name)
        key = os.path.abspath(shown)
        known = self._known.get(key)
        if known is None:
            try:
                if not os.path.isfile(key):
                    if os.path.exists(key):
                        raise InputFileError(
                            f"{prefix}cannot read input file {name!r} ({shown}): not a regular file",
                            name=name,
                            path=shown,
                        )
                    raise FileNotFoundError(2, "No such file or directory")
                known = _hash(key)
            except OSError as error:
                raise InputFileError(
                    f"{prefix}cannot read input file {name!r} ({shown}): {error.strerror or error}",
                    name=name,
                    path=shown,
                ) from error
            self._known[key] = known
        return LocalFile(name=name, path=key, digest=known[0], size=known[1])

    def files(self, table: Optional[Mapping[str, PathLike]], what: str) -> List[LocalFile]:
        """A ``{NAME: PATH}`` table, checked and hashed, in name order."""
        if table is None:
            return []
        if not isinstance(table, Mapping):
            raise InputFileError(f"{what}: files must be a dict of NAME: PATH, got {type(table).__name__}")
        return [self.local_file(name, table[name], what) for name in sorted(table)]


def _hash(path: str) -> Tuple[str, int]:
    """Hex SHA-256 and size of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while True:
            chunk = file.read(CHUNK_BYTES)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_work_unit(unit: str, own: Sequence[LocalFile], shared: Sequence[LocalFile], limit: int) -> None:
    """What the coordinator would refuse of a work unit's files: an own file
    named as a shared one, inputs over ``limit`` bytes (0: the coordinator's
    default, checked there)."""
    shared_names = {file.name for file in shared}
    for file in own:
        if file.name in shared_names:
            raise InputFileError(
                f"work unit {unit!r}: file {file.name!r} is both a shared file of the project and a file "
                "of the work unit",
                name=file.name,
                path=file.path,
            )
    total = sum(file.size for file in shared) + sum(file.size for file in own)
    if limit > 0 and total > limit:
        raise InputFileError(
            f"work unit {unit!r}: its input files total {total} bytes, over the project's input_files "
            f"limit of {limit} bytes"
        )


def check_shared(shared: List[LocalFile], limit: int) -> None:
    """The shared files alone must fit in the ``input_files`` limit."""
    total = sum(file.size for file in shared)
    if limit > 0 and total > limit:
        raise InputFileError(
            f"the project's shared files total {total} bytes, over its input_files limit of {limit} bytes"
        )


class Uploader:
    """Uploads the files a submission names, those the coordinator lacks,
    each content once, before the call that names them."""

    def __init__(self, client: "Client", project: str) -> None:
        self._client = client
        self._project = project
        self._pending: List[LocalFile] = []
        self._done: Set[str] = set()
        #: Files and bytes uploaded (the others were stored already).
        self.n_uploaded = 0
        self.bytes_uploaded = 0

    def add(self, files: Iterable[LocalFile]) -> None:
        self._pending.extend(files)

    def flush(self) -> None:
        """Uploads what the coordinator lacks of the files added so far."""
        unique: Dict[str, LocalFile] = {}
        for file in self._pending:
            if file.digest not in self._done:
                unique.setdefault(file.digest, file)
        self._pending = []
        if not unique:
            return
        digests = list(unique)
        missing: Set[str] = set()
        for start in range(0, len(digests), FIND_FILES_BATCH):
            request = pb.FindFilesRequest(digests=digests[start : start + FIND_FILES_BATCH])
            missing.update(self._client._call("FindFiles", request).missing)
        for digest, file in unique.items():
            if digest in missing:
                self._upload(file)
                self.n_uploaded += 1
                self.bytes_uploaded += file.size
            self._done.add(digest)

    def _upload(self, file: LocalFile) -> None:
        problem: List[BaseException] = []

        def messages() -> Iterable["pb.UploadFileRequest"]:
            try:
                with open(file.path, "rb") as source:
                    first = True
                    while True:
                        data = source.read(CHUNK_BYTES)
                        if first:
                            first = False
                            yield pb.UploadFileRequest(
                                project=self._project, digest=file.digest, size=file.size, data=data
                            )
                        elif not data:
                            return
                        else:
                            yield pb.UploadFileRequest(data=data)
                        if len(data) < CHUNK_BYTES:
                            return
            except OSError as error:
                problem.append(error)
                raise

        try:
            self._client._stub.UploadFile(messages(), metadata=self._client._metadata())
        except grpc.RpcError as error:
            if problem:
                raise InputFileError(
                    f"cannot upload input file {file.name!r} ({file.path}): {problem[0]}",
                    name=file.name,
                    path=file.path,
                ) from problem[0]
            raise from_rpc(error, self._client.server) from None
