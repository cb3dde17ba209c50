"""The rule router and the fixed routers: what each proposes, and what they refuse."""

from __future__ import annotations

import pytest

from thrifty.memory import FixedRouter, RouteView, RuleRouter, make_router


def _tiers(query: str, **view: object) -> dict[str, str]:
    return dict(RuleRouter().decide(query, RouteView(**view)).tiers)  # type: ignore[arg-type]


def test_rules_read_the_question() -> None:
    assert _tiers("What did Caroline research?") == {"retrieve": "low", "condense": "low"}
    assert _tiers("When did Caroline go to the LGBTQ support group?")["condense"] == "mid"
    assert _tiers("How long has Caroline had her current group of friends?", lam=0.1)["condense"] == "high"
    assert _tiers("Would Caroline likely pursue writing as a career?", lam=0.1)["condense"] == "high"
    assert _tiers("How many times has Melanie gone to the beach?", lam=0.1)["retrieve"] == "high"
    assert _tiers("How many times has Melanie gone to the beach?", lam=0.5)["retrieve"] == "mid"
    assert _tiers("what did she paint recently")["retrieve"] == "mid"  # names nothing: paraphrase risk


def test_rules_turn_to_cost_when_asked_or_when_the_budget_runs_low() -> None:
    hard = "How many times would Melanie likely go camping before June?"
    assert set(_tiers(hard, lam=0.9).values()) == {"low"}
    assert set(_tiers(hard, lam=0.1, remaining=0.2).values()) == {"low"}
    assert "high" not in _tiers(hard, lam=0.1, has_model=False).values()
    assert "mid" not in _tiers("what did she paint", has_embedder=False).values()


def test_fixed_routers_and_bad_names() -> None:
    assert make_router("mid").decide("x", RouteView()).tiers == {"retrieve": "mid", "condense": "mid"}
    assert FixedRouter({"retrieve": "high"}).tiers == {"retrieve": "high", "condense": "low"}
    with pytest.raises(ValueError, match="unknown memory router"):
        make_router("smart")
    with pytest.raises(ValueError, match="unknown memory module"):
        FixedRouter({"filter": "low"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="use low, mid or high"):
        FixedRouter({"retrieve": "max"})  # type: ignore[dict-item]
