"""Corpus loading (with errors that point at the bad line) and BM25 search / read over the bundled sample."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from thrifty.budget import Budget, Ledger
from thrifty.tools import (
    BM25Index,
    Corpus,
    CorpusError,
    ToolRunner,
    builtin_tools,
    bundled_dataset_path,
    load_corpus,
    make_search_tools,
)


@pytest.fixture(scope="module")
def sample() -> Corpus:
    return load_corpus(bundled_dataset_path())


@pytest.fixture(scope="module")
def first_record() -> dict[str, object]:
    with bundled_dataset_path().open(encoding="utf-8") as fh:
        return json.loads(fh.readline())  # type: ignore[no-any-return]


def test_bundled_sample_is_50_hotpotqa_questions_with_attribution() -> None:
    path = bundled_dataset_path()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 50
    assert {"question", "answer", "context", "supporting_facts"} <= set(json.loads(lines[0]))
    attribution = (path.parent / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in attribution and "Yang" in attribution
    assert (path.parent / "LICENSE.RPT.txt").is_file()
    with pytest.raises(FileNotFoundError):
        bundled_dataset_path("no-such-dataset")


def test_hotpotqa_corpus_is_the_deduplicated_union_of_context_paragraphs(
    sample: Corpus, first_record: dict[str, object]
) -> None:
    assert 400 <= len(sample) <= 500
    assert len(sample.titles) == len(sample)  # deduplicated by title
    context = first_record["context"]
    assert isinstance(context, dict)
    title, sentences = context["title"][3], context["sentences"][3]
    assert sample.text_of(title) == "".join(sentences)


def test_bm25_search_finds_the_gold_paragraphs(sample: Corpus, first_record: dict[str, object]) -> None:
    search, _read = make_search_tools(sample, k=3)
    out = search(str(first_record["question"]))
    titles = [line.removeprefix("Title: ") for line in out.splitlines() if line.startswith("Title: ")]
    assert len(titles) == 3
    assert {"Tinted Windows (album)", "Tinted Windows (band)"} <= set(titles)
    hits = BM25Index.for_corpus(sample).search("Tinted Windows band", k=2)
    assert hits[0][0].title.startswith("Tinted Windows")
    assert hits[0][1] >= hits[1][1] > 0


def test_search_snippets_are_short_and_empty_results_say_so(sample: Corpus) -> None:
    search, _read = make_search_tools(sample, k=2, snippet_chars=100)
    out = search("Tinted Windows")
    for block in out.split("\n\n"):
        assert block.startswith("Title: ")
        assert len(block.split("\n", 1)[1]) <= 110
    assert search("zxqvwy plokmijn").startswith("no results")
    assert search("the of and").startswith("no results")  # stopwords only
    assert search("   ").startswith("no results")


def test_read_by_exact_case_insensitive_and_fuzzy_title(sample: Corpus) -> None:
    _search, read = make_search_tools(sample)
    text = sample.text_of("Tinted Windows (band)")
    assert read("Tinted Windows (band)") == f"Title: Tinted Windows (band)\n{text}"
    assert read("tinted windows (BAND)").startswith("Title: Tinted Windows (band)\n")
    assert read("Tinted Windos (band)").startswith("Title: Tinted Windows (band)\n")
    partial = read("Tinted")
    assert partial.startswith("not found") and "Tinted Windows (band)" in partial
    assert read("qqqqqqqqqq").startswith("not found")


def test_index_is_fast_and_cached_per_file(sample: Corpus, tmp_path: Path) -> None:
    passages = [
        {"title": f"Doc {i}", "text": f"word{i} common text about topic {i % 17}"} for i in range(3000)
    ]
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in passages), encoding="utf-8")
    corpus = load_corpus(path)
    started = time.perf_counter()
    index = BM25Index.for_corpus(corpus)
    assert time.perf_counter() - started < 2.0
    assert BM25Index.for_corpus(load_corpus(path)) is index  # same file, same mtime: reused
    assert index.search("word1234", k=1)[0][0].title == "Doc 1234"


def test_search_tools_through_the_runner_are_priced_by_default(sample: Corpus) -> None:
    ledger = Ledger(Budget(per_tool={"search": 1}))
    tools = builtin_tools(sample)
    assert set(tools) == {"calculator", "search", "read"}
    assert set(builtin_tools()) == {"calculator"}
    runner = ToolRunner(list(tools.values()), ledger)
    obs = runner.run("search", {"query": "Tinted Windows"})
    assert obs.ok and obs.usd == pytest.approx(0.001)
    assert {t.name for t in runner.available()} == {"calculator", "read"}


# ------------------------------------------------------------------------------------------ loader
def test_load_plain_jsonl_and_json_list(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"title": "A", "text": "alpha"}\n\n{"title": "B", "text": "beta"}\n', encoding="utf-8")
    corpus = load_corpus(jsonl)
    assert [(p.title, p.text) for p in corpus] == [("A", "alpha"), ("B", "beta")]
    as_json = tmp_path / "c.json"
    hotpot = {"context": {"title": ["C", "A"], "sentences": [["gam", "ma"], ["other"]]}}
    as_json.write_text(json.dumps([{"title": "A", "text": "alpha"}, hotpot]), encoding="utf-8")
    mixed = load_corpus(as_json)
    assert mixed.text_of("C") == "gamma"
    assert mixed.text_of("A") == "alpha\n\nother"  # two passages share the title A


def test_original_hotpotqa_context_format(tmp_path: Path) -> None:
    path = tmp_path / "orig.jsonl"
    record = {"question": "q", "context": [["X", ["one. ", "two."]], ["Y", ["three."]]]}
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    corpus = load_corpus(path)
    assert corpus.titles == ["X", "Y"]
    assert corpus.text_of("X") == "one. two."


@pytest.mark.parametrize(
    ("content", "where", "problem"),
    [
        ('{"title": "A", "text": "a"}\n{"title": "B", "text": ', "line 2", "invalid JSON"),
        ('{"title": "A", "text": "a"}\n\n{"name": "B"}\n', "line 3", "expected {title, text}"),
        ('{"title": "A", "text": 3}\n', "line 1", "must be strings"),
        ('{"context": {"title": ["A", "B"], "sentences": [["x"]]}}\n', "line 1", "2 titles but 1"),
        ("[1, 2]\n", "line 1", "expected a JSON object"),
    ],
)
def test_loader_errors_name_the_file_and_line(tmp_path: Path, content: str, where: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    message = str(info.value)
    assert str(path) in message and where in message and problem in message


def test_loader_errors_for_json_files_and_missing_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(CorpusError, match="not found") as info:
        load_corpus(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, ValueError)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"title": "A", "text": "a"}, {"title": 1}]', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.json: item 1: "):
        load_corpus(bad)
    bad.write_text('{"title": "A", "text": "a"}', encoding="utf-8")
    with pytest.raises(CorpusError, match="must be a list"):
        load_corpus(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no passages"):
        load_corpus(empty)


def test_in_memory_corpus_deduplicates_identical_passages() -> None:
    corpus = Corpus([("Alpha", "xylophone"), ("Alpha", "xylophone"), ("Beta", "yodel")])
    assert len(corpus) == 2
    assert corpus.casefold_title("alpha") == "Alpha"
    index = BM25Index.for_corpus(corpus)
    assert BM25Index.for_corpus(corpus) is index
    assert [p.title for p, _ in index.search("yodel beta", k=5)] == ["Beta"]


def test_a_corpus_with_nothing_to_index_finds_nothing() -> None:
    index = BM25Index(Corpus([("A", "x"), ("B", "the")]))
    assert index.search("x the a") == []


@pytest.mark.parametrize(
    ("name", "content", "where", "fix"),
    [
        (
            "bad.jsonl",
            '{"title": "A", "text": "a"}\n{"title": "B", "text": ',
            "line 2:",
            "one whole JSON record",
        ),
        ("text.jsonl", "Alpha is a letter.\n", "line 1:", '{"title": "...", "text": "..."}'),
        ("list.jsonl", '[\n{"title": "A", "text": "a"}\n]\n', "line 1:", "needs a .json file name"),
        ("bad.json", '[{"title": "A", "text": "a"},\n {"title": ]', "line 2:", "one JSON list of records"),
        ("lines.json", '{"title": "A", "text": "a"}\n{"title": "B", "text": "b"}\n', "line 2:", ".jsonl"),
        ("object.json", '{"title": "A", "text": "a"}', "top level:", "put the records in a list"),
        ("latin1.jsonl", b'{"title": "Caf\xe9", "text": "a"}\n', "not UTF-8", "saved as UTF-8"),
        ("odd.jsonl", '{"name": "A"}\n', "line 1:", "make each record a passage"),
        ("empty.jsonl", "\n", "no passages", "add passages"),
    ],
)
def test_every_loader_error_has_a_fix(
    tmp_path: Path, name: str, content: str | bytes, where: str, fix: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and where in message
    assert "(fix: " in message and fix in message, message
    assert message.count("(fix: ") == 1


def test_missing_or_folder_corpus_errors_have_a_fix(tmp_path: Path) -> None:
    for path, fix in ((tmp_path / "nope.jsonl", "check the path"), (tmp_path, "give a file, not a folder")):
        with pytest.raises(CorpusError) as info:
            load_corpus(path)
        assert str(path) in str(info.value) and f"(fix: {fix}" in str(info.value)


def test_a_data_file_error_shows_a_question_record(tmp_path: Path) -> None:
    from thrifty.bench.datasets import DatasetError, load_dataset

    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "x?", "answer": "y"}\nnot json\n', encoding="utf-8")
    with pytest.raises(
        DatasetError, match=r'line 2: invalid JSON.*\(fix: .*\{"question": "\.\.\.", "answer"'
    ):
        load_dataset(path)
    lines = tmp_path / "qa.json"
    lines.write_text(
        '{"question": "x?", "answer": "y"}\n{"question": "z?", "answer": "w"}\n', encoding="utf-8"
    )
    with pytest.raises(DatasetError) as info:
        load_dataset(lines)
    assert "line 2" in str(info.value) and str(info.value).count("(fix: ") == 1
