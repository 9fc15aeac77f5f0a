"""A project's settings as Python values, turned into the protocol's
messages: the replication policy, the sandbox limits, the validator, the
app module and its signature. Defaults are the manifest's (``quorum
submit``); the coordinator checks everything again."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ._config import PathLike, read_private
from .errors import ConfigError
from .v1 import quorum_pb2 as pb

#: Policy fields `submit` and `map` take, with the manifest's defaults
#: (`target_results`: `min_quorum`; `max_total_results`: 4 x `target_results`).
POLICY_FIELDS = (
    "min_quorum",
    "target_results",
    "max_error_results",
    "max_total_results",
    "max_success_results",
    "deadline",
    "adaptive_replication",
    "priority",
)
LIMIT_FIELDS = ("fuel", "memory_bytes", "output_bytes", "wall_time", "stderr_bytes", "input_files", "output_files")

_DURATION_UNITS = {
    "ms": 0.001, "msec": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}

Duration = Union[int, float, str]


def seconds(value: Duration, field: str) -> float:
    """Seconds from a number or a duration such as "90s", "10m", "1h 30m"."""
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected seconds or a duration such as \"10m\", got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{field}: must not be negative")
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]+)", value)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]+)|\s", "", value):
        raise ConfigError(f"{field}: invalid duration {value!r} (e.g. \"90s\", \"10m\", \"1h\")")
    total = 0.0
    for number, unit in parts:
        if unit.lower() not in _DURATION_UNITS:
            raise ConfigError(f"{field}: unknown unit {unit!r} in {value!r}")
        total += float(number) * _DURATION_UNITS[unit.lower()]
    return total


def size(value: Union[int, str], field: str) -> int:
    """Bytes from an integer or a size such as "256MiB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{field}: must not be negative")
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in {"", *_SIZE_UNITS}:
        raise ConfigError(f"{field}: invalid size {value!r} (e.g. 1048576 or \"256MiB\")")
    return int(match.group(1)) * _SIZE_UNITS.get(match.group(2).lower(), 1)


def _unknown(fields: Mapping[str, Any], known: Tuple[str, ...], what: str) -> None:
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what} field {unknown[0]!r}; known: {', '.join(known)}")


def policy(fields: Optional[Mapping[str, Any]]) -> "pb.ReplicationPolicy":
    """The replication policy (BOINC's names; see the README's policy table)."""
    fields = dict(fields or {})
    _unknown(fields, POLICY_FIELDS, "policy")
    min_quorum = int(fields.get("min_quorum", 2))
    target = int(fields.get("target_results", min_quorum))
    return pb.ReplicationPolicy(
        min_quorum=min_quorum,
        target_results=target,
        max_error_results=int(fields.get("max_error_results", 3)),
        max_total_results=int(fields.get("max_total_results", target * 4)),
        max_success_results=int(fields.get("max_success_results", 0)),
        deadline_secs=int(seconds(fields.get("deadline", 3600), "policy.deadline")),
        adaptive_replication=bool(fields.get("adaptive_replication", False)),
        priority=int(fields.get("priority", 0)),
    )


def limits(fields: Optional[Mapping[str, Any]]) -> "pb.Limits":
    """Sandbox limits; a missing one takes the coordinator's default.
    ``input_files`` (the input files one work unit's app sees, in all;
    default 1 GiB) and ``output_files`` (the output files one result may
    report, in all; default 0: no ``/output``) are sizes, as the manifest's
    ``[limits]``."""
    fields = dict(fields or {})
    _unknown(fields, LIMIT_FIELDS, "limits")
    wall_time = fields.get("wall_time")
    return pb.Limits(
        fuel=int(fields.get("fuel", 0)),
        memory_bytes=size(fields.get("memory_bytes", 0), "limits.memory_bytes"),
        output_bytes=size(fields.get("output_bytes", 0), "limits.output_bytes"),
        wall_time_ms=0 if wall_time is None else int(seconds(wall_time, "limits.wall_time") * 1000),
        stderr_bytes=size(fields.get("stderr_bytes", 0), "limits.stderr_bytes"),
        input_files_bytes=size(fields.get("input_files", 0), "limits.input_files"),
        output_files_bytes=size(fields.get("output_files", 0), "limits.output_files"),
    )


