"""The in-process transformers provider ``hf/...`` through LiteLLM.

No pretrained causal LM is available offline, so a session fixture builds a tiny one: a byte-level BPE
tokenizer trained on a few hundred generated words, wrapped as ``PreTrainedTokenizerFast`` with a small
Jinja chat template, and a one-layer Llama with random weights (``torch.manual_seed(0)``), both written
with ``save_pretrained``. Its output is gibberish, which is the point for the tool tests: whatever the
model writes must come back as content or a tool call, never as an exception.
"""

from __future__ import annotations

import copy
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import torch

from thrifty.models import hf
from thrifty.models.hf import (
    HFExtraMissingError,
    HFModelError,
    HFProvider,
    _context_from_config,
    _prompt_ids,
    _to_message,
    _tool_plan,
    context_window,
    count_tokens,
    hf_extra_hint,
)
from thrifty.models.protocol import first_json_object

MAX_TOKENS = 6
CONTEXT = 256

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

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

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the weather in Paris?"},
]


def _build_tiny_model(directory: Path) -> None:
    """Tokenizer + random one-layer Llama, saved like any Hub checkpoint."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    # Syllable soup: a few hundred "words" are all a BPE vocabulary of 400 needs.
    words = [
        a + b
        for a in ("pa", "lon", "se", "to", "bu", "que", "wea", "an")
        for b in ("", "ris", "rch", "ken", "dget")
    ]
    corpus = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(40)]
    corpus += ['{"tool": "search", "arguments": {"query": "paris"}}', '{"answer": "yes"}']
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = TEMPLATE

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    # Random weights would also pick special tokens (which decode to nothing) and lone non-ASCII bytes
    # (which decode to U+FFFD); suppressing them in the saved generation_config, which the provider must
    # honour, makes the gibberish printable ASCII that tests can compare and cut at stop strings.
    printable = {chr(c) for c in range(33, 127)} | {"Ġ"}  # byte-level BPE writes a space as "Ġ"
    model.generation_config.suppress_tokens = sorted(
        index
        for token, index in tokenizer.get_vocab().items()
        if token != tokenizer.eos_token and (token in SPECIAL or not set(token) <= printable)
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Build the tiny checkpoint once; torch kept to one thread (the test machines are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("tiny-hf-model")
    try:
        _build_tiny_model(directory)
        yield str(directory)
    finally:
        hf.clear_cache()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def hf_provider(tiny_model_dir: str) -> Iterator[None]:
    """Register only the hf provider for this module, then restore whatever was registered before."""
    from litellm.utils import custom_llm_setup

    saved_map = list(litellm.custom_provider_map)
    saved_quiet = litellm.suppress_debug_info
    litellm.suppress_debug_info = True
    litellm.custom_provider_map = [{"provider": "hf", "custom_handler": HFProvider()}]
    custom_llm_setup()
    try:
        yield
    finally:
        litellm.custom_provider_map = saved_map
        litellm.suppress_debug_info = saved_quiet
        custom_llm_setup()


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hf.DEVICE_ENV, "cpu")


def _ask(model_dir: str, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
    kwargs.setdefault("max_tokens", MAX_TOKENS)
    kwargs.setdefault("temperature", 0)
    return litellm.completion(model=f"hf/{model_dir}", messages=messages or MESSAGES, **kwargs)


# ------------------------------------------------------------------------------------------ replies


def test_reply_has_usage_within_max_tokens(tiny_model_dir: str) -> None:
    reply = _ask(tiny_model_dir)
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= MAX_TOKENS
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.model == f"hf/{tiny_model_dir}"
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_greedy_and_seeded_sampling_are_deterministic(tiny_model_dir: str) -> None:
    greedy = [_ask(tiny_model_dir, seed=3) for _ in range(2)]
    assert greedy[0].choices[0].message.content == greedy[1].choices[0].message.content
    assert greedy[0].choices[0].message.content  # special tokens are suppressed: visible text
    sampled = [_ask(tiny_model_dir, temperature=1.0, top_p=0.9, seed=7, max_tokens=12) for _ in range(2)]
    assert sampled[0].choices[0].message.content == sampled[1].choices[0].message.content


def test_stop_string_cuts_the_reply(tiny_model_dir: str) -> None:
    full = _ask(tiny_model_dir, max_tokens=12).choices[0].message.content
    stop = full[2:4]
    reply = _ask(tiny_model_dir, max_tokens=12, stop=[stop])
    assert reply.choices[0].message.content == full[: full.find(stop)].strip()
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens < 12


async def test_acompletion(tiny_model_dir: str) -> None:
    reply = await litellm.acompletion(
        model=f"hf/{tiny_model_dir}", messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0
    )
    assert 0 < reply.usage.completion_tokens <= MAX_TOKENS


def test_prompt_longer_than_the_context_is_refused(tiny_model_dir: str) -> None:
    long = [{"role": "user", "content": "paris london " * CONTEXT}]
    with pytest.raises(litellm.ContextWindowExceededError):
        _ask(tiny_model_dir, long)


# ------------------------------------------------------------------------------------------- errors


def test_missing_directory_is_a_clear_bad_request(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(litellm.BadRequestError) as info:
        _ask(str(missing))
    assert not isinstance(info.value, litellm.APIConnectionError)
    assert isinstance(info.value, HFModelError)
    assert str(missing) in str(info.value)
    assert "beforehand" in str(info.value)


def test_uncached_hub_id_names_the_id_and_never_downloads() -> None:
    with pytest.raises(litellm.BadRequestError, match=r"nobody-thrifty/not-a-model.*beforehand"):
        _ask("nobody-thrifty/not-a-model")


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HFModelError, match=r"config\.json"):
        hf.resolve_model_path(str(tmp_path))


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(HFExtraMissingError) as info:
        hf._import_transformers()
    assert str(info.value) == hf_extra_hint()
    assert "[hf]" in str(info.value) and "torch==2.13.0" in str(info.value)


def test_device_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hf._select_device(torch) == ("cpu", torch.float32)
    monkeypatch.setenv(hf.DEVICE_ENV, "not-a-device")
    with pytest.raises(HFModelError, match=hf.DEVICE_ENV):
        hf._select_device(torch)
    if not torch.cuda.is_available():
        monkeypatch.setenv(hf.DEVICE_ENV, "cuda")
        with pytest.raises(HFModelError, match="CUDA"):
            hf._select_device(torch)


def test_forced_unknown_tool_is_a_bad_request(tiny_model_dir: str) -> None:
    with pytest.raises(litellm.BadRequestError, match="nope"):
        _ask(
            tiny_model_dir,
            tools=[SEARCH_TOOL],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )


# -------------------------------------------------------------------------------------------- tools


def _plan() -> Any:
    plan = _tool_plan([SEARCH_TOOL], None, None)
    assert plan is not None
    return plan


def test_parser_valid_call_becomes_tool_calls() -> None:
    text = 'Sure.\n```json\n{"tool": "search", "arguments": {"query": "paris"}}\n```'
    message, finish = _to_message(text, _plan(), wants_json=False)
    assert finish == "tool_calls"
    assert message.content is None
    (call,) = message.tool_calls
    assert call.function.name == "search"
    assert json.loads(call.function.arguments) == {"query": "paris"}
    assert call.id.startswith("call_")


def test_parser_accepts_arguments_as_a_json_string() -> None:
    text = '{"tool": "search", "arguments": "{\\"query\\": \\"x\\"}"}'
    message, _ = _to_message(text, _plan(), wants_json=False)
    assert json.loads(message.tool_calls[0].function.arguments) == {"query": "x"}


@pytest.mark.parametrize(
    "text",
    [
        '{"tool": "delete_everything", "arguments": {}}',  # unknown tool
        "I think it is sunny {not json at all",  # garbage
        '{"tool": "search", "arguments": {"query": "par',  # cut short by max_tokens
        "",
    ],
)
def test_parser_falls_back_to_content(text: str) -> None:
    message, finish = _to_message(text, _plan(), wants_json=False)
    assert message.content == text
    assert not message.tool_calls
    assert finish is None


def test_parser_answer_and_json_response_format() -> None:
    message, finish = _to_message('{"answer": "sunny"}', _plan(), wants_json=False)
    assert (message.content, finish) == ("sunny", "stop")
    message, _ = _to_message('Here: {"city": "Paris", "n": 1} done', None, wants_json=True)
    assert json.loads(message.content) == {"city": "Paris", "n": 1}
    message, _ = _to_message("no json here", None, wants_json=True)
    assert message.content == "no json here"
    assert first_json_object('[1] {"a": {"b": 2}} {"c": 3}') == {"a": {"b": 2}}


def test_tool_call_end_to_end(tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model cannot write a call, so its generate() is replaced by one that does."""
    loaded = hf._load(tiny_model_dir)
    tokenizer = loaded.tok.tokenizer
    canned = tokenizer('{"tool": "search", "arguments": {"query": "paris"}}', add_special_tokens=False)
    completion = [*canned["input_ids"], tokenizer.eos_token_id]

    def fake_generate(input_ids: Any, **_: Any) -> Any:
        return torch.cat([input_ids, torch.tensor([completion])], dim=1)

    monkeypatch.setattr(loaded.model, "generate", fake_generate)
    reply = _ask(tiny_model_dir, tools=[SEARCH_TOOL], max_tokens=64)
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "search"
    assert json.loads(call.function.arguments) == {"query": "paris"}
    assert reply.usage.completion_tokens == len(completion)


