"""Local inference throughput: tokens per second through thrifty's Gateway against raw llama-cpp-python.

Both sides run the same GGUF file (found with :mod:`thrifty.models.local`), loaded with the same context
size and thread count, on the same chat prompt, with the same ``max_tokens`` and temperature 0; calls
alternate between the two so that machine load affects both alike. The Gateway side includes everything
thrifty adds: prompt token counting with the model's tokenizer, budget planning, the Ledger reservation and
settlement, the LiteLLM call and the provider's message translation. Goal: at least 0.9x raw throughput.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DEFAULT_PROMPT", "InferenceResult", "run_inference"]

DEFAULT_PROMPT = "Write a short paragraph about the history of Paris, France."


@dataclass
class InferenceResult:
    model: str
    model_path: str
    max_tokens: int
    repeats: int
    threads: int
    gateway_tps: list[float] = field(default_factory=list)  # completion tokens / second, per call
    raw_tps: list[float] = field(default_factory=list)
    gateway_seconds: list[float] = field(default_factory=list)
    raw_seconds: list[float] = field(default_factory=list)
    gateway_tokens: list[int] = field(default_factory=list)
    raw_tokens: list[int] = field(default_factory=list)
    same_text: bool = True
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load before and after (other processes)

    @property
    def gateway_median(self) -> float:
        return statistics.median(self.gateway_tps)

    @property
    def raw_median(self) -> float:
        return statistics.median(self.raw_tps)

    @property
    def ratio(self) -> float:
        return self.gateway_median / self.raw_median

    @property
    def overhead_ms(self) -> float:
        """Median extra wall time per call through the Gateway (milliseconds)."""
        return (statistics.median(self.gateway_seconds) - statistics.median(self.raw_seconds)) * 1000

    @property
    def goal(self) -> bool:
        return self.ratio >= 0.9

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            gateway_median_tps=self.gateway_median,
            raw_median_tps=self.raw_median,
            ratio=self.ratio,
            overhead_ms=self.overhead_ms,
            goal_ratio_ge_0_9=self.goal,
        )
        return data

    def lines(self) -> list[str]:
        return [
            f"local inference: {self.model} ({os.path.basename(self.model_path)}), {self.threads} threads, "
            f"max_tokens {self.max_tokens}, temperature 0, median of {self.repeats} calls each",
            f"  raw llama-cpp-python create_chat_completion  {self.raw_median:8.1f} tokens/s "
            f"({statistics.median(self.raw_tokens)} tokens in {statistics.median(self.raw_seconds):.2f} s)",
            f"  thrifty Gateway.complete                     {self.gateway_median:8.1f} tokens/s "
            f"({statistics.median(self.gateway_tokens)} tokens in {statistics.median(self.gateway_seconds):.2f} s)",
            f"  ratio Gateway / raw                          {self.ratio:8.3f}x "
            f"(Gateway adds {self.overhead_ms:.1f} ms per call)",
            f"  same generated text on both paths: {'yes' if self.same_text else 'NO'}; "
            f"machine load average {self.load_average[0]:.2f} before, {self.load_average[1]:.2f} after",
            f"  goal >= 0.9x raw: {'PASS' if self.goal else 'FAIL'}",
        ]


def _local_models_fix(model: str) -> str:
    """What ``--model`` may be: a local/ model of the catalogue, or a GGUF file that exists."""
    from thrifty.models import local

    known = ", ".join(f"local/{n}" for n in sorted(local.LOCAL_MODELS))
    name = model.removeprefix("local/")
    example = (
        f"local/{name}" if name.endswith(".gguf") and not model.startswith("local/") else "local/smollm2"
    )
    return (
        f"give --model a model of the local catalogue ({known}) or local/<path/to/model.gguf> of a GGUF file "
        f"that exists, e.g. --model {example}"
    )


def run_inference(
    model: str = "local/smollm2",
    *,
    prompt: str = DEFAULT_PROMPT,
    max_tokens: int = 128,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
) -> InferenceResult:
    """Time ``repeats`` calls on each path (after ``warmup`` calls each), alternating the order.

    ``threads`` sets llama.cpp's thread count on both paths (through ``THRIFTY_LOCAL_N_THREADS`` for the
    Gateway's provider, so it must be given before the local model is first loaded in this process).
    """
    from thrifty.budget import Ledger
    from thrifty.models import local
    from thrifty.models.gateway import Gateway

    if not model.startswith("local/"):
        raise ValueError(
            f"--model {model!r}: the inference benchmark times llama.cpp, so it needs a local/ model "
            f"(fix: {_local_models_fix(model)})"
        )
    name = model.split("/", 1)[1]
    try:
        path = local.resolve_model_path(name)
    except local.LocalModelError as exc:
        # an unknown name's message lists the catalogue already; a missing file's says only that
        missing = name in local.LOCAL_MODELS or name.endswith(".gguf")
        fix = f" (fix: {_local_models_fix(model)})" if missing else ""
        raise ValueError(f"--model {model!r}: {exc}{fix}") from None
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(local.local_extra_hint()) from exc
    spec = local.LOCAL_MODELS.get(name)
    if threads is not None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        os.environ["THRIFTY_LOCAL_N_THREADS"] = str(threads)
    threads = local.thread_count()
    load_before = os.getloadavg()[0]
    raw = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=local.context_window(name),
        n_threads=threads,
        n_threads_batch=threads,
        chat_format=spec.chat_format if spec else None,
        verbose=False,
    )
    messages: list[Any] = [{"role": "user", "content": prompt}]
    gateway = Gateway(Ledger())
    result = InferenceResult(
        model=model, model_path=str(path), max_tokens=max_tokens, repeats=repeats, threads=threads
    )
    texts: set[str] = set()

    def via_gateway(record: bool) -> None:
        started = time.perf_counter()
        reply = gateway.complete(model, messages, max_tokens=max_tokens, temperature=0.0)
        elapsed = time.perf_counter() - started
        if record:
            tokens = reply.usage.completion_tokens
            result.gateway_tokens.append(tokens)
            result.gateway_seconds.append(elapsed)
            result.gateway_tps.append(tokens / elapsed)
            texts.add((reply.content or "").strip())

    def via_raw(record: bool) -> None:
        started = time.perf_counter()
        out: Any = raw.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
        elapsed = time.perf_counter() - started
        if record:
            tokens = int(out["usage"]["completion_tokens"])
            result.raw_tokens.append(tokens)
            result.raw_seconds.append(elapsed)
            result.raw_tps.append(tokens / elapsed)
            texts.add((out["choices"][0]["message"].get("content") or "").strip())

    for i in range(warmup + repeats):
        first, second = (via_gateway, via_raw) if i % 2 == 0 else (via_raw, via_gateway)
        first(i >= warmup)
        second(i >= warmup)
    result.same_text = len(texts) == 1
    result.load_average = (load_before, os.getloadavg()[0])
    return result
