"""Ticket triage for a support desk: a category for each new ticket, its likely duplicates, and topics.

The desk's past tickets (examples/data/past_tickets.csv, 200 labelled Banking77 texts; see
examples/data/SOURCE.md) train a classifier and fill a collection. Each new ticket then gets a
category (or "abstained": a person should look at it) and the past tickets it likely duplicates,
and the new tickets are grouped into topics.

Run it while embedq is up (`make run` in another shell), from the repository root:

    .venv/bin/python examples/triage.py                      # the sample new tickets below
    .venv/bin/python examples/triage.py "the ATM ate my card" "I was billed twice"
    .venv/bin/python examples/triage.py --name my-desk ...   # the classifier's and collection's name
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from api_client import EmbedQ

PAST_TICKETS = Path(__file__).resolve().parent / "data" / "past_tickets.csv"
NEW_TICKETS = [
    "The ATM swallowed my card and won't give it back",
    "The cash machine kept my card, how do I get it back?",
    "I want to close my account",
    "I'd like to close my account and leave the bank",
    "My card got charged twice for the same thing",
    "I was charged twice for one purchase",
    "How do I set a new PIN for my card?",
    "Somebody stole my phone, can they get into my banking app?",
]


def past_tickets() -> list[dict]:
    """The labelled past tickets as collection documents, ids ``T-001``... in file order."""
    with PAST_TICKETS.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {"id": f"T-{n:03d}", "text": row["text"], "metadata": {"category": row["label"]}}
        for n, row in enumerate(rows, start=1)
    ]


def category(prediction: dict) -> str:
    if prediction["abstained"]:
        return f"abstained (best guess {prediction['label']}, {prediction['score']:.2f})"
    return f"{prediction['label']} ({prediction['score']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tickets", nargs="*", default=NEW_TICKETS, help="new tickets (default: a sample)")
    parser.add_argument("--name", default="support-desk", help="the classifier's and the collection's name")
    args = parser.parse_args()
    documents = past_tickets()

    with EmbedQ.from_env() as eq:
        texts = [doc["text"] for doc in documents]
        labels = [doc["metadata"]["category"] for doc in documents]
        report = eq.train_classifier(args.name, texts, labels, method="logreg").result(timeout=600)
        print(
            f"classifier {args.name} v{report['version']}: held-out accuracy {report['accuracy']:.2f}, "
            f"answers {report['coverage']:.0%} of tickets (abstains under {report['threshold']:.2f})"
        )

        eq.create_collection(args.name)
        eq.upsert(args.name, documents).result(timeout=600)
        index = eq.build_index(args.name).result(timeout=600)
        print(f"collection {args.name}: {index['count']} past tickets, index v{index['index_version']}\n")

        triaged = eq.triage(args.name, collection=args.name, texts=args.tickets, k=3, version=report["version"]).result(
            timeout=120
        )
        for ticket, record in zip(args.tickets, triaged, strict=True):
            print(ticket)
            print(f"  category:   {category(record['category'])}")
            for hit in record["duplicates"]:
                print(f"  duplicate?  {hit['id']} ({hit['score']:.2f}) {hit['text']}")

        topics = eq.cluster(args.tickets, threshold=0.6, min_size=2).result(timeout=120)
        print("\ntopics:")
        for number, members in enumerate(topics, start=1):
            print(f"  {number}. " + " | ".join(args.tickets[i] for i in members))
        alone = len(args.tickets) - sum(len(members) for members in topics)
        print(f"  ({alone} tickets in no topic)")


if __name__ == "__main__":
    main()
