from __future__ import annotations

import json

from embedq.worker.handling import MAX_RECORDED, recordable


def test_refused_messages_are_stored_without_nul_and_bounded() -> None:
    assert recordable({"kwargs": {"request": "a\x00b"}}) == {"kwargs": {"request": "a\ufffdb"}}
    huge = recordable({"kwargs": {"request": "x" * (2 * MAX_RECORDED)}})
    assert huge["length"] > 2 * MAX_RECORDED
    assert len(huge["truncated"]) == MAX_RECORDED
    assert "\\u0000" not in json.dumps(recordable({"odd": object()}))
