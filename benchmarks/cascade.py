"""The escalation policy against always-cheap and always-strong, on the same questions (simulated pair).

    python benchmarks/cascade.py                        # bundled 50 questions, default, hard and frontier
    python benchmarks/cascade.py --data /path/dev300.jsonl --items 150:300 --setting default
    python benchmarks/cascade.py --policy default --policy 'min_confidence_moves=0.4,scope=run'

For each setting, a weak-and-cheap and a strong-and-expensive simulated model (``sim/``, two skill settings
with their prices) answer the same questions with the same strategy at each tool-call budget: alone (the
cheap one, the strong one) and as a cascade ``cheap>strong`` that starts on the cheap model and escalates
(low reported confidence, "unknown", unparsable output, a failed call) when the budget can pay for it.
Prints EM with its standard error, the cost per question (USD, tokens and tools) and the targets: cascade EM
>= 95% of always-strong, cost <= 50% of always-strong, cascade EM > always-cheap. Results are SIMULATED.

``--policy`` (repeatable) compares escalation policies on the same questions: ``default`` (the
``EscalationPolicy`` defaults: scope step, min_confidence 0.5, prompt compact, answer_check on) or
``key=value`` fields of ``EscalationPolicy`` separated by commas (``prompt=full,answer_check=false`` is the
policy before the compact prompt and the answer check; ``min_confidence=0.4,min_confidence_moves=0,scope=run``). ``--items A:B`` takes a slice of the questions, so
that a policy tuned on one part (say ``0:150``) is reported on another (``150:300``). The cheap and strong arms
are run once per slice and reused (each arm's results file resumes).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import thrifty  # noqa: F401  (offline environment before LiteLLM is imported)
from thrifty.bench.datasets import Dataset, load_dataset
from thrifty.bench.runner import BenchConfig, BudgetRule, make_pricing, parse_strategies, run_grid
from thrifty.models.routing import EscalationPolicy

#: name -> (cheap model, strong model); prices in dollars per million tokens (pin / pout)
SETTINGS: dict[str, tuple[str, str]] = {
    # the sim's default skills for the cheap model; a stronger, ~17x dearer model above it
    "default": ("sim/p=0.7,q=0.8,pin=0.15,pout=0.6", "sim/p=0.9,q=0.95,pin=2.5,pout=10"),
    # a weaker cheap model, noisier confidence, a 20x price gap
    "hard": ("sim/p=0.5,q=0.6,cnoise=0.3,pin=0.5,pout=1.5", "sim/p=0.9,q=0.9,pin=10,pout=30"),
    # the default pair with the strong model at a frontier model's price (~100x): the tools' fixed $0.001 a
    # call is then a small part of always-strong's cost
    "frontier": ("sim/p=0.7,q=0.8,pin=0.15,pout=0.6", "sim/p=0.9,q=0.95,pin=15,pout=75"),
    # not a price setting: the hard pair with a cheap model whose verdicts are wrong more often (bias 0.3: it
    # passes a wrong answer 30% of the time, against 10% for every model of the other settings), to show how
    # much the answer check owes to the simulated verifier's accuracy
    "hard_weak_check": (
        "sim/p=0.5,q=0.6,bias=0.3,cnoise=0.3,pin=0.5,pout=1.5",
        "sim/p=0.9,q=0.9,pin=10,pout=30",
    ),
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
        "escalations": statistics.fmean([float(r.get("escalations") or 0) for r in rows]),
        "resamples": statistics.fmean([float(r.get("resamples") or 0) for r in rows]),
    }


def _paired(cascade: list[dict[str, Any]], strong: list[dict[str, Any]], budget: int) -> tuple[float, float]:
    """Cascade EM minus always-strong EM on the same questions, with the standard error of the paired
    difference (what says whether a gap is within noise)."""
    theirs = {r["question_id"]: float(r["em"]) for r in strong if int(r["budget"]) == budget}
    diffs = [
        float(r["em"]) - theirs.get(r["question_id"], math.nan) for r in cascade if int(r["budget"]) == budget
    ]
    diffs = [d for d in diffs if not math.isnan(d)]
    return (statistics.fmean(diffs), _se(diffs)) if diffs else (float("nan"), float("nan"))


def parse_policy(text: str) -> EscalationPolicy:
    """``default`` or ``key=value,...`` fields of :class:`EscalationPolicy` (``null`` for None)."""
    if text.strip() in ("", "default"):
        return EscalationPolicy()
    fields: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, raw = part.partition("=")
        if not sep:
            raise SystemExit(f"--policy {text!r}: {part!r} is not key=value")
        fields[key.strip()] = None if raw.strip() in ("null", "none") else raw.strip()
    return EscalationPolicy.model_validate(fields)


def _slice(dataset: Dataset, items: str | None, limit: int | None) -> Dataset:
    if items:
        start, _, stop = items.partition(":")
        chosen = dataset.items[int(start or 0) : int(stop) if stop else None]
        dataset = Dataset(dataset.name, chosen, dataset.source, dataset.corpus_path, dataset.format)
    return dataset.head(limit)


def _label(policy: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", policy.strip() or "default")


def run_setting(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    cheap, strong = SETTINGS[name]
    dataset = _slice(load_dataset(args.data or "hotpotqa"), args.items, args.limit)
    budgets = [int(b) for b in args.budgets.split(",")]
    policies = {p: parse_policy(p) for p in args.policy or ["default"]}
    arms: dict[str, tuple[str, EscalationPolicy | None]] = {"cheap": (cheap, None), "strong": (strong, None)}
    arms |= {f"cascade:{p}": (f"{cheap}>{strong}", policy) for p, policy in policies.items()}
    part = _label(args.items or "all") + (f"-{args.limit}" if args.limit else "")
    results: dict[str, list[dict[str, Any]]] = {}
    for arm, (model, policy) in arms.items():
        config = BenchConfig(
            dataset=dataset,
            strategies=parse_strategies(args.strategy),
            budgets=budgets,
            model=model,
            concurrency=args.concurrency,
            rule=BudgetRule(),
            pricing=make_pricing(model),
            escalation=policy,
        )
        out = Path(args.out) / name / part / _label(arm) / "results.jsonl"
        results[arm] = run_grid(config, out, progress=False)
    rows = []
    for policy_text in policies:
        rows += _rows(name, policy_text, budgets, results)
    return rows


def _rows(
    name: str, policy: str, budgets: list[int], results: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    rows = []
    for b in budgets:
        row: dict[str, Any] = {"setting": name, "policy": policy, "budget": b}
        for arm in ("cheap", "strong"):
            row[arm] = _arm(results[arm], b)
        row["cascade"] = _arm(results[f"cascade:{policy}"], b)
        row["em_diff"], row["em_diff_se"] = _paired(results[f"cascade:{policy}"], results["strong"], b)
        c, s, k = row["cascade"], row["strong"], row["cheap"]
        row["em_ratio"] = c["em"] / s["em"] if s["em"] else float("nan")
        row["cost_ratio"] = c["usd"] / s["usd"] if s["usd"] else float("nan")
        row["tokens_cost_ratio"] = c["tokens_usd"] / s["tokens_usd"] if s["tokens_usd"] else float("nan")
        row["pass"] = row["em_ratio"] >= 0.95 and row["cost_ratio"] <= 0.5 and c["em"] > k["em"]
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | policy | B | n | cheap EM | strong EM | cascade EM | cheap $/q | strong $/q | cascade $/q "
        "| escalations/q | resamples/q | EM vs strong | EM - strong (paired) | cost vs strong (all / tokens) | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k, s, c = r["cheap"], r["strong"], r["cascade"]
        lines.append(
            f"| {r['setting']} | {r['policy']} | {r['budget']} | {c['n']} | {k['em']:.3f}±{k['em_se']:.3f} "
            f"| {s['em']:.3f}±{s['em_se']:.3f} | {c['em']:.3f}±{c['em_se']:.3f} "
            f"| ${k['usd']:.5f} | ${s['usd']:.5f} | ${c['usd']:.5f}±{c['usd_se']:.5f} | {c['escalations']:.2f} | {c['resamples']:.2f} "
            f"| {r['em_ratio']:.1%} | {r['em_diff']:+.3f}±{r['em_diff_se']:.3f} "
            f"| {r['cost_ratio']:.1%} / {r['tokens_cost_ratio']:.1%} "
            f"| {'met' if r['pass'] else 'NOT met'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--setting", default="default,hard,frontier", help=f"comma-separated: {', '.join(SETTINGS)}"
    )
    parser.add_argument("--data", default=None, help="HotpotQA .jsonl (default: the bundled 50 questions)")
    parser.add_argument("--items", default=None, help="a slice of the questions, A:B (e.g. 0:150)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--budgets", default="3,5,10,20")
    parser.add_argument("--strategy", default="react_tracker")
    parser.add_argument(
        "--policy",
        action="append",
        default=None,
        help="an escalation policy for the cascade arm, repeatable: default, or key=value,... "
        "(fields of EscalationPolicy)",
    )
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", default=".thrifty/bench/cascade")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the rows here")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.setting.split(","):
        rows += run_setting(name.strip(), args)
    print("SIMULATED models (thrifty.bench.sim): the figures measure the escalation policy, not real models.")
    print(f"strategy {args.strategy}; questions {args.data or 'hotpotqa'} {args.items or 'all'}")
    for text in args.policy or ["default"]:
        print(f"policy {text!r}: {parse_policy(text).model_dump(mode='json', exclude={'on'})}")
    for name in args.setting.split(","):
        cheap, strong = SETTINGS[name.strip()]
        print(f"{name.strip()}: cheap {cheap}  strong {strong}")
    print(_table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
