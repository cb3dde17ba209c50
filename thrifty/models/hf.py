"""In-process Hugging Face ``transformers`` models, exposed to LiteLLM as the custom provider ``hf``.

Why this exists: the ``local/`` provider (llama.cpp) only runs GGUF files, mostly on CPU. Many checkpoints
exist only as ``transformers`` directories, and on a machine with a GPU running them with torch is the
fastest way to get a real model without an API key. Routing them through LiteLLM's ``custom_provider_map``
keeps a single call path in thrifty: ``litellm.completion(model="hf/<model>", ...)``.

``<model>`` is either a local directory (anything ``save_pretrained`` wrote: ``config.json``, weights and a
tokenizer) or a Hugging Face model id such as ``HuggingFaceTB/SmolLM2-135M-Instruct``. An id is looked up
in the local Hugging Face cache only (``local_files_only=True``; thrifty runs with ``HF_HUB_OFFLINE=1``):
nothing is ever downloaded at run time, so a model must be fetched beforehand (``hf download <id>``).

Tools: transformers has no built-in grammar-constrained decoding (unlike llama.cpp's GBNF used by
``local/``), so nothing *forces* the model to write valid JSON. The tools are described in the system
message, the model is asked for ONE JSON object, ``{"tool": NAME, "arguments": {...}}`` or
``{"answer": "..."}`` (the same format as ``local/``), and the first JSON object in its output is parsed.
A call to a known tool becomes an OpenAI ``tool_calls`` reply; anything else (prose, an unknown tool, broken
JSON) is returned as plain content and never raises, so the agent loop decides what to do with it. A JSON
``response_format`` is handled the same way: the schema is added to the instructions and the first JSON
object found is returned (the raw text if there is none).

Device: CUDA when available (bfloat16, or float16 on GPUs without bf16), else CPU in float32;
``THRIFTY_HF_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) overrides. One model is loaded per
(directory, device) and shared; generation on it is serialised by a per-model lock.

torch and transformers are imported lazily (the optional ``hf`` extra); LiteLLM is imported at module
level because this module itself is only imported lazily by :mod:`thrifty.models.builtin`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty.extras import pip_install
from thrifty.models._litellm import get_litellm
from thrifty.models.inprocess import Generation, InProcessProvider, StopSignal, stop_signal
from thrifty.models.protocol import (
    allowed_functions,
    describe_tool,
    first_json_object,
    new_call_id,
    render_messages,
    response_schema,
)

get_litellm()  # offline: LiteLLM must not fetch its price map
import litellm  # noqa: E402
from litellm.exceptions import BadRequestError, ContextWindowExceededError  # noqa: E402

__all__ = [
    "BATCH_WINDOW_ENV",
    "DEFAULT_CONTEXT_WINDOW",
    "DEFAULT_MAX_TOKENS",
    "DEVICE_ENV",
    "MAX_BATCH_ENV",
    "N_THREADS_ENV",
    "HFExtraMissingError",
    "HFModelError",
    "HFModelRequestError",
    "HFProvider",
    "clear_cache",
    "context_window",
    "count_tokens",
    "ensure_available",
    "hf_extra_hint",
    "resolve_model_path",
]


def hf_extra_hint() -> str:
    """What to do when the `hf` extra is missing."""
    return f"the hf/ provider needs the `hf` extra: {pip_install('hf', 'torch==2.13.0')}"


#: Completion cap when the caller gives none: ``generate``'s own default (20 tokens total, or the whole
#: context) is either uselessly short or lets a small model ramble for minutes.
DEFAULT_MAX_TOKENS = 512

#: Context size assumed when neither config.json nor the tokenizer states one (old or exotic configs).
DEFAULT_CONTEXT_WINDOW = 2048

#: Overrides the automatic device choice (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
DEVICE_ENV = "THRIFTY_HF_DEVICE"

#: If set, torch's intra-op thread count when a model is loaded (shared machines: see local.py's note).
N_THREADS_ENV = "THRIFTY_HF_N_THREADS"
#: Dynamic batching: how long (seconds) the first of several concurrent requests for one model waits for
#: others to join its batch, and the largest batch. ``THRIFTY_HF_BATCH_WINDOW=0`` and ``..._MAX_BATCH=1``
#: serve requests one at a time.
BATCH_WINDOW_ENV = "THRIFTY_HF_BATCH_WINDOW"
MAX_BATCH_ENV = "THRIFTY_HF_MAX_BATCH"
DEFAULT_BATCH_WINDOW = 0.005
DEFAULT_MAX_BATCH = 16

#: config.json keys that hold the trained context length, most common first.
_CONTEXT_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "n_ctx",
    "seq_length",
    "max_sequence_length",
    "max_seq_len",
)


class HFModelError(ValueError):
    """An ``hf/`` model that cannot be resolved or loaded (missing directory, not cached, bad files)."""


class HFExtraMissingError(ImportError):
    """The optional ``hf`` extra (torch + transformers) is not installed."""


class HFModelRequestError(BadRequestError, HFModelError):
    """What callers of ``litellm.completion`` see for an ``hf/`` setup problem.

    LiteLLM re-wraps any foreign exception as a (retryable) ``APIConnectionError`` with a bug-report blurb;
    its own exception types pass through untouched. Deriving from ``BadRequestError`` keeps the message
    clean and marks the error as not worth retrying, while ``HFModelError`` (a ``ValueError``) lets callers
    catch it without knowing about LiteLLM.
    """

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message=message, model=f"hf/{model}", llm_provider="hf")


# --------------------------------------------------------------------------------------------------
# Resolving a model name to a directory (no torch needed: the Gateway calls this in check_model)
# --------------------------------------------------------------------------------------------------


def _strip_prefix(model_name: str) -> str:
    """Accept both ``<model>`` (what LiteLLM hands the provider) and ``hf/<model>`` (what users write)."""
    return model_name.removeprefix("hf/")


def names_a_path(model_name: str) -> bool:
    """Whether ``hf/<name>`` is read from the filesystem (a path's spelling, or a file or folder that exists:
    a path wins over a Hub id, as in :func:`resolve_model_path`), not from the Hugging Face cache."""
    name = _strip_prefix(model_name).strip()
    return bool(name) and (_looks_like_path(name) or Path(name).expanduser().exists())


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be meant as a filesystem path (Hub ids are ``name`` or ``org/name``)."""
    return (
        name.startswith(("/", "~", "."))
        or "\\" in name
        or name.count("/") > 1
        or (len(name) > 1 and name[1] == ":")  # a Windows drive
    )


