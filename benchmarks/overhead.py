"""Framework overhead: thrifty react vs a bare LangGraph graph vs a plain loop (= `agent bench overhead`).

python benchmarks/overhead.py [--steps 20] [--repeats 30] [--without-litellm] [--out benchmarks/results/overhead]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import thrifty  # noqa: F401  (sets the offline environment before LiteLLM is imported)
from thrifty.bench.overhead import run_overhead
from thrifty.bench.report import save_result


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
    print("\n".join(result.lines()))
    if args.out is not None:
        save_result(result, args.out, "overhead", text=True)


if __name__ == "__main__":
    main()
