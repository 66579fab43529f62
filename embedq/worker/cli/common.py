"""What the command modules share: exit statuses, the client, the extras check, writing .npy."""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """The command line asks for something impossible: one line on stderr, exit status 2."""


def client() -> Any:
    """The light client from ``EMBEDQ_*`` settings (``NotConfigured`` when there are none)."""
    from api_client import EmbedQ

    return EmbedQ.from_env()


def require(extra: str, command: str) -> None:
    """Fail with the install command before anything of ``extra`` is imported."""
    from embedq.worker.extras import require as require_extra

    require_extra(extra, command)


def refuse_terminal(path: str | None) -> None:
    """``UsageError`` when binary output would go to a terminal."""
    if path in (None, "-") and sys.stdout.isatty():
        raise UsageError("refusing to write binary .npy to a terminal; redirect stdout or use --output FILE")


def write_npy(array: Any, path: str | None) -> None:
    """``array`` as .npy to ``path`` (stdout for None or ``-``); the file is created only now."""
    import numpy as np

    refuse_terminal(path)
    if path in (None, "-"):
        np.save(sys.stdout.buffer, array)
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as output:
        np.save(output, array)
