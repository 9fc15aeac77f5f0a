"""The connection to a coordinator's ``Projects`` service, and submission.

:meth:`Client.submit` streams its inputs: they are read from the iterable a
batch at a time (at most ``batch_size`` work units and 48 MiB per call), so
a generator of millions of inputs never sits in memory. ``CreateProject``
carries the first batch, ``AddWorkUnits`` each next one (each call is one
transaction on the coordinator), one call at a time and in order, the next
batch being read from the inputs while the call before it is in flight. An
interruption while reading lets the call in flight finish first. Submitting to a project that exists with
the same app completes it, as ``quorum submit`` does: the work units it
lacks (by name) are added, so a submission interrupted (KeyboardInterrupt,
a lost connection) and run again with the same arguments ends with every
work unit exactly once.

Input files (``files=``, and an input's own ``"files"``) are sent as ``quorum
submit`` sends them (see :mod:`quorum._files`): every name is checked and
every file hashed before the call that names it, so the project's shared
files and the first batch's are checked before anything is created; only
the contents the coordinator lacks are uploaded, each once, before the call
that names them.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import _config, _files, _settings
from ._config import PathLike
from .errors import AlreadyExists, ConfigError, NotFound, ProjectFailed, from_rpc
from .project import Project
from .v1 import quorum_pb2 as pb
from .v1 import quorum_pb2_grpc as pb_grpc

__all__ = ["Client", "Input"]

#: Largest gRPC message sent or accepted (as the CLI's).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Largest encoded request of one submission call (the CLI's margin).
ONE_CALL_BYTES = 48 * 1024 * 1024
#: Most work units per submission call (as the CLI's).
BATCH_WORK_UNITS = 10_000
#: Work units listed per call when completing an existing project.
LIST_PAGE = 10_000

#: One input: its bytes (or text, sent as UTF-8), a (name, input) pair, or a
#: dict ``{"name": ..., "input": ..., "files": {NAME: PATH}, "args": [...],
#: "env": {...}}`` (every key optional; ``input`` defaults to empty): the
#: work unit's own input files (its app sees ``/input/NAME`` beside the
#: project's shared files, under other names), and its own arguments (after
#: the project's) and variables (over the project's), as a ``quorum submit``
#: JSON Lines work unit. Work units without a name are named by their index
#: in the iterable.
Input = Union[bytes, str, Tuple[str, Union[bytes, str]], Mapping[str, Any]]
#: The keys an input dict may have.
INPUT_KEYS = ("name", "input", "files", "args", "env")


class Client:
    """A client of one quorum coordinator.

    ``server`` is its URL (``http://HOST:PORT``, ``https://HOST:PORT`` or
    ``HOST:PORT``), by default ``QUORUM_SERVER`` or ``http://127.0.0.1:7737``.
    The API token comes from ``token``, else ``token_file``, else
    ``QUORUM_TOKEN``, else the file named by ``QUORUM_TOKEN_FILE`` (token
    files must be readable by their owner only). An https:// coordinator's
    certificate must chain to ``ca_cert`` (a PEM file; default
    ``QUORUM_CA_CERT``) or to the system's roots. Connecting is lazy: a wrong
    address raises :class:`quorum.Unavailable` at the first call.

    >>> client = Client("http://127.0.0.1:7737", token_file="quorum.db.admin-token")
    """

    def __init__(
        self,
        server: Optional[str] = None,
        token: Optional[str] = None,
        *,
        token_file: Optional[PathLike] = None,
        ca_cert: Optional[PathLike] = None,
    ) -> None:
        self._url = _config.resolve_server(server)
        self._token = _config.resolve_token(token, token_file)
        target, tls = _config.grpc_target(self._url)
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=_config.resolve_ca_cert(ca_cert))
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.ProjectsStub(self._channel)

    @property
    def server(self) -> str:
        """The coordinator's URL."""
        return self._url

    def __repr__(self) -> str:
        return f"Client({self._url!r})"

    def close(self) -> None:
        """Closes the connection."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------

    def _metadata(self) -> Sequence[Tuple[str, str]]:
        return (("authorization", f"Bearer {self._token}"),) if self._token else ()

    def _call(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        """One unary call; a failure becomes the exception of its code."""
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata(), timeout=timeout)
        except grpc.RpcError as error:
            raise from_rpc(error, self._url) from None

    def _stream(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        return getattr(self._stub, method)(request, metadata=self._metadata(), timeout=timeout)

    # -- projects ------------------------------------------------------------

    def project(self, name: str) -> Project:
        """The project ``name`` (no call is made)."""
        return Project(self, name)

    def projects(self) -> List["Project"]:
        """Every project the token may see."""
        response = self._call("GetStatus", pb.GetStatusRequest(project=""))
        return [Project(self, status.name) for status in response.projects]

    def submit(
        self,
        name: str,
        app: Union[bytes, PathLike],
        inputs: Iterable[Input],
        *,
        policy: Optional[Mapping[str, Any]] = None,
        limits: Optional[Mapping[str, Any]] = None,
        validator: Union[None, str, Mapping[str, Any]] = None,
        signing_key: Optional[PathLike] = None,
        nan_canonicalization: bool = False,
        seed: Optional[int] = None,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Mapping[str, PathLike]] = None,
        checkpointing: bool = False,
        batch_size: int = BATCH_WORK_UNITS,
    ) -> Project:
        """Creates project ``name`` running ``app`` on every input; returns it.

        ``app`` is a WebAssembly module (bytes, a .wasm path, or a .wat path
        with the ``wat`` extra). ``inputs`` is any iterable of bytes or str
        (each the stdin of one work unit, named by its index: "0", "1"...)
        or of (name, input) pairs, or of dicts with the work unit's own
        ``files`` (see :data:`Input`); it is read a batch at a time. ``policy``
        takes BOINC's fields (``min_quorum``, ``target_results``,
        ``max_error_results``, ``max_total_results``, ``max_success_results``,
        ``deadline`` in seconds or as "1h", ``adaptive_replication``,
        ``priority``) with the manifest's defaults; ``limits`` the sandbox's
        (``fuel``, ``memory_bytes``, ``output_bytes``, ``wall_time``,
        ``stderr_bytes``, and ``input_files``, ``output_files``: the input
        files' and output files' sizes in all, as ``quorum submit``'s
        manifest); ``validator`` is "bitwise" (default), "fuzzy" or a
        dict (see the README). ``signing_key`` signs the app with a ``quorum
        keygen`` key (``signing`` extra).

        ``files`` (``{NAME: PATH}``) are the project's shared input files:
        every work unit's app sees ``/input/NAME``. A name is one path
        component (not empty, not ``.`` nor ``..``, no ``/`` or ``\\``, no
        control character, at most 255 bytes); a bad name, a missing file, a
        work unit's own file named as a shared one, or inputs over
        ``limits["input_files"]`` raise :class:`InputFileError` before the
        call that would name the file (for the shared files and the first
        batch's, before anything is created). Only the files the coordinator
        lacks are uploaded, each content once. ``checkpointing=True`` gives
        each task a ``/checkpoint`` directory kept across interruptions.

        If the project exists with the same app, only its missing work units
        (by name) are added: running an interrupted ``submit`` again
        completes it. With another app, or cancelled, :class:`AlreadyExists`.
        """
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        module = _settings.module(app)
        local_digest = _settings.digest(module)
        limits_message = _settings.limits(limits)
        hasher = _files.Hasher()
        shared = hasher.files(files, "files")
        _files.check_shared(shared, limits_message.input_files_bytes)
        uploader = _files.Uploader(self, name)
        uploader.add(shared)
        request = pb.CreateProjectRequest(
            name=name,
            app_module=module,
            policy=_settings.policy(policy),
            limits=limits_message,
            nan_canonicalization=nan_canonicalization,
            files=[file.ref() for file in shared],
            checkpointing=checkpointing,
            args=list(args),
            env=[pb.EnvVar(name=key, value=value) for key, value in sorted((env or {}).items())],
            **_settings.validator(validator),
        )
        if seed is not None:
            request.seed = seed
        if signing_key is not None:
            request.app_signature, request.app_public_key = _settings.signature(signing_key, module)
        units = _work_units(inputs, hasher, shared, limits_message.input_files_bytes, uploader)
        existing = self._existing(name)
        if existing is not None:
            return self._complete(name, local_digest, existing, units, batch_size, uploader)
        batches = _batches(units, batch_size, ONE_CALL_BYTES - request.ByteSize())
        request.work_units.extend(next(batches, []))
        uploader.flush()
        created = self._call("CreateProject", request)
        n_added = created.n_work_units
        n_added += self._add(name, batches, uploader)
        return Project(
            self,
            name,
            project_id=created.project_id,
            app_digest=created.app_digest,
            n_work_units=n_added,
            n_files_uploaded=uploader.n_uploaded,
            bytes_uploaded=uploader.bytes_uploaded,
        )

    def submit_manifest(self, path: PathLike, *, signing_key: Optional[PathLike] = None) -> Project:
        """Submits a ``project.toml`` as ``quorum submit`` does (same format,
        paths relative to its folder); ``signing_key`` overrides its own."""
        from . import manifest

        loaded = manifest.load(path)
        return self.submit(
            loaded.name,
            loaded.app,
            loaded.work_units,
            policy=loaded.policy,
            limits=loaded.limits,
            validator=loaded.validator,
            signing_key=signing_key if signing_key is not None else loaded.signing_key,
            nan_canonicalization=loaded.nan_canonicalization,
            seed=loaded.seed,
            args=loaded.args,
            env=loaded.env,
            files=loaded.files,
            checkpointing=loaded.checkpointing,
        )

    def map(
        self,
        app: Union[bytes, PathLike],
        inputs: Iterable[Union[bytes, str]],
        *,
        name: Optional[str] = None,
        timeout: Optional[float] = None,
        progress: bool = False,
        limits: Optional[Mapping[str, Any]] = None,
        validator: Union[None, str, Mapping[str, Any]] = None,
        files: Optional[Mapping[str, PathLike]] = None,
        checkpointing: bool = False,
        **policy: Any,
    ) -> List[bytes]:
        """Runs ``app`` on every input and returns the canonical outputs in
        input order: submit, wait, collect. ``policy`` takes the fields of
        :meth:`submit`'s ``policy``; ``name`` defaults to a fresh
        "map-XXXXXXXXXXXX"; ``files`` are shared input files as in
        :meth:`submit`, ``checkpointing`` too. Raises :class:`ProjectFailed` if any work unit
        failed, :class:`TimeoutError` past ``timeout`` seconds."""
        project_name = name if name is not None else f"map-{uuid.uuid4().hex[:12]}"
        indexed = ((str(index), value) for index, value in enumerate(inputs))
        project = self.submit(
            project_name, app, indexed, policy=policy, limits=limits, validator=validator, files=files,
            checkpointing=checkpointing,
        )
        status = project.wait(timeout=timeout, progress=progress)
        if status.work_units_failed:
            errors = project.errors()
            first = f": {errors[0].message}" if errors else ""
            raise ProjectFailed(
                f"{status.work_units_failed} of {status.work_units_total} work units of project "
                f"'{project_name}' failed{first}",
                errors,
            )
        outputs: List[Optional[bytes]] = [None] * status.work_units_total
        for result in project.results():
            outputs[int(result.work_unit)] = result.output
        missing = [index for index, output in enumerate(outputs) if output is None]
        if missing:
            raise ProjectFailed(f"work unit {missing[0]} of project '{project_name}' has no canonical result", [])
        return [output for output in outputs if output is not None]

    # -- submission ----------------------------------------------------------

    def _existing(self, name: str) -> Optional["pb.ProjectStatus"]:
        try:
            response = self._call("GetStatus", pb.GetStatusRequest(project=name))
        except NotFound:
            return None
        return response.projects[0] if response.projects else None

    def _add(
        self, name: str, batches: Iterator[List["pb.WorkUnitInput"]], uploader: "_files.Uploader"
    ) -> int:
        """Sends each batch in an ``AddWorkUnits`` call, one call at a time,
        in order; the next batch is read from the inputs while the call
        before it is in flight, and its input files the coordinator lacks
        are uploaded once that call has ended, before the batch is sent."""
        n_added = 0
        pending: Any = None
        try:
            for batch in batches:
                if pending is not None:
                    n_added += self._added(pending)
                    pending = None
                if batch:
                    uploader.flush()
                    request = pb.AddWorkUnitsRequest(project=name, work_units=batch)
                    pending = self._stub.AddWorkUnits.future(request, metadata=self._metadata())
        except BaseException:
            # Interrupted while reading the inputs (KeyboardInterrupt...): the
            # call in flight is let finish, so that the project holds exactly
            # the batches sent so far, then the interruption goes on.
            if pending is not None:
                try:
                    pending.result()
                except grpc.RpcError:
                    pass
            raise
        if pending is not None:
            n_added += self._added(pending)
        return n_added

    def _added(self, call: Any) -> int:
        try:
            return int(call.result().n_work_units)
        except grpc.RpcError as error:
            raise from_rpc(error, self._url) from None

    def _complete(
        self,
        name: str,
        local_digest: str,
        status: "pb.ProjectStatus",
        units: Iterator["pb.WorkUnitInput"],
        batch_size: int,
        uploader: "_files.Uploader",
    ) -> Project:
        """Adds to an existing project the work units it lacks (by name)."""
        if status.app_digest != local_digest:
            raise AlreadyExists(
                f"project '{name}' already exists with another app (sha256 {status.app_digest}; this "
                f"submission's app is {local_digest}): give the project another name, or delete it first",
                self._url,
            )
        if status.state == "cancelled":
            raise AlreadyExists(
                f"project '{name}' already exists and is cancelled: give the project another name, "
                "or delete it first",
                self._url,
            )
        present: Dict[str, int] = {}
        after_id = 0
        while True:
            page = self._call(
                "ListWorkUnits", pb.ListWorkUnitsRequest(project=name, after_id=after_id, limit=LIST_PAGE)
            ).work_units
            if not page:
                break
            after_id = page[-1].id
            for work_unit in page:
                present[work_unit.name] = work_unit.input_size
        n_present = 0

        def missing() -> Iterator["pb.WorkUnitInput"]:
            nonlocal n_present
            for unit in units:
                size = present.get(unit.name)
                if size is None:
                    yield unit
                elif size == len(unit.input):
                    n_present += 1
                else:
                    raise AlreadyExists(
                        f"project '{name}' already has a work unit '{unit.name}' with another input ({size} "
                        f"bytes; this submission's has {len(unit.input)}): it is not the same submission; "
                        "give the project another name, or delete it first",
                        self._url,
                    )

        n_added = self._add(name, _batches(missing(), batch_size, ONE_CALL_BYTES), uploader)
        return Project(
            self,
            name,
            project_id=status.project_id,
            app_digest=status.app_digest,
            n_work_units=n_added,
            n_work_units_present=n_present,
            resumed=True,
            n_files_uploaded=uploader.n_uploaded,
            bytes_uploaded=uploader.bytes_uploaded,
        )


def _work_units(
    inputs: Iterable[Input],
    hasher: Optional["_files.Hasher"] = None,
    shared: Sequence["_files.LocalFile"] = (),
    input_files_limit: int = 0,
    uploader: Optional["_files.Uploader"] = None,
) -> Iterator["pb.WorkUnitInput"]:
    """The protocol's work units, named by index unless given a name; each
    one's own files checked and hashed, and handed to ``uploader``."""
    hasher = hasher if hasher is not None else _files.Hasher()
    for index, item in enumerate(inputs):
        own: List[_files.LocalFile] = []
        args: List[str] = []
        env: List[pb.EnvVar] = []
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ConfigError(f"input #{index}: a tuple must be (name, input)")
            name, value = item
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - set(INPUT_KEYS))
            if unknown:
                raise ConfigError(f"input #{index}: unknown key {unknown[0]!r}; known: {', '.join(INPUT_KEYS)}")
            name = item.get("name", str(index))
            value = item.get("input", b"")
            if not isinstance(name, str):
                raise ConfigError(f"input #{index}: the name must be a str, got {type(name).__name__}")
            raw_args = item.get("args", ())
            if isinstance(raw_args, (str, bytes)) or not all(isinstance(arg, str) for arg in raw_args):
                raise ConfigError(f"work unit {name!r}: args must be a list of str")
            args = list(raw_args)
            env = [pb.EnvVar(name=key, value=val) for key, val in sorted(dict(item.get("env") or {}).items())]
            own = hasher.files(item.get("files"), f"work unit {name!r}")
            _files.check_work_unit(name, own, shared, input_files_limit)
        else:
            name, value = str(index), item
        if isinstance(value, str):
            value = value.encode("utf-8")
        elif isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        elif not isinstance(value, bytes):
            raise ConfigError(f"input #{index}: expected bytes or str, got {type(value).__name__}")
        if uploader is not None:
            uploader.add(own)
        yield pb.WorkUnitInput(name=name, input=value, args=args, env=env, files=[file.ref() for file in own])


def _batches(
    units: Iterator["pb.WorkUnitInput"], batch_size: int, first_budget: int
) -> Iterator[List["pb.WorkUnitInput"]]:
    """Batches of at most ``batch_size`` work units and ONE_CALL_BYTES
    encoded (the first within ``first_budget``, beside the project)."""
    budget = first_budget
    batch: List[pb.WorkUnitInput] = []
    used = 0
    for unit in units:
        size = unit.ByteSize()
        size += 1 + _varint_len(size)  # the field's tag and length
        if size + 128 > ONE_CALL_BYTES:
            raise ConfigError(f"work unit '{unit.name}' takes {size} bytes, more than one call's {ONE_CALL_BYTES}")
        if batch and (len(batch) >= batch_size or used + size > budget):
            yield batch
            batch, used, budget = [], 0, ONE_CALL_BYTES - 128
        elif not batch and size > budget:
            # Nothing fits beside the app: the project goes alone.
            yield batch
            budget = ONE_CALL_BYTES - 128
        batch.append(unit)
        used += size
    if batch:
        yield batch


def _varint_len(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)

