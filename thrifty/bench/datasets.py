"""QA datasets for benchmarks: one item type, one loader entry point, formats that plug in.

Two formats ship:

* ``hotpotqa`` — HotpotQA JSON lines (``id, question, answer, type, supporting_facts, context``), in the
  RPT form (``context: {title: [...], sentences: [[...]]}``) or the original (``context: [[title, [...]]]``).
  The closed corpus searched by the agent is the union of the file's context paragraphs, loaded with
  :func:`thrifty.tools.load_corpus` from the same file. ``load_dataset("hotpotqa")`` is the 50-question
  sample bundled with the package (CC BY-SA 4.0).
* ``qa`` — Bamboogle-style question/answer files: a JSON list (or JSON lines) of objects with a question
  (``question`` or ``Question``), an answer (a string or a list of strings, ``answer`` / ``answers``) and
  optionally an ``id``. They carry no passages: a run needs a corpus or search tool given by the user.

More formats plug in with :func:`register_format` (a detector and a loader).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty.tools import Corpus, bundled_dataset_path, load_corpus
from thrifty.tools.corpus import read_json_records

__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "DatasetError",
    "QAItem",
    "load_dataset",
    "register_format",
]


class DatasetError(ValueError):
    """A dataset that cannot be found or read; the message names the file and the record."""


@dataclass(frozen=True)
class QAItem:
    """One question with its gold answers.

    ``gold_titles`` are the titles of the supporting paragraphs in reasoning order (HotpotQA's
    ``supporting_facts``), empty for datasets without passages. ``supporting`` maps each gold title to its
    supporting sentences and ``context`` maps every context title of the item to its paragraph text; both
    are empty when the format has no passages (the simulated model needs them).
    """

    id: str
    question: str
    answers: list[str]
    gold_titles: list[str] = field(default_factory=list)
    type: str = ""
    supporting: dict[str, list[str]] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)


@dataclass
class Dataset:
    """Items plus where their closed corpus comes from (``corpus_path`` is None when there is none)."""

    name: str
    items: list[QAItem]
    source: Path | None = None
    corpus_path: Path | None = None
    format: str = ""

    def __len__(self) -> int:
        return len(self.items)

    def corpus(self) -> Corpus | None:
        """The closed corpus (loaded from ``corpus_path``), or None when the dataset has no passages."""
        return load_corpus(self.corpus_path) if self.corpus_path is not None else None

    def head(self, limit: int | None) -> Dataset:
        """The first ``limit`` items (all when ``limit`` is None)."""
        if limit is None:
            return self
        if limit < 1:
            raise DatasetError(f"limit must be >= 1 (got {limit})")
        return Dataset(self.name, self.items[:limit], self.source, self.corpus_path, self.format)


BUILTIN_DATASETS: dict[str, Callable[[], Path]] = {"hotpotqa": lambda: bundled_dataset_path("hotpotqa")}

Detector = Callable[[Mapping[str, Any]], bool]
Loader = Callable[[Path, list[tuple[str, Any]]], Dataset]
_FORMATS: dict[str, tuple[Detector, Loader]] = {}


def register_format(name: str, detect: Detector, load: Loader) -> None:
    """Add a file format: ``detect(first_record)`` says whether it applies, ``load(path, records)`` builds
    the Dataset from ``(where, record)`` pairs ('line N' / 'item N'). Later registrations are tried first."""
    _FORMATS[name] = (detect, load)


# --------------------------------------------------------------------------------------------- reading
def _records(path: Path) -> list[tuple[str, Any]]:
    return list(read_json_records(path, error=DatasetError, what="data file", sniff=True))


def _get(record: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        for k in (key, key.capitalize(), key.upper()):
            if k in record:
                return record[k]
    return None


def _answers(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("the answer must be a string or a non-empty list of strings")


def _pairs(value: Any, field: str, first: str, second: str) -> list[tuple[Any, Any]]:
    """``{first: [...], second: [...]}`` (the RPT form) or ``[[first, second], ...]`` (the original) as
    pairs; ValueError naming ``field`` and both forms otherwise."""
    forms = f"{{{first}: [...], {second}: [...]}} or a list of [{first}, {second}] pairs"
    if isinstance(value, Mapping):
        firsts, seconds = value.get(first), value.get(second)
        if not isinstance(firsts, list) or not isinstance(seconds, list):
            raise ValueError(f"'{field}' must be {forms}")
        if len(firsts) != len(seconds):
            raise ValueError(f"'{field}' has {len(firsts)} {first} values but {len(seconds)} {second} values")
        return list(zip(firsts, seconds, strict=True))
    if isinstance(value, list):
        if not all(isinstance(item, list | tuple) and len(item) == 2 for item in value):
            raise ValueError(f"'{field}' must be {forms}")
        return [(item[0], item[1]) for item in value]
    raise ValueError(f"'{field}' must be {forms}")


def _hotpot_context(context: Any) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for position, (title, sents) in enumerate(_pairs(context, "context", "title", "sentences")):
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"'context': title #{position} is not a non-empty string")
        if not isinstance(sents, list) or not all(isinstance(s, str) for s in sents):
            raise ValueError(f"'context': the sentences of {title!r} must be a list of strings")
        out.append((title, list(sents)))
    return out


def _hotpot_item(record: Any, index: int) -> QAItem:
    if not isinstance(record, Mapping):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' must be a non-empty string")
    context = _hotpot_context(record.get("context"))
    paragraphs = {title: list(sents) for title, sents in context}
    facts = record.get("supporting_facts") or {}
    pairs = _pairs(facts, "supporting_facts", "title", "sent_id")
    for title, _ in pairs:
        if not isinstance(title, str):
            raise ValueError(f"'supporting_facts': title {title!r} is not a string")
    gold_titles: list[str] = []
    supporting: dict[str, list[str]] = {}
    for title, sent_id in pairs:
        if title not in gold_titles:
            gold_titles.append(title)
        sents = paragraphs.get(title) or []
        if isinstance(sent_id, int) and 0 <= sent_id < len(sents):
            supporting.setdefault(title, []).append(sents[sent_id].strip())
        else:
            supporting.setdefault(title, [])
    return QAItem(
        id=str(record.get("id") or record.get("_id") or f"q{index}"),
        question=question.strip(),
        answers=_answers(record.get("answer")),
        gold_titles=gold_titles,
        type=str(record.get("type") or ""),
        supporting=supporting,
        context={title: "".join(sents) for title, sents in paragraphs.items()},
    )


def _check_unique(path: Path, items: list[QAItem], wheres: list[str]) -> None:
    """Refuse two records with one id: a benchmark keys its results by question id, so the second would
    be skipped as done on a resume and counted twice in the first run's table."""
    first: dict[str, str] = {}
    for item, where in zip(items, wheres, strict=True):
        if item.id in first:
            raise DatasetError(
                f"{path}: {where}: id {item.id!r} is also the id of {first[item.id]} (fix: give each "
                "question its own id, or remove the repeated question)"
            )
        first[item.id] = where


