"""Dataset loading: HotpotQA files with their corpus, question/answer files, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thrifty.bench.datasets import DatasetError, load_dataset


def test_hotpotqa_file_items_and_corpus(hotpot_file: Path) -> None:
    ds = load_dataset(hotpot_file)
    assert ds.format == "hotpotqa" and len(ds) == 3 and ds.name == "mini"
    first = ds.items[0]
    assert first.id == "q1" and first.answers == ["Lyonsford"] and first.type == "bridge"
    assert first.gold_titles == ["Blue Dawn", "Mara Quell"]
    assert first.supporting["Mara Quell"] == ["She founded the Quell Museum in Lyonsford."]
    assert set(first.context) == {"Blue Dawn", "Mara Quell", "Red Dusk", "Harbour Gallery"}
    corpus = ds.corpus()
    assert corpus is not None and len(corpus) == 12  # the union of every item's paragraphs
    assert ds.head(2).items == ds.items[:2]


def test_bundled_sample_is_the_default() -> None:
    ds = load_dataset("hotpotqa")
    assert ds.name == "hotpotqa" and len(ds) == 50
    assert all(item.gold_titles for item in ds.items)


def test_bamboogle_style_json(tmp_path: Path) -> None:
    path = tmp_path / "bamboogle.json"
    path.write_text(
        json.dumps(
            [
                {"Question": "Who founded X?", "answer": ["alice", "alice b"], "id": "b1"},
                {"question": "When was Y built?", "answer": "1901"},
            ]
        )
    )
    ds = load_dataset(path)
    assert ds.format == "qa" and ds.corpus_path is None and ds.corpus() is None
    assert [i.id for i in ds.items] == ["b1", "q1"]
    assert ds.items[0].answers == ["alice", "alice b"] and ds.items[1].answers == ["1901"]
    assert ds.items[0].gold_titles == []


def test_errors_name_the_file_and_record(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{oops\n')
    with pytest.raises(DatasetError, match="line 2: invalid JSON"):
        load_dataset(bad)
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"foo": 1}\n')
    with pytest.raises(DatasetError, match="unknown record format"):
        load_dataset(odd)
    no_answer = tmp_path / "noanswer.json"
    no_answer.write_text('[{"question": "q", "answer": 3}]')
    with pytest.raises(DatasetError, match="item 0"):
        load_dataset(no_answer)
    with pytest.raises(DatasetError, match="limit"):
        load_dataset("hotpotqa").head(0)
