"""Grounding: keep a small model's tool calls and answers tied to the question and what it has observed.

A 135M-parameter model follows the tool-call format (a grammar sees to that) but not the task: it answers
before searching, searches the same words again, and answers with a preamble ("The answer to the question
is:") or a whole sentence. When the provider constrains output with a grammar (``Provider.grammar``), the
solver can make those moves impossible instead of hoping the prompt prevents them:

* **look before answering**: while search tools are visible and nothing has been observed yet, the first
  call must be a tool call (``tool_choice="required"``);
* **grounded arguments**: a tool's string argument named ``query`` or ``title`` is an ``enum`` of phrases
  taken from the question (names, quoted titles, its keywords) and the titles seen in results, and one named
  ``url`` an ``enum`` of the addresses listed in search results, less the ones already sent to that tool:
  no repeated searches, no invented titles or addresses;
* **grounded answers**: once something has been observed, the answer is an ``enum`` of what the question
  asks for (:func:`answer_kind`): the options of an either-or question, ``yes`` / ``no``, the years (for
  "in what year"), dates or numbers observed, or else names and titles from the observations closest to
  the question: a preamble, a sentence or "unknown" cannot be written, and a long reply is cut to the span
  it starts with;
* **enough looking**: after one lookup per name in the question and one more hop (:func:`max_lookups`),
  the grounded tools are withdrawn and the model answers;
* **tool calls as JSON**: an OpenAI-compatible server that ignores ``tools`` and ``tool_choice`` (many do
  for models without a tool-call template) gets the same grounded choice as a JSON-schema response format
  (:func:`action_schema`), which such servers do enforce, and the reply becomes the tool call;
* **answer check**: a non-answer ("unknown", an empty phrase, a preamble) never replaces a better candidate.

Each policy is on when ``ModelSettings.grounded`` is true, or when it is left unset (``None``) and the
provider is grammar-constrained; providers without a grammar (remote APIs, the simulator) are untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from thrifty.agents import answers
from thrifty.agents.answers import normalize_answer

__all__ = [
    "ANSWER_ACTION",
    "GROUNDED_ARGUMENTS",
    "MAX_ANSWER_SPANS",
    "MAX_QUERIES",
    "Move",
    "action_schema",
    "answer_format",
    "answer_kind",
    "answer_spans",
    "choices_in",
    "focused_messages",
    "grounded_tool_schemas",
    "is_preamble",
    "lookups",
    "max_lookups",
    "observed",
    "plain_messages",
    "question_phrases",
    "tool_branches",
    "tool_lines",
    "usable_answer",
]

#: Tool parameters whose values are grounded (a string parameter with one of these names).
GROUNDED_ARGUMENTS = ("query", "title", "url")
MAX_QUERIES = 24
MAX_ANSWER_SPANS = 24

_QUESTION_WORDS = {
    "who", "whom", "whose", "what", "which", "when", "where", "why", "how", "is", "are", "was", "were",
    "did", "do", "does", "the", "a", "an", "in", "on", "of", "name", "have", "has", "and", "or", "for",
    "this", "that", "these", "those", "it", "its", "at", "by", "from", "with", "as", "to",
}  # fmt: skip
#: Lower-case words a name may hold ("Bank of America", "Ludwig van Beethoven"); not "in", which joined a
#: year or a name to the place after it ("1984 in Kolkata") into one span that no answer matches.
_CONNECT = {
    "of", "the", "and", "de", "du", "la", "le", "van", "von", "da", "del", "di", "&", "for", "on",
}  # fmt: skip
#: Sentence-initial words that are not names.
_FUNCTION = {
    "he", "she", "it", "they", "their", "his", "her", "its", "this", "these", "those", "there", "after",
    "before", "during", "since", "while", "although", "however", "also", "both", "when", "as", "let", "in",
}  # fmt: skip
_CAP_WORD = r"[A-Z0-9][\w'’.\-]*"
_CAP_RUN = re.compile(rf"{_CAP_WORD}(?:\s+(?:(?:{'|'.join(sorted(_CONNECT - {'&'}))}|&)\s+)*{_CAP_WORD})*")
_QUOTED = re.compile(r"[\"“`']([^\"”`']{2,80})[\"”`']")
_TITLE_LINE = re.compile(r"^Title:\s*(.+)$", re.MULTILINE)
_URL_LINE = re.compile(r"^URL:\s*(\S+)\s*$", re.MULTILINE)  # a web_search result's address
_DATE = re.compile(
    r"\b(?:\d{1,2}\s+)?(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December)(?:\s+\d{1,2})?,?\s+\d{3,4}\b"
)
_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_PREAMBLE = re.compile(
    r"^(the\s+)?(final\s+)?answer(\s+to\s+(the|this)\s+question)?\s+(is|was)\b|^i\s+(think|believe)\b|"
    r"^based\s+on\b|^according\s+to\b",
    re.IGNORECASE,
)
_NOTES = re.compile(r"^\((You already made|older result|Not run)[^)]*\)\s*", re.MULTILINE)
_BUDGET_BLOCK = re.compile(r"<budget>.*?</budget>", re.DOTALL)


def _strip_possessive(text: str) -> str:
    return re.sub(r"['’]s$", "", text.strip()).strip(" ,.;:?!-")


def _runs(text: str) -> list[str]:
    """Runs of capitalised words ("Morgan Llywelyn", "Lion of Ireland"), trimmed of question words."""
    out: list[str] = []
    for match in _CAP_RUN.finditer(text):
        words = match.group(0).split()
        while words and words[0].lower() in _QUESTION_WORDS | _CONNECT:
            words = words[1:]
        while words and words[-1].lower() in _CONNECT:
            words = words[:-1]
        phrase = _strip_possessive(" ".join(words))
        if phrase and phrase.lower() not in _QUESTION_WORDS and len(phrase) > 1:
            out.append(phrase)
    return out


def _unique(items: Iterable[str], limit: int | None = None, longest: int = 120) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        item = " ".join(item.split())
        key = normalize_answer(item)
        if not key or key in seen or len(item) > longest:
            continue
        seen.add(key)
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out


def question_phrases(question: str) -> list[str]:
    """Search phrases from the question: quoted titles, names, then its keywords as one query."""
    quoted = [q.strip() for q in _QUOTED.findall(question)]
    keywords = " ".join(
        w for w in re.findall(r"[\w'’\-]+", question) if w.lower() not in _QUESTION_WORDS and len(w) > 2
    )
    return _unique([*quoted, *_runs(question), keywords])


def observed(messages: Sequence[dict[str, Any]]) -> list[str]:
    """The texts of the tool results in ``messages`` (notes and budget blocks removed)."""
    texts = []
    for message in messages:
        if message.get("role") == "tool":
            text = _BUDGET_BLOCK.sub("", str(message.get("content") or ""))
            text = _NOTES.sub("", text).strip()
            if text and not text.startswith(("no results", "not found", "Not run")):
                texts.append(text)
    return texts


def _titles(observations: Sequence[str]) -> list[str]:
    return [t.strip() for text in observations for t in _TITLE_LINE.findall(text)]


def _urls(observations: Sequence[str]) -> list[str]:
    return [u.strip() for text in observations for u in _URL_LINE.findall(text)]


_YES_NO = re.compile(r"^(is|are|was|were|do|does|did|have|has|had|can|could|will|would)\b", re.IGNORECASE)
_WHEN = re.compile(r"^when\b|\bwhen (was|were|did|is)\b|\bwhat date\b", re.IGNORECASE)
#: "In what year", "which year": the answer is a bare year, not a full date.
_WHICH_YEAR = re.compile(r"\b(what|which) year\b", re.IGNORECASE)
_HOW_MANY = re.compile(r"\bhow (many|much|long|old)\b", re.IGNORECASE)
_YEAR = re.compile(r"\b1\d{3}\b|\b20\d{2}\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")


def choices_in(question: str) -> list[str]:
    """The options of an either-or question ("Who was born first, A or B?" gives A and B), else []."""
    names = [*[q.strip() for q in _QUOTED.findall(question)], *_runs(question)]
    folded = " ".join(question.split())
    options = [n for n in names if f"{n} or " in folded or f" or {n}" in folded or f'{n}" or ' in folded]
    return _unique(options) if len(_unique(options)) >= 2 else []


def answer_kind(question: str) -> str:
    """What the question asks for: ``choice`` (A or B), ``yesno``, ``year``, ``date``, ``number`` or
    ``span``."""
    text = " ".join(question.split())
    if choices_in(text):
        return "choice"
    if _YES_NO.match(text):
        return "yesno"
    if _WHICH_YEAR.search(text):
        return "year"
    if _WHEN.search(text):
        return "date"
    if _HOW_MANY.search(text):
        return "number"
    return "span"


def _ranked_sentences(question: str, observations: Sequence[str]) -> list[str]:
    """The observations' sentences, those sharing the most words with the question first (stable)."""
    words = {w.lower() for w in re.findall(r"[\w'’\-]+", question) if len(w) > 3}
    words -= _QUESTION_WORDS
    sentences: list[str] = []
    for text in observations:
        sentences.extend(_SENTENCE.split(_URL_LINE.sub("", _TITLE_LINE.sub("", text))))
    scored = [
        (-len(words & {w.lower() for w in re.findall(r"[\w'’\-]+", s)}), i, s)
        for i, s in enumerate(sentences)
    ]
    return [s for _, _, s in sorted(scored)]


