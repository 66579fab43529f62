"""`embedq up` to ready: a cold start (new data dir), a warm start, and the next start after SIGKILL.

Ready means `embedq up` printed "embedq is up" (its worker consumes and the env
file is written). The third figure runs from the SIGKILL of the previous `embedq
up` to the next one being ready, the leftovers of the killed one stopped on the
way. There is no direct-library counterpart: this is the service's own start.
Run from the repository root: ``.venv/bin/python bench/up.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stack import parser, table, write_record


def start(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start `embedq up` and return it once ready, with the seconds it took."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDQ_")} | {"HF_HUB_OFFLINE": "1"}
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "embedq.worker.cli", "up", "--data-dir", str(data_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = t0 + 300
    while "embedq is up" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"embedq up did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    return proc, time.monotonic() - t0


def main() -> int:
    args = parser(__doc__).parse_args()
    with tempfile.TemporaryDirectory(prefix="embedq-bench-up-") as tmp:
        data_dir, log = Path(tmp) / "stack", Path(tmp) / "up.log"
        proc, cold = start(data_dir, log)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        proc, warm = start(data_dir, log)
        killed_at = time.monotonic()
        proc.kill()
        proc.wait()
        proc, _ = start(data_dir, log)
        after_kill = time.monotonic() - killed_at
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(120)
    table([("cold start, s", cold, None), ("warm start, s", warm, None), ("SIGKILL to ready, s", after_kill, None)])
    print(f"clean stop after the recovery: exit status {status}")
    write_record("up", args, {"cold_s": cold, "warm_s": warm, "sigkill_to_ready_s": after_kill, "stop_status": status})
    return 0


if __name__ == "__main__":
    sys.exit(main())
