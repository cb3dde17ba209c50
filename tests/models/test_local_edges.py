"""The embedded local model at its edges, as an application using ``local/smollm2`` meets them: schemas
llama.cpp's grammar cannot take, out-of-range sampling settings, prompts past the context window,
concurrent callers, a tight token budget, and the host's environment.

Every generation is a few tokens at temperature 0 (greedy) on the real model, so the whole file costs a
few CPU seconds. Schemas that used to crash the process are tried in a child process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

from thrifty.budget import Budget, BudgetExceeded, Ledger
from thrifty.models import Gateway, ModelError
from thrifty.models._litellm import get_litellm
from thrifty.models.local import (
    MAX_GRAMMAR_DEPTH,
    LocalModelError,
    _grammar_depth,
    _load,
    _relaxed_schema,
    _sampling_kwargs,
    _schema_grammar,
    count_tokens,
)

from .test_local_model import local_provider  # noqa: F401  (the module's provider, registered and restored)

litellm: Any = get_litellm()  # imported offline: no price map fetch

pytestmark = pytest.mark.local_model

MODEL = "local/smollm2"
HELLO = [{"role": "user", "content": "Say hello."}]

# Schemas llama-cpp-python 0.3.16 turns into grammars that llama.cpp's parser rejects (``\d`` in a pattern
# becomes the unknown escape "\d"; a quote in a property name) or that overflow its recursive parser
# (a maxLength of 100000 is 100000 nested groups): each crashed the process with a segmentation fault.
DIGITS = {
    "type": "object",
    "properties": {"date": {"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}$"}},
    "required": ["date"],
}
LONG = {
    "type": "object",
    "properties": {"text": {"type": "string", "maxLength": 100000}},
    "required": ["text"],
}
ODD_NAME = {"type": "object", "properties": {'say "hi"\n': {"type": "string"}}}


def _ask(messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    kwargs.setdefault("max_tokens", 4)
    kwargs.setdefault("temperature", 0)
    return litellm.completion(model=MODEL, messages=messages, **kwargs)


def _format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}


# ------------------------------------------------------------------------------------ grammars

CHILD = textwrap.dedent(
    """
    import json, os, sys
    env = dict(os.environ)
    from thrifty.budget import Budget, Ledger
    from thrifty.models import Gateway
    schemas = json.loads(sys.argv[1])
    out = []
    for schema in schemas:
        gateway = Gateway(Ledger(Budget(total_tokens=4000)))
        fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
        reply = gateway.complete("local/smollm2", [{"role": "user", "content": "Fill it in."}],
                                 max_tokens=12, temperature=0, response_format=fmt)
        tool = {"type": "function", "function": {"name": "save", "parameters": schema}}
        called = gateway.complete("local/smollm2", [{"role": "user", "content": "Save something."}],
                                  tools=[tool], tool_choice="required", max_tokens=12, temperature=0)
        out.append([reply.content, called.content, [c.name for c in called.tool_calls]])
    changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
    print(json.dumps({"replies": out, "env_changed": changed}))
    """
)


def test_schemas_the_grammar_cannot_take_fall_back_instead_of_crashing_the_process() -> None:
    """A ``pattern`` with ``\\d``, a huge ``maxLength``, a property name with a quote: the reply is still
    constrained JSON (the schema relaxed, or any JSON), the call is charged, and the process lives. Using the
    local model changes no environment variable of the host (LiteLLM's tokenizer path aside)."""
    env = {k: v for k, v in os.environ.items() if "LITELLM" not in k}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([DIGITS, LONG, ODD_NAME])],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for content, call_text, calls in report["replies"]:
        assert content and content.lstrip()[0] in "{[", content  # constrained output (maybe cut short)
        # the forced call: made, or cut short by max_tokens while writing it
        compact = call_text.replace(" ", "").replace("\n", "") if call_text else ""
        assert calls == ["save"] or compact.startswith('{"tool":"save","arguments":'), call_text
    # LiteLLM points tiktoken at its bundled files on the first custom-provider call (its doing, see
    # tests/test_no_side_effects.py); nothing else may change.
    assert set(report["env_changed"]) <= {"TIKTOKEN_CACHE_DIR"}


