"""Issue 14 item 6: a limit crossed by what a provider reports is an explicit overrun in the RunResult and
in ``agent run``'s summary, never silent."""

from __future__ import annotations

import io

from rich.console import Console

from thrifty import Agent, Budget
from thrifty.budget import ModelPrice, Pricing
from thrifty.cli import render_result
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest


def _over_reporting(request: ScriptedRequest) -> ScriptedReply:
    return ScriptedReply(content="Paris", prompt_tokens=5000, completion_tokens=3)


def test_an_over_report_past_the_limit_is_in_the_result_and_the_summary() -> None:
    script = ScriptedModel(default=_over_reporting)
    pricing = Pricing(models={script.model: ModelPrice(input_per_token=1e-5)})
    result = Agent(script, budget=Budget(usd=0.01), pricing=pricing).run("Capital of France?")
    assert [(o.dimension, o.limit, o.ledger) for o in result.overruns] == [("usd", 0.01, "run")]
    assert result.overruns[0].spent == result.usage.usd > 0.01
    assert result.model_dump(mode="json")["overruns"][0]["dimension"] == "usd"
    out = io.StringIO()
    render_result(result, Console(file=out, width=200))
    assert "overrun: usd spent $0.05 against a limit of $0.01" in out.getvalue()


def test_a_run_within_its_limits_reports_no_overrun() -> None:
    script = ScriptedModel(default=ScriptedReply(content="Paris"))
    result = Agent(script, budget=Budget(total_tokens=1000)).run("Capital of France?")
    assert result.overruns == []
    out = io.StringIO()
    render_result(result, Console(file=out, width=200))
    assert "overrun" not in out.getvalue()
