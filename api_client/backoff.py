"""Retry backoff: a pure function."""

from __future__ import annotations

import random


def compute_backoff(
    attempt: int,
    *,
    base: float = 1.0,
    factor: float = 2.0,
    cap: float = 300.0,
    jitter: float = 0.1,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): ``base * factor**(attempt-1)``, capped.

    ``jitter`` spreads the delay by up to that fraction either way, so jobs that
    failed together do not retry together.
    """
    delay = min(cap, base * factor ** max(0, attempt - 1))
    spread = (rng or random).uniform(-jitter, jitter) * delay
    return max(0.0, min(cap, delay + spread))