def test_an_unusable_schema_is_relaxed_keeping_its_structure() -> None:
    llama = _load(MODEL).llama
    relaxed = _relaxed_schema(DIGITS)
    assert relaxed == {
        "type": "object",
        "properties": {"date": {"type": "string"}},
        "required": ["date"],
    }
    assert _relaxed_schema({"properties": {"pattern": {"const": {"pattern": "x"}}}}) == {
        "properties": {"pattern": {"const": {"pattern": "x"}}}  # names and data are not keywords
    }
    for schema in (DIGITS, LONG):
        grammar, relaxed_grammar = (
            _schema_grammar(schema, llama),
            _schema_grammar(_relaxed_schema(schema), llama),
        )
        assert grammar is not None and relaxed_grammar is not None
        assert grammar._grammar == relaxed_grammar._grammar
    assert _schema_grammar(ODD_NAME, llama) is None  # not even relaxed: the caller's any-JSON fallback
    fine = {"type": "string", "pattern": "^[a-z]{2,5}$", "maxLength": 5}
    kept = _schema_grammar(fine, llama)
    assert kept is not None and "[a-z]" in kept._grammar  # a pattern it can take is kept


def test_grammar_depth_counts_groups_not_quoted_parentheses() -> None:
    assert _grammar_depth('root ::= "(((" [()] ( a ( b )? )? # (((\nx ::= "\\"(" (c)') == 2
    assert MAX_GRAMMAR_DEPTH < 20000  # llama.cpp's parser overflowed an 8 MiB stack between 20000 and 40000


# ------------------------------------------------------------------------------- sampling settings


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be a whole number of at least 1, got 0"),
        ({"max_tokens": -1}, "max_tokens must be a whole number of at least 1, got -1"),
        ({"max_tokens": "many"}, "max_tokens must be a whole number of at least 1, got 'many'"),
        ({"max_tokens": 2, "temperature": -1}, "temperature must be 0 or more"),
        ({"max_tokens": 2, "temperature": float("nan")}, "temperature must be a finite number, got nan"),
        ({"max_tokens": 2, "seed": "abc"}, "seed must be a whole number, got 'abc'"),
        ({"max_tokens": 2, "stop": [3]}, "stop must be a string or a list of strings"),
    ],
)
def test_out_of_range_settings_are_a_clear_error_not_a_long_generation(
    params: dict[str, Any], message: str
) -> None:
    """llama.cpp would read max_tokens <= 0 as "until the context is full" and a negative temperature as
    unfiltered sampling; a string max_tokens surfaced as a retryable connection error with a traceback."""
    with pytest.raises(litellm.BadRequestError, match="must be") as info:
        _ask(HELLO, **params)
    assert isinstance(info.value, LocalModelError)
    assert message in str(info.value)
    assert "Traceback" not in str(info.value)


def test_sampling_settings_that_are_fine_pass_through() -> None:
    assert _sampling_kwargs({}) == {"max_tokens": 512}
    assert _sampling_kwargs({"max_completion_tokens": 7.0, "temperature": 0, "seed": -5, "stop": "x"}) == {
        "max_tokens": 7,
        "temperature": 0.0,
        "seed": -5,
        "stop": ["x"],
    }
    assert _sampling_kwargs({"max_tokens": 10**9, "temperature": 1e9, "stop": ["", "."]}) == {
        "max_tokens": 10**9,  # llama.cpp cuts it to the context left
        "temperature": 1e9,
        "stop": ["."],
    }


def test_an_empty_stop_string_does_not_empty_the_reply() -> None:
    """An empty stop string matched at once: every reply was "" (finish "stop")."""
    reply = _ask(HELLO, stop=["", "\n\n"])
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens >= 1


def test_the_same_seed_gives_the_same_sampled_reply() -> None:
    first, again = (
        _ask(HELLO, temperature=1.2, seed=7, max_tokens=6).choices[0].message.content for _ in range(2)
    )
    assert first == again and first.strip()


def test_a_huge_max_tokens_is_cut_to_the_context_and_one_token_is_one_token() -> None:
    one = _ask(HELLO, max_tokens=1)
    assert one.usage.completion_tokens == 1 and one.choices[0].finish_reason == "length"
    long = _ask(HELLO, max_tokens=10**9, stop=["."])
    assert 0 < long.usage.completion_tokens < 200


# ---------------------------------------------------------------------------------- context window