_snapshots: dict[str, Path] = {}


def _cached_snapshot(model_id: str) -> Path:
    """Directory of ``model_id`` in the local Hugging Face cache; never touches the network."""
    cached = _snapshots.get(model_id)
    if cached is not None:
        return cached
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as exc:
        raise HFExtraMissingError(hf_extra_hint()) from exc
    try:
        path = Path(snapshot_download(model_id, local_files_only=True))
    except Exception as exc:
        raise HFModelError(
            f"hf model {model_id!r} is neither an existing local directory nor in the local Hugging Face "
            f"cache ({constants.HF_HUB_CACHE}). Models are never downloaded at run time: download it "
            f"beforehand (e.g. `hf download {model_id}`), or pass hf/<path/to/model/dir>. ({exc})"
        ) from None
    if not (path / "config.json").is_file():
        raise HFModelError(
            f"hf model {model_id!r} is only partly in the local Hugging Face cache ({path} has no "
            f"config.json); download it completely beforehand (e.g. `hf download {model_id}`)"
        )
    _snapshots[model_id] = path
    return path


def resolve_model_path(model_name: str) -> Path:
    """Directory holding the model behind ``hf/<model>``; raises :class:`HFModelError` if there is none.

    A path that exists wins over a Hub id of the same spelling; a cached Hub id resolves to its snapshot
    directory, so a model is cached (and loaded) once however it is named.
    """
    name = _strip_prefix(model_name).strip()
    if not name:
        raise HFModelError("empty hf model name: use hf/<path/to/model/dir> or hf/<org>/<model-id>")
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        if not (candidate / "config.json").is_file():
            raise HFModelError(
                f"{candidate.resolve()} is not a transformers model directory (no config.json); "
                "save the model there with save_pretrained(), or download it beforehand"
            )
        return candidate.resolve()
    if candidate.exists():
        raise HFModelError(
            f"hf model path {candidate.resolve()} is a file, not a model directory "
            "(for a .gguf file use local/<path/to/model.gguf>)"
        )
    if _looks_like_path(name):
        raise HFModelError(
            f"hf model directory not found: {candidate}. The model must be downloaded (or saved with "
            "save_pretrained) there beforehand; nothing is downloaded at run time."
        )
    return _cached_snapshot(name)