def test_tools_with_gibberish_output_never_raise(tiny_model_dir: str) -> None:
    reply = _ask(tiny_model_dir, tools=[SEARCH_TOOL], response_format={"type": "json_object"})
    message = reply.choices[0].message
    assert message.tool_calls or isinstance(message.content, str)


# ---------------------------------------------------------------------------- counting and context


def test_count_tokens_matches_prompt_usage(tiny_model_dir: str) -> None:
    assert count_tokens(tiny_model_dir, MESSAGES) == _ask(tiny_model_dir).usage.prompt_tokens
    with_tools = _ask(tiny_model_dir, tools=[SEARCH_TOOL]).usage.prompt_tokens
    assert count_tokens(f"hf/{tiny_model_dir}", MESSAGES, tools=[SEARCH_TOOL]) == with_tools
    assert with_tools > count_tokens(tiny_model_dir, MESSAGES)


def test_plain_rendering_without_chat_template(tiny_model_dir: str) -> None:
    tok = copy.copy(hf._load_tokenizer(tiny_model_dir))
    tok.tokenizer = copy.deepcopy(tok.tokenizer)
    tok.tokenizer.chat_template = None
    text = tok.tokenizer.decode(_prompt_ids(tok, [{"role": "user", "content": "hi"}]))
    assert text.endswith("user: hi\n\nassistant:")


