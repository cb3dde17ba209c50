"""Paired EM differences between two result files of the same questions: is a change beyond noise?

    python benchmarks/paired.py NEW/results.jsonl OLD/results.jsonl [--strategies a,b] [--budgets 5]

For each strategy and budget present in both files, the runs of the same question (and seed) are paired;
prints n, each file's EM, the mean per-question difference (new - old) with its standard error, and the
difference in standard errors. Two strategies of one file: give the same file twice with
``--against STRATEGY`` (each strategy of the first is paired with that strategy of the second).
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from thrifty.bench.runner import load_results


def _cells(path: Path) -> dict[tuple[str, int], dict[tuple[str, int], float]]:
    cells: dict[tuple[str, int], dict[tuple[str, int], float]] = defaultdict(dict)
    for record in load_results(path):
        key = (str(record["question_id"]), int(record.get("seed") or 0))
        cells[(str(record["strategy"]), int(record["budget"]))][key] = float(record.get("em") or 0.0)
    return cells


def paired(new: dict[Any, float], old: dict[Any, float]) -> tuple[int, float, float, float, float]:
    """n pairs, mean EM of each side, mean difference and its standard error (0 for fewer than 2 pairs)."""
    keys = sorted(new.keys() & old.keys())
    n = len(keys)
    if n == 0:
        return 0, 0.0, 0.0, 0.0, 0.0
    diffs = [new[k] - old[k] for k in keys]
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else 0.0
    return n, sum(new[k] for k in keys) / n, sum(old[k] for k in keys) / n, mean, se


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("new", type=Path)
    parser.add_argument("old", type=Path)
    parser.add_argument("--strategies", help="comma-separated (default: all in both)")
    parser.add_argument("--budgets", help="comma-separated (default: all in both)")
    parser.add_argument("--against", help="pair every strategy of NEW with this strategy of OLD")
    args = parser.parse_args(argv)
    for path in (args.new, args.old):
        if not path.is_file():
            parser.error(f"{path}: no such results file")
    new, old = _cells(args.new), _cells(args.old)
    wanted = set(args.strategies.split(",")) if args.strategies else None
    budgets = {int(b) for b in args.budgets.split(",")} if args.budgets else None
    print("| strategy | B | n | EM new | EM old | paired diff | in SE |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for strategy, budget in sorted(new):
        if (wanted and strategy not in wanted) or (budgets and budget not in budgets):
            continue
        other = old.get((args.against or strategy, budget))
        if other is None:
            continue
        n, a, b, diff, se = paired(new[(strategy, budget)], other)
        label = strategy if not args.against else f"{strategy} - {args.against}"
        ratio = f"{diff / se:+.1f}" if se > 0 else "-"
        print(f"| {label} | {budget} | {n} | {a:.2f} | {b:.2f} | {diff:+.2f} ± {se:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
