"""``Job``: one submitted job, followed by id: its status, progress, wait, cancel and result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api_client.errors import BadRequest, JobCancelled, from_record
from api_client.fleet import status_detail
from api_client.notify import Notice
from api_client.schemas import JobInfo
from api_client.states import JobStatus
from api_client.store import jobs as jobs_store
from api_client.store import workers as workers_store

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

    def status_detail(self) -> str:
        """Where the job stands, in one line: for a queued job, whether a live worker consumes its
        queue (and if none does, where the sweeper moves it); for a running one, its worker."""
        within = self._client.settings.worker_alive

        def read(conn: Any) -> str:
            info = jobs_store.get_job(conn=conn, job_id=self.id)
            consumers = workers_store.consumers_of(conn=conn, queue=info.queue, within=within)
            return status_detail(info, consumers=consumers, consumed=workers_store.consumed(conn=conn, within=within))

        return self._client._run(read)

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
        return self.result_of(info, self._client._notifier.take(self.id))

    def result_of(self, info: JobInfo, notice: Notice | None = None) -> Any:
        """The output of the finished job ``info`` (``notice``: its announcement, if it was heard)."""
        if info.status == JobStatus.FAILED:
            raise from_record(info.error or {"type": "InternalError", "message": "failed without an error record"})
        if info.status == JobStatus.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled", detail={"job_id": self.id})
        if info.parent_id is not None:
            raise BadRequest(
                f"job {self.id} is a chunk of job {info.parent_id}, which holds the output: read that job's result",
                detail={"job_id": self.id, "parent_id": info.parent_id},
            )
        return self._client._result(info, notice)
