"""Local inference: tokens/second through thrifty's Gateway vs raw llama-cpp-python (= `agent bench inference`).

python benchmarks/inference.py [--model local/smollm2] [--max-tokens 128] [--repeats 5] [--threads N]
                               [--out benchmarks/results/inference]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import thrifty  # noqa: F401  (sets the offline environment before LiteLLM is imported)
from thrifty.bench.inference import DEFAULT_PROMPT, run_inference
from thrifty.bench.report import save_result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="local/smollm2")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads on both paths")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--out", type=Path, default=None, help="folder for inference.json and inference.txt")
    args = parser.parse_args()
    result = run_inference(
        args.model, prompt=args.prompt, max_tokens=args.max_tokens, repeats=args.repeats, threads=args.threads
    )
    print("\n".join(result.lines()))
    if args.out is not None:
        save_result(result, args.out, "inference", text=True)


if __name__ == "__main__":
    main()
