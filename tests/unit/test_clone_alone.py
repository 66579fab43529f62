"""A clone stands alone: the default test run reads no data from beside the repository."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"SHARED_DATA|shared/data|parents\[2\]\s*/\s*\"shared\"")
ALLOWED = {"helpers.py", "test_quality.py", "test_clone_alone.py"}
"""helpers.py names the folder; the slow STS test (not in `make test`) needs it and says so when it is missing."""


def test_no_default_test_reads_data_from_outside_the_repository() -> None:
    readers = sorted(
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if path.name not in ALLOWED and OUTSIDE.search(path.read_text())
    )
    assert readers == []


def test_the_shipped_sample_holds_the_texts_the_tests_ask_for() -> None:
    from tests import helpers

    assert len(helpers.banking_texts(2000)) == 2000
    assert all(text.strip() for text in helpers.banking_texts(2000))