def ensure_available(model_name: str) -> Path:
    """Cheap pre-flight check for the Gateway: the model resolves, the ``hf`` extra is installed, and a device
    named in ``THRIFTY_HF_DEVICE`` (``cuda``, ``mps``) is there.

    Uses ``find_spec`` so torch is not imported (seconds) just to validate a model name, unless a device
    other than the CPU is asked for.
    """
    import importlib.util

    path = resolve_model_path(model_name)
    for package in ("torch", "transformers"):
        if importlib.util.find_spec(package) is None:
            raise HFExtraMissingError(f"package `{package}` is not installed; {hf_extra_hint()}")
    if os.environ.get(DEVICE_ENV, "").strip().lower() not in ("", "cpu"):
        # An accelerator asked for by name must exist: refused here, before anything is spent.
        _select_device(_import_torch())
    return path


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict, or ``{}`` if it is missing or unreadable (these files are optional)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _context_from_config(config: Mapping[str, Any]) -> int | None:
    """Trained context length stated by a config (or its ``text_config`` for multimodal models)."""
    for key in _CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    for nested in ("text_config", "llm_config", "language_config"):
        sub = config.get(nested)
        if isinstance(sub, Mapping):
            found = _context_from_config(sub)
            if found is not None:
                return found
    return None


def context_window(model_name: str) -> int:
    """Context size (tokens) of the model, read from its config.json: no torch, no loading, no generating.

    Falls back to the tokenizer's ``model_max_length`` (when it is a real value, not transformers' "very
    large" sentinel) and then to :data:`DEFAULT_CONTEXT_WINDOW`.
    """
    path = resolve_model_path(model_name)
    found = _context_from_config(_read_json(path / "config.json"))
    if found is not None:
        return found
    limit = _read_json(path / "tokenizer_config.json").get("model_max_length")
    if isinstance(limit, int) and 0 < limit < 10_000_000:
        return limit
    return DEFAULT_CONTEXT_WINDOW


# --------------------------------------------------------------------------------------------------
# Loading (one tokenizer per directory, one model per (directory, device), generation serialised)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Tokenizer:
    """A tokenizer plus a lock: a fast tokenizer's Rust state is not safe to use from several threads."""

    tokenizer: Any
    lock: threading.Lock
    path: Path


@dataclass
class _Loaded:
    """A loaded model on one device, its context size, and the batcher that serves its requests (made under
    ``lock``)."""

    model: Any
    tok: _Tokenizer
    device: str
    lock: threading.Lock
    context: int
    batcher: _Batcher | None = None