def answer_spans(question: str, observations: Sequence[str]) -> list[str]:
    """What a grounded answer may be, by what the question asks (:func:`answer_kind`).

    Either-or: its options. Yes / no: ``yes``, ``no``. In what year: the years observed (a date's year
    too: "March 14, 1966" offers "1966"). When: the dates and years observed.
    How many: the numbers observed. Otherwise names and titles from the observations (not those the
    question already names), from the sentences closest to the question first, at most
    :data:`MAX_ANSWER_SPANS`. A typed kind with nothing observed to offer falls back to spans.
    """
    kind = answer_kind(question)
    if kind == "choice":
        return choices_in(question)
    if kind == "yesno":
        return ["yes", "no"]
    sentences = _ranked_sentences(question, observations)
    if kind == "year":  # the years of the dates observed and the bare years, in the sentences' order
        years = [y.group(0) for s in sentences for y in _YEAR.finditer(s)]
        if years:
            return _unique(years, MAX_ANSWER_SPANS)
    if kind == "date":
        dates = [m.group(0) for s in sentences for m in _DATE.finditer(s)]
        dates += [m.group(0) for s in sentences for m in _YEAR.finditer(s)]
        if dates:
            return _unique(dates, MAX_ANSWER_SPANS)
    if kind == "number":
        numbers = [m.group(0).rstrip(".,") for s in sentences for m in _NUMBER.finditer(s)]
        if numbers:
            return _unique(numbers, MAX_ANSWER_SPANS)
    asked = {normalize_answer(n) for n in _runs(question)}
    spans = [r for s in sentences for r in _runs(s)] + _titles(observations)
    spans = [
        r
        for r in spans
        if normalize_answer(r) not in asked and not r.isdigit() and r.lower() not in _FUNCTION
    ]
    return _unique(spans, MAX_ANSWER_SPANS) or _unique([*_runs(question), "yes", "no"])


