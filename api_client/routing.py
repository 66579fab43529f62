"""Routing: which queue a job goes to, and where the sweeper re-sends one. Pure functions and the queue table.

Queues are ``embedq.<hardware>.<lane>``. ``lane`` is ``interactive`` for small
jobs someone waits on and ``batch`` for the rest; ``hardware`` is ``gpu`` only
for batch work while a GPU worker is alive (or when a hint asks for it and
one is alive), else ``cpu``. Celery's router of embedq's own app routes inline
requests with ``gpu_alive=False`` (a router cannot see the fleet); the
sweeper's ``target_queue`` moves any job off a queue no live worker consumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from api_client.errors import QueueNotFound

Hardware = Literal["cpu", "gpu"]
Lane = Literal["interactive", "batch"]
HARDWARE: tuple[Hardware, ...] = ("cpu", "gpu")
LANES: tuple[Lane, ...] = ("interactive", "batch")

QUEUES: tuple[str, ...] = tuple(f"embedq.{hw}.{lane}" for hw in HARDWARE for lane in LANES)
DEFAULT_QUEUE = "embedq.cpu.interactive"
"""Where a message that names no queue and cannot be routed by size goes."""


def queue_name(hardware: str, lane: str) -> str:
    """``embedq.<hardware>.<lane>``, refusing anything not in ``QUEUES``."""
    name = f"embedq.{hardware}.{lane}"
    if name not in QUEUES:
        raise QueueNotFound(f"no queue {name!r}; queues are {', '.join(QUEUES)}", detail={"queue": name})
    return name


@dataclass(frozen=True)
class Thresholds:
    """Largest job that still counts as interactive."""

    interactive_max_items: int = 256
    interactive_max_chars: int = 100_000


def route(
    *,
    n_items: int,
    n_chars: int,
    gpu_alive: bool,
    lane: str | None = None,
    hardware: str | None = None,
    thresholds: Thresholds = Thresholds(),
) -> str:
    """The queue for a job.

    Args:
        n_items: number of items (texts) in the job.
        n_chars: total characters over all items.
        gpu_alive: whether a GPU worker has sent a heartbeat recently.
        lane: optional hint, ``"interactive"`` or ``"batch"``; overrides the size rule.
        hardware: optional hint, ``"cpu"`` or ``"gpu"``; ``gpu`` is honoured only while a GPU worker is alive.
        thresholds: size limits of the interactive lane.
    """
    if lane is None:
        small = n_items <= thresholds.interactive_max_items and n_chars <= thresholds.interactive_max_chars
        lane = "interactive" if small else "batch"
    if hardware is None:
        hardware = "gpu" if gpu_alive and lane == "batch" else "cpu"
    elif hardware == "gpu" and not gpu_alive:
        hardware = "cpu"
    return queue_name(hardware, lane)


def target_queue(queue: str, consumed: set[str]) -> str:
    """Where to re-send a job of ``queue``: itself while a live worker consumes it, else a consumed
    queue of the same lane (CPU first), else any consumed embedq queue; with no live worker at all,
    the job's own queue (or the default one for an unknown name)."""
    if queue in consumed:
        return queue
    lane = queue.rsplit(".", 1)[-1] if queue in QUEUES else LANES[0]
    for candidate in (f"embedq.cpu.{lane}", f"embedq.gpu.{lane}", *QUEUES):
        if candidate in consumed:
            return candidate
    return queue if queue in QUEUES else DEFAULT_QUEUE
