"""The collection kinds: upsert, delete, build_index, search and reindex.

Their request schemas are the parsers of ``api_client.schemas_collections``,
run through ``Request.parse`` by every caller.
"""

from __future__ import annotations

from typing import Any

import psycopg

from api_client import results
from api_client.kinds import Kind, declare, summing
from api_client.requests import Context, Limits, Request
from api_client.schemas_collections import (
    parse_build_request,
    parse_delete_request,
    parse_reindex_request,
    parse_search_request,
    parse_upsert_request,
)
from api_client.store.jobs import Chunk, split_list


def _schema(name: str, parse: Any) -> type[Request]:
    def parsed(_cls: type[Request], raw: Any, context: Context | Limits | None = None) -> Any:
        limits = context.limits if isinstance(context, Context) else context or Limits()
        return parse(raw, limits)

    return type(name, (Request,), {"parse": classmethod(parsed)})


def split_reindex(conn: psycopg.Connection, request: dict[str, Any], size: int) -> list[Chunk] | None:
    """Chunks of ``size`` documents in id order: each re-embeds its range with the new model."""
    from api_client.store.collections import chunk_starts, describe

    collection = describe(conn=conn, name=request["collection"])
    starts = chunk_starts(conn=conn, collection_id=collection["id"], size=size)
    if len(starts) < 2:
        return None
    bounds = [*starts[1:], None]
    return [
        Chunk({**request, "id_from": start, "id_to": stop}, min(size, collection["size"] - i * size), i * size)
        for i, (start, stop) in enumerate(zip(starts, bounds, strict=True))
    ]


UPSERT = declare(
    Kind(
        name="upsert",
        request=_schema("UpsertRequest", parse_upsert_request),
        read_result=results.read_summary,
        output="documents of the collection (the summary counts them)",
        text_fields=("texts",),
        split=lambda _conn, request, size: split_list(request, "documents", size),
        merge=summing("count", "cached", "encoded", "changed"),
    )
)
DELETE = declare(
    Kind(
        name="delete",
        request=_schema("DeleteRequest", parse_delete_request),
        read_result=results.read_summary,
        output="documents of the collection (the summary counts them)",
        text_fields=("ids",),
        lane="interactive",
    )
)
BUILD_INDEX = declare(
    Kind(
        name="build_index",
        request=_schema("BuildRequest", parse_build_request),
        read_result=results.read_summary,
        output="index_versions (the summary names the version)",
        lane="batch",
    )
)
SEARCH = declare(
    Kind(
        name="search",
        request=_schema("SearchRequest", parse_search_request),
        read_result=results.read_hits,
        output="search_results: hits (jsonb) by item (query)",
        text_fields=("queries",),
        lane="interactive",
    )
)
REINDEX = declare(
    Kind(
        name="reindex",
        request=_schema("ReindexRequest", parse_reindex_request),
        read_result=results.read_summary,
        output="index_versions and collections (the summary names the new version and its gate)",
        lane="batch",
        split=split_reindex,
        finalize=True,
    )
)
