"""The cluster core: vectors in, communities out, as ``sentence_transformers.util.community_detection`` finds them.

A community is a text whose vector has at least ``min_size`` vectors
(itself included) within cosine ``threshold``, with those neighbours, each
text in at most one community; communities come largest first, each led by
its central text. Grouping tickets this way shows emerging topics. Pure:
raw float32 vectors in, lists of text indices out.
"""

from __future__ import annotations

import numpy as np


def communities(vectors: np.ndarray, *, threshold: float, min_size: int) -> list[list[int]]:
    """The library's ``community_detection`` over ``vectors`` (``[n, dim]``; normalized inside)."""
    import torch
    from sentence_transformers.util import community_detection

    if len(vectors) == 0:
        return []
    found = community_detection(
        torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)),
        threshold=threshold,
        min_community_size=min_size,
    )
    return [[int(i) for i in community] for community in found]