_tokenizers: dict[str, _Tokenizer] = {}
_models: dict[tuple[str, str], _Loaded] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every loaded model and tokenizer (frees their memory once no call still uses them)."""
    with _cache_lock:
        _models.clear()
        _tokenizers.clear()
        _snapshots.clear()


def _import_transformers() -> Any:
    """Import transformers on first use so that thrifty installs and imports without the extra."""
    try:
        import transformers
    except ImportError as exc:
        raise HFExtraMissingError(hf_extra_hint()) from exc
    return transformers


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise HFExtraMissingError(hf_extra_hint()) from exc
    return torch


def _select_device(torch: Any) -> tuple[str, Any]:
    """Device and dtype to load on: ``THRIFTY_HF_DEVICE`` if set, else CUDA if usable, else CPU.

    Half precision only on accelerators: on CPU bf16/fp16 matmuls are slow or unsupported, so float32.
    """
    override = os.environ.get(DEVICE_ENV, "").strip()
    if override:
        try:
            device = torch.device(override)
        except (RuntimeError, ValueError) as exc:
            raise HFModelError(f"{DEVICE_ENV}={override!r} is not a torch device: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise HFModelError(f"{DEVICE_ENV}={override!r} but CUDA is not available to torch")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise HFModelError(f"{DEVICE_ENV}={override!r} but MPS is not available to torch")
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif device.type == "mps":
        dtype = torch.float16
    else:
        dtype = torch.float32
    return str(device), dtype


def _dtype_kwarg(transformers: Any) -> str:
    """``from_pretrained`` took ``torch_dtype`` before transformers 4.56 and ``dtype`` since."""
    match = re.match(r"(\d+)\.(\d+)", transformers.__version__)
    if match and (int(match.group(1)), int(match.group(2))) < (4, 56):
        return "torch_dtype"
    return "dtype"


def _load_tokenizer(model_name: str) -> _Tokenizer:
    """The cached tokenizer for ``model_name``; loading it does not need torch or the weights."""
    path = resolve_model_path(model_name)
    key = str(path)
    tok = _tokenizers.get(key)
    if tok is not None:
        return tok
    transformers = _import_transformers()
    with _cache_lock:
        tok = _tokenizers.get(key)
        if tok is None:
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(key, local_files_only=True)
            except Exception as exc:
                raise HFModelError(f"cannot load the tokenizer of hf model {key}: {exc}") from exc
            tok = _Tokenizer(tokenizer=tokenizer, lock=threading.Lock(), path=path)
            _tokenizers[key] = tok
    return tok


def _load(model_name: str) -> _Loaded:
    """The cached model for ``model_name`` on the selected device, loaded once even under concurrency."""
    path = resolve_model_path(model_name)
    torch = _import_torch()
    device, dtype = _select_device(torch)
    key = (str(path), device)
    loaded = _models.get(key)
    if loaded is not None:
        return loaded
    tok = _load_tokenizer(str(path))
    transformers = _import_transformers()
    with _cache_lock:
        loaded = _models.get(key)
        if loaded is None:
            threads = os.environ.get(N_THREADS_ENV, "").strip()
            if threads.isdigit() and int(threads) > 0:
                torch.set_num_threads(int(threads))
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    str(path), local_files_only=True, **{_dtype_kwarg(transformers): dtype}
                )
                model.to(device)
            except Exception as exc:
                raise HFModelError(
                    f"cannot load hf model {path} as a causal LM on {device}: {exc}. The model must be "
                    "complete on disk beforehand; nothing is downloaded at run time."
                ) from exc
            model.eval()
            loaded = _Loaded(
                model=model, tok=tok, device=device, lock=threading.Lock(), context=context_window(str(path))
            )
            _models[key] = loaded
    return loaded


# --------------------------------------------------------------------------------------------------
# Prompt: OpenAI messages -> chat template (or plain text) -> token ids
# --------------------------------------------------------------------------------------------------


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Merge a leading system message into the first user turn, for templates that reject ``system``."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    if rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
        return rest
    return [{"role": "user", "content": system}, *rest]


def _plain_prompt(messages: list[dict[str, str]]) -> str:
    """Plain "role: content" rendering for tokenizers without a chat template (base models)."""
    turns = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages)
    return f"{turns}assistant:"


def _prompt_ids(tok: _Tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the full prompt exactly as ``generate`` will see them (also used for counting).

    With a chat template the rendered text already holds the special tokens the template wants (BOS
    included), so it is tokenized without adding any, as ``apply_chat_template(tokenize=True)`` does.
    """
    tokenizer = tok.tokenizer
    with tok.lock:
        if getattr(tokenizer, "chat_template", None):
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception as exc:
                folded = _fold_system(messages)
                if folded is messages:
                    raise HFModelError(f"the chat template of hf model {tok.path} failed: {exc}") from exc
                try:
                    text = tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)
                except Exception:
                    raise HFModelError(f"the chat template of hf model {tok.path} failed: {exc}") from exc
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(tokenizer(_plain_prompt(messages), add_special_tokens=True)["input_ids"])


