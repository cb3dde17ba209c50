"""The escalation policy against always-cheap and always-strong, on the same questions (simulated pair).

    python benchmarks/cascade.py                        # bundled 50 questions, default and 'hard' settings
    python benchmarks/cascade.py --data /path/dev300.jsonl --limit 100 --setting default

For each setting, a weak-and-cheap and a strong-and-expensive simulated model (``sim/``, two skill settings
with their prices) answer the same questions with the same strategy at each tool-call budget: alone (the
cheap one, the strong one) and as a cascade ``cheap>strong`` that starts on the cheap model and escalates
(low reported confidence, "unknown", unparsable output, a failed call) when the budget can pay for it.
Prints EM with its standard error, the cost per question (USD, tokens and tools) and the targets: cascade EM
>= 95% of always-strong, cost <= 50% of always-strong, cascade EM > always-cheap. Results are SIMULATED.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import thrifty  # noqa: F401  (offline environment before LiteLLM is imported)
from thrifty.bench.datasets import load_dataset
from thrifty.bench.runner import BenchConfig, BudgetRule, make_pricing, parse_strategies, run_grid
from thrifty.models.routing import EscalationPolicy, Scope

#: name -> (cheap model, strong model); prices in dollars per million tokens (pin / pout)
SETTINGS: dict[str, tuple[str, str]] = {
    # the sim's default skills for the cheap model; a stronger, ~17x dearer model above it
    "default": ("sim/p=0.7,q=0.8,pin=0.15,pout=0.6", "sim/p=0.9,q=0.95,pin=2.5,pout=10"),
    # a weaker cheap model, noisier confidence, a 20x price gap
    "hard": ("sim/p=0.5,q=0.6,cnoise=0.3,pin=0.5,pout=1.5", "sim/p=0.9,q=0.9,pin=10,pout=30"),
}


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def _arm(records: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    rows = [r for r in records if int(r["budget"]) == budget]
    em = [float(r["em"]) for r in rows]
    usd = [float(r["usage"]["usd"]) for r in rows]
    tokens_usd = [float(r["usage"]["tokens_usd"]) for r in rows]
    return {
        "n": len(rows),
        "em": statistics.fmean(em),
        "em_se": _se(em),
        "usd": statistics.fmean(usd),
        "usd_se": _se(usd),
        "tokens_usd": statistics.fmean(tokens_usd),
        "escalated": statistics.fmean([1.0 if r.get("escalations") else 0.0 for r in rows]),
    }


def run_setting(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    cheap, strong = SETTINGS[name]
    dataset = load_dataset(args.data or "hotpotqa").head(args.limit)
    budgets = [int(b) for b in args.budgets.split(",")]
    arms = {"cheap": cheap, "strong": strong, "cascade": f"{cheap}>{strong}"}
    policy = EscalationPolicy(scope=Scope(args.scope), min_confidence=args.min_confidence)
    results: dict[str, list[dict[str, Any]]] = {}
    for arm, model in arms.items():
        config = BenchConfig(
            dataset=dataset,
            strategies=parse_strategies(args.strategy),
            budgets=budgets,
            model=model,
            concurrency=args.concurrency,
            rule=BudgetRule(),
            pricing=make_pricing(model),
            escalation=policy if arm == "cascade" else None,
        )
        out = Path(args.out) / name / arm / "results.jsonl"
        results[arm] = run_grid(config, out, progress=False)
    rows = []
    for b in budgets:
        row: dict[str, Any] = {"setting": name, "budget": b}
        for arm in arms:
            row[arm] = _arm(results[arm], b)
        c, s, k = row["cascade"], row["strong"], row["cheap"]
        row["em_ratio"] = c["em"] / s["em"] if s["em"] else float("nan")
        row["cost_ratio"] = c["usd"] / s["usd"] if s["usd"] else float("nan")
        row["tokens_cost_ratio"] = c["tokens_usd"] / s["tokens_usd"] if s["tokens_usd"] else float("nan")
        row["pass"] = row["em_ratio"] >= 0.95 and row["cost_ratio"] <= 0.5 and c["em"] > k["em"]
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | B | n | cheap EM | strong EM | cascade EM | cheap $/q | strong $/q | cascade $/q "
        "| escalated | EM vs strong | cost vs strong (all / tokens) | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k, s, c = r["cheap"], r["strong"], r["cascade"]
        lines.append(
            f"| {r['setting']} | {r['budget']} | {c['n']} | {k['em']:.3f}±{k['em_se']:.3f} "
            f"| {s['em']:.3f}±{s['em_se']:.3f} | {c['em']:.3f}±{c['em_se']:.3f} "
            f"| ${k['usd']:.5f} | ${s['usd']:.5f} | ${c['usd']:.5f} | {c['escalated']:.0%} "
            f"| {r['em_ratio']:.1%} | {r['cost_ratio']:.1%} / {r['tokens_cost_ratio']:.1%} "
            f"| {'met' if r['pass'] else 'NOT met'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setting", default="default,hard", help=f"comma-separated: {', '.join(SETTINGS)}")
    parser.add_argument("--data", default=None, help="HotpotQA .jsonl (default: the bundled 50 questions)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--budgets", default="3,5,10,20")
    parser.add_argument("--strategy", default="react_tracker")
    parser.add_argument("--scope", default="step", choices=[s.value for s in Scope])
    parser.add_argument("--min-confidence", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", default=".thrifty/bench/cascade")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the rows here")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.setting.split(","):
        rows += run_setting(name.strip(), args)
    print("SIMULATED models (thrifty.bench.sim): the figures measure the escalation policy, not real models.")
    print(f"strategy {args.strategy}, escalation scope {args.scope}, min_confidence {args.min_confidence}")
    for name in args.setting.split(","):
        cheap, strong = SETTINGS[name.strip()]
        print(f"{name.strip()}: cheap {cheap}  strong {strong}")
    print(_table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
