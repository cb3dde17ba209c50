"""Chat sessions from files: LoCoMo, LongMemEval and plain JSON lines, read into one typed form.

Every loader reads the whole file and checks every record before it returns, so a malformed or truncated
file is refused with a :class:`MemoryFormatError` that names the file and the record (and nothing is
ingested half-way). Dates are parsed here (:func:`thrifty.memory.temporal.parse_when`).

Plain JSONL: one session per line, ``{"id"?: str, "date"?: str, "turns": [{"speaker"|"role": str,
"text"|"content": str, "id"?: str}]}``.

LoCoMo (CC BY-NC 4.0) is read from a path the user gives; it is never bundled.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from thrifty.memory.temporal import parse_when

__all__ = [
    "QA",
    "ChatSession",
    "ChatTurn",
    "LoCoMoConversation",
    "LongMemEvalQuestion",
    "MemoryFormatError",
    "load_jsonl_sessions",
    "load_locomo",
    "load_longmemeval",
    "load_sessions",
    "sessions_from",
]


class MemoryFormatError(ValueError):
    """A conversation file that cannot be read; the message names the file, the record and the fix."""


@dataclass(frozen=True)
class ChatTurn:
    speaker: str
    text: str
    ref: str = ""  # the dataset's id of the turn (LoCoMo ``D1:3``), for evidence scoring
    has_answer: bool = False  # LongMemEval's evidence mark


@dataclass(frozen=True)
class ChatSession:
    id: str
    turns: tuple[ChatTurn, ...]
    date: datetime | None = None


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    category: str
    evidence: tuple[str, ...] = ()  # turn refs (LoCoMo) or session ids (LongMemEval)
    question_date: datetime | None = None
    id: str = ""


@dataclass(frozen=True)
class LoCoMoConversation:
    id: str
    sessions: tuple[ChatSession, ...]
    qa: tuple[QA, ...] = field(default=())


@dataclass(frozen=True)
class LongMemEvalQuestion:
    qa: QA
    sessions: tuple[ChatSession, ...]
    answer_session_ids: tuple[str, ...] = ()


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a UTF-8 BOM is allowed
    except FileNotFoundError:
        raise MemoryFormatError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MemoryFormatError(f"{path}: cannot be read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MemoryFormatError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
            "the file may be truncated: download it again"
        ) from None


def _text(record: dict[str, Any], keys: tuple[str, ...], where: str) -> str:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value
    raise MemoryFormatError(f"{where}: needs a non-empty string field {' or '.join(repr(k) for k in keys)}")


def _when(value: Any, where: str) -> datetime | None:
    try:
        return parse_when(None if value is None else str(value))
    except ValueError as exc:
        raise MemoryFormatError(f"{where}: {exc}") from None


def _maybe_literal(value: Any) -> Any:
    """LongMemEval copies store lists as their Python repr; read them back safely."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


# ---------------------------------------------------------------------------------------------- LoCoMo
def _locomo_session(conv: dict[str, Any], n: int, where: str) -> ChatSession:
    turns_raw = conv.get(f"session_{n}")
    if not isinstance(turns_raw, list):
        raise MemoryFormatError(f"{where}: session_{n} is not a list of turns")
    turns: list[ChatTurn] = []
    for i, t in enumerate(turns_raw):
        spot = f"{where}, session_{n} turn {i}"
        if not isinstance(t, dict):
            raise MemoryFormatError(f"{spot}: a turn is an object with speaker, dia_id and text")
        text = str(t.get("text") or "")
        if t.get("blip_caption"):
            text = f"{text} [shares a photo: {t['blip_caption']}]".strip()
        if not text:
            continue
        turns.append(ChatTurn(speaker=_text(t, ("speaker",), spot), text=text, ref=str(t.get("dia_id", ""))))
    date = _when(conv.get(f"session_{n}_date_time"), f"{where}, session_{n}_date_time")
    return ChatSession(id=f"session_{n}", turns=tuple(turns), date=date)


