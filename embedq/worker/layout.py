"""The processes one ``embedq worker`` runs: a pure plan, from flags and the machine to process specs.

On a CPU machine the interactive lane gets a Celery consumer process of its
own, beside the batch lane's, so a single-text job is never queued behind a
100,000-text one in the same process. The two share the cores without
oversubscribing them: the batch processes split the cores between them and
run at a lower priority (``nice``), so they use every core while the
interactive process is idle and yield the CPU to it while it works; the
interactive process runs one intra-op thread, enough for the small jobs its
lane takes. Measured on a 2-core machine (torch, all-MiniLM-L6-v2; more in
docs/configuration.md, "The process layout"): with a busy neighbour process torch on 2 threads fell
from 437 to 125 texts/s while 1 thread held 235, which is why each process's
threads are set with the processes, never left to the libraries' default of
one per core.

On a GPU machine there is one consumer process per device, each seeing only
its device (``CUDA_VISIBLE_DEVICES``), so CUDA is initialised in the process
that uses it and never before a fork.

The plan is data: ``Consumer`` specs that ``embedq.worker.supervisor`` starts and
``embedq.worker.consumer`` runs, and that the unit tests read without starting
anything.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field, replace

from api_client.routing import LANES, queue_name

PLAIN_QUEUE = "celery"
"""Celery's default queue (``api_client.celery_conf.PLAIN_QUEUE``, not imported here to keep the command line
light), consumed by the first consumer: the interactive one on CPU."""

BATCH_NICE = 10
"""Niceness of batch consumers on CPU: they yield the cores to the interactive process while it works."""

INTERACTIVE_THREADS = 1
"""Intra-op threads of an interactive process on CPU (its jobs are small; see the module docstring)."""


@dataclass(frozen=True)
class Consumer:
    """One Celery worker process of an ``embedq worker``: what it consumes and the settings it runs with."""

    name: str
    """Celery node name (``%h`` expanded): ``<node>:<role>``, e.g. ``embedq@host:interactive``; the
    node's own name when it is the worker's only consumer."""
    node: str
    """The ``embedq worker``'s own name, shared by its consumers."""
    lanes: tuple[str, ...]
    queues: tuple[str, ...]
    concurrency: int
    """Pool processes of this consumer."""
    threads: int
    """Intra-op threads (torch, ONNX Runtime, OpenMP) of each pool process."""
    hardware: str
    device: str
    """``cpu``, or the CUDA device id this process alone sees."""
    pool: str = "prefork"
    """Celery pool: ``prefork``, or ``solo`` (jobs run in the consumer's own thread: the interactive
    consumer of one process, whose small jobs then skip the pipe to a pool process)."""
    nice: int = 0
    sweeper: bool = False
    consumers: int = 1
    """How many consumers the ``embedq worker`` runs, this one included."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment the process starts with (``EMBEDQ_*`` settings, thread and device variables)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Consumer:
        raw = json.loads(text)
        return cls(**{**raw, "lanes": tuple(raw["lanes"]), "queues": tuple(raw["queues"])})


_running: list[Consumer] = []
"""The spec this process runs under, once ``embedq.worker.consumer`` started it (inherited by its pool processes)."""


def set_current(consumer: Consumer) -> None:
    _running[:] = [consumer]


def current() -> Consumer | None:
    """The spec this process runs under; ``None`` in a worker started otherwise (``celery -A embedq.worker.app``)."""
    return _running[0] if _running else None


def expand_name(name: str) -> str:
    """``name`` with Celery's ``%h`` replaced by this host's name, as Celery and presence rows spell it."""
    return name.replace("%h", socket.gethostname())


def consumer_name(node: str, role: str) -> str:
    """``embedq@host`` and ``batch`` -> ``embedq@host:batch``.

    The worker's name stays a prefix of its consumers', and a consumer's name has no ``/``: a job's
    ``jobs.worker`` is ``<consumer name>/<pid>``, whose first ``/``-part is the ``workers.name``.
    """
    return f"{node}:{role}"


def cpu_threads(cores: int, processes: int) -> int:
    """Each of ``processes`` processes' share of ``cores``: at least one thread."""
    return max(1, cores // max(1, processes))


def plan(
    *,
    name: str,
    hardware: str,
    lanes: tuple[str, ...] = LANES,
    cores: int,
    concurrency: int = 1,
    interactive_concurrency: int = 1,
    devices: tuple[str, ...] = (),
    backend: str = "auto",
    threads: int = 0,
    shared: bool = False,
    plain_queue: bool = True,
    sweeper: bool = True,
    batch_nice: int = BATCH_NICE,
) -> list[Consumer]:
    """The consumer processes of one ``embedq worker``.

    Args:
        name: the worker's name (``--name``; ``%h`` is expanded).
        hardware: ``cpu`` or ``gpu``.
        lanes: the lanes it serves.
        cores: usable CPU cores of the machine.
        concurrency: pool processes of the batch consumer (CPU), or of the only one (one lane, or ``shared``).
        interactive_concurrency: pool processes of the interactive consumer (CPU).
        devices: CUDA device ids, one consumer each (``gpu`` only; at least one).
        backend: the backend setting every process gets (``EMBEDQ_BACKEND``).
        threads: intra-op threads per pool process; 0: the measured defaults (module docstring).
        shared: one consumer for all lanes (the layout without a protected interactive lane).
        plain_queue: whether a consumer also takes Celery's default queue ``celery``.
        sweeper: whether one of the consumers (the last) runs the sweeper.
        batch_nice: niceness of the batch consumer on CPU.
    """
    if hardware not in ("cpu", "gpu"):
        raise ValueError(f"hardware must be cpu or gpu, not {hardware!r}")
    lanes = tuple(dict.fromkeys(lanes))
    if not lanes or any(lane not in LANES for lane in lanes):
        raise ValueError(f"lanes must be some of {', '.join(LANES)}, got {', '.join(lanes) or 'none'}")
    if hardware == "gpu":
        if not devices:
            raise ValueError("a GPU worker needs at least one device")
        specs = _gpu(lanes, cores, devices, threads)
    else:
        if devices:
            raise ValueError("--devices is for GPU workers (--hardware gpu)")
        specs = _cpu(
            lanes=lanes,
            cores=cores,
            concurrency=concurrency,
            interactive_concurrency=interactive_concurrency,
            threads=threads,
            shared=shared,
            batch_nice=batch_nice,
        )
    node = expand_name(name)
    built = []
    for index, (role, spec) in enumerate(specs):
        queues = tuple(queue_name(hardware, lane) for lane in spec["lanes"])
        if plain_queue and index == 0:
            queues += (PLAIN_QUEUE,)
        consumer = Consumer(
            name=consumer_name(node, role) if len(specs) > 1 else node,
            node=node,
            queues=queues,
            hardware=hardware,
            sweeper=sweeper and index == len(specs) - 1,
            consumers=len(specs),
            **spec,
        )
        built.append(_with_env(consumer, backend))
    return built


def _cpu(
    *,
    lanes: tuple[str, ...],
    cores: int,
    concurrency: int,
    interactive_concurrency: int,
    threads: int,
    shared: bool,
    batch_nice: int,
) -> list[tuple[str, dict]]:
    common = {"device": "cpu"}
    if shared or len(lanes) == 1:
        role = lanes[0] if len(lanes) == 1 else "all"
        solo = threads or cpu_threads(cores, concurrency)
        return [(role, {**common, "lanes": lanes, "concurrency": concurrency, "threads": solo})]
    return [
        (
            "interactive",
            {
                **common,
                "lanes": ("interactive",),
                "concurrency": interactive_concurrency,
                "pool": "solo" if interactive_concurrency == 1 else "prefork",
                "threads": threads or min(INTERACTIVE_THREADS, cores),
            },
        ),
        (
            "batch",
            {
                **common,
                "lanes": ("batch",),
                "concurrency": concurrency,
                "threads": threads or cpu_threads(cores, concurrency),
                "nice": batch_nice,
            },
        ),
    ]


def _gpu(lanes: tuple[str, ...], cores: int, devices: tuple[str, ...], threads: int) -> list[tuple[str, dict]]:
    share = threads or cpu_threads(cores, len(devices))
    return [
        (
            f"gpu{device if device.isdigit() else index}",
            {"lanes": lanes, "concurrency": 1, "threads": share, "device": device},
        )
        for index, device in enumerate(devices)
    ]


def _with_env(consumer: Consumer, backend: str) -> Consumer:
    threads = str(consumer.threads)
    env = {
        "EMBEDQ_HARDWARE": consumer.hardware,
        "EMBEDQ_CONCURRENCY": str(consumer.concurrency),
        "EMBEDQ_TORCH_THREADS": threads,
        "EMBEDQ_SWEEPER": "1" if consumer.sweeper else "0",
        "EMBEDQ_BACKEND": backend,
        # Libraries that size their own pools (OpenMP, MKL, OpenBLAS) get the same share.
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        # A CPU process sees no GPU; a GPU process sees its own device only.
        "CUDA_VISIBLE_DEVICES": "" if consumer.device == "cpu" else consumer.device,
    }
    return replace(consumer, env=env)
