"""What the client returns: plain, frozen records of the coordinator's
answers, named as in the protocol and ``quorum ... --json``."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .v1 import quorum_pb2 as pb

__all__ = ["CanonicalResult", "OutputFile", "Status", "Batch", "Hold", "ErrorGroup"]


@dataclass(frozen=True)
class OutputFile:
    """A file the app of a canonical result wrote in ``/output``."""

    name: str
    #: Hex SHA-256 of ``data``, and its size in bytes.
    digest: str
    size: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class CanonicalResult:
    """The validated answer of one work unit: its canonical result."""

    #: The work unit's id and name (the name is its index in ``inputs`` for
    #: :meth:`quorum.Client.submit`).
    work_unit_id: int
    work_unit: str
    #: The copy chosen as canonical.
    result_id: int
    #: The app's stdout.
    output: bytes
    #: Hex SHA-256 of ``output``.
    output_digest: str
    #: Instructions the app ran (an exact count).
    fuel_used: int
    #: The seed of the work unit's random source (``quorum-worker run --seed``).
    random_seed: int
    #: The app's command line and environment, to reproduce the output.
    argv: Tuple[str, ...] = ()
    env: Dict[str, str] = field(default_factory=dict)
    #: The files the app wrote in ``/output``, in name order (a project with
    #: an ``output_files`` limit); :meth:`quorum.Project.download_files`
    #: writes them.
    output_files: Tuple[OutputFile, ...] = ()

    @property
    def text(self) -> str:
        """``output`` decoded as UTF-8."""
        return self.output.decode("utf-8")

    def to_record(self) -> Dict[str, Any]:
        """The record ``quorum results --json`` prints for this result:
        ``output`` when it is UTF-8, else ``output_base64``; ``output_files``
        lists each output file's name, digest and size (empty when none,
        where the CLI leaves the key out)."""
        try:
            text: Optional[str] = self.output.decode("utf-8")
            encoded: Optional[str] = None
        except UnicodeDecodeError:
            text, encoded = None, base64.b64encode(self.output).decode("ascii")
        return {
            "work_unit_id": self.work_unit_id,
            "work_unit": self.work_unit,
            "result_id": self.result_id,
            "output": text,
            "output_base64": encoded,
            "output_digest": self.output_digest,
            "fuel_used": self.fuel_used,
            "random_seed": self.random_seed,
            "argv": list(self.argv),
            "env": dict(self.env),
            "output_files": [{"name": f.name, "digest": f.digest, "size": f.size} for f in self.output_files],
        }

    @classmethod
    def _from_proto(cls, message: "pb.CanonicalResult") -> "CanonicalResult":
        return cls(
            work_unit_id=message.work_unit_id,
            work_unit=message.work_unit_name,
            result_id=message.result_id,
            output=bytes(message.output),
            output_digest=message.output_digest,
            fuel_used=message.fuel_used,
            random_seed=message.random_seed,
            argv=tuple(message.argv),
            env={var.name: var.value for var in message.env},
            output_files=tuple(
                OutputFile(name=f.name, digest=f.digest, size=f.size, data=bytes(f.data)) for f in message.output_files
            ),
        )


@dataclass(frozen=True)
class Batch:
    """The work units added by one submission call."""

    id: int
    #: "active" or "paused" (then ``pause_reason`` says why).
    state: str
    pause_reason: str
    n_work_units: int
    n_ended: int


@dataclass(frozen=True)
class Hold:
    """What holds a project's open work, or that it has ended."""

    #: "ended", "no_host", "quota_used", "batch_paused", "copies_out"...
    kind: str
    message: str


@dataclass(frozen=True)
class Status:
    """A project's progress: work units and results (copies) by state, as
    ``quorum status PROJECT --json`` prints it."""

    name: str
    project_id: int
    #: "active" or "cancelled".
    state: str
    app_digest: str
    validator: str
    work_units_total: int
    work_units_open: int
    work_units_done: int
    work_units_failed: int
    results_unsent: int
    results_in_progress: int
    results_over: int
    results_valid: int
    results_invalid: int
    results_error: int
    results_no_reply: int
    results_reported: int
    batches: Tuple[Batch, ...] = ()
    holds: Tuple[Hold, ...] = ()

    @property
    def ended(self) -> bool:
        """Every work unit has ended (done or failed)."""
        return self.work_units_open == 0

    @classmethod
    def _from_proto(cls, message: "pb.ProjectStatus") -> "Status":
        return cls(
            name=message.name,
            project_id=message.project_id,
            state=message.state,
            app_digest=message.app_digest,
            validator=message.validator,
            work_units_total=message.work_units_total,
            work_units_open=message.work_units_open,
            work_units_done=message.work_units_done,
            work_units_failed=message.work_units_failed,
            results_unsent=message.results_unsent,
            results_in_progress=message.results_in_progress,
            results_over=message.results_over,
            results_valid=message.results_valid,
            results_invalid=message.results_invalid,
            results_error=message.results_error,
            results_no_reply=message.results_no_reply,
            results_reported=message.results_reported,
            batches=tuple(
                Batch(b.id, b.state, b.pause_reason, b.n_work_units, b.n_ended) for b in message.batches
            ),
            holds=tuple(Hold(h.kind, h.message) for h in message.holds),
        )


@dataclass(frozen=True)
class ErrorGroup:
    """Failed copies of a project sharing one error message (``quorum errors``)."""

    message: str
    n_results: int
    n_hosts: int
    n_work_units: int
    #: Up to three work units with this error, the latest first.
    example_work_units: Tuple[str, ...]
    latest_result_id: int
    latest_stderr_tail: str
    latest_unix_ms: int

    @classmethod
    def _from_proto(cls, message: "pb.ErrorGroup") -> "ErrorGroup":
        return cls(
            message=message.message,
            n_results=message.n_results,
            n_hosts=message.n_hosts,
            n_work_units=message.n_work_units,
            example_work_units=tuple(message.example_work_units),
            latest_result_id=message.latest_result_id,
            latest_stderr_tail=message.latest_stderr_tail,
            latest_unix_ms=message.latest_unix_ms,
        )