#: Sentences of the observations a focused answer prompt shows (:func:`focused_messages`).
FOCUSED_SENTENCES = 8
_FOCUSED_SYSTEM = "Answer the question with a short phrase taken from the context."


def focused_messages(question: str, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A short reading-comprehension prompt for a grounded answer: the observations' sentences closest to
    the question (at most :data:`FOCUSED_SENTENCES`, closest first) and the question, instead of the whole
    conversation, whose tool calls, listings and budget notes a small model loses the question in. None
    before anything has been observed."""
    observations = observed(messages)
    if not observations:
        return None
    sentences = [" ".join(s.split()) for s in _ranked_sentences(question, observations)]
    context = " ".join([s for s in sentences if s][:FOCUSED_SENTENCES])
    return [
        {"role": "system", "content": _FOCUSED_SYSTEM},
        {"role": "user", "content": f"Context: {context}\n\nQuestion: {question}"},
    ]


def answer_format(question: str, messages: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``response_format`` of a grounded answer (an enum of spans), or None before any observation."""
    observations = observed(messages)
    if not observations:
        return None
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "grounded_answer",
            "schema": {"type": "string", "enum": answer_spans(question, observations)},
        },
    }


def _used(messages: Sequence[dict[str, Any]], tool: str, argument: str) -> set[str]:
    import json

    used: set[str] = set()
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            if function.get("name") != tool:
                continue
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except (TypeError, ValueError):
                continue
            if isinstance(arguments, dict) and isinstance(arguments.get(argument), str):
                used.add(normalize_answer(arguments[argument]))
    return used


def lookups(messages: Sequence[dict[str, Any]]) -> int:
    """Tool calls made so far."""
    return sum(len(m.get("tool_calls") or []) for m in messages if m.get("role") == "assistant")


def max_lookups(question: str) -> int:
    """Grounded lookups before the model must answer: one per name in the question, and one more hop.

    A small model, given the choice, keeps looking up every title it sees and never answers; a question
    names what must be looked up, and a bridge question needs one step past its names.
    """
    names = question_phrases(question)[:-1]  # the last phrase is the keyword query
    return max(2, len(names) + 1)


