"""The router: per query, which tier (LOW / MID / HIGH) each memory module runs at.

Modules: ``retrieve`` (find the items) and ``condense`` (turn them into the memory block). A router only
*proposes*; :class:`thrifty.memory.Memory` then steps each module down to the next cheaper tier while the
budget cannot pay it (action masking), so no router can overspend.

* :class:`FixedRouter` (``low`` / ``mid`` / ``high`` or a mapping): the baselines.
* :class:`RuleRouter` (``rules``): reads the question's cues, the trade-off ``lam`` (0 = quality only,
  1 = cost only) and what is left of the memory budget. Pure Python, no model: a decision takes microseconds.
* :class:`thrifty.memory.learned.LearnedRouter` (``learned`` / ``learned:PATH``): an MLP trained on a grid of
  configurations, run in numpy, ``lam`` an input of the decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from thrifty.memory.records import Level

__all__ = [
    "LEVELS",
    "MODULES",
    "Decision",
    "FixedRouter",
    "RouteView",
    "Router",
    "RuleRouter",
    "make_router",
]

MODULES = ("retrieve", "condense")
LEVELS: tuple[Level, ...] = ("low", "mid", "high")


@dataclass(frozen=True)
class RouteView:
    """What a router may look at besides the query."""

    lam: float = 0.3  # the cost/quality trade-off: 0 quality only, 1 cost only
    remaining: float = 1.0  # share of the memory budget left (1.0 when it has no limit)
    has_embedder: bool = True
    has_model: bool = True
    items: int = 0  # items in the scope


@dataclass(frozen=True)
class Decision:
    tiers: dict[str, Level]
    reason: str = ""
    probs: dict[str, list[float]] = field(default_factory=dict)


class Router(Protocol):
    name: str

    def decide(self, query: str, view: RouteView) -> Decision: ...


class FixedRouter:
    """The same tiers for every query."""

    def __init__(self, tiers: Level | Mapping[str, Level]) -> None:
        if isinstance(tiers, str):
            self.tiers: dict[str, Level] = dict.fromkeys(MODULES, tiers)
            self.name = tiers
        else:
            unknown = set(tiers) - set(MODULES)
            if unknown:
                raise ValueError(
                    f"unknown memory module(s) {sorted(unknown)}: the modules are {list(MODULES)}"
                )
            self.tiers = {m: tiers.get(m, "low") for m in MODULES}
            self.name = ",".join(f"{m}={t}" for m, t in self.tiers.items())
        for module, level in self.tiers.items():
            if level not in LEVELS:
                raise ValueError(f"memory tier {level!r} for {module}: use low, mid or high")

    def decide(self, query: str, view: RouteView) -> Decision:
        return Decision(tiers=dict(self.tiers), reason="fixed")


_WORD = re.compile(r"[A-Za-z']+")
_DATE_MATH = re.compile(
    r"\b(how long|how many (days|weeks|months|years)|before or after|since when|how old)\b", re.I
)
_INFERENCE = re.compile(r"\b(would|likely|might|probably|could)\b", re.I)
_AGGREGATE = re.compile(r"\b(how many|how much|all|list|total|both|every|times|which .* and)\b", re.I)
_TEMPORAL = re.compile(r"\b(when|what (year|month|date|day)|which (year|month))\b", re.I)


def _named(query: str) -> int:
    """Capitalised words after the first: people, places, titles (lexical search finds those well)."""
    words = _WORD.findall(query)
    return sum(1 for w in words[1:] if w[:1].isupper())


class RuleRouter:
    """The rule baseline (MEMORY.md section 3, adapted to two modules):

    * everything LOW when cost dominates (``lam >= 0.7``) or less than a quarter of the budget is left;
    * retrieve HIGH for aggregation / multi-part questions (how many, all, list, both...) when ``lam < 0.3``,
      else MID; retrieve MID when the question names nothing (no capitalised word: paraphrase risk);
      otherwise LOW (BM25 finds named things);
    * condense HIGH for inference (would / likely) and date arithmetic (how long, how many days...) when
      ``lam < 0.5``; MID for temporal questions (keeps the dated turns, drops the rest); else LOW.
    """

    name = "rules"

    def decide(self, query: str, view: RouteView) -> Decision:
        if view.lam >= 0.7 or view.remaining < 0.25:
            return Decision(tiers=dict.fromkeys(MODULES, "low"), reason="cost first")
        reasons: list[str] = []
        retrieve: Level = "low"
        if _AGGREGATE.search(query):
            retrieve = "high" if view.lam < 0.3 else "mid"
            reasons.append("aggregation")
        elif _named(query) == 0:
            retrieve = "mid"
            reasons.append("nothing named")
        condense: Level = "low"
        if (_DATE_MATH.search(query) or _INFERENCE.search(query)) and view.lam < 0.5:
            condense = "high"
            reasons.append("inference/date math")
        elif _TEMPORAL.search(query):
            condense = "mid"
            reasons.append("temporal")
        if not view.has_embedder and retrieve == "mid":
            retrieve = "low"
            reasons.append("no embedder")
        if not view.has_model:
            retrieve = "mid" if retrieve == "high" and view.has_embedder else retrieve
            retrieve = "low" if retrieve == "high" else retrieve
            condense = "mid" if condense == "high" else condense
        return Decision(
            tiers={"retrieve": retrieve, "condense": condense}, reason="; ".join(reasons) or "plain"
        )


def make_router(choice: str | Mapping[str, Level] | Router) -> Router:
    """``rules``, ``learned`` (the shipped weights) or ``learned:PATH``, ``low`` / ``mid`` / ``high``, a
    mapping, or a Router. A weights file that cannot be used raises LearnedRouterError (a ValueError)."""
    if isinstance(choice, Mapping):
        return FixedRouter(choice)
    if not isinstance(choice, str):
        return choice
    if choice == "rules":
        return RuleRouter()
    if choice == "low" or choice == "mid" or choice == "high":
        return FixedRouter(choice)
    if choice == "learned" or choice.startswith("learned:"):
        from thrifty.memory.learned import LearnedRouter

        path = choice.partition(":")[2].strip()
        return LearnedRouter(path or None)
    raise ValueError(
        f"unknown memory router {choice!r}: use rules, learned, learned:PATH, low, mid, high or a mapping"
    )
