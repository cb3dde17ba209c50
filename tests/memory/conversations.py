"""Small conversations written for these tests (no dataset needed: a fresh clone has no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SESSIONS: list[dict[str, Any]] = [
    {
        "id": "s1",
        "date": "1:56 pm on 8 May, 2023",
        "turns": [
            {
                "speaker": "Caroline",
                "text": "Hey Mel! I went to the LGBTQ support group yesterday.",
                "id": "D1:1",
            },
            {
                "speaker": "Melanie",
                "text": "That's great! I painted a sunrise over the lake last year.",
                "id": "D1:2",
            },
            {"speaker": "Caroline", "text": "I want to study counseling and psychology.", "id": "D1:3"},
        ],
    },
    {
        "id": "s2",
        "date": "2023-06-09T10:00",
        "turns": [
            {
                "speaker": "Melanie",
                "text": "We went camping at the beach last week with the kids.",
                "id": "D2:1",
            },
            {"speaker": "Caroline", "text": "I adopted a grey cat named Pixel two days ago.", "id": "D2:2"},
            {
                "speaker": "Melanie",
                "text": "My daughter plays the violin in the school orchestra.",
                "id": "D2:3",
            },
        ],
    },
]


def locomo_sample(sample_id: str = "conv-t1") -> dict[str, Any]:
    """The sessions above in LoCoMo's shape, with three questions."""
    conv: dict[str, Any] = {"speaker_a": "Caroline", "speaker_b": "Melanie"}
    for n, session in enumerate(SESSIONS, start=1):
        conv[f"session_{n}_date_time"] = "1:56 pm on 8 May, 2023" if n == 1 else "10:00 am on 9 June, 2023"
        conv[f"session_{n}"] = [
            {"speaker": t["speaker"], "dia_id": t["id"], "text": t["text"]} for t in session["turns"]
        ]
    qa = [
        {
            "question": "When did Caroline go to the LGBTQ support group?",
            "answer": "7 May 2023",
            "evidence": ["D1:1"],
            "category": 2,
        },
        {
            "question": "What is the name of Caroline's cat?",
            "answer": "Pixel",
            "evidence": ["D2:2"],
            "category": 4,
        },
        {
            "question": "What did Caroline say about her dog?",
            "adversarial_answer": "a dog",
            "evidence": [],
            "category": 5,
        },
    ]
    return {"sample_id": sample_id, "conversation": conv, "qa": qa}


def write_jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in SESSIONS), encoding="utf-8")
    return path
