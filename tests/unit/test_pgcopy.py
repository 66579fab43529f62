from __future__ import annotations

import numpy as np
import pytest

from api_client import pgcopy
from embedq.worker.store import copy


def test_embedding_rows_have_the_binary_copy_layout() -> None:
    vectors = np.array([[1.0, -2.5]], dtype=np.float32)
    body = copy.embedding_rows(7, [b"k" * 32], vectors)
    assert body.startswith(b"PGCOPY\n\xff\r\n\x00")
    row = body[19:-2]
    assert row[:2] == (3).to_bytes(2, "big")
    assert row[2:10] == (4).to_bytes(4, "big") + (7).to_bytes(4, "big")
    assert row[10:46] == (32).to_bytes(4, "big") + b"k" * 32
    assert row[46:50] == (12).to_bytes(4, "big")
    assert row[50:54] == (2).to_bytes(2, "big") + b"\x00\x00"
    assert np.frombuffer(row[54:], dtype=">f4").tolist() == [1.0, -2.5]
    assert body.endswith(b"\xff\xff")


def test_parse_vectors_reads_a_one_column_copy_stream() -> None:
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    rows = b"".join(
        (1).to_bytes(2, "big")
        + (20).to_bytes(4, "big")
        + (4).to_bytes(2, "big")
        + b"\x00\x00"
        + v.astype(">f4").tobytes()
        for v in vectors
    )
    parsed = pgcopy.parse_vectors(pgcopy.HEADER + rows + pgcopy.TRAILER)
    np.testing.assert_array_equal(parsed, vectors)
    assert parsed.dtype == np.float32
    assert pgcopy.parse_vectors(pgcopy.HEADER + pgcopy.TRAILER).shape == (0, 0)
    with pytest.raises(ValueError, match="not a PostgreSQL binary COPY"):
        pgcopy.parse_vectors(b"nonsense")
