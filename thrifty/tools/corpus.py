"""A closed corpus of passages for the search tools, and the loaders that build one from a file.

Why a closed corpus: benchmark runs (HotpotQA distractor, BATS-style budget studies) must be reproducible
offline, so search runs over a fixed set of passages instead of the web. The union of the context
paragraphs of a HotpotQA file is such a set.

Loader errors name the file, the line (or list item) and what is wrong, because a corpus is usually a file
someone just converted by hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeGuard, cast

__all__ = ["Corpus", "CorpusError", "Passage", "bundled_dataset_path", "load_corpus"]


class CorpusError(ValueError):
    """A corpus file is missing or holds a record that is not a passage or a HotpotQA record."""


@dataclass(frozen=True)
class Passage:
    """One searchable unit: a titled paragraph."""

    title: str
    text: str


class Corpus:
    """An ordered set of passages, with lookup by title.

    Identical (title, text) pairs are kept once. Several passages may share a title (chunks of one
    document); :meth:`text_of` joins them.
    """

    def __init__(self, passages: Iterable[Passage | tuple[str, str]], *, source: Path | None = None) -> None:
        self.source = source
        self.passages: list[Passage] = []
        self._by_title: dict[str, list[int]] = {}
        seen: set[tuple[str, str]] = set()
        for item in passages:
            passage = item if isinstance(item, Passage) else Passage(*item)
            if (passage.title, passage.text) in seen:
                continue
            seen.add((passage.title, passage.text))
            self._by_title.setdefault(passage.title, []).append(len(self.passages))
            self.passages.append(passage)
        self._folded: dict[str, str] = {}
        for title in self._by_title:
            self._folded.setdefault(title.casefold(), title)

    def __len__(self) -> int:
        return len(self.passages)

    def __iter__(self) -> Iterator[Passage]:
        return iter(self.passages)

    def __getitem__(self, index: int) -> Passage:
        return self.passages[index]

    def __repr__(self) -> str:
        where = f", source={str(self.source)!r}" if self.source else ""
        return f"Corpus({len(self.passages)} passages{where})"

    @property
    def titles(self) -> list[str]:
        """Distinct titles, in first-seen order."""
        return list(self._by_title)

    def __contains__(self, title: object) -> bool:
        return title in self._by_title

    def text_of(self, title: str) -> str | None:
        """The full text for an exact title (passages sharing it joined by blank lines), or None."""
        indices = self._by_title.get(title)
        if not indices:
            return None
        return "\n\n".join(self.passages[i].text for i in indices)

    def casefold_title(self, title: str) -> str | None:
        """The corpus title equal to ``title`` ignoring case, or None."""
        return self._folded.get(title.casefold())

    def fingerprint(self) -> tuple[Any, ...] | None:
        """(path, mtime, size) of the file it was loaded from, or None for an in-memory corpus."""
        if self.source is None:
            return None
        try:
            stat = self.source.stat()
        except OSError:
            return None
        return (str(self.source.resolve()), stat.st_mtime_ns, stat.st_size)


# ------------------------------------------------------------------------------------------- loading
def _fail(path: Path, where: str, problem: str) -> CorpusError:
    return CorpusError(
        f"{path}: {where}: {problem} (fix: make each record a passage, "
        '{"title": "...", "text": "..."}, or a HotpotQA record with its \'context\')'
    )


def _is_list(value: object) -> TypeGuard[list[object]]:
    """``isinstance(value, list)``, telling the type checker the items are yet to be checked."""
    return isinstance(value, list)


def _is_mapping(value: object) -> TypeGuard[Mapping[object, object]]:
    """``isinstance(value, Mapping)``, telling the type checker the keys and values are yet to be checked."""
    return isinstance(value, Mapping)


def _hotpot_passages(record: Mapping[object, object]) -> list[tuple[str, str]]:
    """Paragraphs of a HotpotQA record, either the RPT form ``{title: [...], sentences: [[...]]}``
    or the original ``[[title, [sentences]], ...]``. Raises ValueError saying what is wrong."""
    context = record["context"]
    pairs: list[tuple[object, object]]
    if _is_mapping(context):
        titles, sentences = context.get("title"), context.get("sentences")
        if not _is_list(titles) or not _is_list(sentences):
            raise ValueError("'context' must have a 'title' list and a 'sentences' list")
        if len(titles) != len(sentences):
            raise ValueError(f"'context' has {len(titles)} titles but {len(sentences)} sentence lists")
        pairs = list(zip(titles, sentences, strict=True))
    elif _is_list(context):
        pairs = []
        for item in context:
            pair = cast("Sequence[object]", item) if isinstance(item, list | tuple) else None
            if pair is None or len(pair) != 2:
                raise ValueError("'context' list items must be [title, [sentences]] pairs")
            pairs.append((pair[0], pair[1]))
    else:
        raise ValueError("'context' must be an object {title, sentences} or a list of [title, sentences]")
    out: list[tuple[str, str]] = []
    for position, (title, sents) in enumerate(pairs):
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"context title #{position} is not a non-empty string")
        if not _is_list(sents) or not all(isinstance(s, str) for s in sents):
            raise ValueError(f"context sentences of {title!r} must be a list of strings")
        out.append((title, "".join(cast("list[str]", sents))))
    return out


def _record_passages(record: object) -> tuple[list[tuple[str, str]], bool]:
    """Passages of one record, and whether it was a HotpotQA record. Raises ValueError."""
    if not _is_mapping(record):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "context" in record:
        return _hotpot_passages(record), True
    if "title" in record and "text" in record:
        title, text = record["title"], record["text"]
        if not isinstance(title, str) or not isinstance(text, str):
            raise ValueError("'title' and 'text' must be strings")
        return [(title, text)], False
    # The keys are counted, never listed: a mistyped path may point at someone's credentials file.
    count = f"{len(record)} key{'s' if len(record) != 1 else ''}"
    raise ValueError(
        f"expected {{title, text}} or a HotpotQA record with 'context' (this object has {count}, none of those)"
    )


#: One record of each kind of file :func:`read_json_records` reads, as its messages show it.
_EXAMPLE_RECORD = {
    "corpus file": '{"title": "...", "text": "..."}',
    "data file": '{"question": "...", "answer": "..."}',
}


def read_json_records(
    path: Path, *, error: type[ValueError] = CorpusError, what: str = "corpus file", sniff: bool = False
) -> Iterator[tuple[str, Any]]:
    """(where, record) pairs from a JSONL file ('line N') or a JSON list ('item N': a ``.json`` file, or with
    ``sniff`` any file whose text starts with ``[``).

    Every problem raises ``error`` naming the file, the line and the fix; shared by corpora and benchmark
    datasets.
    """
    example = _EXAMPLE_RECORD.get(what, "{...}")
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found (fix: check the path, or give the file's full path)") from None
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: cannot read {what}: byte {exc.start} is not UTF-8 text (fix: give a JSON-lines or JSON "
            "file saved as UTF-8)"
        ) from None
    except OSError as exc:
        raise error(
            f"{path}: cannot read {what}: {exc.strerror or exc} (fix: {_read_fix(path, exc)})"
        ) from None
    if path.suffix.lower() == ".json" or (sniff and raw.lstrip().startswith("[")):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # one JSON object a line, in a file named .json
                raise error(
                    f"{path}: line {exc.lineno}: invalid JSON: more data after the first JSON value (fix: a "
                    f".json {what} holds one JSON list; a file of one JSON object a line is read as JSON "
                    "lines when its name ends in .jsonl)"
                ) from None
            raise error(
                f"{path}: line {exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno}) (fix: make the "
                f"file one JSON list of records, [{example}, ...], or write one record a line in a .jsonl "
                "file)"
            ) from None
        if not _is_list(data):
            raise error(
                f"{path}: top level: a .json {what} must be a list, got {type(data).__name__} (fix: put the "
                f"records in a list, [{example}, ...], or write one record a line in a .jsonl file)"
            )
        for index, record in enumerate(data):
            yield f"item {index}", record
        return
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(
                f"{path}: line {lineno}: invalid JSON: {exc.msg} (column {exc.colno}) (fix: make each line "
                f"one whole JSON record, e.g. {example}; a JSON list over several lines needs a .json "
                "file name)"
            ) from None
        yield f"line {lineno}", record


def _read_fix(path: Path, exc: OSError) -> str:
    """What to do about a file that exists but cannot be read."""
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return "give a file, not a folder"
    if isinstance(exc, PermissionError):
        return "make the file readable, or give a copy you can read"
    return "check that the file can be read, or give another copy of it"


def load_corpus(path: str | os.PathLike[str]) -> Corpus:
    """Load a corpus from JSONL (``{title, text}`` or HotpotQA records) or a .json list of either.

    HotpotQA records contribute their context paragraphs (text = sentences joined), deduplicated by title:
    the same Wikipedia paragraph appears in the context of several questions.
    """
    path = Path(path)
    passages: list[tuple[str, str]] = []
    hotpot_titles: set[str] = set()
    for where, record in read_json_records(path):
        try:
            found, is_hotpot = _record_passages(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise _fail(path, where, str(exc)) from None
        for title, text in found:
            if is_hotpot:
                if title in hotpot_titles:
                    continue
                hotpot_titles.add(title)
            passages.append((title, text))
    if not passages:
        raise CorpusError(
            f"{path}: no passages found (empty corpus) (fix: add passages, one a line: "
            '{"title": "...", "text": "..."})'
        )
    return Corpus(passages, source=path)


def bundled_dataset_path(name: str = "hotpotqa") -> Path:
    """The sample shipped with the package (``thrifty/data/<name>/sample.jsonl``), usable offline.

    The bundled HotpotQA sample is a 50-question CC BY-SA 4.0 slice; see its ATTRIBUTION.md.
    """
    resource = files("thrifty") / f"data/{name}/sample.jsonl"
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(f"no bundled dataset named {name!r} (looked for {path})")
    return path