def grounded_tool_schemas(
    schemas: Sequence[dict[str, Any]], question: str, messages: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``schemas`` with each grounded string argument turned into an enum of unused grounded phrases.

    A ``title`` takes the titles seen in results and the question's names; a ``query`` the question's
    phrases (its keywords last) and those titles; a ``url`` the addresses listed in results (``URL:`` lines
    of ``web_search``), so a page is read only once a search has shown it. A tool whose grounded argument
    has nothing left to choose from is withdrawn (another call could only repeat one, or invent one).
    """
    seen = observed(messages)
    titles = _unique(_titles(seen))
    urls = _urls(seen)
    done = lookups(messages)
    out: list[dict[str, Any]] = []
    for schema in schemas:
        function = schema.get("function") or {}
        params = function.get("parameters") or {}
        props = dict(params.get("properties") or {})
        changed = spent = False
        if done >= max_lookups(question) and any(name in props for name in GROUNDED_ARGUMENTS):
            continue  # enough looking: time to answer from what was found
        for name in GROUNDED_ARGUMENTS:
            prop = props.get(name)
            if not isinstance(prop, dict) or prop.get("type") != "string":
                continue
            phrases = question_phrases(question)
            if name == "url":
                pool = urls
            elif name == "title":
                pool = [*titles, *phrases[:-1]]
            else:
                pool = [*phrases, *titles]
            used = _used(messages, function.get("name", ""), name)
            longest = 2048 if name == "url" else 120
            choices = [p for p in _unique(pool, MAX_QUERIES, longest) if normalize_answer(p) not in used]
            if choices:
                props[name] = {**prop, "enum": choices}
                changed = True
            else:
                spent = True
        if spent:
            continue  # every grounded value was sent already: another call could only repeat one
        if changed:
            schema = {**schema, "function": {**function, "parameters": {**params, "properties": props}}}
        out.append(schema)
    return out


def is_preamble(text: str | None) -> bool:
    """A lead-in instead of an answer ("The answer to the question is:", "Based on ...")."""
    return bool(text and _PREAMBLE.match(text.strip()))


def usable_answer(text: str | None) -> bool:
    """:func:`thrifty.agents.answers.usable_answer` (empty, "unknown", a bare preamble or colon-ended
    phrase), and, stricter for grounded models, no lead-in at all (:func:`is_preamble`)."""
    return answers.usable_answer(text) and not is_preamble(text)


#: The ``tool`` value of the answer in :func:`action_schema`.
ANSWER_ACTION = "answer"


def tool_branches(schemas: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One JSON-schema branch per tool schema, ``{"tool": <its name>, "arguments": <its parameters>}``:
    a tool call asked for as a structured reply (the value tree's candidates, :func:`action_schema`)."""
    branches: list[dict[str, Any]] = []
    for schema in schemas:
        function = schema.get("function") or {}
        branches.append(
            {
                "type": "object",
                "properties": {
                    "tool": {"const": function.get("name", "")},
                    "arguments": function.get("parameters") or {"type": "object"},
                },
                "required": ["tool", "arguments"],
            }
        )
    return branches


def action_schema(
    schemas: Sequence[dict[str, Any]], question: str, messages: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """One grounded move as a JSON schema (a :class:`Move`), for servers that ignore native tool calls:
    ``{"tool": <name>, "arguments": {...}}`` for each of ``schemas`` (already grounded, see
    :func:`grounded_tool_schemas`), plus ``{"tool": "answer", "answer": <an observed span>}`` once
    something has been observed (none before: look before answering)."""
    branches = tool_branches(schemas)
    observations = observed(messages)
    if observations or not branches:
        spans = answer_spans(question, observations) if observations else []
        answer: dict[str, Any] = {"type": "string", "enum": spans} if spans else {"type": "string"}
        branches.append(
            {
                "type": "object",
                "properties": {"tool": {"const": ANSWER_ACTION}, "answer": answer},
                "required": ["tool", "answer"],
            }
        )
    return {"anyOf": branches} if len(branches) > 1 else branches[0]


class Move(BaseModel):
    """A reply to :func:`action_schema`: a tool call (``tool``, ``arguments``) or the answer."""

    tool: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    answer: str | None = None


def plain_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` without tool-call fields, for a server without a tool-call template (its chat template
    may fail on them): an assistant's calls become its text (the JSON moves), a tool result a user
    message naming the tool."""
    out: list[dict[str, Any]] = []
    for message in messages:
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and calls:
            moves = [
                json.dumps(
                    {"tool": c["function"]["name"], "arguments": _loads(c["function"].get("arguments"))}
                )
                for c in calls
            ]
            out.append({"role": "assistant", "content": "\n".join(moves)})
        elif message.get("role") == "tool":
            name = message.get("name") or "tool"
            out.append({"role": "user", "content": f"Result of {name}:\n{message.get('content') or ''}"})
        else:
            out.append({"role": message.get("role", "user"), "content": message.get("content") or ""})
    return out


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else (text or {})
    except json.JSONDecodeError:
        return text


def tool_lines(schemas: Sequence[dict[str, Any]]) -> str:
    """``- name(param, ...): first line of its description``, one line per tool schema."""
    lines = []
    for schema in schemas:
        function = schema.get("function") or {}
        params = ", ".join((function.get("parameters") or {}).get("properties") or {})
        description = (str(function.get("description") or "").splitlines() or [""])[0][:120]
        lines.append(f"- {function.get('name', '')}({params}): {description}")
    return "\n".join(lines)