def _load_hotpot(path: Path, records: list[tuple[str, Any]]) -> Dataset:
    items = []
    for index, (where, record) in enumerate(records):
        try:
            items.append(_hotpot_item(record, index))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise DatasetError(
                f"{path}: {where}: not a HotpotQA record: {exc} (fix: give each line the fields id, "
                "question, answer, context {title: [...], sentences: [[...]]} and supporting_facts "
                "{title: [...], sent_id: [...]}, as HotpotQA's files have them)"
            ) from None
    _check_unique(path, items, [where for where, _ in records])
    return Dataset(path.stem, items, source=path, corpus_path=path, format="hotpotqa")


def _load_qa(path: Path, records: list[tuple[str, Any]]) -> Dataset:
    items = []
    for index, (where, record) in enumerate(records):
        try:
            if not isinstance(record, Mapping):
                raise ValueError(f"expected an object, got {type(record).__name__}")
            question = _get(record, "question")
            if not isinstance(question, str) or not question.strip():
                raise ValueError("needs a non-empty 'question'")
            answers = _answers(_get(record, "answer", "answers"))
            qid = _get(record, "id", "_id", "qid")
            items.append(QAItem(id=str(qid or f"q{index}"), question=question.strip(), answers=answers))
        except (ValueError, TypeError) as exc:
            raise DatasetError(f"{path}: {where}: {exc}") from None
    _check_unique(path, items, [where for where, _ in records])
    return Dataset(path.stem, items, source=path, corpus_path=None, format="qa")


register_format(
    "qa", lambda r: _get(r, "question") is not None and _get(r, "answer", "answers") is not None, _load_qa
)
register_format("hotpotqa", lambda r: "context" in r and "question" in r, _load_hotpot)


def load_dataset(name_or_path: str | os.PathLike[str]) -> Dataset:
    """Load a built-in dataset by name (``hotpotqa``) or a file in any registered format.

    Raises DatasetError naming the file and the record when something is wrong.
    """
    key = str(name_or_path)
    if key in BUILTIN_DATASETS:
        path = BUILTIN_DATASETS[key]()
        dataset = load_dataset(path)
        dataset.name = key
        return dataset
    path = Path(name_or_path).expanduser()
    if not path.exists():
        builtins = ", ".join(BUILTIN_DATASETS)
        raise DatasetError(f"{path}: data file not found (give a path, or a built-in dataset: {builtins})")
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory; give a .jsonl or .json file")
    records = _records(path)
    if not records:
        raise DatasetError(
            f"{path}: no records: the file is empty (fix: give a data file with one JSON record a line, e.g. "
            '{"question": "...", "answer": "..."}, or leave out --data for the bundled 50 questions)'
        )
    first = records[0][1]
    if not isinstance(first, Mapping):
        raise DatasetError(f"{path}: {records[0][0]}: expected a JSON object, got {type(first).__name__}")
    for name in reversed(list(_FORMATS)):
        detect, load = _FORMATS[name]
        if detect(first):
            return load(path, records)
    keys = ", ".join(sorted(map(str, first))) or "none"
    raise DatasetError(
        f"{path}: {records[0][0]}: unknown record format (keys: {keys}); expected HotpotQA records "
        f"(question, answer, context, supporting_facts) or question/answer pairs"
    )