# --------------------------------------------------------------------------------------------------
# Tools and JSON replies: instructions in, first JSON object out (no grammar available here)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """The system text that explains the reply format, and the tool names a reply may call."""

    instructions: str
    tool_names: frozenset[str]


def _schema_text(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, ensure_ascii=False, separators=(",", ":"))


def _tool_plan(tools: Sequence[Any], tool_choice: Any, answer_schema: dict[str, Any] | None) -> _Plan | None:
    """Instructions for a request with tools (``None`` when there are none or ``tool_choice`` is "none").

    The wording matches ``local/`` so a conversation moved between the two providers stays consistent;
    a forced or required call drops the ``answer`` option from the instructions (it cannot be enforced).
    """
    allowed = allowed_functions(tools, tool_choice, HFModelError)
    if allowed is None:
        return None
    functions, allow_answer = allowed
    listing = "\n".join(describe_tool(f) for f in functions)
    if allow_answer:
        fmt = (
            'Reply with one JSON object: {"tool": "<name>", "arguments": {...}} to call a tool, '
            'or {"answer": "<your reply>"} to answer directly.'
        )
        if answer_schema is not None:
            fmt += f" The answer value must be JSON matching this schema: {_schema_text(answer_schema)}"
    else:
        fmt = 'Reply with one JSON object that calls a tool: {"tool": "<name>", "arguments": {...}}.'
    return _Plan(
        instructions=f"You can use these tools:\n{listing}\n{fmt}",
        tool_names=frozenset(f["name"] for f in functions),
    )


def _json_instructions(schema: dict[str, Any] | bool) -> str:
    """Instructions for a JSON ``response_format`` without tools."""
    text = "Reply with one JSON object and nothing else."
    if isinstance(schema, dict):
        text += f" It must match this JSON Schema: {_schema_text(schema)}"
    return text


