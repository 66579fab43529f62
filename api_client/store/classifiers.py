"""Queries of classifiers and their versions: create, describe, list, promote, roll back.

A classifier is a name over one embedding model; each trained (or zero-shot)
version is a row of ``classifier_versions``. ``active_version`` is what
``classify`` uses unless a request names a version; ``history`` keeps the
versions active before it, most recent last, so a rollback is one update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api_client.errors import BadRequest, UnknownClassifier
from api_client.schemas import DEFAULT_MODEL

ANCHORS = "anchors"


@dataclass(frozen=True)
class Version:
    """One version of a classifier, with what a worker needs to run it."""

    classifier_id: int
    name: str
    model: str
    version: int
    method: str
    labels: list[str]
    params: dict[str, Any]
    metrics: dict[str, Any]
    threshold: float | None
    model_id: int | None
    artifact_path: str | None
    sha256: str | None
    active: bool

    def describe(self) -> dict[str, Any]:
        """The version as users see it (``classifier_versions``)."""
        return {
            "version": self.version,
            "method": self.method,
            "active": self.active,
            "labels": self.labels,
            "threshold": self.threshold,
            "metrics": self.metrics,
            "params": self.params,
        }


_VERSION = """
SELECT c.id, c.name, c.model, v.version, v.method, v.labels, v.params, v.metrics, v.threshold,
       v.model_id, v.artifact_path, v.sha256, v.version = c.active_version
FROM classifiers c JOIN classifier_versions v ON v.classifier_id = c.id
"""


def get_version(*, conn: psycopg.Connection, name: str, version: int | None = None) -> Version:
    """Version ``version`` of classifier ``name``, or its active one; ``UnknownClassifier`` if there is none."""
    if version is None:
        row = conn.execute(_VERSION + " WHERE c.name = %s AND v.version = c.active_version", (name,)).fetchone()
    else:
        row = conn.execute(_VERSION + " WHERE c.name = %s AND v.version = %s", (name, version)).fetchone()
    if row is None:
        raise _unknown(conn, name, version)
    return Version(*row)


def _unknown(conn: psycopg.Connection, name: str, version: int | None) -> UnknownClassifier:
    row = conn.execute(
        "SELECT coalesce(array_agg(v.version ORDER BY v.version) FILTER (WHERE v.version IS NOT NULL), '{}') "
        "FROM classifiers c "
        "LEFT JOIN classifier_versions v ON v.classifier_id = c.id WHERE c.name = %s GROUP BY c.id",
        (name,),
    ).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("SELECT name FROM classifiers ORDER BY name LIMIT 20")]
        return UnknownClassifier(
            f"unknown classifier {name!r} (classifiers: {', '.join(known) or 'none'}); create one with "
            "create_classifier() or train one with train_classifier()",
            detail={"classifier": name},
        )
    versions = row[0]
    if not versions:
        return UnknownClassifier(
            f"classifier {name!r} has no version yet: train one with train_classifier()",
            detail={"classifier": name},
        )
    wanted = f"no version {version}" if version is not None else "no active version"
    return UnknownClassifier(
        f"classifier {name!r} has {wanted} (versions: {', '.join(map(str, versions))})",
        detail={"classifier": name, "version": version, "versions": versions},
    )


def ensure_classifier(*, conn: psycopg.Connection, name: str, model: str | None) -> dict[str, Any]:
    """The classifier ``name``, created over ``model`` (default: the default model) if missing;
    ``BadRequest`` if it exists over another model than the one named."""
    conn.execute(
        "INSERT INTO classifiers (name, model) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
        (name, model or DEFAULT_MODEL),
    )
    return check_model(describe(conn=conn, name=name), model)


def check_model(info: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The classifier ``info`` (as ``describe`` gives it), unless ``model`` names another model than its own."""
    if model is not None and info["model"] != model:
        raise BadRequest(
            f"model: classifier {info['name']!r} uses model {info['model']!r}, not {model!r}; a classifier reads "
            "one model's embeddings (use another name for another model)",
            detail={"field": "model", "classifier": info["name"], "model": info["model"]},
        )
    return info


def find(*, conn: psycopg.Connection, name: str) -> dict[str, Any] | None:
    """The classifier ``name`` as ``describe`` gives it, or ``None`` if there is none."""
    row = conn.execute(_DESCRIBE + " WHERE c.name = %s GROUP BY c.id", (name,)).fetchone()
    return _describe(row) if row is not None else None


def lock(*, conn: psycopg.Connection, name: str, model: str | None) -> tuple[int, int | None]:
    """``(id, active version)`` of classifier ``name`` (created as ``ensure_classifier`` creates it), locked
    until the transaction ends: a new version is numbered and activated under this lock."""
    ensure_classifier(conn=conn, name=name, model=model)
    row = conn.execute("SELECT id, active_version FROM classifiers WHERE name = %s FOR UPDATE", (name,)).fetchone()
    assert row is not None  # just ensured, and classifiers are never deleted
    return row[0], row[1]


