"""Where does the value tree's budget go? Run ``value_tree`` on the simulated model and tally its trace.

    python benchmarks/vtree_diag.py --data ../shared/data/hotpotqa/dev300.jsonl --limit 60 \
        --model sim/default --budgets 5,10 [--opt key=value ...] [--strategy value_tree]

Per budget: EM, tool calls, tokens, model requests per role (from the trace), tool calls per depth, children
pruned and why, wasted sibling calls (tool calls of children that were pruned), re-expansions, answers
proposed / verified, tool calls paid after the first proposed answer (``calls_after_answer``, per question;
``answered``: the share of runs that proposed one), stop reasons, and how many runs answered "unknown"
(or nothing).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from typing import Any

from thrifty.bench import sim
from thrifty.bench.datasets import load_dataset
from thrifty.bench.metrics import exact_match
from thrifty.bench.runner import BudgetRule
from thrifty.models import ModelSettings
from thrifty.tools import make_search_tools
from thrifty.workflows.runner import execute
from thrifty.workflows.spec import StrategySpec


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--model", default="sim/default")
    ap.add_argument("--budgets", default="5,10")
    ap.add_argument("--strategy", default="value_tree")
    ap.add_argument("--opt", action="append", default=[], help="strategy option key=value")
    ap.add_argument("--json", action="store_true", help="print the tallies as JSON")
    args = ap.parse_args(argv)

    ds = load_dataset(args.data)
    items = ds.items[args.offset : args.offset + args.limit]
    corpus = ds.corpus()
    tools = make_search_tools(corpus, k=3) if corpus else ap.error(f"{args.data} has no passages to search")
    sim.register_items(ds.items, corpus)
    options = {k: _value(v) for k, _, v in (o.partition("=") for o in args.opt)}
    out: dict[str, Any] = {}
    for b in [int(x) for x in args.budgets.split(",")]:
        t: dict[str, Any] = collections.defaultdict(float)
        per_depth: collections.Counter[int] = collections.Counter()
        prune: collections.Counter[str] = collections.Counter()
        stops: collections.Counter[str] = collections.Counter()
        methods: collections.Counter[str] = collections.Counter()
        for item in items:
            with sim.run_scope(f"diag|{b}|{item.id}"):
                res = execute(
                    item.question,
                    model=args.model,
                    tools=tools,
                    budget=BudgetRule().budget(b),
                    strategy=StrategySpec(name=args.strategy, max_steps=2 * b + 2, options=options),
                    settings=ModelSettings(temperature=0.7, max_tokens=256, seed=0),
                    keep_trace=True,
                )
            t["n"] += 1
            t["em"] += exact_match(res.answer or "", item.answers)
            t["tool_calls"] += res.usage.tool_calls
            t["tokens"] += res.usage.total_tokens
            t["requests"] += res.usage.model_requests
            stops[str(res.stop_reason)] += 1
            if not res.answer or res.answer.strip().lower() == "unknown":
                t["unknown"] += 1
                t[f"unknown|{res.stop_reason}"] += 1
            for e in res.trace:
                d = e if isinstance(e, dict) else e.model_dump()
                action = d.get("action")
                if action == "expand":
                    t["expansions"] += 1
                elif action == "tree":
                    methods[str(d.get("method", "")).split(" from")[0]] += 1
                    nodes = [n if isinstance(n, dict) else n.model_dump() for n in d["nodes"]]
                    first = min((n["id"] for n in nodes if n["terminal"]), default=None)
                    if first is not None:  # what the search paid for after its first proposed answer
                        t["answered"] += 1
                        t["calls_after_answer"] += sum(
                            (n.get("spent") or {}).get("tool_calls", 0) for n in nodes if n["id"] > first
                        )
                    for n in nodes:
                        n = n if isinstance(n, dict) else n.model_dump()
                        if n["expanded"] > 1:
                            t["re_expansions"] += n["expanded"] - 1
                        if n["parent"] is None:
                            continue
                        calls = (n.get("spent") or {}).get("tool_calls", 0)
                        if n["terminal"]:
                            t["answers_proposed"] += 1
                            if n.get("verdict") == "SUCCESS":
                                t["answers_verified"] += 1
                            continue
                        per_depth[n["depth"]] += calls
                        if n["pruned"]:
                            reason = (n.get("prune_reason") or "").split(":")[0].split(" (")[0]
                            prune[reason] += 1
                            t["wasted_calls"] += calls
                        else:
                            t["kept_calls"] += calls
                elif d.get("node") == "critic" or action == "verify":
                    t[f"ev_{action}"] += 1
        n = t["n"]
        row = {k: round(v / n, 3) for k, v in t.items() if k != "n"}
        row["n"] = int(n)
        row["calls_per_depth"] = {d: round(c / n, 2) for d, c in sorted(per_depth.items())}
        row["pruned_per_q"] = {r: round(c / n, 2) for r, c in prune.most_common()}
        row["stops"] = dict(stops.most_common())
        row["final_method"] = dict(methods.most_common())
        out[str(b)] = row
        print(f"B={b}: {json.dumps(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