def _to_message(text: str, plan: _Plan | None, wants_json: bool) -> tuple[litellm.Message, str | None]:
    """Translate the model's text into an OpenAI message; a ``None`` finish reason means "keep generate's".

    Never raises: without a grammar, malformed output is normal and is returned as content.
    """
    if plan is None:
        if wants_json:
            data = first_json_object(text)
            if data is not None:
                return litellm.Message(content=json.dumps(data, ensure_ascii=False), role="assistant"), None
        return litellm.Message(content=text, role="assistant"), None
    data = first_json_object(text)
    if data is None:
        return litellm.Message(content=text, role="assistant"), None
    name = data.get("tool")
    if isinstance(name, str) and name in plan.tool_names:
        arguments = data.get("arguments", {})
        if isinstance(arguments, str):
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments) if arguments.strip() else {}
        if isinstance(arguments, dict):
            call = {
                "id": new_call_id(),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            return litellm.Message(content=None, role="assistant", tool_calls=[call]), "tool_calls"
    if "answer" in data and "tool" not in data:
        answer = data["answer"]
        content = (
            answer if isinstance(answer, str) and not wants_json else json.dumps(answer, ensure_ascii=False)
        )
        return litellm.Message(content=content, role="assistant"), "stop"
    return litellm.Message(content=text, role="assistant"), None


def _prepare(
    messages: Sequence[Any], optional_params: Mapping[str, Any]
) -> tuple[list[dict[str, str]], _Plan | None, bool]:
    """Rendered messages (instructions folded into the system message), tool plan, and whether JSON is wanted."""
    schema = response_schema(optional_params.get("response_format"))
    answer_schema = schema if isinstance(schema, dict) else None
    plan = _tool_plan(optional_params.get("tools") or [], optional_params.get("tool_choice"), answer_schema)
    if plan is not None:
        extra: str | None = plan.instructions
    elif schema is not None:
        extra = _json_instructions(schema)
    else:
        extra = None
    return render_messages(messages, extra), plan, schema is not None


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def _stop_list(stop: Any) -> list[str]:
    """OpenAI allows ``stop`` as one string or a list; empty strings would stop immediately."""
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, Sequence):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def _eos_ids(generation_config: Any, tokenizer: Any) -> list[int]:
    """Every token that ends a turn: the generation config's EOS ids plus the tokenizer's EOS.

    Chat models often end a turn with a token (``<|im_end|>``) the base config does not list.
    """
    configured = generation_config.eos_token_id
    ids = (
        [int(i) for i in configured]
        if isinstance(configured, list)
        else ([] if configured is None else [int(configured)])
    )
    if tokenizer.eos_token_id is not None and int(tokenizer.eos_token_id) not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def _generate(model_name: str, messages: Sequence[Any], optional_params: Mapping[str, Any]) -> dict[str, Any]:
    """Run one chat completion; returns the parsed OpenAI message, finish reason and token usage.

    ``temperature`` 0 *or absent* means greedy decoding (OpenAI's default would be 1): agent runs should be
    reproducible unless sampling is asked for; ``top_p`` and ``seed`` then only matter when sampling.
    """
    loaded = _load(model_name)
    _import_torch()
    rendered, plan, wants_json = _prepare(messages, optional_params)
    prompt = _prompt_ids(loaded.tok, rendered)
    if len(prompt) >= loaded.context:
        raise ContextWindowExceededError(
            message=f"prompt of {len(prompt)} tokens does not fit the {loaded.context}-token context window",
            model=f"hf/{_strip_prefix(model_name)}",
            llm_provider="hf",
        )
    requested = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens")
    max_new = min(int(requested) if requested else DEFAULT_MAX_TOKENS, loaded.context - len(prompt))
    temperature = optional_params.get("temperature")
    temp = 0.0 if temperature is None else float(temperature)
    sample = temp > 0
    stops = _stop_list(optional_params.get("stop"))
    seed = optional_params.get("seed")

    tokenizer = loaded.tok.tokenizer
    model = loaded.model
    config = copy.deepcopy(model.generation_config)
    config.max_new_tokens = max_new
    config.do_sample = sample
    if sample:
        config.temperature = temp
        top_p = optional_params.get("top_p")
        if top_p is not None:
            config.top_p = float(top_p)
    else:
        # Greedy: clear sampling knobs a checkpoint's generation_config may carry, which generate()
        # would otherwise warn about on every call.
        config.temperature = None
        config.top_p = None
        config.top_k = None
    eos = _eos_ids(config, tokenizer)
    if eos:
        config.eos_token_id = eos
        if config.pad_token_id is None:
            config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    extra: dict[str, Any] = {}
    if stops:
        config.stop_strings = stops
        extra["tokenizer"] = tokenizer  # generate() needs it to match stop strings across tokens

    job = _Job(
        prompt=prompt, max_new=max_new, config=config, extra=extra, seed=seed, eos=eos, stop=stop_signal()
    )
    new_ids = _batcher(loaded).run(job)
    with loaded.tok.lock:
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
    finish = "stop"
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]  # OpenAI semantics: the stop sequence itself is not returned
    elif len(new_ids) >= max_new and (not new_ids or new_ids[-1] not in eos):
        finish = "length"
    text = text.strip()
    message, parsed_finish = _to_message(text, plan, wants_json)
    if finish == "length" and parsed_finish == "stop":
        parsed_finish = None  # a truncated answer must still report "length"
    return {
        "message": message,
        "finish_reason": parsed_finish or finish,
        "prompt_tokens": len(prompt),
        "completion_tokens": len(new_ids),
    }


