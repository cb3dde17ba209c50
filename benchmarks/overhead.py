"""Framework overhead: thrifty react vs a bare LangGraph graph vs a plain loop (= `agent bench overhead`).

python benchmarks/overhead.py [--steps 20] [--repeats 30] [--without-litellm] [--out benchmarks/results/overhead]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import thrifty  # noqa: F401  (sets the offline environment before LiteLLM is imported)
from thrifty.bench.overhead import run_overhead


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20, help="model calls in the react run")
    parser.add_argument("--repeats", type=int, default=30, help="rounds (each variant once per round)")
    parser.add_argument("--out", type=Path, default=None, help="folder for overhead.json and overhead.txt")
    parser.add_argument(
        "--without-litellm",
        action="store_true",
        help="framework-only reading: model calls bypass LiteLLM in every variant",
    )
    args = parser.parse_args()
    result = run_overhead(steps=args.steps, repeats=args.repeats, with_litellm=not args.without_litellm)
    text = "\n".join(result.lines())
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "overhead.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        (args.out / "overhead.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
