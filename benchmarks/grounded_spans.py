"""How often a grounded answer *can* be right: the gold answer among the spans a grounded answer may choose.

    python benchmarks/grounded_spans.py [--data hotpotqa] [--observations gold|searches]

For each question, the observations are its gold paragraphs only (``gold``: perfect retrieval), or the
results of searching each of the question's phrases in the dataset's corpus, as many as the grounded agent
may look up (``searches``: :func:`thrifty.agents.grounding.max_lookups`; BM25 ``search``, 3 passages of 300
characters each, as in ``agent bench``), and the offered spans are
``thrifty.agents.grounding.answer_spans`` of them, in the order the model sees them. Prints, by what the
question asks for (:func:`thrifty.agents.grounding.answer_kind`), how many questions have the gold answer
among the spans, first, and in the first three, and the EM of picking one offered span uniformly at random
(the mean of 1 / number of spans where the gold is among them): the ceiling of the grounded answer, how
much rests on the model's pick, and what a model without skill would score. No model is called.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

from thrifty.agents import grounding
from thrifty.agents.answers import normalize_answer
from thrifty.bench.datasets import QAItem, load_dataset
from thrifty.budget import Budget, Ledger
from thrifty.tools import ToolRunner, make_search_tools


def _gold_paragraphs(item: QAItem) -> list[str]:
    context = dict(item.context)
    observations = []
    for title in item.gold_titles:
        text = context.get(title)
        if text is not None:
            body = text if isinstance(text, str) else " ".join(text)
            observations.append(f"Title: {title}\n{body}")
    return observations


def _searches(item: QAItem, runner: ToolRunner) -> list[str]:
    """The results of the agent's first lookups, each run through the Ledger like the agent's own."""
    phrases = grounding.question_phrases(item.question)
    return [
        runner.run("search", {"query": p}).content for p in phrases[: grounding.max_lookups(item.question)]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="hotpotqa", help="bundled name or a HotpotQA .jsonl")
    parser.add_argument("--observations", choices=("gold", "searches"), default="gold")
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    runner = None
    if args.observations == "searches":
        corpus = dataset.corpus()
        if corpus is None:
            parser.error(f"{args.data} has no passages to search")
        runner = ToolRunner(make_search_tools(corpus, k=3)[:1], Ledger(Budget()))
    counts: Counter[tuple[str, str]] = Counter()
    chance: dict[str, float] = defaultdict(float)
    for item in dataset.items:
        observations = _gold_paragraphs(item) if runner is None else _searches(item, runner)
        spans = grounding.answer_spans(item.question, observations)
        gold = {normalize_answer(a) for a in item.answers}
        rank = next((i for i, s in enumerate(spans) if normalize_answer(s) in gold), None)
        for kind in (grounding.answer_kind(item.question), "all"):
            counts[(kind, "n")] += 1
            counts[(kind, "among")] += rank is not None
            counts[(kind, "first")] += rank == 0
            counts[(kind, "top3")] += rank is not None and rank < 3
            chance[kind] += 1 / len(spans) if rank is not None else 0.0
    n = counts[("all", "n")]
    print(f"{args.data}, observations: {args.observations}; n = {n}")
    print("| asks for | n | gold among the spans | first | in the first three | EM of a uniform pick |")
    print("|---|--:|--:|--:|--:|--:|")
    for kind in ("choice", "yesno", "year", "date", "number", "span", "all"):
        if counts[(kind, "n")]:
            k = counts[(kind, "n")]
            print(
                f"| {kind} | {k} | {counts[(kind, 'among')]} | {counts[(kind, 'first')]} | "
                f"{counts[(kind, 'top3')]} | {chance[kind]:.2f} ({chance[kind] / k:.3f}) |"
            )
    if runner is not None:
        runner.close()


if __name__ == "__main__":
    main()
