"""The simulated model ``sim/...``: a LiteLLM provider that plays every role from the gold annotations.

**Benchmark use only.** The embedded local model is so small that differences between strategies drown in
its mistakes. ``sim/`` replaces only the model: prompts, the Gateway, the Ledger, the tools and the graphs
are the real ones, and the simulated model reads the real requests and answers with a set skill. Every
result produced with it is labelled *simulated* (results file, table and plot titles).

Parameters ride in the model name, e.g. ``sim/p=0.7,q=0.8,noise=0.1,bias=0.2,seed=1`` (``sim/default``
for all defaults); unknown keys and out-of-range values are refused with a clear error:

=========  =======  ==========================================================================================
parameter  default  meaning
=========  =======  ==========================================================================================
``p``      0.7      actor skill: probability that a move targets a useful gold paragraph (else a distractor)
``q``      0.8      answerer skill: probability of answering right once both gold paragraphs were observed;
                    also the judge's probability of picking the right candidate
``noise``  0.1      standard deviation of the gaussian noise on the critic's progress score
``bias``   0.1      over-confidence: added to the critic's score; probability that the verifier says
                    SUCCESS for a wrong answer
``seed``   0        base seed; every draw is seeded by (seed, a hash of the request, its repeat count)
``cnoise`` 0.2      noise of the confidence a reply reports: 0.8 for a right answer or a move toward a gold
                    paragraph, 0.3 for a wrong answer or a move toward a distractor, plus N(0, cnoise),
                    clipped to [0.01, 0.99] (sent as token log-probabilities, which a cascade reads as a
                    confidence signal); structured replies report none
``pin``    0        price in dollars per million prompt tokens (the model is free unless priced)
``pout``   0        price in dollars per million completion tokens
=========  =======  ==========================================================================================

Two simulated models with different skills and prices make a weak-and-cheap / strong-and-expensive pair for a
cascade (``agent bench hotpotqa --model 'sim/p=0.5,q=0.6,pin=0.2,pout=0.6>sim/p=0.9,q=0.95,pin=5,pout=15'``).
The new keys (``cnoise``, ``pin``, ``pout``) appear in the canonical name only when they are not the default.

How it works. :func:`register_items` (called by the bench runner) gives it the questions with their gold
paragraphs; a request is matched to its item by the question text found in the messages. A gold
paragraph counts as *observed* when its supporting sentences (HotpotQA ``supporting_facts``), or its whole
text when those are unknown, appear in the messages (tool results, or a summary a strategy pasted into a
prompt). The role is read from the request:

* **actor** (``tools`` offered): if every gold paragraph was observed it answers (as the answerer below).
  Otherwise, with probability ``p`` it targets a gold title it could know — the first supporting title; the
  second hop only after the first paragraph was observed (both at once for ``comparison`` questions, whose
  question names both) — else a distractor title from the item's own context paragraphs. It calls
  ``read(title)`` when the title was listed in a search result but its evidence not yet seen, else
  ``search(query=title)``. With the web tools (``web_search`` / ``read_url``, no ``search``) the same
  moves go by URL: ``read_url(url)`` of the title's URL listed by a ``web_search``, else
  ``web_search(query=title)``.
* **answerer** (no tools, no ``response_format``): the gold answer with probability ``q`` if both gold
  paragraphs were observed; otherwise a guess: a title seen in a result (``yes``/``no`` at random for yes/no
  questions), or ``unknown``.
* **structured roles** (``response_format`` of type ``json_schema``, by ``json_schema.name``: a
  ``thrifty.agents.structured.StructuredRole``):
  ``critic`` ``{"progress", "reason"}`` — 1 if the last step's observation showed a gold paragraph not seen
  before, else 0, plus N(0, noise) plus bias, clipped to [0, 1]; ``verdict`` — SUCCESS if the proposed answer
  is right (also, with probability ``bias``, when it is wrong), else CONTINUE if a gold paragraph was
  observed, else PIVOT; ``plan`` — the question split into 1-2 clues; ``judge`` ``{"index", "reason"}`` — the
  candidate equal to the gold answer with probability ``q``, else the first; ``candidates``
  ``{"actions": [...]}`` — k distinct actor moves (k from the schema or the prompt, default 3), or one
  ``answer`` action once both gold paragraphs were observed; ``final_answer`` ``{"answer"}`` — as the
  answerer. Any other schema gets a minimal valid object. The verdict's trajectory summary carries the gold
  evidence seen, so a strategy that replaces the trajectory by the summary keeps what was found.

The actor ignores the ``<budget>`` block: budget awareness shows only through what a strategy's graph does.

Token usage is reported as ``len(prompt text) // 4`` prompt tokens and ``len(output) // 4 + 1`` completion
tokens, so costs are meaningful when a price is set (sim models are free unless priced: ``agent bench
hotpotqa --price-in/--price-out``, dollars per million tokens, or ``Pricing.models``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import itertools
import json
import math
import random
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from thrifty.agents.structured import StructuredRole
from thrifty.bench.datasets import QAItem
from thrifty.bench.metrics import exact_match, normalize_answer
from thrifty.budget import ModelPrice
from thrifty.models import Provider, register_provider
from thrifty.models._litellm import get_litellm
from thrifty.models.protocol import content_text, message_field
from thrifty.tools import Corpus

get_litellm()  # offline: LiteLLM must not fetch its price map
import litellm  # noqa: E402
from litellm.exceptions import BadRequestError  # noqa: E402
from litellm.llms.custom_llm import CustomLLM  # noqa: E402
from litellm.types.utils import ChatCompletionTokenLogprob, ChoiceLogprobs  # noqa: E402

__all__ = [
    "SIM_DEFAULTS",
    "SimModelError",
    "SimParams",
    "SimProvider",
    "clear_items",
    "is_sim_model",
    "register_items",
    "run_scope",
]

SIM_DEFAULTS: dict[str, float | int] = {
    "p": 0.7,
    "q": 0.8,
    "noise": 0.1,
    "bias": 0.1,
    "seed": 0,
    "cnoise": 0.2,
    "pin": 0.0,
    "pout": 0.0,
}
_OPTIONAL_KEYS = ("cnoise", "pin", "pout")  # named in the canonical model name only when not the default
CONFIDENCE_RIGHT, CONFIDENCE_WRONG = 0.8, 0.3
_PROB_KEYS = ("p", "q", "bias")


class SimModelError(ValueError):
    """A ``sim/`` model name that cannot be parsed, or a request the simulated model cannot serve."""


class SimRequestError(BadRequestError, SimModelError):
    """What ``litellm.completion`` raises for a bad sim request: a clean message, never retried."""

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message=message, model=f"sim/{model}", llm_provider="sim")


def is_sim_model(model: str) -> bool:
    return model.startswith("sim/")


@dataclass(frozen=True)
class SimParams:
    """The skill settings of a simulated model (see the module docstring)."""

    p: float = 0.7
    q: float = 0.8
    noise: float = 0.1
    bias: float = 0.1
    seed: int = 0
    cnoise: float = 0.2
    pin: float = 0.0
    pout: float = 0.0

    @classmethod
    def parse(cls, name: str) -> SimParams:
        """Parse ``sim/p=0.7,q=0.8`` (or the part after ``sim/``); ``default`` or nothing for defaults."""
        spec = name.removeprefix("sim/").strip()
        if spec in ("", "default"):
            return cls()
        values: dict[str, Any] = {}
        for part in spec.split(","):
            key, sep, raw = part.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not key or not raw:
                raise SimModelError(
                    f"sim model '{name}': '{part}' is not key=value (example: sim/p=0.7,q=0.8,noise=0.1,bias=0.2,seed=1)"
                )
            if key not in SIM_DEFAULTS:
                raise SimModelError(
                    f"sim model '{name}': unknown parameter '{key}' (known: {', '.join(SIM_DEFAULTS)})"
                )
            if key in values:
                raise SimModelError(f"sim model '{name}': parameter '{key}' given twice")
            try:
                value: float | int = int(raw) if key == "seed" else float(raw)
            except ValueError:
                kind = "an integer" if key == "seed" else "a number"
                raise SimModelError(f"sim model '{name}': {key}={raw!r} is not {kind}") from None
            if key in _PROB_KEYS and not 0.0 <= value <= 1.0:
                raise SimModelError(f"sim model '{name}': {key} must be in [0, 1] (got {raw})")
            if key in ("noise", *_OPTIONAL_KEYS) and (value < 0 or math.isnan(value) or math.isinf(value)):
                raise SimModelError(f"sim model '{name}': {key} must be >= 0 and finite (got {raw})")
            values[key] = value
        return cls(**values)

    @property
    def model(self) -> str:
        """The canonical model name, with every parameter spelled out."""
        extra = "".join(
            f",{key}={getattr(self, key):g}"
            for key in _OPTIONAL_KEYS
            if getattr(self, key) != SIM_DEFAULTS[key]
        )
        return (
            f"sim/p={self.p:g},q={self.q:g},noise={self.noise:g},bias={self.bias:g},seed={self.seed}{extra}"
        )

    def price(self) -> ModelPrice:
        """What a call costs (``pin`` / ``pout`` are dollars per million tokens)."""
        return ModelPrice(input_per_token=self.pin / 1e6, output_per_token=self.pout / 1e6)


# ------------------------------------------------------------------------------------------ gold data
def _norm(text: str) -> str:
    return " ".join(text.split())


@dataclass
class _Gold:
    item: QAItem
    evidence: dict[str, list[str]]  # gold title -> normalised strings that must all appear to observe it
    distractors: list[str]


_items: dict[str, _Gold] = {}
_items_lock = threading.Lock()


def _evidence(item: QAItem, title: str, corpus: Corpus | None) -> list[str]:
    text = (corpus.text_of(title) if corpus is not None else None) or item.context.get(title) or ""
    folded = _norm(text)
    sentences = [_norm(s) for s in item.supporting.get(title, []) if _norm(s)]
    found = [s for s in sentences if s in folded] if folded else sentences
    if found:
        return found
    return [folded] if folded else [_norm(title)]


def register_items(items: Sequence[QAItem], corpus: Corpus | None = None) -> None:
    """Give the simulated model the gold data of ``items`` (their supporting titles and sentences).

    ``corpus`` is the closed corpus the agent searches, so that evidence is looked for in the text the
    tools really return. Items without gold titles (question/answer files) cannot be simulated.
    """
    with _items_lock:
        for item in items:
            if not item.gold_titles:
                raise SimModelError(
                    f"the sim model needs gold paragraphs, and item {item.id!r} has none "
                    "(use a HotpotQA-format file)"
                )
            evidence = {t: _evidence(item, t, corpus) for t in item.gold_titles}
            distractors = [t for t in item.context if t not in item.gold_titles]
            _items[_norm(item.question)] = _Gold(item, evidence, distractors)


def clear_items() -> None:
    """Forget every registered item (tests)."""
    with _items_lock:
        _items.clear()


# --------------------------------------------------------------------------------- repeat counting
_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("thrifty_sim_scope", default=None)
_seen: dict[tuple[str, str], int] = {}
_seen_lock = threading.Lock()


@contextlib.contextmanager
def run_scope(key: str) -> Iterator[None]:
    """Count repeated identical requests per run (the bench runner opens one scope per run).

    Inside a scope, an identical request asked again (e.g. samples without distinct seeds) gets a fresh
    draw, and the k-th repeat draws the same in every run, whatever other runs do in parallel. Outside a
    scope (or in threads that do not inherit it) a reply depends on the request alone.
    """
    token = _scope.set(key)
    try:
        yield
    finally:
        _scope.reset(token)
        with _seen_lock:
            for k in [k for k in _seen if k[0] == key]:
                del _seen[k]


# -------------------------------------------------------------------------------------- the request
_TITLE_LINE = re.compile(r"^\s*Title:\s*(.+?)\s*$", re.MULTILINE)
_TITLE_URL = re.compile(r"^\s*Title:\s*(.+?)\s*\n\s*URL:\s*(\S+)", re.MULTILINE)  # a web_search result
_SECONDS = re.compile(r"seconds remaining: \d+")
_RENDERED_CALL = re.compile(r"\b(\w+)\((\{[^\n]*?\})\)")


@dataclass
class _Request:
    messages: list[dict[str, Any]]  # role, content (raw), calls [(name, args dict)]
    params: dict[str, Any]
    gold: _Gold
    all_text: str = ""
    seen_titles: list[str] = field(default_factory=list)
    queried: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)  # title -> URL, from web_search results

    def __post_init__(self) -> None:
        self.all_text = _norm("\n".join(m["content"] for m in self.messages))
        for m in self.messages:
            for title in _TITLE_LINE.findall(m["content"]):
                if title not in self.seen_titles:
                    self.seen_titles.append(title)
            for title, url in _TITLE_URL.findall(m["content"]):
                self.urls.setdefault(title, url)
            calls = list(m["calls"])
            for name, raw in _RENDERED_CALL.findall(m["content"]):  # "> search({...})" in a pasted trajectory
                with contextlib.suppress(json.JSONDecodeError):
                    args = json.loads(raw)
                    if isinstance(args, dict):
                        calls.append((name, args))
            for _name, args in calls:
                for value in args.values():
                    if isinstance(value, str):
                        self.queried.append(value)

    @property
    def item(self) -> QAItem:
        return self.gold.item

    def observed_in(self, text: str) -> set[str]:
        return {t for t, ev in self.gold.evidence.items() if all(e in text for e in ev)}

    @property
    def observed(self) -> set[str]:
        return self.observed_in(self.all_text)

    @property
    def tool_names(self) -> list[str]:
        return [
            str(message_field(message_field(t, "function") or {}, "name") or "")
            for t in self.params.get("tools") or []
        ]

    def last_user_index(self) -> int | None:
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i]["role"] in ("user", "system") and self.messages[i]["content"]:
                return i
        return None

    def last_user_text(self) -> str:
        index = self.last_user_index()
        return self.messages[index]["content"] if index is not None else ""


def _parse_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        calls = []
        for call in message_field(message, "tool_calls") or []:
            function = message_field(call, "function") or {}
            raw = message_field(function, "arguments") or "{}"
            try:
                args = json.loads(raw) if isinstance(raw, str) else dict(raw)
            except (json.JSONDecodeError, TypeError, ValueError):
                args = {}
            calls.append((str(message_field(function, "name") or ""), args if isinstance(args, dict) else {}))
        out.append(
            {
                "role": str(message_field(message, "role") or "user"),
                "content": content_text(message_field(message, "content")),
                "calls": calls,
            }
        )
    return out


def _find_item(messages: list[dict[str, Any]]) -> _Gold | None:
    texts = [_norm(m["content"]) for m in messages if m["role"] != "assistant"]
    with _items_lock:
        registered = list(_items.items())
    best: _Gold | None = None
    best_len = -1
    for question, gold in registered:
        if len(question) > best_len and any(question in t for t in texts):
            best, best_len = gold, len(question)
    return best


#: A URL's scheme, host and port (``http://127.0.0.1:53211``): the local web's port changes run to run.
_URL_BASE = re.compile(r"\bhttps?://[^\s/'\"<>]+")


def _unported(value: Any) -> Any:
    """Text (or a tool call's arguments) with each URL's scheme, host and port replaced by one placeholder,
    so that a request hashes the same whatever port the local web got."""
    if isinstance(value, str):
        return _URL_BASE.sub("http://host", value)
    if isinstance(value, list | tuple):
        return [_unported(v) for v in cast("list[Any]", value)]
    if isinstance(value, dict):
        return {k: _unported(v) for k, v in cast("dict[str, Any]", value).items()}
    return value


def _request_hash(model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]) -> str:
    rf = params.get("response_format")
    canonical = {
        "model": model,
        "messages": [
            [m["role"], _unported(_SECONDS.sub("seconds remaining: -", m["content"])), _unported(m["calls"])]
            for m in messages
        ],
        "tools": sorted(
            str(message_field(message_field(t, "function") or {}, "name")) for t in params.get("tools") or []
        ),
        "format": json.dumps(rf, sort_keys=True, default=str) if rf else None,
        "seed": params.get("seed"),
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------- behaviours
@dataclass
class _Out:
    content: str | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    confidence: float | None = None  # an answer's, reported as log-probabilities


class _Sim:
    """One request's decision, with its own seeded random stream."""

    def __init__(self, params: SimParams, req: _Request, rng: random.Random) -> None:
        self.params = params
        self.req = req
        self.rng = rng

    # ----------------------------------------------------------------------------- shared pieces
    def known_useful(self) -> list[str]:
        gold = self.req.item.gold_titles
        observed = self.req.observed
        if self.req.item.type == "comparison":
            known = list(gold)
        else:
            known = [gold[0]]
            for prev, nxt in itertools.pairwise(gold):
                if prev in observed:
                    known.append(nxt)
                else:
                    break
        return [t for t in known if t not in observed]

    def distractor(self) -> str:
        options = self.req.gold.distractors or [self.req.item.question]
        fresh = [t for t in options if t not in self.req.queried]
        return self.rng.choice(fresh or options)

    def target(self) -> str:
        useful = self.known_useful()
        if useful and self.rng.random() < self.params.p:
            return useful[0]
        return self.distractor()

    def move(self, title: str, tools: Sequence[str], queried: Sequence[str]) -> tuple[str, dict[str, Any]]:
        evidence_seen = title in self.req.observed
        if "search" not in tools and "web_search" in tools:  # the web tools: same moves, by URL
            return self._web_move(title, tools, queried, evidence_seen)
        # Read a page listed by a search, or one a search for its title failed to surface (opened by name).
        if "read" in tools and not evidence_seen and (title in self.req.seen_titles or title in queried):
            return "read", {"title": title}
        if "search" in tools:
            query = title
            if query in queried:  # a repeat would be served from the cache: look at it differently
                words = [w for w in re.findall(r"\w+", self.req.item.question) if len(w) > 3][:3]
                query = " ".join([title, *words])
            return "search", {"query": query}
        if "read" in tools:
            return "read", {"title": title}
        return self._generic_move(title)

    def _web_move(
        self, title: str, tools: Sequence[str], queried: Sequence[str], evidence_seen: bool
    ) -> tuple[str, dict[str, Any]]:
        url = self.req.urls.get(title)
        if "read_url" in tools and url and not evidence_seen and url not in queried:
            return "read_url", {"url": url}
        query = title
        if query in queried:
            words = [w for w in re.findall(r"\w+", self.req.item.question) if len(w) > 3][:3]
            query = " ".join([title, *words])
        return "web_search", {"query": query}

    def _generic_move(self, title: str) -> tuple[str, dict[str, Any]]:
        for spec in self.req.params.get("tools") or []:
            function = message_field(spec, "function") or {}
            props = (message_field(function, "parameters") or {}).get("properties") or {}
            name = str(message_field(function, "name") or "")
            for arg, schema in props.items():
                if isinstance(schema, Mapping) and schema.get("type") == "string":
                    return name, {arg: title}
            return name, {}
        return "search", {"query": title}

    def answer(self) -> str:
        item = self.req.item
        if set(item.gold_titles) <= self.req.observed and self.rng.random() < self.params.q:
            return item.answers[0]
        if normalize_answer(item.answers[0]) in ("yes", "no"):
            return self.rng.choice(["yes", "no"])
        titles = [t for t in self.req.seen_titles if t]
        return self.rng.choice(titles) if titles else "unknown"

    # ------------------------------------------------------------------------------------- roles
    def actor(self) -> _Out:
        if set(self.req.item.gold_titles) <= self.req.observed:
            return _Out(content=self.answer())
        name, args = self.move(self.target(), self.req.tool_names, self.req.queried)
        return _Out(calls=[(name, args)])

    def answerer(self) -> _Out:
        return _Out(content=self.answer())

    def _last_step(self) -> tuple[str, str]:
        """(text of the last step's observation, text of everything before it)."""
        msgs = self.req.messages
        if any(m["role"] == "tool" for m in msgs):
            end = len(msgs)
            while end > 0 and msgs[end - 1]["role"] != "tool":
                end -= 1
            start = end
            while start > 0 and msgs[start - 1]["role"] == "tool":
                start -= 1
            last = "\n".join(m["content"] for m in msgs[start:end])
            before = "\n".join(m["content"] for m in msgs[:start])
            return _norm(last), _norm(before)
        last_index = self.req.last_user_index()
        text = msgs[last_index]["content"] if last_index is not None else ""
        marks = list(re.finditer(r"(?i)\b(observation|result)s?\b\s*[:\-]", text))
        earlier = "\n".join(m["content"] for i, m in enumerate(msgs) if i != last_index)
        if marks:
            cut = marks[-1].start()
            return _norm(text[cut:]), _norm(earlier + "\n" + text[:cut])
        return _norm(text), _norm(earlier)

    def critic(self) -> dict[str, Any]:
        last, before = self._last_step()
        new = self.req.observed_in(last) - self.req.observed_in(before)
        truth = 1.0 if new else 0.0
        score = truth + self.rng.gauss(0.0, self.params.noise) + self.params.bias
        score = min(1.0, max(0.0, score))
        reason = f"new evidence on {sorted(new)[0]}" if new else "no new relevant information"
        return {"progress": round(score, 4), "reason": reason}

    def _proposed_answer(self) -> str | None:
        text = self.req.last_user_text()
        found = re.findall(
            r"(?im)^\s*(?:proposed|candidate|current|final)?\s*answer\s*[:=]\s*(.+?)\s*$", text
        )
        if found:
            return found[-1].strip().strip("\"'`*")
        for m in reversed(self.req.messages):
            if m["role"] == "assistant" and m["content"] and not m["calls"]:
                return m["content"].strip()
        return None

    def verdict(self) -> dict[str, Any]:
        proposed = self._proposed_answer()
        correct = proposed is not None and bool(exact_match(proposed, self.req.item.answers))
        observed = self.req.observed
        overconfident = self.rng.random() < self.params.bias
        if correct or (proposed is not None and overconfident):
            decision = "SUCCESS"
        elif observed:
            decision = "CONTINUE"
        else:
            decision = "PIVOT"
        evidence = " ".join(e for t in sorted(observed) for e in self.req.gold.evidence[t])
        return {
            "verification": f"proposed answer {proposed!r} checked against the evidence",
            "decision": decision,
            "justification": "the evidence supports it"
            if decision == "SUCCESS"
            else (
                "a relevant passage was found; dig deeper"
                if decision == "CONTINUE"
                else "no relevant evidence yet"
            ),
            "trajectory_summary": evidence or "nothing relevant found yet",
        }

    def plan(self) -> dict[str, Any]:
        question = self.req.item.question.rstrip("?")
        parts = re.split(r"(?i)\s*,\s*|\s+(?=(?:who|which|that|where|when|whose)\s)", question, maxsplit=1)
        clues = [p.strip() for p in parts if p and p.strip()][:2] or [question]
        return {"exploration": clues, "verification": [f"the answer satisfies: {question}?"]}

    def judge(self) -> dict[str, Any]:
        text = self.req.last_user_text()
        found = re.findall(r"(?im)^\s*(?:candidate\s*)?[\[\(#]?(\d+)[\]\).:]\s+(.+?)\s*$", text)
        if not found:
            return {"index": 0, "reason": "no candidates listed"}
        # "0. Paris [SUCCESS] justification": the answer is what comes before a bracketed tag
        candidates = [(int(i), re.split(r"\s+\[", c, maxsplit=1)[0].strip().strip("\"'`*")) for i, c in found]
        right = [i for i, c in candidates if exact_match(c, self.req.item.answers)]
        if right and self.rng.random() < self.params.q:
            return {"index": right[0], "reason": "best supported by the evidence"}
        return {"index": candidates[0][0], "reason": "first candidate"}

    def candidates(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        actions_schema = (schema.get("properties") or {}).get("actions") or {}
        k = actions_schema.get("maxItems") or actions_schema.get("minItems")
        text = "\n".join(m["content"] for m in self.req.messages if m["role"] != "assistant")
        if not k:
            m = re.search(
                r"(?i)\b(\d+)\s+(?:distinct\s+|different\s+|diverse\s+|next\s+)*(?:candidate\s+)?"
                r"(?:actions|moves|tool calls|candidates)",
                text,
            )
            k = int(m.group(1)) if m else 3
        k = max(1, min(int(k), 10))
        offered = self.req.tool_names or [
            t
            for t in ("search", "read", "answer")
            if re.search(rf"(?m)^\s*-\s*{t}\(|\b{t} (used|remaining)", text)
        ]
        if set(self.req.item.gold_titles) <= self.req.observed and "answer" in offered:
            return {
                "thought": "the evidence gives the answer",
                "actions": [{"tool": "answer", "arguments": {"answer": self.answer()}}],
            }
        tools = [t for t in offered if t != "answer"] or ["search"]
        actions: list[dict[str, Any]] = []
        keys: set[str] = set()
        for _ in range(k * 8):
            name, args = self.move(self.target(), tools, self.req.queried)
            key = json.dumps([name, args], sort_keys=True)
            if key not in keys:
                keys.add(key)
                actions.append({"tool": name, "arguments": args})
            if len(actions) == k:
                break
        return {"thought": "next moves", "actions": actions}


def _role(name: str) -> StructuredRole | None:
    """The built-in role a structured request names (its ``json_schema`` name), or None."""
    try:
        return StructuredRole(name)
    except ValueError:
        return None


def minimal_json(schema: Any) -> Any:
    """A minimal value valid for a (simple) JSON schema: required fields only, first enum values."""
    if not isinstance(schema, Mapping):
        return {}
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return minimal_json(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: minimal_json(props.get(name, {})) for name in schema.get("required") or []}
    if kind == "array":
        return [minimal_json(schema.get("items") or {}) for _ in range(int(schema.get("minItems") or 0))]
    if kind == "string":
        return "x" * int(schema.get("minLength") or 0)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}


def _conform(obj: dict[str, Any], schema: Any) -> dict[str, Any]:
    """Fit a role's answer to the schema the strategy asked for: add missing required fields, drop extras
    when additional properties are forbidden, and move a critic score to the schema's number field."""
    if not isinstance(schema, Mapping) or not schema.get("properties"):
        return obj
    props: Mapping[str, Any] = schema["properties"]
    if "progress" in obj and "progress" not in props:
        numeric = [
            k for k, s in props.items() if isinstance(s, Mapping) and s.get("type") in ("number", "integer")
        ]
        if numeric:
            obj = {**obj, numeric[0]: obj["progress"]}
    for name in schema.get("required") or []:
        if name not in obj:
            obj[name] = minimal_json(props.get(name, {}))
    if schema.get("additionalProperties") is False:
        obj = {k: v for k, v in obj.items() if k in props}
    return obj


def _confidence(params: SimParams, item: QAItem, answer: str, seed_material: bytes) -> float:
    """The confidence an answer reports: higher when it is right, with noise ``cnoise`` (its own random
    stream, so the other draws are the same whatever it is)."""
    return _draw_confidence(params, bool(exact_match(answer, item.answers)), seed_material)


def _draw_confidence(params: SimParams, right: bool, seed_material: bytes) -> float:
    rng = random.Random(int.from_bytes(hashlib.sha256(seed_material + b"|confidence").digest()[:8], "big"))
    base = CONFIDENCE_RIGHT if right else CONFIDENCE_WRONG
    return min(0.99, max(0.01, base + rng.gauss(0.0, params.cnoise)))


# ---------------------------------------------------------------------------------------- provider
def _usage_tokens(messages: list[dict[str, Any]], output: str) -> tuple[int, int]:
    prompt_text = "".join(m["content"] + "".join(n + json.dumps(a) for n, a in m["calls"]) for m in messages)
    return len(prompt_text) // 4, len(output) // 4 + 1


class SimProvider(CustomLLM):
    """LiteLLM custom provider ``sim``: ``litellm.completion(model="sim/p=0.7", ...)`` (benchmarks only)."""

    def respond(
        self, model: str, messages: Sequence[Any], params: Mapping[str, Any]
    ) -> tuple[_Out, tuple[int, int]]:
        """Decide the reply to one request: (output, (prompt tokens, completion tokens))."""
        name = model.removeprefix("sim/")
        try:
            sim_params = SimParams.parse(name)
        except SimModelError as exc:
            raise SimRequestError(str(exc), name) from None
        parsed = _parse_messages(messages)
        gold = _find_item(parsed)
        if gold is None:
            raise SimRequestError(
                "sim model: no registered question found in the request; the simulated model only serves "
                "benchmark questions (thrifty.bench.sim.register_items, done by `agent bench`)",
                name,
            )
        req = _Request(parsed, dict(params), gold)
        digest = _request_hash(sim_params.model, parsed, params)
        scope = _scope.get()
        repeat = 0
        if scope is not None:  # outside a run scope a request is a pure function of its content
            with _seen_lock:
                repeat = _seen.get((scope, digest), 0)
                _seen[(scope, digest)] = repeat + 1
        seed_material = f"{sim_params.seed}|{digest}|{repeat}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(seed_material).digest()[:8], "big"))
        sim = _Sim(sim_params, req, rng)

        out: _Out
        answer: str | None = None
        rf = params.get("response_format")
        if rf:
            spec = message_field(rf, "json_schema") or {}
            name = (
                str(message_field(spec, "name") or "") if message_field(rf, "type") == "json_schema" else ""
            )
            schema = message_field(spec, "schema") or {}
            match _role(name):
                case StructuredRole.CRITIC:
                    obj = sim.critic()
                case StructuredRole.VERDICT:
                    obj = sim.verdict()
                case StructuredRole.PLAN:
                    obj = sim.plan()
                case StructuredRole.JUDGE:
                    obj = sim.judge()
                case StructuredRole.FINAL_ANSWER:
                    answer = sim.answer()
                    obj = {"answer": answer}
                case StructuredRole.CANDIDATES:
                    obj = sim.candidates(schema if isinstance(schema, Mapping) else {})
                case _:  # a role of a custom node: the smallest object the schema allows
                    minimal = minimal_json(schema)
                    obj = minimal if isinstance(minimal, dict) else {}
            out = _Out(content=json.dumps(_conform(obj, schema)))
        elif params.get("tools"):
            out = sim.actor()
            answer = out.content if not out.calls else None
            if out.calls:  # a move toward a gold paragraph is surer than one toward a distractor
                useful = any(t in json.dumps(args) for _n, args in out.calls for t in gold.item.gold_titles)
                out.confidence = _draw_confidence(sim_params, useful, seed_material)
        else:
            out = sim.answerer()
            answer = out.content
        if answer is not None:
            out.confidence = _confidence(sim_params, gold.item, answer, seed_material)
        text = out.content or "".join(n + json.dumps(a) for n, a in out.calls)
        prompt_tokens, completion_tokens = _usage_tokens(parsed, text)
        cap = params.get("max_tokens")
        if cap:
            completion_tokens = min(completion_tokens, int(cap))
        return out, (prompt_tokens, completion_tokens)

    def completion(
        self,
        model: str,
        messages: list,
        api_base: str,
        custom_prompt_dict: dict,
        model_response: Any,
        print_verbose: Any,
        encoding: Any,
        api_key: Any,
        logging_obj: Any,
        optional_params: dict,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        out, (prompt_tokens, completion_tokens) = self.respond(model, messages, optional_params or {})
        choice = model_response.choices[0]
        choice.message.content = out.content
        if out.confidence is not None:
            choice.logprobs = ChoiceLogprobs(
                content=[
                    ChatCompletionTokenLogprob(
                        token=out.content or "", logprob=math.log(out.confidence), top_logprobs=[]
                    )
                ]
            )
        if out.calls:
            digest = hashlib.sha256(json.dumps([len(messages), out.calls], default=str).encode()).hexdigest()
            choice.message.tool_calls = [
                litellm.types.utils.ChatCompletionMessageToolCall(
                    id=f"call_sim_{digest[:10]}_{i}",
                    type="function",
                    function={"name": name, "arguments": json.dumps(args)},
                )
                for i, (name, args) in enumerate(out.calls)
            ]
            choice.finish_reason = "tool_calls"
        else:
            choice.finish_reason = "stop"
        model_response.usage = litellm.Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )
        model_response.model = f"sim/{model.removeprefix('sim/')}"
        return model_response

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        await asyncio.sleep(0)
        return self.completion(*args, **kwargs)


@dataclass(frozen=True)
class _SimModels(Provider):
    """The ``sim`` prefix: free unless its name sets a price (``pin`` / ``pout``) or Pricing does."""

    def default_price(self, model: str) -> ModelPrice | None:
        try:
            return SimParams.parse(model).price()
        except SimModelError:
            return ModelPrice()

    def validate(self, model: str, api_base: str | None = None) -> None:
        try:
            SimParams.parse(model)
        except SimModelError as exc:
            raise ValueError(str(exc)) from None


# The simulated model is a provider like any other, registered by the bench (the core never names it).
SIM_PROVIDER = register_provider(_SimModels("sim", handler=SimProvider, in_process=True, free=True))
