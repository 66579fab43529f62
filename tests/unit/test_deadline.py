"""Time limits the solo pool cannot get from Celery: a soft limit raised in the job's thread, a hard one exits."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from billiard.exceptions import SoftTimeLimitExceeded

from embedq.worker.deadline import HARD_LIMIT_EXIT, time_limits


def test_the_soft_limit_interrupts_python_code_and_a_finished_block_is_left_alone() -> None:
    started = time.monotonic()
    with pytest.raises(SoftTimeLimitExceeded), time_limits("job", 0.2, None):
        while time.monotonic() - started < 10:
            pass
    assert time.monotonic() - started < 2
    with time_limits("job", 0.2, 0.4):
        pass
    time.sleep(0.6)  # the timers were cancelled: nothing is raised, the process lives


def test_the_hard_limit_ends_a_process_stuck_in_c_code() -> None:
    code = (
        "import time\nfrom embedq.worker.deadline import time_limits\n"
        "with time_limits('stuck', 0.2, 0.5):\n    time.sleep(30)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert done.returncode == HARD_LIMIT_EXIT and time.monotonic() - started < 10
    assert "ran past its hard time limit" in done.stderr
