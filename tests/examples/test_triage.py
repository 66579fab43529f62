"""examples/triage.py: train, index, triage and group new tickets, against the real worker and model."""

from __future__ import annotations

import re

from tests.examples.running import run_example

EXPECTED = {
    "The ATM swallowed my card and won't give it back": "card_swallowed",
    "The cash machine kept my card, how do I get it back?": "card_swallowed",
    "I want to close my account": "terminate_account",
    "I'd like to close my account and leave the bank": "terminate_account",
    "My card got charged twice for the same thing": "transaction_charged_twice",
    "I was charged twice for one purchase": "transaction_charged_twice",
    "How do I set a new PIN for my card?": "change_pin",
    "Somebody stole my phone, can they get into my banking app?": "lost_or_stolen_phone",
}


def test_triage_prints_categories_duplicates_and_topics(example_env, eq, unique_name: str) -> None:
    out = run_example(["examples/triage.py", "--name", unique_name], example_env)

    accuracy = re.search(rf"^classifier {unique_name} v1: held-out accuracy (\S+),", out, re.MULTILINE)
    assert accuracy and float(accuracy.group(1)) >= 0.9, out
    assert f"collection {unique_name}: 200 past tickets, index v1" in out
    categories = dict(re.findall(r"^(\S.*)\n  category:   (\w+) \(", out, re.MULTILINE))
    assert categories == EXPECTED, out
    near_duplicate = re.search(
        r"^My card got charged twice for the same thing\n  category: .*\n"
        r"  duplicate\?  T-154 \((\S+)\) My card got charged twice for the same thing!$",
        out,
        re.MULTILINE,
    )
    assert near_duplicate and float(near_duplicate.group(1)) >= 0.9, out
    assert re.search(r"^Somebody stole my phone.*\n  category: .*\n\ntopics:", out, re.MULTILINE), out  # no duplicate

    topics = {frozenset(line.split(" | ")) for line in re.findall(r"^  \d+\. (.*)$", out, re.MULTILINE)}
    tickets = list(EXPECTED)
    assert topics == {frozenset(tickets[0:2]), frozenset(tickets[2:4]), frozenset(tickets[4:6])}, out
    assert "(2 tickets in no topic)" in out
    assert eq.collection(unique_name)["size"] == 200
