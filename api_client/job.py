"""``Job``: one submitted job, followed by id: its status, progress, wait, cancel and result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api_client.errors import BadRequest, JobCancelled, from_record
from api_client.schemas import JobInfo
from api_client.states import JobStatus

if TYPE_CHECKING:
    from api_client.client import EmbedQ


class Job:
    """One job: its id, its live status and progress, and its result."""

    def __init__(self, client: EmbedQ, job_id: str) -> None:
        self._client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def info(self) -> JobInfo:
        """A fresh snapshot of the job row."""
        return self._client._info(self.id)

    @property
    def status(self) -> JobStatus:
        return self.info().status

    @property
    def progress(self) -> tuple[int, int]:
        """``(done, total)`` items."""
        return self.info().progress

    @property
    def error(self) -> dict[str, Any] | None:
        return self.info().error

    def wait(self, timeout: float | None = None) -> JobInfo:
        """Block until the job is finished; ``JobTimeout`` if ``timeout`` seconds pass first."""
        return self._client._wait(self.id, timeout)

    def cancel(self) -> JobStatus:
        """Cancel the job if it is queued or running; returns the status after the attempt."""
        return self._client._cancel(self.id).status

    def result(self, timeout: float | None = None) -> Any:
        """The job's output, by kind: encode, the vectors ``[n, dim]`` (float32, or as its precision) in
        input order; similarity, the float32 scores; paraphrases, ``[(score, i, j), ...]`` best first.

        Raises the job's typed error if it failed, ``JobCancelled`` if it was
        cancelled, ``JobTimeout`` if ``timeout`` passes first.
        """
        info = self.wait(timeout)
        if info.status == JobStatus.FAILED:
            raise from_record(info.error or {"type": "InternalError", "message": "failed without an error record"})
        if info.status == JobStatus.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled", detail={"job_id": self.id})
        if info.parent_id is not None:
            raise BadRequest(
                f"job {self.id} is a chunk of job {info.parent_id}, which holds the output: read that job's result",
                detail={"job_id": self.id, "parent_id": info.parent_id},
            )
        return self._client._result(info)
