"""Scores and summary statistics for QA benchmarks.

* :func:`normalize_answer`, :func:`exact_match`, :func:`f1_score` follow the official SQuAD / HotpotQA
  evaluation scripts: lower-case, drop punctuation, drop the articles *a*, *an*, *the*, collapse
  whitespace; EM and token F1 take the best score over the gold answers. HotpotQA's script also scores
  ``yes`` / ``no`` / ``noanswer`` answers as all-or-nothing for F1, which is kept here.
* :func:`cost_of_pass` (expected dollars for one correct answer) and :func:`e3` (accuracy squared over
  tokens, from Plan-and-Budget) are the cost metrics of ALGORITHMS.md section 5.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from thrifty.agents.answers import normalize_answer

__all__ = [
    "budget_stop_share",
    "cost_of_pass",
    "e3",
    "exact_match",
    "f1_score",
    "is_budget_stop",
    "mean",
    "normalize_answer",
    "stderr",
    "stdev",
]

_YES_NO = {"yes", "no", "noanswer"}


def _as_list(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else list(gold)


def exact_match(prediction: str | None, gold: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _as_list(gold)))


def _f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if (pred in _YES_NO or ref in _YES_NO) and pred != ref:
        return 0.0
    pred_tokens, ref_tokens = pred.split(), ref.split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str | None, gold: str | Sequence[str]) -> float:
    """Token F1 of the normalised prediction against the best-matching gold answer."""
    golds = _as_list(gold)
    if not golds:
        return 0.0
    return max(_f1(prediction or "", g) for g in golds)


# ------------------------------------------------------------------------------------------ statistics
def mean(values: Iterable[float]) -> float:
    """Arithmetic mean; NaN for no values."""
    vals = list(values)
    return math.fsum(vals) / len(vals) if vals else math.nan


def stdev(values: Iterable[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator); 0.0 for fewer than two values."""
    vals = list(values)
    if len(vals) < 2:
        return 0.0
    m = mean(vals)
    return math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def stderr(values: Iterable[float]) -> float:
    """Standard error of the mean: stdev / sqrt(n); 0.0 for fewer than two values."""
    vals = list(values)
    if len(vals) < 2:
        return 0.0
    return stdev(vals) / math.sqrt(len(vals))


def cost_of_pass(mean_cost: float, accuracy: float) -> float:
    """Expected cost of one correct answer: mean cost per attempt / success rate (inf if never right)."""
    if accuracy <= 0 or math.isnan(accuracy):
        return math.inf
    return mean_cost / accuracy


def e3(accuracy: float, mean_tokens: float) -> float:
    """E^3 = accuracy^2 / mean tokens per question (Plan-and-Budget); 0.0 when no tokens were used."""
    if mean_tokens <= 0 or math.isnan(mean_tokens):
        return 0.0
    return accuracy**2 / mean_tokens


def is_budget_stop(stop_reason: str | None) -> bool:
    """Whether a run was ended by its budget (``budget_exhausted:<dimension>``)."""
    return bool(stop_reason) and str(stop_reason).startswith("budget_exhausted")


def budget_stop_share(stop_reasons: Iterable[str | None]) -> float:
    """Share of runs whose stop reason starts with ``budget_exhausted`` (NaN for no runs)."""
    reasons = list(stop_reasons)
    if not reasons:
        return math.nan
    return sum(is_budget_stop(r) for r in reasons) / len(reasons)