def _locomo_qa(raw: Any, where: str) -> QA:
    if not isinstance(raw, dict) or "question" not in raw:
        raise MemoryFormatError(f"{where}: a qa record needs 'question', 'answer' and 'category'")
    category = str(raw.get("category", ""))
    answer = raw.get("answer", raw.get("adversarial_answer", ""))
    evidence = raw.get("evidence") or []
    if not isinstance(evidence, list):
        raise MemoryFormatError(f"{where}: 'evidence' must be a list of dia_ids such as 'D1:3'")
    return QA(
        question=str(raw["question"]),
        answer=str(answer),
        category=category,
        evidence=tuple(str(e).strip() for e in evidence),
    )


def load_locomo(path: str | Path) -> list[LoCoMoConversation]:
    """LoCoMo's ``locomo10.json`` (a list of samples with ``conversation`` and ``qa``)."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise MemoryFormatError(f"{path}: a LoCoMo file is a JSON list of samples")
    out: list[LoCoMoConversation] = []
    for i, sample in enumerate(data):
        where = f"{path}, sample {i}"
        if not isinstance(sample, dict) or not isinstance(sample.get("conversation"), dict):
            raise MemoryFormatError(f"{where}: needs a 'conversation' object")
        conv: dict[str, Any] = sample["conversation"]
        numbers = sorted(
            int(k.split("_")[1])
            for k in conv
            if k.startswith("session_") and k.count("_") == 1 and k.split("_")[1].isdigit()
        )
        sessions = tuple(_locomo_session(conv, n, where) for n in numbers)
        qa = tuple(_locomo_qa(q, f"{where}, qa {j}") for j, q in enumerate(sample.get("qa") or []))
        out.append(LoCoMoConversation(id=str(sample.get("sample_id", i)), sessions=sessions, qa=qa))
    return out


# ----------------------------------------------------------------------------------------- LongMemEval
def _lme_sessions(raw: dict[str, Any], where: str) -> tuple[ChatSession, ...]:
    sessions = _maybe_literal(raw.get("haystack_sessions"))
    ids = _maybe_literal(raw.get("haystack_session_ids")) or []
    dates = _maybe_literal(raw.get("haystack_dates")) or []
    if not isinstance(sessions, list) or not isinstance(ids, list) or not isinstance(dates, list):
        raise MemoryFormatError(f"{where}: haystack_sessions, _session_ids and _dates must be lists")
    out: list[ChatSession] = []
    for n, turns_raw in enumerate(sessions):
        spot = f"{where}, haystack session {n}"
        if not isinstance(turns_raw, list):
            raise MemoryFormatError(f"{spot}: a session is a list of turns")
        turns = tuple(
            ChatTurn(
                speaker=_text(t, ("role",), f"{spot} turn {i}"),
                text=_text(t, ("content",), f"{spot} turn {i}"),
                ref=f"{ids[n] if n < len(ids) else n}:{i}",
                has_answer=bool(t.get("has_answer")),
            )
            for i, t in enumerate(turns_raw)
            if isinstance(t, dict) or _bad_turn(f"{spot} turn {i}")
        )
        date = _when(dates[n] if n < len(dates) else None, f"{spot} date")
        out.append(ChatSession(id=str(ids[n]) if n < len(ids) else str(n), turns=turns, date=date))
    return tuple(out)


def _bad_turn(where: str) -> bool:
    raise MemoryFormatError(f"{where}: a turn is an object with role and content")


def load_longmemeval(path: str | Path) -> list[LongMemEvalQuestion]:
    """A LongMemEval file (oracle, S or M: a list of questions, each with its haystack sessions)."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise MemoryFormatError(f"{path}: a LongMemEval file is a JSON list of questions")
    out: list[LongMemEvalQuestion] = []
    for i, raw in enumerate(data):
        where = f"{path}, question {i}"
        if not isinstance(raw, dict):
            raise MemoryFormatError(f"{where}: a question is an object")
        qa = QA(
            question=_text(raw, ("question",), where),
            answer=str(raw.get("answer", "")),
            category=str(raw.get("question_type", "")),
            evidence=tuple(str(s) for s in _maybe_literal(raw.get("answer_session_ids")) or []),
            question_date=_when(raw.get("question_date"), f"{where}, question_date"),
            id=str(raw.get("question_id", i)),
        )
        out.append(
            LongMemEvalQuestion(qa=qa, sessions=_lme_sessions(raw, where), answer_session_ids=qa.evidence)
        )
    return out


