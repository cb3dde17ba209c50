"""thrifty's own providers, registered when :mod:`thrifty.models` is imported.

* ``local/<name or .gguf>``: llama.cpp on the CPU (the embedded SmolLM2 by default), grammar-constrained;
* ``hf/<dir or cached id>``: transformers + torch (GPU when there is one);
* ``scripted/<name>``: the test model of :mod:`thrifty.testing`, replaying fixed replies.

Each is imported only when a model of its prefix is first checked or called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thrifty.models.registry import Provider, lazy, register_provider


def _counter(module: str) -> Any:
    """The provider module's ``count_tokens(name, messages, tools=...)`` in the registry's shape."""
    count = lazy(module, "count_tokens")

    def tokens(name: str, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None) -> int:
        return count(name, list(messages), tools=list(tools) if tools else None)

    return tokens


def _scripted_tokens(name: str, messages: Sequence[dict[str, Any]], tools: Any) -> int | None:
    from thrifty.models.scripted import get_script

    return get_script(name).peek_prompt_tokens()


def _in_process_model(
    prefix: str, module: str, handler: str, check: str, *, grammar: bool, enum_likelihood: bool = False
) -> Provider:
    """A free in-process provider whose module exports its handler, a name check, ``count_tokens`` and
    ``context_window`` (the llama.cpp and transformers providers)."""
    return register_provider(
        Provider(
            prefix,
            handler=lazy(module, handler),
            in_process=True,
            free=True,
            grammar=grammar,
            enum_likelihood=enum_likelihood,
            check=lazy(module, check),
            count_tokens=_counter(module),
            context_window=lazy(module, "context_window"),
        )
    )


LOCAL = _in_process_model(
    "local", "thrifty.models.local", "LocalProvider", "resolve_model_path", grammar=True, enum_likelihood=True
)
HF = _in_process_model("hf", "thrifty.models.hf", "HFProvider", "ensure_available", grammar=False)
SCRIPTED = register_provider(
    Provider(
        "scripted",
        handler=lazy("thrifty.models.scripted", "make_handler"),
        in_process=True,
        free=True,
        check=lazy("thrifty.models.scripted", "get_script"),
        count_tokens=_scripted_tokens,
    )
)