def validator(
    spec: Union[None, str, Mapping[str, Any]], base: Optional[PathLike] = None
) -> Dict[str, Any]:
    """The CreateProjectRequest fields of a validator: None or "bitwise";
    "fuzzy" or {"kind": "fuzzy", "format": "whitespace" | "json",
    "relative_tolerance": ..., "absolute_tolerance": ...}; {"kind": "custom",
    "module": PATH or bytes}."""
    if spec is None:
        spec = {"kind": "bitwise"}
    elif isinstance(spec, str):
        spec = {"kind": spec}
    spec = dict(spec)
    kind = spec.pop("kind", "bitwise")
    if kind == "bitwise" and not spec:
        return {"validator": pb.VALIDATOR_KIND_BITWISE}
    if kind == "fuzzy":
        _unknown(spec, ("format", "relative_tolerance", "absolute_tolerance"), "validator")
        formats = {"whitespace": pb.FUZZY_FORMAT_WHITESPACE, "json": pb.FUZZY_FORMAT_JSON}
        text = spec.get("format", "whitespace")
        if text not in formats:
            raise ConfigError(f"validator.format: {text!r} is not \"whitespace\" or \"json\"")
        fuzzy = pb.FuzzyValidator(
            format=formats[text],
            relative_tolerance=float(spec.get("relative_tolerance", 1e-9)),
            absolute_tolerance=float(spec.get("absolute_tolerance", 0.0)),
        )
        return {"validator": pb.VALIDATOR_KIND_FUZZY, "fuzzy": fuzzy}
    if kind == "custom":
        _unknown(spec, ("module",), "validator")
        if "module" not in spec:
            raise ConfigError("validator: a custom validator needs its module")
        return {"validator": pb.VALIDATOR_KIND_CUSTOM, "validator_module": module(spec["module"], base)}
    if kind == "bitwise":
        raise ConfigError(f"validator: a bitwise validator takes no options, got {sorted(spec)}")
    raise ConfigError(f"validator: unknown kind {kind!r}; one of bitwise, fuzzy, custom")


def module(app: Union[bytes, PathLike], base: Optional[PathLike] = None) -> bytes:
    """A WebAssembly binary module: bytes as given (WebAssembly text is
    converted), or read from a .wasm file, or a .wat file converted (needs
    the `wat` extra: ``pip install quorum[wat]``)."""
    if isinstance(app, (bytes, bytearray, memoryview)):
        data = bytes(app)
        return data if data.startswith(b"\0asm") else _wat2wasm(data.decode("utf-8", "replace"), "the app")
    path = os.fspath(app)
    if base is not None and not os.path.isabs(path):
        path = os.path.join(os.fspath(base), path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ConfigError(f"cannot read app {path}: {error.strerror}") from error
    if data.startswith(b"\0asm"):
        return data
    return _wat2wasm(data.decode("utf-8", "replace"), path)


def _wat2wasm(text: str, what: str) -> bytes:
    try:
        import wasmtime
    except ImportError:
        raise ConfigError(
            f"{what} is WebAssembly text: install the `wat` extra (pip install 'quorum[wat]') "
            "or convert it with wat2wasm"
        ) from None
    try:
        return bytes(wasmtime.wat2wasm(text))
    except Exception as error:  # wasmtime raises its own error types
        raise ConfigError(f"{what} is neither a WebAssembly module nor valid WebAssembly text: {error}") from None


def digest(module_bytes: bytes) -> str:
    """Lowercase hex SHA-256, as the coordinator names modules."""
    return hashlib.sha256(module_bytes).hexdigest()


def signature(key_file: PathLike, module_bytes: bytes) -> Tuple[bytes, bytes]:
    """The ed25519 signature of the module's SHA-256 digest by a `quorum
    keygen` key (base64 of its 32-byte seed, mode 0600), and the public key.
    Needs the `signing` extra."""
    text = read_private(key_file, "key file")
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ConfigError(f"key file {os.fspath(key_file)} does not hold a key made by `quorum keygen`")
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    except ImportError:
        raise ConfigError("signing_key= needs the `signing` extra: pip install 'quorum[signing]'") from None
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signed = key.sign(hashlib.sha256(module_bytes).digest())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return signed, public
