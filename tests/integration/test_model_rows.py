"""Model version rows: per dtype and backend, and names resolve to the version registered last."""

from __future__ import annotations

from api_client.store import models as models_read
from embedq.worker.store import models as models_store


def row(
    db,
    sha: str,
    *,
    dtype: str = "float32",
    backend: str = "torch",
    register: bool = False,
    path: str = "/m",
    name: str = "rows-test",
):
    return models_store.upsert_model(
        conn=db,
        name=name,
        sha256=sha * 64,
        artifact_path=f"{path}/{sha}",
        dimension=4,
        max_seq_length=8,
        config={},
        dtype=dtype,
        backend=backend,
        register=register,
    )


def test_float16_vectors_get_their_own_version_row(db) -> None:
    assert row(db, "a").id != row(db, "a", dtype="float16").id
    assert row(db, "a").id == row(db, "a").id


def test_another_backend_of_the_same_files_is_another_version(db) -> None:
    torch_row = row(db, "b")
    onnx_row = row(db, "b", backend="onnx")
    assert onnx_row.id != torch_row.id
    assert (onnx_row.backend, torch_row.backend) == ("onnx", "torch")
    assert row(db, "b", backend="onnx").id == onnx_row.id


def test_a_name_resolves_to_the_version_registered_last(db) -> None:
    v1 = row(db, "1", register=True)
    v2 = row(db, "2", register=True)
    assert models_read.resolve_model(conn=db, name="rows-test").id == v2.id
    row(db, "1", register=True)  # roll back to v1
    assert models_read.resolve_model(conn=db, name="rows-test").id == v1.id
    # A worker recording a version it happens to load (say on a GPU) changes nothing.
    row(db, "2", dtype="float16")
    assert models_read.resolve_model(conn=db, name="rows-test").id == v1.id


def test_an_unregistered_name_resolves_to_its_newest_row(db) -> None:
    assert models_read.resolve_model(conn=db, name="never-seen") is None
    row(db, "3", name="rows-unregistered")
    newest = row(db, "4", name="rows-unregistered")
    resolved = models_read.resolve_model(conn=db, name="rows-unregistered")
    assert resolved.id == newest.id and not resolved.registered