# ------------------------------------------------------------------------------------------------ JSONL
def load_jsonl_sessions(path: str | Path) -> list[ChatSession]:
    """Plain chat sessions, one JSON object per line (see the module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a UTF-8 BOM is allowed
    except FileNotFoundError:
        raise MemoryFormatError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MemoryFormatError(f"{path}: cannot be read ({exc})") from None
    out: list[ChatSession] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MemoryFormatError(
                f"{where}: not valid JSON ({exc.msg}); the file may be truncated"
            ) from None
        out.append(session_from_dict(raw, where, default_id=f"{path.stem}:{n}"))
    return out


def session_from_dict(raw: Any, where: str, *, default_id: str) -> ChatSession:
    """One session from ``{"id"?, "date"?, "turns": [{"speaker"|"role", "text"|"content"}]}``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("turns"), list):
        raise MemoryFormatError(f"{where}: a session is an object with a 'turns' list")
    turns: list[ChatTurn] = []
    for i, t in enumerate(raw["turns"]):
        spot = f"{where}, turn {i}"
        if not isinstance(t, dict):
            raise MemoryFormatError(
                f"{spot}: a turn is an object with speaker (or role) and text (or content)"
            )
        turns.append(
            ChatTurn(
                speaker=_text(t, ("speaker", "role"), spot),
                text=_text(t, ("text", "content"), spot),
                ref=str(t.get("id", f"{raw.get('id', default_id)}:{i}")),
            )
        )
    return ChatSession(
        id=str(raw.get("id") or default_id), turns=tuple(turns), date=_when(raw.get("date"), f"{where}, date")
    )


def sessions_from(value: Any, where: str = "sessions") -> list[ChatSession]:
    """Sessions given in Python: ChatSession objects, or dicts as in a JSONL line."""
    if isinstance(value, ChatSession):
        return [value]
    if isinstance(value, dict):
        return [session_from_dict(value, where, default_id="s0")]
    if not isinstance(value, list | tuple):
        raise MemoryFormatError(f"{where}: give a list of sessions")
    out: list[ChatSession] = []
    for i, s in enumerate(value):
        out.append(
            s if isinstance(s, ChatSession) else session_from_dict(s, f"{where}[{i}]", default_id=f"s{i}")
        )
    return out


def load_sessions(path: str | Path) -> list[ChatSession]:
    """Sessions from any supported file: ``.jsonl`` (plain), or a LoCoMo / LongMemEval ``.json`` (detected).

    A LongMemEval file gives the union of its questions' haystack sessions (each once, by id).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return load_jsonl_sessions(path)
    data = _read_json(path)
    first = data[0] if isinstance(data, list) and data else None
    if isinstance(first, dict) and "conversation" in first:
        return [s for conv in load_locomo(path) for s in conv.sessions]
    if isinstance(first, dict) and "haystack_sessions" in first:
        seen: dict[str, ChatSession] = {}
        for q in load_longmemeval(path):
            for s in q.sessions:
                seen.setdefault(s.id, s)
        return list(seen.values())
    raise MemoryFormatError(
        f"{path}: not a LoCoMo or LongMemEval file (a JSON list of samples with 'conversation', or of "
        "questions with 'haystack_sessions'); for plain chats use .jsonl, one session per line"
    )