def test_a_prompt_past_the_context_window_is_refused_before_anything_is_spent() -> None:
    huge = [{"role": "user", "content": "word " * 5000}]
    assert count_tokens(MODEL, huge) > 4096
    ledger = Ledger(Budget(total_tokens=100_000))
    with pytest.raises(ModelError, match="does not fit the context of local/smollm2"):
        Gateway(ledger).complete(MODEL, huge, max_tokens=4)
    assert ledger.events == [] and ledger.overruns == []
    # called directly, llama.cpp's refusal is LiteLLM's context-window error (not retried, no crash)
    with pytest.raises(litellm.ContextWindowExceededError, match="exceed context window of 4096"):
        _ask(huge)


# ------------------------------------------------------------------------------------ concurrency


def test_threads_share_the_model_safely() -> None:
    """The llama.cpp context is not thread-safe: calls are serialised, each reply is what it is alone."""
    prompts = [[{"role": "user", "content": q}] for q in ("Say hello.", "Name a colour.", "Count to three.")]
    alone = [_ask(p).choices[0].message.content for p in prompts]
    together: list[str | None] = [None] * len(prompts)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            together[i] = _ask(prompts[i]).choices[0].message.content
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and together == alone


async def test_a_cancelled_call_does_not_block_the_next() -> None:
    """A call abandoned by its caller finishes in its worker thread and frees the model: no deadlock."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(litellm.acompletion(model=MODEL, messages=HELLO, max_tokens=24), 0.05)
    replies = await asyncio.wait_for(
        asyncio.gather(*(litellm.acompletion(model=MODEL, messages=HELLO, max_tokens=3) for _ in range(2))),
        120,
    )
    assert all(0 < r.usage.completion_tokens <= 3 for r in replies)


# ------------------------------------------------------------------------------------ the budget


def test_a_tight_token_budget_is_never_crossed() -> None:
    """Counted prompt tokens are what llama.cpp reports, so reservations hold: calls stop with
    BudgetExceeded before the limit and the Ledger records no overrun."""
    ledger = Ledger(Budget(total_tokens=150))
    gateway = Gateway(ledger)
    replies = []
    with pytest.raises(BudgetExceeded):
        for _ in range(6):
            replies.append(gateway.complete(MODEL, HELLO, max_tokens=8, temperature=0))
    assert replies and ledger.overruns == []
    assert ledger.spent["total_tokens"] <= 150
    assert {r.usage.prompt_tokens for r in replies} == {count_tokens(MODEL, HELLO)}
    assert all(r.usage.completion_tokens <= r.max_tokens for r in replies)


def test_a_second_gateway_in_the_process_shares_the_loaded_model() -> None:
    before = _load(MODEL)
    first = Gateway(Ledger(Budget(total_tokens=500))).complete(MODEL, HELLO, max_tokens=3, temperature=0)
    second = Gateway(Ledger(Budget(total_tokens=500))).complete(MODEL, HELLO, max_tokens=3, temperature=0)
    assert _load(MODEL) is before
    assert first.content == second.content


# ------------------------------------------------------------------------------------ the timeout


class _Clock:
    """A monotonic clock for the stop signal that moves one second each time it is read (once when the
    call starts, then after every token)."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def test_a_generation_is_cut_at_its_timeout_and_its_tokens_are_charged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, llama.cpp generated to ``max_tokens`` whatever the timeout (the Gateway's, capped to the time
    budget left), and a failed call was charged no tokens. Now the generation stops after the token at
    which the timeout passed, and the call fails with the tokens it used charged, once (not retried)."""
    from thrifty.models import stopping

    count = [{"role": "user", "content": "Count from 1 to 100, one number per line."}]
    full = Gateway(Ledger(Budget(total_tokens=2000))).complete(MODEL, count, max_tokens=40, temperature=0)
    assert full.usage.completion_tokens == 40  # without a timeout the reply runs to its cap

    monkeypatch.setattr(stopping, "time", _Clock())
    ledger = Ledger(Budget(total_tokens=2000))
    with pytest.raises(ModelError, match=r"GenerationTimeout.*timed out after 3.5 s"):
        Gateway(ledger, retries=2, backoff=0).complete(
            MODEL, count, max_tokens=40, temperature=0, timeout=3.5
        )
    (event,) = ledger.events  # one attempt: a cut generation is not retried
    assert event.units["input_tokens"] == full.usage.prompt_tokens
    assert event.units["output_tokens"] == 3  # the clock passed 4.5 at the third token's check
    assert ledger.overruns == []
