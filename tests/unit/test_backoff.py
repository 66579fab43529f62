from __future__ import annotations

import random

from api_client.backoff import compute_backoff


def test_backoff_doubles_and_caps() -> None:
    delays = [compute_backoff(n, base=1, cap=10, jitter=0) for n in range(1, 7)]
    assert delays == [1, 2, 4, 8, 10, 10]


def test_jitter_stays_within_its_fraction() -> None:
    rng = random.Random(7)
    delays = [compute_backoff(3, base=1, jitter=0.1, rng=rng) for _ in range(200)]
    assert all(3.6 <= d <= 4.4 for d in delays)
    assert len(set(delays)) > 100
