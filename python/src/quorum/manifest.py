"""``project.toml``, the manifest ``quorum submit`` takes, read for
:meth:`quorum.Client.submit_manifest`: the same fields and work unit sources
(``range``, ``jsonl``, ``dir``), input files (``[files]``, a JSON Lines
work unit's ``files``, ``dir`` with ``file``), paths relative to the
manifest's folder (a line's files: to the JSON Lines file's).
Work units are produced lazily, so a large JSON Lines file is streamed. The
CLI's manifest documentation (``quorum submit --help``, the README) is the
reference; the coordinator checks every value again."""

from __future__ import annotations

import base64
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._config import PathLike
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - tomllib is in the standard library from 3.11
    import tomli as tomllib

__all__ = ["Manifest", "load"]

_TOP_LEVEL = {"name", "app", "nan_canonicalization", "seed", "args", "env", "policy", "limits", "validator",
              "work_units", "signing_key", "files", "checkpointing"}  # fmt: skip


@dataclass
class Manifest:
    """A manifest, read: what :meth:`quorum.Client.submit` takes."""

    name: str
    #: The app module, read (a .wat file converted).
    app: bytes
    #: (name, input) pairs, or input dicts with their own files, args and
    #: env (see :data:`quorum.Input`), read lazily from the source.
    work_units: Iterator[Any]
    policy: Dict[str, Any] = field(default_factory=dict)
    limits: Dict[str, Any] = field(default_factory=dict)
    validator: Dict[str, Any] = field(default_factory=dict)
    nan_canonicalization: bool = False
    seed: Optional[int] = None
    args: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    signing_key: Optional[str] = None
    #: ``[files]``: NAME = PATH (absolute) of the project's shared files.
    files: Dict[str, str] = field(default_factory=dict)
    checkpointing: bool = False


def load(path: PathLike) -> Manifest:
    """Reads the manifest at ``path`` and its app; errors name the file and field."""
    from . import _settings

    shown = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read manifest {shown}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"manifest {shown}: invalid TOML: {error}") from error
    base = os.path.dirname(os.path.abspath(shown))
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(f"manifest {shown}: unknown field {unknown[0]!r}")
    for required in ("name", "app", "work_units"):
        if required not in data:
            raise ConfigError(f"manifest {shown}: missing field {required!r}")
    limits = dict(data.get("limits", {}))
    if "memory" in limits:
        limits["memory_bytes"] = limits.pop("memory")
    validator = dict(data.get("validator", {}))
    if validator.get("kind") == "custom" and isinstance(validator.get("module"), str):
        validator["module"] = _settings.module(validator["module"], base)
    signing_key = data.get("signing_key")
    return Manifest(
        name=str(data["name"]),
        app=_settings.module(data["app"], base),
        work_units=_source(data["work_units"], base, shown),
        policy=dict(data.get("policy", {})),
        limits=limits,
        validator=validator,
        nan_canonicalization=bool(data.get("nan_canonicalization", False)),
        seed=data.get("seed"),
        args=list(data.get("args", [])),
        env=dict(data.get("env", {})),
        signing_key=None if signing_key is None else os.path.join(base, signing_key),
        files={str(name): os.path.join(base, str(path)) for name, path in dict(data.get("files", {})).items()},
        checkpointing=bool(data.get("checkpointing", False)),
    )


def _source(table: Dict[str, Any], base: str, shown: str) -> Iterator[Any]:
    sources = sorted(set(table) & {"range", "jsonl", "dir"})
    extra = set(table) - {"range", "jsonl", "dir", "file"}
    if len(sources) != 1 or extra or ("file" in table and sources != ["dir"]):
        raise ConfigError(f"manifest {shown}: [work_units] needs exactly one of range, jsonl, dir")
    kind = sources[0]
    if kind == "range":
        spec = table["range"]
        start, end, chunk = int(spec["start"]), int(spec["end"]), int(spec.get("chunk", 1))
        if start >= end:
            raise ConfigError(f"manifest {shown}: work_units.range: empty range: start ({start}) must be below end ({end})")
        if chunk < 1:
            raise ConfigError(f"manifest {shown}: work_units.range: chunk must be at least 1")
        return _range(start, end, chunk)
    if kind == "jsonl":
        return _jsonl(os.path.join(base, table["jsonl"]))
    if "file" in table:
        return _dir_files(os.path.join(base, table["dir"]), str(table["file"]))
    return _dir(os.path.join(base, table["dir"]))


def _range(start: int, end: int, chunk: int) -> Iterator[Tuple[str, bytes]]:
    """Chunks of start..end: input "START END\\n", name "START-END"."""
    for low in range(start, end, chunk):
        high = min(low + chunk, end)
        yield f"{low}-{high}", f"{low} {high}\n".encode()


def _jsonl(path: str) -> Iterator[Dict[str, Any]]:
    """One JSON object per line: name (default "line-N"), input or
    input_base64, and optionally its own files (paths relative to the file's
    folder), args and env."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        file = open(path, "rb")
    except OSError as error:
        raise ConfigError(f"cannot read inputs {path}: {error.strerror}") from error
    with file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except ValueError as error:
                raise ConfigError(f"{path} line {number}: invalid JSON work unit: {error}") from None
            if ("input" in parsed) == ("input_base64" in parsed):
                raise ConfigError(f"{path} line {number}: give either \"input\" or \"input_base64\"")
            data = (
                parsed["input"].encode("utf-8")
                if "input" in parsed
                else base64.b64decode(parsed["input_base64"].strip())
            )
            unit: Dict[str, Any] = {"name": parsed.get("name", f"line-{number}"), "input": data}
            if parsed.get("files"):
                unit["files"] = {name: os.path.join(folder, p) for name, p in dict(parsed["files"]).items()}
            if parsed.get("args"):
                unit["args"] = list(parsed["args"])
            if parsed.get("env"):
                unit["env"] = dict(parsed["env"])
            yield unit


def _dir(path: str) -> Iterator[Tuple[str, bytes]]:
    """Each regular file is a work unit named by its file name, in name order."""
    try:
        names = sorted(entry for entry in os.listdir(path) if os.path.isfile(os.path.join(path, entry)))
    except OSError as error:
        raise ConfigError(f"cannot read inputs {path}: {error.strerror}") from error
    for name in names:
        with open(os.path.join(path, name), "rb") as file:
            yield name, file.read()


def _dir_files(path: str, file_name: str) -> Iterator[Dict[str, Any]]:
    """Each regular file is the /input/FILE_NAME of a work unit named by its
    file name, with an empty stdin, in name order."""
    try:
        names = sorted(entry for entry in os.listdir(path) if os.path.isfile(os.path.join(path, entry)))
    except OSError as error:
        raise ConfigError(f"cannot read inputs {path}: {error.strerror}") from error
    for name in names:
        yield {"name": name, "input": b"", "files": {file_name: os.path.join(path, name)}}
