from pathlib import Path
from typing import Any

from api_client.errors import EmbedQError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tickets.client import embedq


class Command(BaseCommand):
    help = "Upsert a file of tickets (one per line) into an embedq collection and build its index."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="tickets, one per line")
        parser.add_argument("--collection", required=True, help="the collection's name (created if needed)")
        parser.add_argument("--model", default="all-MiniLM-L6-v2")

    def handle(self, *_args: Any, file: Path, collection: str, model: str, **_options: Any) -> None:
        lines = [line.strip() for line in file.read_text().splitlines()]
        documents = [{"id": f"{file.name}:{n}", "text": line} for n, line in enumerate(lines, start=1) if line]
        eq = embedq()
        try:
            eq.create_collection(collection, model=model)
            upserted = eq.upsert(collection, documents).result(timeout=600)
            index = eq.build_index(collection).result(timeout=600)
        except EmbedQError as exc:
            raise CommandError(f"{type(exc).__name__}: {exc.message}") from exc
        self.stdout.write(
            f"{upserted['count']} tickets upserted into {collection}: {upserted['encoded']} encoded, "
            f"{upserted['cached']} from the cache, {upserted['changed']} new or changed"
        )
        self.stdout.write(f"index version {index['index_version']} ({index['kind']}): {index['count']} documents")
