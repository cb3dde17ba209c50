"""Batched against serialised serving in the transformers provider (``hf/``): tokens per second for 1, 4 and
16 concurrent requests.

    python benchmarks/hf_batching.py                          # CPU: a random small Llama built here
    python benchmarks/hf_batching.py --device cuda --model /path/to/checkpoint --max-tokens 128   # a GPU

Each request is a greedy chat completion of ``--max-tokens`` tokens through ``litellm.completion`` (the path
the Gateway uses). "serialised" serves one request at a time (``THRIFTY_HF_MAX_BATCH=1``, as the provider did
before batching); "batched" lets concurrent requests share one generate() (``THRIFTY_HF_BATCH_WINDOW``,
default 5 ms). tokens/s = completion tokens of all requests / wall time from the first request to the last
reply. Without ``--model`` the checkpoint is a randomly initialised Llama (no download, nothing offline is
needed) whose end-of-sequence token is suppressed so every request generates exactly ``--max-tokens``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import thrifty  # noqa: F401  (offline environment before LiteLLM is imported)

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_model(directory: Path, hidden: int, layers: int) -> None:
    """A byte-level BPE tokenizer and a random Llama of the given size, saved like a Hub checkpoint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = [a + b for a in ("pa", "lon", "se", "to", "bu", "que") for b in ("", "ris", "rch", "ken")]
    corpus = [" ".join(words[(i * 7 + j) % len(words)] for j in range(16)) for i in range(64)]
    special = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tok.chat_template = TEMPLATE
    torch.manual_seed(0)
    ids: dict[str, int] = tok.get_vocab()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=2048,
        bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"],
        pad_token_id=ids["<pad>"],
    )
    model = LlamaForCausalLM(config)
    model.generation_config.suppress_tokens = [tok.convert_tokens_to_ids(t) for t in special]
    model.save_pretrained(directory)
    tok.save_pretrained(directory)


def measure(model: str, concurrency: int, max_tokens: int, *, batched: bool) -> dict[str, Any]:
    import litellm

    from thrifty.models import hf

    os.environ[hf.MAX_BATCH_ENV] = "16" if batched else "1"
    hf.clear_cache()
    hf._load(model)  # load before timing
    prompts = [f"Question {i}: where is pa lon se number {i * 13 % 97}?" for i in range(concurrency)]

    def ask(text: str) -> int:
        reply: Any = litellm.completion(
            model=f"hf/{model}",
            messages=[{"role": "user", "content": text}],
            max_tokens=max_tokens,
            temperature=0,
        )
        return int(reply.usage.completion_tokens)

    ask("warm up")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        tokens = sum(pool.map(ask, prompts))
    wall = time.perf_counter() - started
    batcher = hf._batcher(hf._load(model))
    sizes = batcher.batches[1:]  # without the warm-up
    return {
        "concurrency": concurrency,
        "mode": "batched" if batched else "serialised",
        "tokens": tokens,
        "seconds": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "mean_batch": round(statistics.fmean(sizes), 2) if sizes else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a checkpoint directory (default: build a random Llama)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (THRIFTY_HF_DEVICE)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (THRIFTY_HF_N_THREADS)")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    os.environ["THRIFTY_HF_DEVICE"] = args.device
    if args.threads:
        os.environ["THRIFTY_HF_N_THREADS"] = str(args.threads)
    model = args.model
    if model is None:
        model = tempfile.mkdtemp(prefix="thrifty-hf-bench-")
        build_model(Path(model), args.hidden, args.layers)
        print(f"random Llama: hidden {args.hidden}, {args.layers} layers ({model})")
    import torch

    print(
        f"device {args.device}, torch threads {torch.get_num_threads()}, {args.max_tokens} tokens per request"
    )
    rows = []
    for n in (int(c) for c in args.concurrency.split(",")):
        serial = measure(model, n, args.max_tokens, batched=False)
        batched = measure(model, n, args.max_tokens, batched=True)
        rows += [serial, batched]
        print(
            f"{n:3d} concurrent: serialised {serial['tokens_per_s']:8.1f} tok/s   batched "
            f"{batched['tokens_per_s']:8.1f} tok/s (mean batch {batched['mean_batch']})   "
            f"x{batched['tokens_per_s'] / serial['tokens_per_s']:.2f}"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
