"""Routing: which queue a job goes to, and where the sweeper re-sends one. Pure functions and the queue table.

Queues are ``embedq.<hardware>.<lane>``. ``lane`` is ``interactive`` for small
jobs someone waits on (at most ``interactive_max_items`` texts and
``interactive_max_chars`` characters, the characters standing for tokens at
``CHARS_PER_TOKEN``) and ``batch`` for the rest; ``hardware`` is ``gpu`` only
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


CHARS_PER_TOKEN = 4
"""Characters per token of the bundled model's tokenizer (all-MiniLM-L6-v2, WordPiece), the router's token
estimate. Measured without [CLS]/[SEP]: 4.14 on tests/data/banking77_train_sample.csv (2,000 support
questions, 53 characters each), 4.15 on dialogue turns joined into 640-character texts, 5.07 on licence
prose, 3.27 on technical prose full of identifiers; with [CLS]/[SEP], 3.58 on the Banking77 texts. The
rounded-down 4 overestimates the tokens of plain English, so a job is never routed as smaller than it is."""

INTERACTIVE_MAX_ITEMS = 256
INTERACTIVE_MAX_TOKENS = 4096
"""The interactive lane's budget: about as much work as 256 short texts (15 tokens each with [CLS]/[SEP]),
which one interactive process (one thread) encodes in about a second (docs/configuration.md#routing)."""


@dataclass(frozen=True)
class Thresholds:
    """Largest job that still counts as interactive: its items, and its characters as a token estimate."""

    interactive_max_items: int = INTERACTIVE_MAX_ITEMS
    interactive_max_chars: int = INTERACTIVE_MAX_TOKENS * CHARS_PER_TOKEN


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
