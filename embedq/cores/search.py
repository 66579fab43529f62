"""Merging the hits of a search: the active index and the delta of documents changed since its build.

Pure: arrays and ids in, ``(id, score)`` lists out. An index hit whose
document changed after the build (``stale``) is dropped, since its current
version, if it still exists, is in the delta.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

Hits = tuple[np.ndarray, np.ndarray]
"""``(scores [nq, k], labels [nq, k])`` as ``embedq.cores.index.search`` returns them (-1 labels are padding)."""


def merge(
    *,
    index_hits: Hits | None,
    index_ids: list[str],
    stale: Collection[str],
    delta_hits: Hits | None,
    delta_ids: list[str],
    k: int,
    threshold: float | None = None,
) -> list[list[tuple[str, float]]]:
    """Per query, the best ``k`` hits of both sources at or above ``threshold``, best first (ties by id)."""
    sources = [(hits, ids) for hits, ids in ((index_hits, index_ids), (delta_hits, delta_ids)) if hits is not None]
    nq = sources[0][0][0].shape[0] if sources else 0
    merged: list[list[tuple[str, float]]] = []
    for row in range(nq):
        found: dict[str, float] = {}
        for (scores, labels), ids in sources:
            for score, label in zip(scores[row].tolist(), labels[row].tolist(), strict=True):
                if label < 0:
                    continue
                doc_id = ids[label]
                if ids is index_ids and doc_id in stale:
                    continue
                if threshold is not None and score < threshold:
                    continue
                found[doc_id] = max(score, found.get(doc_id, float("-inf")))
        merged.append(sorted(found.items(), key=lambda item: (-item[1], item[0]))[:k])
    return merged
