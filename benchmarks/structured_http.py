"""Structured output over an OpenAI-compatible HTTP server: the embedded model served by llama-cpp-python,
called as ``openai/smollm2`` with ``api_base``, running ``bats`` on bundled HotpotQA questions.

    python -m llama_cpp.server --model <SmolLM2 GGUF> --model_alias smollm2 --port 18931 --n_ctx 2048 &
    python benchmarks/structured_http.py run --api-base http://127.0.0.1:18931/v1 --limit 12 --out after.jsonl
    python benchmarks/structured_http.py report before.jsonl after.jsonl
    # the small-model policies over HTTP (Agent(grounded=True)), any strategy:
    python benchmarks/structured_http.py run --api-base http://127.0.0.1:18931/v1 --strategy react \
        --grounded --limit 12 --out grounded.jsonl

``run`` uses only the public API (Agent, the trace), so the same script runs against an older checkout
(``PYTHONPATH=<checkout>``) to measure "before". ``report`` tallies, per file: exact match, model requests,
plans and verdicts that fell back to a default (a reply that did not parse, or a request the server
refused), final answers that are no answer at all (a preamble, an empty phrase: "unknown" counted apart),
exploration clues that repeat an earlier one of the same run (normalised, as the planner compares them), and
repeated clues the planner proposed that were dropped before any search.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from thrifty import Agent, Budget
from thrifty.bench.datasets import load_dataset
from thrifty.bench.metrics import exact_match
from thrifty.tools import make_search_tools


def run(args: argparse.Namespace) -> None:
    dataset = load_dataset("hotpotqa").head(args.limit)
    corpus = dataset.corpus()
    assert corpus is not None
    tools = make_search_tools(corpus, k=args.k)
    out = Path(args.out)
    with out.open("w") as fh:
        for item in dataset.items:
            agent = Agent(
                "openai/smollm2",
                api_base=args.api_base,
                tools=tools,
                strategy=args.strategy,
                budget=Budget(tool_calls=args.budget),
                max_steps=2 * args.budget + 2,
                temperature=0.7,
                seed=args.seed,
                retries=0,
                max_tokens=args.max_tokens,
                grounded=True if args.grounded else None,
            )
            started = time.monotonic()
            result = agent.run(item.question)
            trace = [e.model_dump() for e in result.trace]
            record = {
                "id": item.id,
                "question": item.question,
                "gold": item.answers,
                "answer": result.answer,
                "em": exact_match(result.answer, item.answers),
                "stop_reason": result.stop_reason,
                "error": result.error,
                "model_requests": result.usage.model_requests,
                "tool_calls": result.usage.tool_calls,
                "seconds": round(time.monotonic() - started, 2),
                "plans": [e for e in trace if e["action"] == "plan"],
                "verdicts": [e for e in trace if e["action"] == "verdict"],
                "judge": [e.get("method") for e in trace if e["action"] == "judge"],
            }
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            print(f"{item.id}: {result.answer!r} em={record['em']} {record['seconds']}s", file=sys.stderr)


def tally(path: str) -> dict[str, Any]:
    from thrifty.agents.answers import usable_answer
    from thrifty.agents.planner import same_clue

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    plans = [p for r in rows for p in r["plans"]]
    verdicts = [v for r in rows for v in r["verdicts"]]
    repeated_searched = 0
    for r in rows:
        clues = [
            i["text"] for i in (r["plans"][-1]["items"] if r["plans"] else []) if i["kind"] == "exploration"
        ]
        repeated_searched += sum(any(same_clue(c, b) for b in clues[:n]) for n, c in enumerate(clues))
    answers = [r["answer"] for r in rows]
    return {
        "file": path,
        "n": len(rows),
        "em": sum(r["em"] for r in rows) / max(len(rows), 1),
        "model requests / q": sum(r["model_requests"] for r in rows) / max(len(rows), 1),
        "tool calls / q": sum(r["tool_calls"] for r in rows) / max(len(rows), 1),
        "seconds / q": sum(r["seconds"] for r in rows) / max(len(rows), 1),
        "plans": len(plans),
        "plans defaulted": sum(not p["valid"] for p in plans),
        "verdicts": len(verdicts),
        "verdicts defaulted": sum(not v["valid"] for v in verdicts),
        "non-answers accepted": sum(
            a not in (None, "unknown") and not usable_answer(a, r["question"])
            for a, r in zip(answers, rows, strict=True)
        ),
        "answered unknown": sum(a in (None, "unknown") for a in answers),
        "repeated clues on the checklist": repeated_searched,
        "repeats dropped before a search": sum(len(p.get("repeated") or []) for p in plans),
        "errors": sum(bool(r["error"]) for r in rows),
    }


def report(args: argparse.Namespace) -> None:
    tables = [tally(p) for p in args.files]
    keys = list(tables[0])
    print("| measure | " + " | ".join(Path(t["file"]).stem for t in tables) + " |")
    print("|---|" + "---|" * len(tables))
    for key in keys[1:]:
        cells = [f"{t[key]:.2f}" if isinstance(t[key], float) else str(t[key]) for t in tables]
        print(f"| {key} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--api-base", required=True)
    r.add_argument("--limit", type=int, default=12)
    r.add_argument("--budget", type=int, default=5)
    r.add_argument("--seed", type=int, default=7)
    r.add_argument("--k", type=int, default=3, help="passages per search")
    r.add_argument("--max-tokens", type=int, default=256, help="completion tokens per solver call")
    r.add_argument("--strategy", default="bats")
    r.add_argument(
        "--grounded",
        action="store_true",
        help="Agent(grounded=True): the small-model policies (look first, grounded arguments and answers, "
        "moves as JSON when the server ignores tool_choice)",
    )
    r.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("files", nargs="+")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