# --------------------------------------------------------------------------------------------------
# Dynamic batching: concurrent requests for one model share a generate() call
# --------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    """One request waiting for its tokens: its prompt and generation settings, then its result."""

    prompt: list[int]
    max_new: int
    config: Any  # its GenerationConfig (max_new_tokens = max_new)
    extra: dict[str, Any]
    seed: Any
    eos: list[int]
    stop: StopSignal = field(default_factory=StopSignal)  # its call's: cuts this row of the batch
    new_ids: list[int] | None = None
    error: BaseException | None = None
    done: bool = False

    def key(self) -> tuple[Any, ...] | None:
        """Requests with the same key can share a batch; None: served alone (a seed must make its own draw
        reproducible, whatever else is in flight)."""
        if self.seed is not None:
            return None
        c = self.config
        stops = tuple(getattr(c, "stop_strings", None) or ())
        return (c.do_sample, c.temperature, c.top_p, c.top_k, stops, tuple(self.eos))


class _Batcher:
    """Serves a model's requests in batches: the first request to arrive leads, waits ``window`` seconds for
    others, then runs every compatible waiting request (left-padded to one length, with an attention mask)
    in one ``generate()``, and goes on with whatever queued meanwhile until nothing is waiting. Greedy
    results equal unbatched ones up to floating-point differences from padding."""

    def __init__(self, loaded: _Loaded, window: float, max_batch: int) -> None:
        self.loaded = loaded
        self.window = window
        self.max_batch = max(1, max_batch)
        self.cond = threading.Condition()
        self.queue: list[_Job] = []
        self.leading = False
        self.batches: list[int] = []  # the size of each batch run (for tests and the benchmark)

    def run(self, job: _Job) -> list[int]:
        with self.cond:
            self.queue.append(job)
            while not job.done and self.leading:
                self.cond.wait()
            if not job.done:
                self.leading = True
        if not job.done:
            self._lead()
        if job.error is not None:
            raise job.error
        assert job.new_ids is not None
        return job.new_ids

    def _lead(self) -> None:
        if self.window > 0 and self.max_batch > 1:
            time.sleep(self.window)
        while True:
            with self.cond:
                batch = self._take()
                if not batch:
                    self.leading = False
                    self.cond.notify_all()
                    return
            try:
                self._generate(batch)
            except BaseException as exc:  # every request of the batch gets the error (each is charged)
                for job in batch:
                    job.error = exc
            with self.cond:
                for job in batch:
                    job.done = True
                self.cond.notify_all()

    def _take(self) -> list[_Job]:
        if not self.queue:
            return []
        first = self.queue[0]
        key = first.key()
        batch = [first] if key is None else [j for j in self.queue if j.key() == key][: self.max_batch]
        self.queue = [j for j in self.queue if all(j is not b for b in batch)]
        self.batches.append(len(batch))
        return batch

    def _generate(self, batch: list[_Job]) -> None:
        torch = _import_torch()
        loaded = self.loaded
        width = max(len(j.prompt) for j in batch)
        config = copy.copy(batch[0].config)
        config.max_new_tokens = max(j.max_new for j in batch)
        pad = config.pad_token_id if config.pad_token_id is not None else (batch[0].eos or [0])[0]
        if len(batch) > 1:
            config.pad_token_id = pad
        ids = [[pad] * (width - len(j.prompt)) + j.prompt for j in batch]
        mask = [[0] * (width - len(j.prompt)) + [1] * len(j.prompt) for j in batch]
        input_ids = torch.tensor(ids, dtype=torch.long, device=loaded.device)
        attention_mask = torch.tensor(mask, dtype=torch.long, device=loaded.device)
        if batch[0].seed is not None:
            torch.manual_seed(int(batch[0].seed))  # seeds every device's generator too
        with torch.inference_mode():
            output = loaded.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                stopping_criteria=_stop_criteria([j.stop for j in batch]),
                **batch[0].extra,
            )
        for row, job in enumerate(batch):
            new = [int(i) for i in output[row, width:].tolist()]
            if len(batch) > 1:  # a row that finished early is padded after its end of sequence
                end = next((i + 1 for i, t in enumerate(new) if t in job.eos), len(new))
                new = new[:end]
                while new and new[-1] == pad and pad not in job.eos:  # stopped early on a stop string
                    new.pop()
            job.new_ids = new[: job.max_new]


