"""The embedded local model (SmolLM2-135M via llama.cpp) through LiteLLM's ``local`` custom provider.

These run the real model on CPU, so every call uses a small ``max_tokens`` and temperature 0 (greedy,
hence deterministic for a given build). The point of the tool tests is the grammar guarantee: whatever
the 135M model "thinks", its reply must come back as either a well-formed tool call or a plain answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

from thrifty.models.local import (
    LocalModelError,
    LocalProvider,
    _answer_value,
    _load,
    _option_logprobs,
    _schema_grammar,
    _tool_plan,
    context_window,
    count_tokens,
    resolve_model_path,
    thread_count,
)
from thrifty.models.protocol import render_messages
from thrifty.models.registry import ENUM_CHOICE

pytestmark = pytest.mark.local_model

MODEL = "local/smollm2"
MAX_TOKENS = 48

SEARCH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web for a query.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "what to search for"}},
            "required": ["query"],
        },
    },
}


@pytest.fixture(scope="module", autouse=True)
def local_provider() -> Iterator[None]:
    """Register only the local provider for this module, then restore whatever was registered before."""
    try:
        resolve_model_path("smollm2")
    except ImportError as exc:
        pytest.skip(str(exc))
    saved_map = list(litellm.custom_provider_map)
    saved_quiet = litellm.suppress_debug_info
    litellm.suppress_debug_info = True
    litellm.custom_provider_map = [{"provider": "local", "custom_handler": LocalProvider()}]
    try:
        yield
    finally:
        litellm.custom_provider_map = saved_map
        litellm.suppress_debug_info = saved_quiet
        from litellm.utils import custom_llm_setup

        custom_llm_setup()


def _ask(messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    kwargs.setdefault("max_tokens", MAX_TOKENS)
    kwargs.setdefault("temperature", 0)
    return litellm.completion(model=MODEL, messages=messages, **kwargs)


def _assert_parsed(reply: Any) -> None:
    """A tool reply is a well-formed ``search`` call or a plain answer; never raw grammar JSON."""
    choice = reply.choices[0]
    message = choice.message
    if message.tool_calls:
        assert choice.finish_reason == "tool_calls"
        assert message.content is None
        (call,) = message.tool_calls
        assert call.id.startswith("call_")
        assert call.function.name == "search"
        arguments = json.loads(call.function.arguments)
        assert isinstance(arguments, dict)
        assert isinstance(arguments["query"], str)
    else:
        assert choice.finish_reason == "stop"
        assert isinstance(message.content, str)
        assert message.content.strip()
        assert not message.content.lstrip().startswith("{"), message.content


def test_simple_question_has_content_and_usage() -> None:
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    reply = _ask(messages)
    assert reply.choices[0].message.content.strip()
    assert reply.model == MODEL
    usage = reply.usage
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= MAX_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize(
    "question",
    [
        "Who won the 2022 football world cup?",
        "Find recent news about Mars rovers.",
        "What is 2+2?",
    ],
)
def test_tool_reply_always_parses(question: str) -> None:
    reply = _ask([{"role": "user", "content": question}], tools=[SEARCH_TOOL])
    _assert_parsed(reply)


def test_required_tool_choice_forces_a_call() -> None:
    reply = _ask([{"role": "user", "content": "Hello there!"}], tools=[SEARCH_TOOL], tool_choice="required")
    assert reply.choices[0].message.tool_calls
    _assert_parsed(reply)


def test_tool_results_in_history_are_rendered() -> None:
    """OpenAI tool traffic (assistant tool_calls + role "tool") must not trip SmolLM2's chat template."""
    messages = [
        {"role": "user", "content": "Who wrote Hamlet?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search", "arguments": json.dumps({"query": "Hamlet author"})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Hamlet was written by William Shakespeare."},
    ]
    reply = _ask(messages, tools=[SEARCH_TOOL])
    _assert_parsed(reply)


def test_response_format_json_schema_is_enforced() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    reply = _ask(
        [{"role": "user", "content": "Invent a person. Give their name and age as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    data = json.loads(reply.choices[0].message.content)
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int)


def test_unknown_model_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="smollm2") as info:
        litellm.completion(model="local/no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(info.value, LocalModelError)
    assert "register_local_model" in str(info.value)


def test_count_tokens_matches_reported_prompt_tokens() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name one primary colour."},
    ]
    reply = _ask(messages, max_tokens=8)
    counted = count_tokens(MODEL, messages)
    reported = reply.usage.prompt_tokens
    assert counted > 0
    assert abs(counted - reported) <= 0.2 * reported
    with_tools = count_tokens(MODEL, messages, tools=[SEARCH_TOOL])
    assert with_tools > counted
    assert context_window(MODEL) >= 2048


def test_prompt_processing_uses_the_same_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation and prompt processing both leave a core free (the batch default would take every CPU)."""
    llama = _load(MODEL).llama
    assert llama.n_threads == llama.n_threads_batch
    monkeypatch.delenv("THRIFTY_LOCAL_N_THREADS", raising=False)
    assert thread_count() == max(1, len(os.sched_getaffinity(0)) - 1)
    monkeypatch.setenv("THRIFTY_LOCAL_N_THREADS", "3")
    assert thread_count() == 3
    monkeypatch.setenv("THRIFTY_LOCAL_N_THREADS", "zero")
    assert thread_count() == max(1, len(os.sched_getaffinity(0)) - 1)


async def test_acompletion_runs_in_a_thread() -> None:
    reply = await litellm.acompletion(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.content.strip()
    assert 0 < reply.usage.completion_tokens <= 8


def test_render_flattens_tool_traffic_for_plain_templates() -> None:
    """No model needed: tool calls become the JSON the model is asked to emit, results become user text."""
    rendered = render_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Who wrote Hamlet?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "search", "arguments": '{"query": "x"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "Shakespeare"},
        ],
        system_extra="TOOLS",
    )
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    assert rendered[0]["content"] == "Be brief.\n\nTOOLS"
    assert json.loads(rendered[2]["content"]) == {"tool": "search", "arguments": {"query": "x"}}
    assert rendered[3]["content"] == 'Result of search({"query": "x"}): Shakespeare'
    assert all(isinstance(m["content"], str) for m in rendered)


def test_nested_tool_schema_with_defs_compiles_to_a_grammar() -> None:
    """Pydantic-style ``$defs`` refs must still resolve once the schema is nested under ``arguments``."""
    params = {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}},
        "required": ["item"],
        "$defs": {
            "Item": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
        },
    }
    tool = {"type": "function", "function": {"name": "add", "parameters": params}}
    plan = _tool_plan([tool], "auto", None)
    assert plan is not None
    assert "t0__Item" in plan.schema["$defs"]
    assert _schema_grammar(plan.schema) is not None


CAPITALS = ["Paris", "London", "Berlin in Germany"]
CAPITAL_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "string", "enum": CAPITALS}},
}
CAPITAL_QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _reference_scores(prompt: str, options: list[str]) -> list[float]:
    """log P(option | prompt) computed independently of the provider: a second copy of the model that
    keeps every position's logits, each prompt + option evaluated from scratch in one batch."""
    import llama_cpp
    import numpy as np

    llama = llama_cpp.Llama(
        model_path=str(resolve_model_path("smollm2")), n_ctx=512, logits_all=True, verbose=False
    )
    try:
        prefix = llama.tokenize(prompt.encode(), add_bos=False, special=True)
        out = []
        for option in options:
            tokens = llama.tokenize(json.dumps(option).encode(), add_bos=False, special=False)
            llama.reset()
            llama.eval(prefix + tokens)
            rows = np.asarray(llama.scores[len(prefix) - 1 : len(prefix) + len(tokens) - 1], dtype=np.float64)
            logp = rows - np.logaddexp.reduce(rows, axis=1, keepdims=True)
            out.append(float(sum(logp[i, t] for i, t in enumerate(tokens))))
        return out
    finally:
        llama.close()


def test_an_enum_answer_is_the_option_the_model_finds_likeliest_as_a_whole() -> None:
    """The grammar picks "London" token by token (its first token is likelier than "Paris"'s); scored as
    whole options the model prefers "Paris". The scoring tokens are charged with the reply, within its cap."""
    grammar = _ask(CAPITAL_QUESTION, response_format=CAPITAL_FORMAT, max_tokens=64)
    likely = _ask(
        CAPITAL_QUESTION, response_format=CAPITAL_FORMAT, max_tokens=64, **{ENUM_CHOICE: "likelihood"}
    )
    chosen = json.loads(likely.choices[0].message.content)
    assert chosen in CAPITALS
    assert likely.usage.prompt_tokens == grammar.usage.prompt_tokens
    assert grammar.usage.completion_tokens < likely.usage.completion_tokens <= 64
    # The choice is the argmax of the options' log-probabilities, as a second copy of the model computes
    # them from scratch (the provider reuses its KV cache and scores token by token: up to llama.cpp's float
    # differences between batch shapes, ~1%).
    loaded = _load(MODEL)
    prompt, _ = loaded.count_formatter(render_messages(CAPITAL_QUESTION))
    reference = _reference_scores(prompt, CAPITALS)
    assert chosen == CAPITALS[max(range(len(CAPITALS)), key=reference.__getitem__)]
    llama = loaded.llama
    prefix = llama.tokenize(prompt.encode(), add_bos=False, special=True)
    encoded = [llama.tokenize(json.dumps(o).encode(), add_bos=False, special=False) for o in CAPITALS]
    assert _option_logprobs(llama, prefix, 0, encoded) == pytest.approx(reference, rel=0.03)
    assert json.loads(grammar.choices[0].message.content) in CAPITALS


def test_without_headroom_to_score_the_grammar_choice_stands() -> None:
    """Scoring every option must fit the reply's reserved tokens; when it does not, nothing is scored."""
    grammar = _ask(CAPITAL_QUESTION, response_format=CAPITAL_FORMAT, max_tokens=8)
    tight = _ask(
        CAPITAL_QUESTION, response_format=CAPITAL_FORMAT, max_tokens=8, **{ENUM_CHOICE: "likelihood"}
    )
    assert tight.choices[0].message.content == grammar.choices[0].message.content
    assert tight.usage.completion_tokens == grammar.usage.completion_tokens


def test_a_sampled_enum_answer_follows_the_seed() -> None:
    first, again = (
        _ask(
            CAPITAL_QUESTION,
            response_format=CAPITAL_FORMAT,
            max_tokens=64,
            temperature=1.5,
            seed=11,
            **{ENUM_CHOICE: "likelihood"},
        )
        .choices[0]
        .message.content
        for _ in range(2)
    )
    assert first == again and json.loads(first) in CAPITALS


def test_an_enum_answer_beside_tools_is_rescored_inside_the_answer_object() -> None:
    reply = _ask(
        [{"role": "user", "content": "What is the capital of France? Answer now, do not search."}],
        tools=[SEARCH_TOOL],
        response_format=CAPITAL_FORMAT,
        max_tokens=96,
        **{ENUM_CHOICE: "likelihood"},
    )
    _assert_parsed_or_enum(reply)


def _assert_parsed_or_enum(reply: Any) -> None:
    message = reply.choices[0].message
    if message.tool_calls:
        _assert_parsed(reply)
    else:
        assert json.loads(message.content) in CAPITALS


def test_the_answer_value_is_found_in_both_reply_shapes() -> None:
    options = ["Paris", "Nîmes"]
    assert _answer_value('"Paris"', options) == (0, 7)
    text = '{"answer": "Nîmes"}'
    start, end = _answer_value(text, options) or (0, 0)
    assert text[start:end] == '"Nîmes"'
    assert _answer_value('"Lyon"', options) is None  # not an option: left alone
    assert _answer_value('{"tool": "search", "arguments": {"query": "Paris"}}', options) is None
    assert _answer_value('{"answer": 3}', options) is None
