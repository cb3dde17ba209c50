"""Which rule picks the gold answer among a grounded answer's spans? An offline probe of the embedded model.

    python benchmarks/span_scoring.py --data ../shared/data/hotpotqa/dev300.jsonl --offset 50 --limit 250 \
        --out span-dev250.json
    python benchmarks/span_scoring.py --report span-dev250.json

For each question the observations are the grounded agent's first searches (as ``grounded_spans.py
--observations searches``), the offered spans are ``thrifty.agents.grounding.answer_spans`` of them, and the
prompt is the focused answer prompt (``grounding.focused_messages``). Where the gold is among two or more
spans, llama.cpp scores every span whole three times (log P of the span as the JSON string the grammar
would write): after the focused prompt (``full``, what ``answer_choice: likelihood`` uses), after the same
prompt without its context (``noctx``) and without its question (``noq``). The report counts the questions
each rule gets right, by answer kind: its argmax, and its expectation when a span is sampled at T = 0.7 (the
bench's temperature): ``full``, ``full`` per token, two pointwise-mutual-information rules (``full - noctx``:
what the context adds; ``full - noq``: what the question adds), each also with half the baseline, and a
uniform pick. Every model call here is outside the Ledger: this is a measurement of the model, not a run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from thrifty.agents import grounding
from thrifty.agents.answers import normalize_answer
from thrifty.bench.datasets import load_dataset
from thrifty.budget import Budget, Ledger
from thrifty.models import local
from thrifty.tools import ToolRunner, make_search_tools

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grounded_spans import _searches  # the same first searches as that probe

KINDS = ("choice", "yesno", "year", "date", "number", "span")


def _scores(loaded: Any, messages: list[dict[str, Any]], options: list[str]) -> tuple[list[float], list[int]]:
    """log P(option | messages) for each option, and each option's token count."""
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "string", "enum": options}}}
    rendered, *_ = local._prepare(messages, {"response_format": fmt})
    prefix = local._prompt_tokens(loaded, rendered)
    llama = loaded.llama
    encoded = [
        llama.tokenize(json.dumps(o, ensure_ascii=False).encode(), add_bos=False, special=False)
        for o in options
    ]
    return local._option_logprobs(llama, prefix, local._cached(llama, prefix), encoded), [
        len(t) for t in encoded
    ]


def probe(data: str, offset: int, limit: int, model: str) -> list[dict[str, Any]]:
    dataset = load_dataset(data)
    corpus = dataset.corpus()
    if corpus is None:
        raise SystemExit(f"{data} has no passages to search")
    runner = ToolRunner(make_search_tools(corpus, k=3)[:1], Ledger(Budget()))
    loaded = local._load(model)
    rows: list[dict[str, Any]] = []
    for item in dataset.items[offset : offset + limit]:
        observations = _searches(item, runner)
        spans = grounding.answer_spans(item.question, observations)
        gold = {normalize_answer(a) for a in item.answers}
        row: dict[str, Any] = {
            "id": item.id,
            "kind": grounding.answer_kind(item.question),
            "spans": spans,
            "hit": [normalize_answer(s) in gold for s in spans],
        }
        messages = grounding.focused_messages(
            item.question, [{"role": "tool", "content": o} for o in observations]
        )
        if any(row["hit"]) and len(spans) > 1 and messages is not None:
            system, user = messages
            context = user["content"].split("\n\nQuestion: ")[0]
            row["full"], row["ntok"] = _scores(loaded, messages, spans)
            no_context = {"role": "user", "content": f"Context: \n\nQuestion: {item.question}"}
            row["noctx"], _ = _scores(loaded, [system, no_context], spans)
            row["noq"], _ = _scores(
                loaded, [system, {"role": "user", "content": f"{context}\n\nQuestion: "}], spans
            )
        rows.append(row)
        print(f"{len(rows)}/{limit}", file=sys.stderr, flush=True)
    runner.close()
    return rows


def _rules(row: dict[str, Any]) -> dict[str, list[float]]:
    full, noctx, noq, ntok = row["full"], row["noctx"], row["noq"], row["ntok"]
    return {
        "full": full,
        "full / tokens": [f / n for f, n in zip(full, ntok, strict=True)],
        "full - noctx": [f - c for f, c in zip(full, noctx, strict=True)],
        "full - noctx / 2": [f - c / 2 for f, c in zip(full, noctx, strict=True)],
        "full - noq": [f - q for f, q in zip(full, noq, strict=True)],
        "full - noq / 2": [f - q / 2 for f, q in zip(full, noq, strict=True)],
        "uniform": [0.0] * len(full),
    }


def _sampled(scores: list[float], hits: list[bool], temperature: float = 0.7) -> float:
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    return sum(w for w, h in zip(weights, hits, strict=True) if h) / sum(weights)


def report(rows: list[dict[str, Any]]) -> str:
    scored = [r for r in rows if "full" in r]
    kinds = [k for k in KINDS if any(r["kind"] == k for r in scored)] + ["all"]
    right: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for row in scored:
        for name, scores in _rules(row).items():
            best = max(range(len(scores)), key=scores.__getitem__)
            argmax = sum(row["hit"]) / len(scores) if name == "uniform" else float(row["hit"][best])
            for kind in (row["kind"], "all"):
                right[name][kind][0] += argmax
                right[name][kind][1] += _sampled(scores, row["hit"])
    counts = {k: sum(r["kind"] == k for r in scored) for k in kinds[:-1]} | {"all": len(scored)}
    lines = [
        f"n = {len(rows)} questions; the gold among two or more offered spans for {len(scored)} "
        "(right: argmax / expected at T = 0.7)",
        "| rule | " + " | ".join(f"{k} ({counts[k]})" for k in kinds) + " |",
        "|---|" + "--:|" * len(kinds),
    ]
    for name, by_kind in right.items():
        cells = " | ".join(f"{by_kind[k][0]:.1f} / {by_kind[k][1]:.1f}" for k in kinds)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default="hotpotqa", help="bundled name or a HotpotQA .jsonl")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--model", default="local/smollm2")
    parser.add_argument("--out", type=Path, help="write the scores here (JSON) and print the report")
    parser.add_argument("--report", type=Path, help="print the report of a saved scores file")
    args = parser.parse_args(argv)
    if args.report is not None:
        rows = json.loads(args.report.read_text(encoding="utf-8"))
    else:
        rows = probe(args.data, args.offset, args.limit, args.model)
        if args.out is not None:
            args.out.write_text(json.dumps(rows), encoding="utf-8")
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