def test_context_window_reads_the_config(tiny_model_dir: str) -> None:
    assert context_window(f"hf/{tiny_model_dir}") == CONTEXT
    assert _context_from_config({"text_config": {"max_position_embeddings": 4096}}) == 4096
    assert _context_from_config({"n_positions": 1024}) == 1024
    assert _context_from_config({}) is None


def test_through_the_gateway_the_budget_caps_and_settles(tiny_model_dir: str) -> None:
    from thrifty.budget import Budget, Ledger
    from thrifty.models.gateway import Gateway

    prompt = hf.count_tokens(tiny_model_dir, MESSAGES)
    ledger = Ledger(Budget(total_tokens=prompt + 5))
    out = Gateway(ledger).complete(f"hf/{tiny_model_dir}", MESSAGES, max_tokens=50, temperature=0)
    assert out.max_tokens == 5  # capped to what the budget could pay for
    assert out.usage.prompt_tokens == prompt and out.usage.completion_tokens <= 5
    assert ledger.spent["total_tokens"] <= prompt + 5
    assert ledger.reserved["total_tokens"] == 0 and len(ledger.events) == 1


# ------------------------------------------------------------------------------------------ timeout


def test_a_generation_is_cut_at_its_timeout_and_its_tokens_are_charged(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, generate() ran to max_new_tokens whatever the Gateway's timeout. Now the call's stop signal
    is a stopping criterion: the row stops after the token at which the timeout passed, and the call fails
    with the tokens it used charged, once."""
    from thrifty.budget import Budget, Ledger
    from thrifty.models import ModelError, stopping
    from thrifty.models.gateway import Gateway

    class _Clock:  # moves one second per read: once at the call's start, then after every token
        now = 0.0

        def monotonic(self) -> float:
            self.now += 1.0
            return self.now

    monkeypatch.setattr(stopping, "time", _Clock())
    ledger = Ledger(Budget(total_tokens=5000))
    model = f"hf/{tiny_model_dir}"
    with pytest.raises(ModelError, match=r"GenerationTimeout.*timed out after 1.5 s"):
        Gateway(ledger, retries=2, backoff=0).complete(
            model, MESSAGES, max_tokens=12, temperature=0, timeout=1.5
        )
    (event,) = ledger.events
    # the deadline is 2.5 (the start read 1.0); the first token's check reads 2.0, the second's 3.0
    assert event.units["output_tokens"] == 2 and event.units["input_tokens"] > 0
    assert ledger.overruns == []