def add_anchor_version(*, conn: psycopg.Connection, name: str, labels: dict[str, list[str]]) -> dict[str, Any]:
    """A zero-shot version of ``name`` from label descriptions, unless its latest anchors version has them.

    Active at once when the classifier has no active version yet.
    """
    with conn.transaction():
        locked = conn.execute(
            "SELECT id, active_version FROM classifiers WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        if locked is None:
            raise _unknown(conn, name, None)
        classifier_id, active = locked
        latest = conn.execute(
            "SELECT params FROM classifier_versions WHERE classifier_id = %s AND method = %s "
            "ORDER BY version DESC LIMIT 1",
            (classifier_id, ANCHORS),
        ).fetchone()
        if latest is None or latest[0].get("descriptions") != labels:
            insert_version(
                conn=conn,
                classifier_id=classifier_id,
                method=ANCHORS,
                labels=list(labels),
                params={"descriptions": labels},
                metrics={},
                parent_version=active,
                activate=active is None,
            )
    return describe(conn=conn, name=name)


def insert_version(
    *,
    conn: psycopg.Connection,
    classifier_id: int,
    method: str,
    labels: list[str],
    params: dict[str, Any],
    metrics: dict[str, Any],
    parent_version: int | None,
    activate: bool,
    threshold: float | None = None,
    fingerprint: str | None = None,
    model_id: int | None = None,
    artifact_path: str | None = None,
    sha256: str | None = None,
    job_id: str | None = None,
) -> int:
    """Insert the next version of a classifier (its row must be locked by the caller); its number."""
    row = conn.execute(
        "INSERT INTO classifier_versions (classifier_id, version, method, labels, params, metrics, threshold, "
        "fingerprint, parent_version, model_id, artifact_path, sha256, job_id) "
        "SELECT %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s "
        "FROM classifier_versions WHERE classifier_id = %s RETURNING version",
        (
            classifier_id,
            method,
            Jsonb(labels),
            Jsonb(params),
            Jsonb(metrics),
            threshold,
            fingerprint,
            parent_version,
            model_id,
            artifact_path,
            sha256,
            job_id,
            classifier_id,
        ),
    ).fetchone()
    assert row is not None  # INSERT ... SELECT of an aggregate inserts one row
    version = int(row[0])
    if activate:
        _activate(conn, classifier_id, version)
    return version


def _activate(conn: psycopg.Connection, classifier_id: int, version: int) -> None:
    conn.execute(
        "UPDATE classifiers SET history = CASE WHEN active_version IS NULL OR active_version = %s THEN history "
        "ELSE array_append(history, active_version) END, active_version = %s, updated_at = now() WHERE id = %s",
        (version, version, classifier_id),
    )


_DESCRIBE = """
SELECT c.name, c.model, c.active_version, c.history, c.created_at, count(v.version),
       (SELECT jsonb_build_object('method', a.method, 'labels', a.labels, 'threshold', a.threshold,
                                  'metrics', a.metrics)
        FROM classifier_versions a WHERE a.classifier_id = c.id AND a.version = c.active_version)
FROM classifiers c LEFT JOIN classifier_versions v ON v.classifier_id = c.id
"""


def _describe(row: tuple[Any, ...]) -> dict[str, Any]:
    active = row[6] or {}
    return {
        "name": row[0],
        "model": row[1],
        "active_version": row[2],
        "history": list(row[3]),
        "created_at": row[4].isoformat(),
        "versions": row[5],
        "method": active.get("method"),
        "labels": active.get("labels"),
        "threshold": active.get("threshold"),
        "metrics": active.get("metrics"),
    }


def describe(*, conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """Name, model, active version (its method, labels, threshold, metrics) and how many versions."""
    info = find(conn=conn, name=name)
    if info is None:
        raise _unknown(conn, name, None)
    return info


def list_classifiers(*, conn: psycopg.Connection) -> list[dict[str, Any]]:
    return [_describe(row) for row in conn.execute(_DESCRIBE + " GROUP BY c.id ORDER BY c.name")]


def versions(*, conn: psycopg.Connection, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, oldest first, with its method, metrics, threshold, data fingerprint and parent."""
    describe(conn=conn, name=name)
    rows = conn.execute(
        "SELECT v.version, v.method, v.version = c.active_version, v.labels, v.params, v.metrics, v.threshold, "
        "v.fingerprint, v.parent_version, v.model_id, v.job_id, v.created_at "
        "FROM classifiers c JOIN classifier_versions v ON v.classifier_id = c.id WHERE c.name = %s "
        "ORDER BY v.version",
        (name,),
    ).fetchall()
    keys = (
        "version",
        "method",
        "active",
        "labels",
        "params",
        "metrics",
        "threshold",
        "fingerprint",
        "parent_version",
        "model_id",
        "job_id",
        "created_at",
    )
    out = []
    for row in rows:
        item = dict(zip(keys, row, strict=True))
        item["job_id"] = str(item["job_id"]) if item["job_id"] else None
        item["created_at"] = item["created_at"].isoformat()
        out.append(item)
    return out


def promote(*, conn: psycopg.Connection, name: str, version: int) -> dict[str, Any]:
    """Make ``version`` the active version of ``name`` (the one it replaces is kept for a rollback)."""
    with conn.transaction():
        found = get_version(conn=conn, name=name, version=version)
        conn.execute("SELECT 1 FROM classifiers WHERE id = %s FOR UPDATE", (found.classifier_id,))
        _activate(conn, found.classifier_id, version)
    return describe(conn=conn, name=name)


def rollback(*, conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """Make the version active before the current one active again; ``BadRequest`` if there is none."""
    with conn.transaction():
        row = conn.execute(
            "SELECT id, active_version, history FROM classifiers WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        if row is None:
            raise _unknown(conn, name, None)
        if not row[2]:
            raise BadRequest(
                f"classifier {name!r}: no earlier active version to roll back to (active: {row[1]})",
                detail={"classifier": name, "active_version": row[1]},
            )
        conn.execute(
            "UPDATE classifiers SET active_version = history[cardinality(history)], "
            "history = history[1:cardinality(history) - 1], updated_at = now() WHERE id = %s",
            (row[0],),
        )
    return describe(conn=conn, name=name)