def _stop_criteria(signals: list[StopSignal]) -> Any:
    """A transformers stopping criterion that ends each row of a batch once its call's signal fires (past
    its timeout, or cancelled); the other rows go on."""
    transformers = _import_transformers()
    torch = _import_torch()

    class _Signals(transformers.StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.tensor([s() for s in signals], dtype=torch.bool, device=input_ids.device)

    return transformers.StoppingCriteriaList([_Signals()])


def _batcher(loaded: _Loaded) -> _Batcher:
    with loaded.lock:
        if loaded.batcher is None:
            window = _env_float(BATCH_WINDOW_ENV, DEFAULT_BATCH_WINDOW)
            size = _env_int(MAX_BATCH_ENV, DEFAULT_MAX_BATCH)
            loaded.batcher = _Batcher(loaded, window, size)
        return loaded.batcher


def _env_float(name: str, default: float) -> float:
    """A batch window in seconds from the environment: a finite number >= 0 (``inf`` would make the first
    request of a batch wait forever)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HFModelError(f"{name}={raw!r} is not a number (fix: e.g. {name}={default})") from None
    if not math.isfinite(value) or value < 0:
        raise HFModelError(f"{name}={raw!r} must be a finite number >= 0 (fix: e.g. {name}={default})")
    return value


def _env_int(name: str, default: int) -> int:
    """A batch size from the environment: a whole number >= 1 (0 would serve no request of a batch)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HFModelError(f"{name}={raw!r} is not a whole number (fix: e.g. {name}={default})") from None
    if value < 1:
        raise HFModelError(f"{name}={raw!r} must be at least 1 (fix: 1 serves requests one at a time)")
    return value


# --------------------------------------------------------------------------------------------------
# The LiteLLM provider
# --------------------------------------------------------------------------------------------------


class HFProvider(InProcessProvider):
    """LiteLLM custom provider ``hf``: ``litellm.completion(model="hf/<dir or id>", ...)`` runs in-process.

    Registered by :mod:`thrifty.models.builtin` (the provider registry installs it in LiteLLM).
    """

    prefix = "hf"
    model_errors = (HFModelError, HFExtraMissingError)
    request_error = HFModelRequestError

    def generate(self, model: str, messages: Sequence[Any], params: Mapping[str, Any]) -> Generation:
        out = _generate(model, messages, params)
        return Generation(
            message=out["message"],
            finish_reason=out["finish_reason"],
            prompt_tokens=out["prompt_tokens"],
            completion_tokens=out["completion_tokens"],
        )


# --------------------------------------------------------------------------------------------------
# Token counting for budget reservation
# --------------------------------------------------------------------------------------------------


def count_tokens(model_name: str, messages: list[dict], *, tools: Sequence[Any] | None = None) -> int:
    """Prompt tokens ``messages`` will cost on ``model_name``, counted with the model's own tokenizer.

    The Gateway uses this to reserve budget before the call (LiteLLM's counters do not know arbitrary
    Hub vocabularies). Messages are rendered exactly as a completion renders them (tool traffic flattened,
    chat template applied), so for the same messages and tools this equals the reply's ``prompt_tokens``.
    Only the tokenizer is loaded, never the weights.
    """
    tok = _load_tokenizer(model_name)
    plan = _tool_plan(tools or [], None, None) if tools else None
    rendered = render_messages(messages, plan.instructions if plan is not None else None)
    return len(_prompt_ids(tok, rendered))
