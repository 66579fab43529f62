"""Commands on jobs, all with the light client: ``encode``, ``jobs``, ``job``, ``result``, ``cancel``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from api_client.errors import BadRequest
from api_client.kinds.encode import PRECISIONS
from api_client.schemas import DEFAULT_MODEL
from api_client.states import JobStatus
from embedq.worker.cli.common import UsageError, client, refuse_terminal, write_npy

ORDER = 20
"""Where these commands come in ``embedq --help``."""


def read_lines(data: str) -> list[str]:
    """One text per line: split on ``\n`` only (a ``\r`` before it is dropped), blank lines at the end skipped.

    Only trailing lines are dropped, so line ``i + 1`` is always ``texts[i]``,
    whatever other separators a text holds.
    """
    lines = [line.removesuffix("\r") for line in data.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_texts(path: str | None) -> list[str]:
    """The texts of ``path`` (stdin for None or ``-``); undecodable input names its line."""
    if path in (None, "-"):
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(path, "rb") as source:
                data = source.read()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return read_lines(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadRequest(f"input: line {line} is not valid UTF-8", detail={"field": "input", "line": line}) from exc


def by_line(exc: BadRequest, files: dict[str, str] | None = None) -> BadRequest:
    """The same error, naming the input line instead of the index (``texts[2]`` is line 3).

    ``files`` names the input of each list field (``{"queries": "queries.txt"}``) for commands that read
    more than one; the line is then given with its file.
    """
    field, index = exc.detail.get("field"), exc.detail.get("index")
    if not isinstance(field, str) or not isinstance(index, int) or (files is None and field != "texts"):
        return exc
    line = index + 1
    reason = exc.message.removeprefix(f"{field}[{index}]: ")
    where = f"{files[field]} line {line}" if files and field in files else f"line {line}"
    return type(exc)(f"{where}: {reason}", detail={**exc.detail, "line": line})


def await_job(job: Any, args: argparse.Namespace) -> bool:
    """Print the job id; unless ``--no-wait``, wait for it with a progress bar on a terminal.

    Returns whether the job was waited for (its output is then to be written).
    """
    from embedq.worker.cli.progress_bar import wait_with_progress

    if args.no_wait:
        print(job.id)
        return False
    print(f"job {job.id}", file=sys.stderr)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    wait_with_progress(job, timeout=args.timeout, show=show)
    return True


def add_wait_options(p: argparse.ArgumentParser) -> None:
    """``--timeout``, ``--no-wait`` and ``--progress``, as every job-running command has them."""
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    p.add_argument(
        "--no-wait", action="store_true", help="print only the job id on stdout and return once it is queued"
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )


def cmd_encode(args: argparse.Namespace) -> int:
    if args.no_wait and args.output not in (None, "-"):
        raise UsageError("--no-wait writes no vectors; fetch them later with `embedq result ID --output FILE`")
    if not args.no_wait:
        refuse_terminal(args.output)
    texts = read_texts(args.input)
    with client() as eq:
        try:
            job = eq.encode(
                texts,
                model=args.model,
                normalize=args.normalize,
                batch_size=args.batch_size,
                precision=args.precision,
                truncate_dim=args.truncate_dim,
                prompt_name=args.prompt_name,
                prompt=args.prompt,
                idempotency_key=args.idempotency_key,
            )
        except BadRequest as exc:
            raise by_line(exc) from exc
        if not await_job(job, args):
            return 0
        vectors = job.result(timeout=0)
    write_npy(vectors, args.output)
    return 0


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars inside a structured result
        return value.tolist()
    return str(value)


def cmd_result(args: argparse.Namespace) -> int:
    import numpy as np

    with client() as eq:
        result = eq.job(args.id).result(timeout=args.timeout)
    if isinstance(result, np.ndarray):
        write_npy(result, args.output)
        return 0
    text = json.dumps(result, indent=2, default=_json_default) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as output:
            output.write(text)
    return 0


def _print_jobs(jobs: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([job.as_json() for job in jobs], indent=2))
        return
    print(f"{'id':36}  {'kind':11}  {'status':9}  {'progress':>13}  {'queue':22}  created")
    for job in jobs:
        done, total = job.progress
        error = f"  {job.error['type']}" if job.error else ""
        print(
            f"{job.id:36}  {job.kind:11}  {job.status:9}  {f'{done}/{total}':>13}  {job.queue:22}  "
            f"{job.created_at:%Y-%m-%d %H:%M:%S}{error}"
        )


def cmd_jobs(args: argparse.Namespace) -> int:
    with client() as eq:
        _print_jobs(eq.jobs(status=args.status, limit=args.limit), args.json)
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    with client() as eq:
        job = eq.job(args.id)
        shown = job.info().as_json()
        if not JobStatus(shown["status"]).terminal:
            shown["status_detail"] = job.status_detail()  # who takes it, or that no live consumer does
        print(json.dumps(shown, indent=2))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with client() as eq:
        status = eq.job(args.id).cancel()
    print(f"job {args.id} is {status}")
    return 0


def _encode_parser(sub: Any) -> None:
    p = sub.add_parser(
        "encode",
        help="encode texts (one per line) into a .npy file",
        description="Read texts, one per line, from stdin (or --input), run an encode job, and write the "
        "vectors as a .npy array to stdout (or --output). Blank lines at the end are skipped; a bad text "
        "is reported by its line number. Shows a progress bar on a terminal. With --no-wait, prints only "
        "the job id on stdout.",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    p.add_argument("--normalize", action="store_true", help="L2-normalize the vectors")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help="output precision (default float32)")
    p.add_argument("--truncate-dim", type=int, help="keep only the first N dimensions")
    p.add_argument("--prompt-name", help="name of a prompt stored with the model")
    p.add_argument("--prompt", help="text to prepend to every input")
    p.add_argument("--idempotency-key", help="submitting the same key again returns the same job")
    p.add_argument("--input", help="read texts from this file instead of stdin")
    p.add_argument("--output", help="write the .npy here instead of stdout")
    add_wait_options(p)
    p.set_defaults(func=cmd_encode)


def register(sub: Any) -> None:
    """Add ``encode``, ``result``, ``jobs``, ``job`` and ``cancel`` to the command parsers ``sub``."""
    _encode_parser(sub)

    p = sub.add_parser(
        "result",
        help="wait for a job and write its output",
        description="Wait for a job to finish and write its output: a numpy output (an encode job's vectors, "
        "a similarity job's scores) as a .npy array to stdout (or --output), any other result (paraphrase "
        "pairs, search hits, summaries) as JSON. A failed or cancelled job exits 1 with its error.",
    )
    p.add_argument("id", help="the job id (from `embedq encode --no-wait` or `embedq jobs`)")
    p.add_argument("--output", help="write the output here instead of stdout")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    p.set_defaults(func=cmd_result)

    p = sub.add_parser(
        "jobs",
        help="list recent jobs",
        description="List the newest jobs: id, kind, status, progress, queue, created, error type.",
    )
    p.add_argument("--status", choices=[str(status) for status in JobStatus], help="only jobs in this status")
    p.add_argument("--limit", type=int, default=20, help="how many jobs, newest first (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser(
        "job",
        help="show one job as JSON",
        description="Print one job's row as JSON: status, progress, attempts, result summary, error; for a job "
        "not finished yet also status_detail: which worker takes or runs it, or that no live worker consumes "
        "its queue (and where the sweeper will move it).",
    )
    p.add_argument("id", help="the job id")
    p.set_defaults(func=cmd_job)

    p = sub.add_parser(
        "cancel",
        help="cancel a queued or running job",
        description="Cancel a job by id. A running job stops between batches; a finished one is left as it is.",
    )
    p.add_argument("id", help="the job id")
    p.set_defaults(func=cmd_cancel)
