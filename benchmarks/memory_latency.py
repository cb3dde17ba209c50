"""Memory latency on one LoCoMo conversation: the routers' decisions and a LOW recall, p50 / p95.

    python benchmarks/memory_latency.py --data ../shared/data/locomo/locomo10.json [--conversation 0]

LoCoMo (CC BY-NC) is read from the path given, never copied. Each question is recalled once to warm the
index, then timed ``--repeat`` times: ``router`` is RuleRouter.decide alone; ``learned`` LearnedRouter.decide
(the shipped weights: features + numpy MLP, at lambda 0.3); ``retrieve`` the charged LOW
BM25 retrieval (reserve, search, settle); ``recall`` the whole Memory.recall at LOW (retrieve + condense,
with their Ledger charges).
"""

from __future__ import annotations

import argparse
import statistics
import time

from thrifty.budget import Ledger
from thrifty.memory import Memory, RecallRequest, RouteView, RuleRouter, Scope, charge, load_locomo
from thrifty.memory.learned import LearnedRouter


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--conversation", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    conv = load_locomo(args.data)[args.conversation]
    scope = Scope(run_id=conv.id)
    questions = [qa.question for qa in conv.qa]
    timings: dict[str, list[float]] = {"router": [], "learned": [], "retrieve": [], "recall": []}
    with Memory(embedder="none") as mem:
        mem.ingest(list(conv.sessions), scope=scope)
        router = RuleRouter()
        learned = LearnedRouter()
        for q in questions:
            mem.recall(q, scope=scope, router="low")  # warm
        for _ in range(args.repeat):
            for q in questions:
                t0 = time.perf_counter()
                router.decide(q, RouteView())
                timings["router"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                learned.decide(q, RouteView(lam=0.3))
                timings["learned"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                charge(mem.low, RecallRequest(query=q, k=5, scope=scope), Ledger())
                timings["retrieve"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                mem.recall(q, scope=scope, router="low")
                timings["recall"].append((time.perf_counter() - t0) * 1000)
        items = mem.count(scope)
    print(f"LoCoMo conversation {conv.id}: {len(questions)} questions x {args.repeat}, items {items}")
    for name, values in timings.items():
        print(
            f"{name:9s} p50 {statistics.median(values):.3f} ms  p95 {_pct(values, 0.95):.3f} ms  "
            f"max {max(values):.3f} ms"
        )


if __name__ == "__main__":
    main()
