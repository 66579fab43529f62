"""The rerank core: a CrossEncoder rescoring a query's candidate texts.

A cross-encoder folder is a transformers sequence-classification model (its
``config.json`` names a ``*ForSequenceClassification`` architecture) with no
sentence-transformers ``modules.json``. Loaded offline, ``trust_remote_code``
off, once per process and content hash.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from api_client.errors import UnknownModel
from embedq.cores.artifacts import folder_sha256


def is_cross_encoder(path: Path) -> bool:
    """Whether ``path`` holds a cross-encoder rather than a sentence-transformers model."""
    config = path / "config.json"
    if (path / "modules.json").is_file() or not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(str(name).endswith("ForSequenceClassification") for name in architectures)


class CrossEncoders:
    """Cross-encoders loaded in this process, by content hash."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self, name: str, path: Path) -> tuple[str, Any]:
        """``(sha256, model)`` of the cross-encoder in ``path``."""
        sha256 = folder_sha256(path)
        with self._lock:
            model = self._loaded.get(sha256)
            if model is None:
                from sentence_transformers import CrossEncoder

                try:
                    model = CrossEncoder(str(path), device=self.device, local_files_only=True, trust_remote_code=False)
                except (OSError, ValueError) as exc:
                    raise UnknownModel(
                        f"cross-encoder {name!r} could not be loaded from {path}: {exc}", detail={"model": name}
                    ) from exc
                self._loaded[sha256] = model
            return sha256, model


def rerank(model: Any, query: str, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
    """Float32 relevance scores of ``(query, text)`` pairs, as ``CrossEncoder.predict`` gives them."""
    if not texts:
        return np.zeros(0, dtype=np.float32)
    scores = model.predict([(query, text) for text in texts], batch_size=batch_size, show_progress_bar=False)
    return np.asarray(scores, dtype=np.float32).reshape(len(texts), -1)[:, 0]
