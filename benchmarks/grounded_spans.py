"""How often a grounded answer *can* be right: the gold answer among the spans a grounded answer may choose.

    python benchmarks/grounded_spans.py [--data hotpotqa]

For each question, the observations are its gold paragraphs only (perfect retrieval), and the offered spans are
``thrifty.agents.grounding.answer_spans`` of them, in the order the model sees them. Prints how many questions
have the gold answer among the spans, first, and in the first three: the ceiling of the grounded answer given
perfect retrieval, and how much rests on the model's pick. No model is called.
"""

from __future__ import annotations

import argparse

from thrifty.agents import grounding
from thrifty.agents.answers import normalize_answer
from thrifty.bench.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="hotpotqa", help="bundled name or a HotpotQA .jsonl")
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    among = first = top3 = 0
    for item in dataset.items:
        context = dict(item.context)
        observations = []
        for title in item.gold_titles:
            text = context.get(title)
            if text is not None:
                body = text if isinstance(text, str) else " ".join(text)
                observations.append(f"Title: {title}\n{body}")
        spans = grounding.answer_spans(item.question, observations)
        gold = {normalize_answer(a) for a in item.answers}
        rank = next((i for i, s in enumerate(spans) if normalize_answer(s) in gold), None)
        among += rank is not None
        first += rank == 0
        top3 += rank is not None and rank < 3
    n = len(dataset.items)
    print(
        f"{args.data}: n = {n}; gold among the offered spans {among}, first {first}, in the first three {top3}"
    )


if __name__ == "__main__":
    main()
