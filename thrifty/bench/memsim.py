"""``memsim/q=..,seed=..``: a simulated answerer for the memory benchmarks (**results labelled simulated**).

It replaces only the model; memory, the Gateway and the Ledger are the real ones. It plays three roles,
read from the request:

* **answerer** (the question is registered with its gold evidence lines): with probability ``q`` times the
  share of the question's evidence lines found in the prompt, the gold answer; else "No information
  available." (so an adversarial question is answered by refusing whenever the gold evidence is absent).
  Questions without evidence lines (LoCoMo adversarial) get a refusal with probability ``q``.
* **query rewriter** (the HIGH retrieve prompt): the question's content words, no gold knowledge;
* **note writer** (the HIGH condense prompt): the two memory lines sharing the most words with the question.

Token usage: ``len(prompt) // 4`` in, ``len(output) // 4 + 1`` out, as ``sim/``.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import litellm

from thrifty.memory.chunking import reached
from thrifty.memory.memory import content_words
from thrifty.models import Provider, register_provider
from thrifty.models.inprocess import Generation, InProcessProvider

__all__ = ["REFUSAL", "MemSimError", "register_question"]

REFUSAL = "No information available."
# The memory's own content words, with "how" also left out (it names no fact to look for).
_EXTRA_STOP = frozenset({"how"})


class MemSimError(ValueError):
    pass


class _RequestError(litellm.exceptions.BadRequestError, MemSimError):
    def __init__(self, message: str, model: str) -> None:
        super().__init__(message=message, model=model, llm_provider="memsim")


@dataclass(frozen=True)
class _Gold:
    answer: str
    lines: tuple[tuple[str, ...], ...]  # each evidence turn as the lines memory stores it


_gold: dict[str, _Gold] = {}
_lock = threading.Lock()


def register_question(question: str, answer: str, evidence_lines: Sequence[str | Sequence[str]]) -> None:
    """Tell the simulated answerer a question's gold answer and the memory lines that hold its evidence
    (per evidence turn: its line, or the pieces a long turn was stored as)."""
    turns = tuple((e,) if isinstance(e, str) else tuple(e) for e in evidence_lines)
    with _lock:
        _gold[question.strip()] = _Gold(answer, turns)


def _params(name: str) -> tuple[float, int]:
    q, seed = 0.8, 0
    for part in filter(None, name.split(",")):
        key, _, value = part.partition("=")
        try:
            if key == "q":
                q = float(value)
            elif key == "seed":
                seed = int(value)
            elif key != "default":
                raise ValueError
        except ValueError:
            raise MemSimError(f"memsim/{name}: use memsim/q=0.8,seed=0 (q within [0, 1])") from None
    if not 0.0 <= q <= 1.0:
        raise MemSimError(f"memsim/{name}: q must be within [0, 1]")
    return q, seed


def _text(messages: Sequence[Any]) -> tuple[str, str]:
    system = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    user = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
    return system, user


def _terms(text: str) -> set[str]:
    return content_words(text, extra_stop=_EXTRA_STOP)


class MemSimProvider(InProcessProvider):
    prefix = "memsim"
    model_errors = (MemSimError,)
    request_error = _RequestError

    def generate(self, model: str, messages: Sequence[Any], params: Mapping[str, Any]) -> Generation:
        name = model.removeprefix("memsim/")
        q, seed = _params(name)
        system, user = _text(messages)
        prompt = system + user
        if "Rewrite the question" in system:
            out = " ".join(sorted(_terms(user)))
        elif "You prepare notes" in system:
            question = user.rpartition("Question:")[2]
            want = _terms(question)
            lines = [ln for ln in user.split("\n") if ":" in ln and not ln.startswith("[")]
            out = "\n".join(sorted(lines, key=lambda ln: -len(want & _terms(ln)))[:2])
        else:
            out = self._answer(user.strip(), prompt, q, seed)
        cap = int(params.get("max_tokens") or 10**9)
        out = out[: cap * 4]  # a model stops at its max_tokens: never more text than the tokens reported
        message = litellm.Message(content=out, role="assistant")
        return {
            "message": message,
            "finish_reason": "stop",
            "prompt_tokens": len(prompt) // 4,
            "completion_tokens": min(len(out) // 4 + 1, cap),
        }

    @staticmethod
    def _answer(question: str, prompt: str, q: float, seed: int) -> str:
        with _lock:
            gold = _gold.get(question)
        if gold is None:
            raise MemSimError(
                "memsim answers only registered benchmark questions (agent bench locomo|longmemeval)"
            )
        digest = hashlib.sha256(f"{seed}|{question}|{prompt}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        if not gold.lines:
            return REFUSAL if rng.random() < q else gold.answer
        found = sum(1 for turn in gold.lines if reached(prompt, turn)) / len(gold.lines)
        return gold.answer if rng.random() < q * found else REFUSAL


register_provider(
    Provider("memsim", handler=MemSimProvider, in_process=True, free=True, check=_params)
)  # a bad name is refused before a run
