"""An ablation table from a grid of one strategy's variants: each variant against the first, paired by question.

    python benchmarks/ablation.py benchmarks/results/sim-dev300-ablation2-default/results.jsonl

One row per variant (the strategy label with its options), one column per budget: EM ± SE and mean tool
calls ± SE over its n questions; every row after the first also gives its difference from the first row
in EM and in tool calls, each with the standard error of the *paired* difference (the per-question
differences' standard error). Pairing is right for the simulated model: its draws depend only on the
request's content (``thrifty/bench/sim.py``), so two variants that send the same requests get the same
replies, and a difference comes only from where the variants' requests differ. A difference under two
paired SEs is within noise.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from thrifty.bench.runner import load_results


def _label(record: dict[str, object]) -> str:
    """The variant's label as the grid wrote it (``name:key=value,...``), else the name plus its options."""
    name = str(record["strategy"])
    options = record.get("options") or {}
    if ":" in name or not isinstance(options, dict) or not options:
        return name
    return f"{name}:" + ",".join(f"{k}={json.dumps(v)}" for k, v in options.items())


def _mean_se(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return mean, sd / math.sqrt(n)


def table(path: Path) -> str:
    runs: dict[tuple[str, int], dict[str, tuple[float, float]]] = defaultdict(dict)
    for rec in load_results(path):
        usage = rec.get("usage") or {}
        runs[(_label(rec), int(rec["budget"]))][str(rec["question_id"])] = (
            float(rec["em"]),
            float(usage.get("tool_calls", 0)),
        )
    labels = list(dict.fromkeys(label for label, _ in runs))
    budgets = sorted({b for _, b in runs})
    base = labels[0]
    lines = [
        "| variant | n | " + " | ".join(f"B = {b}: EM (calls)" for b in budgets) + " |",
        "|---|--:|" + "--:|" * len(budgets),
    ]
    for label in labels:
        cells = []
        n = max(len(runs.get((label, b), {})) for b in budgets)
        for b in budgets:
            mine = runs.get((label, b))
            if not mine:
                cells.append("—")
                continue
            em, em_se = _mean_se([v[0] for v in mine.values()])
            calls, calls_se = _mean_se([v[1] for v in mine.values()])
            cell = f"{em:.3f} ± {em_se:.3f} ({calls:.2f} ± {calls_se:.2f})"
            ref = runs.get((base, b), {})
            common = [q for q in mine if q in ref]
            if label != base and len(common) > 1:
                d_em, d_em_se = _mean_se([mine[q][0] - ref[q][0] for q in common])
                d_calls, d_calls_se = _mean_se([mine[q][1] - ref[q][1] for q in common])
                cell += f"<br>Δ EM {d_em:+.3f} ± {d_em_se:.3f}, Δ calls {d_calls:+.2f} ± {d_calls_se:.2f}"
            cells.append(cell)
        lines.append(f"| `{label}` | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="results.jsonl files (or their folders)")
    args = ap.parse_args(argv)
    paths = [p / "results.jsonl" if p.is_dir() else p for p in args.results]
    print("\n\n".join(f"`{p.parent.name}`\n\n{table(p)}" for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
