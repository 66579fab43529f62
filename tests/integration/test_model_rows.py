"""Model version rows: per dtype, and names resolve to the version registered last."""

from __future__ import annotations

from api_client.store import models as models_store


def row(db, sha: str, *, dtype: str = "float32", register: bool = False, path: str = "/m"):
    return models_store.upsert_model(
        conn=db,
        name="rows-test",
        sha256=sha * 64,
        artifact_path=f"{path}/{sha}",
        dimension=4,
        max_seq_length=8,
        config={},
        dtype=dtype,
        register=register,
    )


def test_float16_vectors_get_their_own_version_row(db) -> None:
    assert row(db, "a").id != row(db, "a", dtype="float16").id
    assert row(db, "a").id == row(db, "a").id


def test_a_name_resolves_to_the_version_registered_last(db) -> None:
    v1 = row(db, "1", register=True)
    v2 = row(db, "2", register=True)
    assert models_store.registered_model(conn=db, name="rows-test").id == v2.id
    row(db, "1", register=True)  # roll back to v1
    assert models_store.registered_model(conn=db, name="rows-test").id == v1.id
    # A worker recording a version it happens to load (say on a GPU) changes nothing.
    row(db, "2", dtype="float16")
    assert models_store.registered_model(conn=db, name="rows-test").id == v1.id
