"""What a job is waiting for, in one line: the fleet as a job sees it. Pure: a job row and presence in, text out.

A queued job waits on its queue; if no live worker consumes that queue (its
GPU worker went away, or no worker serves that lane), it says so, and where
the sweeper will move it (``api_client.routing.target_queue``).
"""

from __future__ import annotations

from api_client.routing import QUEUES, target_queue
from api_client.schemas import JobInfo
from api_client.states import JobStatus


def status_detail(info: JobInfo, *, consumers: list[str], consumed: set[str]) -> str:
    """A sentence on where ``info``'s job stands.

    Args:
        info: the job's row.
        consumers: live consumers of the job's queue (``api_client.store.workers.consumers_of``).
        consumed: every queue a live consumer consumes.
    """
    if info.status == JobStatus.RUNNING:
        return f"running on {info.worker} (attempt {info.attempts})"
    if info.status != JobStatus.QUEUED:
        return str(info.status)
    queue = info.queue
    if consumers:
        return f"queued on {queue}, which {len(consumers)} live consumer(s) take from: {', '.join(consumers)}"
    if not consumed:
        return f"queued on {queue}; no worker is alive: it runs once a worker consumes {queue}"
    target = target_queue(queue, consumed)
    others = ", ".join(sorted(consumed))
    if target != queue:
        return (
            f"queued on {queue}, which no live worker consumes (they consume {others}): "
            f"the sweeper re-sends it to {target}"
        )
    hint = ""
    if queue in QUEUES:
        _, hardware, lane = queue.split(".")
        hint = f" (embedq worker --hardware {hardware} --lanes {lane})"
    return (
        f"queued on {queue}, which no live worker consumes (they consume {others}): "
        f"it waits for a worker on that queue{hint}"
    )
