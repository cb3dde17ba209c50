"""Build a synthetic 3- and 4-hop test set for the simulated model from a HotpotQA-format file.

    python benchmarks/make_chains.py ../shared/data/hotpotqa/dev300.jsonl chains.jsonl [--n 100] [--seed 0]

Each chain joins two bridge questions of the file (A then B): its gold paragraphs, in order, are A's two
then B's first (3 hops) or B's two (4 hops, every other chain); its context is both questions' 20
paragraphs; its answer is B's. The question text is "A's question Then: B's question". Only the simulated
model can use these chains: it needs gold paragraphs in order, not a question that reads as one chain (the
simulated actor targets the next gold title only once the previous one was observed, so a chain of k gold
paragraphs needs k hops). Data: HotpotQA (Yang et al. 2018), CC BY-SA 4.0; the output is a derivative under
the same license.
"""

from __future__ import annotations

import argparse
import json
import random
import sys


def chain(a: dict, b: dict, hops: int) -> dict:
    def facts(rec: dict) -> list[tuple[str, int]]:
        sf = rec["supporting_facts"]
        return list(zip(sf["title"], sf["sent_id"], strict=True))

    def ordered_titles(rec: dict) -> list[str]:
        out: list[str] = []
        for t, _ in facts(rec):
            if t not in out:
                out.append(t)
        return out

    b_titles = ordered_titles(b)[: hops - 2]
    chosen = facts(a) + [(t, s) for t, s in facts(b) if t in b_titles]
    titles = a["context"]["title"] + [t for t in b["context"]["title"] if t not in a["context"]["title"]]
    sentences = a["context"]["sentences"] + [
        s
        for t, s in zip(b["context"]["title"], b["context"]["sentences"], strict=True)
        if t not in a["context"]["title"]
    ]
    return {
        "id": f"chain{hops}-{a['id']}-{b['id']}",
        "question": f"{a['question']} Then: {b['question']}",
        "answer": b["answer"],
        "type": "bridge",
        "level": f"{hops}-hop",
        "supporting_facts": {"title": [t for t, _ in chosen], "sent_id": [s for _, s in chosen]},
        "context": {"title": titles, "sentences": sentences},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with open(args.src, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    bridges = [
        r for r in records if r.get("type") == "bridge" and len(set(r["supporting_facts"]["title"])) == 2
    ]
    rng = random.Random(args.seed)
    rng.shuffle(bridges)
    with open(args.out, "w", encoding="utf-8") as f:
        for i in range(min(args.n, len(bridges) // 2)):
            a, b = bridges[2 * i], bridges[2 * i + 1]
            f.write(json.dumps(chain(a, b, 3 + i % 2)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
