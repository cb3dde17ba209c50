"""A tiny HotpotQA-format dataset written per test (the unit tests never read ../shared data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RECORDS = [
    {
        "id": "q1",
        "question": "Which city hosts the museum founded by the painter of Blue Dawn?",
        "answer": "Lyonsford",
        "type": "bridge",
        "supporting_facts": {"title": ["Blue Dawn", "Mara Quell"], "sent_id": [0, 1]},
        "context": {
            "title": ["Blue Dawn", "Mara Quell", "Red Dusk", "Harbour Gallery"],
            "sentences": [
                ["Blue Dawn is a 1921 painting by Mara Quell.", " It hangs in a private house."],
                ["Mara Quell was a painter.", " She founded the Quell Museum in Lyonsford."],
                ["Red Dusk is a painting by Tom Arde.", " It was lost in 1950."],
                ["Harbour Gallery is an art gallery in Portwell.", " It opened in 1988."],
            ],
        },
    },
    {
        "id": "q2",
        "question": "Which river flows through the capital of Vantoria?",
        "answer": "the Sella",
        "type": "bridge",
        "supporting_facts": {"title": ["Vantoria", "Oberhal"], "sent_id": [0, 0]},
        "context": {
            "title": ["Vantoria", "Oberhal", "Kessin", "Dunmar River"],
            "sentences": [
                ["Vantoria is a country whose capital is Oberhal."],
                ["Oberhal lies on the banks of the Sella river."],
                ["Kessin is a town on the Dunmar River."],
                ["The Dunmar River flows north into the sea."],
            ],
        },
    },
    {
        "id": "q3",
        "question": "Are Grelt Tower and Pillan Spire in the same country?",
        "answer": "no",
        "type": "comparison",
        "supporting_facts": {"title": ["Grelt Tower", "Pillan Spire"], "sent_id": [0, 0]},
        "context": {
            "title": ["Grelt Tower", "Pillan Spire", "Orm Bridge", "Tassel Hall"],
            "sentences": [
                ["Grelt Tower is a tower in Norland."],
                ["Pillan Spire is a spire in Sudmark."],
                ["Orm Bridge is a bridge in Norland."],
                ["Tassel Hall is a concert hall in Sudmark."],
            ],
        },
    },
]


@pytest.fixture()
def hotpot_file(tmp_path: Path) -> Path:
    path = tmp_path / "mini.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n", encoding="utf-8")
    return path
