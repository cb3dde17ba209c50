"""A strategy is one builder plus one registration: Agent, task files and `agent bench` then find it by name,
with its options checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from thrifty import END, Agent, Budget, StrategyOptions, Workflow, register_strategy, takes_options
from thrifty.agents import solve
from thrifty.bench.runner import parse_strategies
from thrifty.testing import ScriptedModel, reply
from thrifty.workflows import StrategyOptionsError, load_task, run_task
from thrifty.workflows.strategies import STRATEGIES


class EchoOptions(StrategyOptions):
    rounds: int = Field(1, ge=1, description="Solver attempts in a row.")


built: list[EchoOptions] = []


@takes_options(EchoOptions)
def build_solve_only(options: EchoOptions) -> object:
    built.append(options)
    wf = Workflow("solve-only")
    wf.node("solve", solve).edge("solve", END)
    return wf(options.model_dump())


@pytest.fixture(autouse=True)
def registered() -> object:
    register_strategy("solve_only", build_solve_only, replace=True)
    yield
    STRATEGIES.pop("solve_only", None)


def test_a_registered_strategy_runs_by_name_with_typed_options() -> None:
    script = ScriptedModel([reply("Paris")])
    result = Agent(script, strategy="solve_only", rounds=2, budget=Budget(total_tokens=500)).run("Capital?")
    assert result.answer == "Paris" and result.strategy == "solve_only"
    assert built[-1] == EchoOptions(rounds=2)
    with pytest.raises(StrategyOptionsError, match="rounds"):
        Agent(script, strategy="solve_only", roundz=2)


def test_task_files_and_the_bench_find_it(tmp_path: Path) -> None:
    script = ScriptedModel([reply("Paris")])
    task = tmp_path / "t.yaml"
    task.write_text(f"question: Capital?\nmodel: {script.model}\nstrategy: {{name: solve_only}}\n")
    assert run_task(load_task(task), store=False).answer == "Paris"
    assert [s.name for s in parse_strategies("react,solve_only:rounds=3")] == ["react", "solve_only"]


def test_names_are_checked() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("bats", build_solve_only)
    with pytest.raises(ValueError, match="plain word"):
        register_strategy("a:b", build_solve_only)
    with pytest.raises(TypeError):
        register_strategy("x", 3)  # type: ignore[arg-type]
