"""How alike are a real model's resamples? What the simulator cannot measure about ``EscalationPolicy.resample``.

    python benchmarks/resample_real.py [--limit 50] [--out benchmarks/results/resample-real-2026-12-04]

The cascade's ``resample`` asks a doubtful reply again of the same model (temperature at least 0.7, the next
seed) before a stronger model. The simulator draws every sample independently; a real model's samples of one
prompt are not. This script measures that with the embedded SmolLM2-135M served by llama-cpp-python's
OpenAI-compatible server on 127.0.0.1 (started here), reached as ``openai/smollm2`` through the Gateway, with
the log-probabilities the cascade reads (``logprobs`` + ``top_logprobs``): for each bundled HotpotQA question,
given its gold paragraphs (reading comprehension, so that some answers are right), a first sample (temperature
0.2, seed 7) and two resamples (temperature 0.7, seeds 8 and 9), each with its confidence (the mean token
probability) and exact match. Prints how often a resample repeats the first answer, how often it crosses the
threshold when the first did not, and whether confidence separates right answers from wrong ones ("hit": the
gold answer is inside the reply, since this model answers in sentences and its exact match is near 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import thrifty  # noqa: F401  (offline environment before LiteLLM is imported)
from thrifty.agents.answers import normalize_answer
from thrifty.bench.datasets import load_dataset
from thrifty.bench.metrics import exact_match
from thrifty.budget import Budget, Ledger, ModelPrice, Pricing
from thrifty.models import Gateway
from thrifty.models.local import resolve_model_path

MODEL = "openai/smollm2"
PROMPT = "Passages:\n{passages}\n\nQuestion: {question}\nAnswer with a short phrase from the passages, nothing else."
SAMPLES = ((0.2, 7), (0.7, 8), (0.7, 9))  # the first call as a run makes it, then the two resamples


def _serve(port: int, log: Any) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_model_path("smollm2")),
        "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
        "--n_threads", "2", "--verbose", "False",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("llama_cpp.server did not answer within 90 s") from None
            time.sleep(0.2)


def _contains(answer: str, gold: list[str]) -> float:
    """1.0 when a gold answer is inside the reply (the 135M model answers in sentences, so EM is ~0)."""
    text = f" {normalize_answer(answer)} "
    return float(any(f" {normalize_answer(g)} " in text for g in gold if normalize_answer(g)))


def _auc(right: list[float], wrong: list[float]) -> float:
    """P(a right answer's confidence > a wrong one's), ties half: 0.5 is no signal."""
    if not right or not wrong:
        return float("nan")
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--threshold", type=float, default=0.6, help="min_confidence (the policy's default)")
    parser.add_argument("--port", type=int, default=18931)
    parser.add_argument("--out", default=None, help="a folder for samples.jsonl and summary.json")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-local-no-key")  # the local server checks none
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = "127.0.0.1,localhost"
    items = load_dataset("hotpotqa").items[: args.limit]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryFile() as log:
        proc = _serve(args.port, log)
        try:
            ledger = Ledger(Budget())
            gw = Gateway(
                ledger,
                Pricing(models={MODEL: ModelPrice(input_per_token=0.0, output_per_token=0.0)}),
                api_base=f"http://127.0.0.1:{args.port}/v1",
                retries=1,
            )
            for item in items:
                context = dict(item.context)
                passages = "\n".join(
                    f"{t}: {c if isinstance(c, str) else ' '.join(c)}"
                    for t in item.gold_titles
                    if (c := context.get(t)) is not None
                )
                messages = [
                    {"role": "user", "content": PROMPT.format(passages=passages, question=item.question)}
                ]
                samples = []
                for temperature, seed in SAMPLES:
                    out = gw.complete(
                        MODEL,
                        messages,
                        max_tokens=16,
                        temperature=temperature,
                        seed=seed,
                        logprobs=True,
                        top_logprobs=1,
                    )
                    answer = (out.content or "").strip().split("\n")[0]
                    samples.append(
                        {
                            "temperature": temperature,
                            "seed": seed,
                            "answer": answer,
                            "confidence": out.confidence,
                            "em": exact_match(answer, item.answers),
                            "hit": _contains(answer, item.answers),
                        }
                    )
                rows.append(
                    {"id": item.id, "question": item.question, "gold": item.answers, "samples": samples}
                )
                print(
                    f"{len(rows):3d} "
                    + " | ".join(
                        f"{s['confidence'] or 0:.2f} {s['hit']:.0f} {s['answer'][:24]!r}" for s in samples
                    ),
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    summary = _summary(rows, args.threshold)
    print(json.dumps(summary, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "samples.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _summary(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    def same(a: str, b: str) -> bool:
        return normalize_answer(a) == normalize_answer(b)

    firsts = [r["samples"][0] for r in rows]
    resamples = [s for r in rows for s in r["samples"][1:]]
    repeats = [same(s["answer"], r["samples"][0]["answer"]) for r in rows for s in r["samples"][1:]]
    doubtful = [r for r in rows if (r["samples"][0]["confidence"] or 0.0) < threshold]
    crossed = [
        next((s for s in r["samples"][1:] if (s["confidence"] or 0.0) >= threshold), None) for r in doubtful
    ]
    kept = [(r, s) for r, s in zip(doubtful, crossed, strict=True) if s is not None]
    every = [s for r in rows for s in r["samples"]]
    right = [s["confidence"] for s in every if s["hit"] and s["confidence"] is not None]
    wrong = [s["confidence"] for s in every if not s["hit"] and s["confidence"] is not None]
    return {
        "n": len(rows),
        "threshold": threshold,
        "em_first": statistics.fmean(s["em"] for s in firsts),
        "em_resamples": statistics.fmean(s["em"] for s in resamples),
        "resample_repeats_first_answer": sum(repeats) / len(repeats),
        "first_doubtful": len(doubtful),
        "doubtful_crossed_by_a_resample": len(kept),
        "hit_first": statistics.fmean(s["hit"] for s in firsts),
        "hit_resamples": statistics.fmean(s["hit"] for s in resamples),
        "hit_of_crossing_resample": statistics.fmean(s["hit"] for _, s in kept) if kept else None,
        "hit_of_first_when_crossed": statistics.fmean(r["samples"][0]["hit"] for r, _ in kept)
        if kept
        else None,
        "crossing_resample_repeats_first": sum(same(s["answer"], r["samples"][0]["answer"]) for r, s in kept),
        "confidence_right_mean": statistics.fmean(right) if right else None,
        "confidence_wrong_mean": statistics.fmean(wrong) if wrong else None,
        "auc_right_over_wrong": _auc(right, wrong),
        "samples_right": len(right),
        "samples_wrong": len(wrong),
    }


if __name__ == "__main__":
    main()
