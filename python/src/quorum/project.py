"""A project on the coordinator: follow it, collect its canonical results,
read its errors, cancel it."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Iterator, List, Optional

import grpc

from ._config import PathLike
from .errors import QuorumError, from_rpc
from .records import CanonicalResult, ErrorGroup, Status
from .v1 import quorum_pb2 as pb

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Project"]

#: Canonical results read per call by :meth:`Project.results`.
RESULTS_PAGE = 1000
#: How often :meth:`Project.wait` redraws its progress bar, in seconds (the
#: coordinator answers at once when the project ends).
PROGRESS_INTERVAL = 1.0
#: How long :meth:`Project.as_completed` keeps trying to reconnect a lost
#: stream before giving up, in seconds.
RECONNECT_FOR = 60.0


class Project:
    """A project of a coordinator, by name.

    Returned by :meth:`quorum.Client.submit` (then ``n_work_units`` is how
    many work units that call added, ``n_work_units_present`` how many an
    earlier, interrupted submission had added, and ``resumed`` whether the
    project existed; ``n_files_uploaded`` and ``bytes_uploaded`` count the
    input files it uploaded, those the coordinator lacked) or
    :meth:`quorum.Client.project`.
    """

    def __init__(
        self,
        client: "Client",
        name: str,
        *,
        project_id: Optional[int] = None,
        app_digest: Optional[str] = None,
        n_work_units: int = 0,
        n_work_units_present: int = 0,
        resumed: bool = False,
        n_files_uploaded: int = 0,
        bytes_uploaded: int = 0,
    ) -> None:
        self._client = client
        #: The project's name.
        self.name = name
        #: Its id and app digest, when known from the submission.
        self.project_id = project_id
        self.app_digest = app_digest
        #: Work units the submission that returned this project added.
        self.n_work_units = n_work_units
        #: Work units the project already had (a resumed submission).
        self.n_work_units_present = n_work_units_present
        #: The project existed: the submission completed it.
        self.resumed = resumed
        #: Input files (distinct contents) the submission uploaded, and their bytes.
        self.n_files_uploaded = n_files_uploaded
        self.bytes_uploaded = bytes_uploaded

    def __repr__(self) -> str:
        return f"Project({self.name!r})"

    def status(self) -> Status:
        """Work units and results by state, batches, and what holds the work
        (``quorum status PROJECT``)."""
        response = self._client._call("GetStatus", pb.GetStatusRequest(project=self.name))
        return Status._from_proto(response.projects[0])

    def wait(self, timeout: Optional[float] = None, progress: bool = True) -> Status:
        """Blocks until every work unit has ended (done or failed) and
        returns the final status; :class:`TimeoutError` after ``timeout``
        seconds. With ``progress``, a tqdm bar of ended work units (in a
        terminal or a notebook). The coordinator answers as soon as the
        project ends (``WaitProject``); no polling."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar: Any = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc=self.name, unit="wu", total=None)
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                step = remaining if not progress else min(PROGRESS_INTERVAL, PROGRESS_INTERVAL if remaining is None else remaining)
                # 0 asks the coordinator's longest wait (an hour); 1 ms at least otherwise.
                timeout_ms = 0 if step is None else max(1, int(step * 1000))
                response = self._client._call(
                    "WaitProject",
                    pb.WaitProjectRequest(project=self.name, timeout_ms=timeout_ms),
                    timeout=None if step is None else step + 30,
                )
                status = Status._from_proto(response.projects[0])
                if bar is not None:
                    bar.total = status.work_units_total
                    bar.n = status.work_units_total - status.work_units_open
                    bar.set_postfix(done=status.work_units_done, failed=status.work_units_failed, refresh=False)
                    bar.refresh()
                if status.ended:
                    return status
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"project '{self.name}' still has {status.work_units_open} open work units "
                        f"after {timeout} s"
                    )
        finally:
            if bar is not None:
                bar.close()

    def as_completed(self, timeout: Optional[float] = None) -> Iterator[CanonicalResult]:
        """Yields each canonical result once, as the validator chooses it,
        until every work unit has ended (failed ones yield nothing: see
        :meth:`errors`). Backed by the server stream
        ``StreamCanonicalResults``; a lost stream is resumed from the last
        result received, so none is repeated or skipped.
        :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = 0
        lost_since: Optional[float] = None
        while True:
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            stream = self._client._stream(
                "StreamCanonicalResults",
                pb.StreamCanonicalResultsRequest(project=self.name, after_cursor=cursor),
                timeout=remaining,
            )
            try:
                for event in stream:
                    cursor = event.cursor
                    lost_since = None
                    yield CanonicalResult._from_proto(event.result)
                return
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise TimeoutError(f"project '{self.name}' did not end within {timeout} s") from None
                if code != grpc.StatusCode.UNAVAILABLE:
                    raise from_rpc(error, self._client.server) from None
                # The coordinator restarts or the connection dropped: resume.
                now = time.monotonic()
                lost_since = now if lost_since is None else lost_since
                if now - lost_since > RECONNECT_FOR:
                    raise from_rpc(error, self._client.server) from None
                # A backoff between reconnections, not a synchronisation.
                time.sleep(0.5)
            finally:
                stream.cancel()

    def results(self) -> Iterator[CanonicalResult]:
        """Every canonical result, in work unit id order (``quorum results``),
        read a page at a time."""
        after = 0
        while True:
            page = self._client._call(
                "GetCanonicalResults",
                pb.GetCanonicalResultsRequest(project=self.name, after_work_unit_id=after, limit=RESULTS_PAGE),
            ).results
            if not page:
                return
            for result in page:
                yield CanonicalResult._from_proto(result)
            after = page[-1].work_unit_id

    def to_pandas(self) -> Any:
        """The canonical results as a pandas DataFrame, one row per work unit
        in work unit id order, with the columns of ``quorum results --json``:
        work_unit_id, work_unit, result_id, output (text when UTF-8, else
        None), output_base64 (else None), output_digest, fuel_used,
        random_seed, argv, env, output_files (a list of name, digest, size).
        Needs the ``pandas`` extra."""
        try:
            import pandas
        except ImportError:
            raise ImportError("Project.to_pandas() needs pandas: pip install 'quorum[pandas]'") from None
        columns = [
            "work_unit_id", "work_unit", "result_id", "output", "output_base64",
            "output_digest", "fuel_used", "random_seed", "argv", "env", "output_files",
        ]  # fmt: skip
        return pandas.DataFrame([result.to_record() for result in self.results()], columns=columns)

    def download_files(self, directory: PathLike) -> int:
        """Writes each canonical result's output files to
        ``DIRECTORY/WORK_UNIT/NAME`` (a work unit whose name is not a plain
        file name goes in ``wu-ID``), as ``quorum results --files DIR``
        does; folders are made as needed, existing files overwritten.
        Returns how many files were written."""
        return write_output_files(directory, self.results())

    def errors(self) -> List[ErrorGroup]:
        """Failed copies grouped by error message, the most frequent first
        (``quorum errors PROJECT``)."""
        response = self._client._call("ListErrors", pb.ListErrorsRequest(project=self.name))
        return [ErrorGroup._from_proto(group) for group in response.groups]

    def cancel(self) -> int:
        """Cancels the project: its open work units fail as cancelled, hosts
        abort their copies. Returns how many work units were cancelled."""
        response = self._client._call("CancelProject", pb.CancelProjectRequest(project=self.name))
        return int(response.n_work_units_cancelled)



def _plain(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(char in name for char in "/\\\0")


def write_output_files(directory: PathLike, results: Iterator[CanonicalResult]) -> int:
    """Writes the output files of ``results`` under ``directory``
    (DIRECTORY/WORK_UNIT/NAME); returns how many."""
    n = 0
    for result in results:
        if not result.output_files:
            continue
        folder_name = result.work_unit if _plain(result.work_unit) else f"wu-{result.work_unit_id}"
        folder = os.path.join(os.fspath(directory), folder_name)
        os.makedirs(folder, exist_ok=True)
        for file in result.output_files:
            if not _plain(file.name):
                raise QuorumError(
                    f"the coordinator sent an output file named {file.name!r}, which is not a plain file name"
                )
            with open(os.path.join(folder, file.name), "wb") as out:
                out.write(file.data)
            n += 1
    return n
