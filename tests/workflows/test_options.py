"""Typed strategy options: each built-in declares a model, unknown keys and bad values are refused wherever
options come from, and a custom builder gets a typed object only if it declares one."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

import thrifty
from thrifty import Agent, Budget
from thrifty.agents import context
from thrifty.agents.solver import solve
from thrifty.models import settings
from thrifty.testing import ScriptedModel, reply
from thrifty.workflows import StrategyOptions, TaskFileError, load_task, run_task, takes_options
from thrifty.workflows.bats import BatsOptions
from thrifty.workflows.graph import END, Workflow
from thrifty.workflows.options import STRATEGY_FIELDS, options_model, parse_options
from thrifty.workflows.runner import SetupError
from thrifty.workflows.self_consistency import SelfConsistencyOptions
from thrifty.workflows.spec import StrategySpec, TaskSpec, json_schema
from thrifty.workflows.strategies import STRATEGIES, builtin_options, get_builder
from thrifty.workflows.value_tree import ValueTreeOptions


def test_every_builtin_declares_its_options_with_the_defaults() -> None:
    assert set(builtin_options()) == set(STRATEGIES)
    assert BatsOptions().max_attempts == 4
    assert SelfConsistencyOptions().model_dump() == {"samples": 3, "parallel": False}
    assert ValueTreeOptions().model_dump() == {
        "k": 1,
        "max_depth": 8,
        "max_expansions": None,
        "prune_below": 0.1,
        "stop_on_verified": True,
        "verify": True,
        "parallel": True,
        "branch_budget": None,
        "seed": None,
        "expansions_per_node": 2,
        "dead_ends_only": True,
        "adaptive_width": True,
        "widen_below": 0.5,
        "credited": 0.5,
        "share_evidence": True,
        "show_tried": True,
        "reuse_repeats": True,
        "reopen": True,
        "compact_evidence": True,
        "follow_sure": True,
        "retry_rejected": True,
        "max_rejections": None,
        "max_idle": 3,
        "step_chars": 1500,
        "keep_listings": True,
        "forced_from": "evidence",
        "forced_checks": 2,
        "final_evidence": "auto",
    }
    for name, model in builtin_options().items():
        assert model.model_config["extra"] == "forbid", name
        assert all(f.description for f in model.model_fields.values()), name
        assert not set(model.model_fields) & set(STRATEGY_FIELDS), name


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("value_tree", {"k": 0}, "option 'k' of strategy 'value_tree': Input should be greater than 0"),
        ("value_tree", {"branch_budget": 0}, "option 'branch_budget'"),
        ("value_tree", {"branch_budget": 1.5}, "option 'branch_budget'"),
        ("value_tree", {"prune_below": -1}, "option 'prune_below'"),
        ("value_tree", {"forced_checks": 6}, "option 'forced_checks'"),
        ("self_consistency", {"samples": 0}, "(fix: give a valid value, or drop it for the default: 3)"),
        # no upper bound used to let samples=10**9 carve a billion sample ledgers before the first call
        ("self_consistency", {"samples": 10**9}, "option 'samples' of strategy 'self_consistency': Input "),
        (
            "value_tree",
            {"k": 11},
            "option 'k' of strategy 'value_tree': Input should be less than or equal to 10",
        ),
        ("value_tree", {"max_depth": 65}, "option 'max_depth'"),
        ("value_tree", {"max_expansions": 10**6}, "option 'max_expansions'"),
        ("bats", {"max_attempts": 101}, "option 'max_attempts' of strategy 'bats'"),
        ("react", {"width": 2}, "'width' is not an option of strategy 'react' (fix: remove it; react takes"),
        ("react", {"max_steps": 3}, "max_steps is a field of the strategy itself"),
    ],
)
def test_bad_options_are_refused(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Agent("scripted/x", strategy=StrategySpec(name=name, options=options))
    assert message in str(info.value)


def test_the_builder_gets_the_validated_options() -> None:
    builder = get_builder("value_tree")
    assert options_model(builder) is ValueTreeOptions  # the compile cache declares what it wraps
    typed = parse_options("value_tree", builder, {"k": "2", "parallel": "false"})
    assert typed == ValueTreeOptions(k=2, parallel=False)
    assert builder({"k": 2, "parallel": False}) is builder(typed)  # one compiled graph per options


def test_a_strategy_spec_with_keyword_options_merges_and_checks_them() -> None:
    agent = Agent("scripted/x", strategy=StrategySpec(name="bats", options={"max_attempts": 2}))
    assert agent.strategy.options == {"max_attempts": 2}
    agent = Agent("scripted/x", strategy=StrategySpec(name="bats"), max_attempts=3)
    assert agent.strategy.options == {"max_attempts": 3}
    with pytest.raises(ValueError, match="'max_attemps' is not an option of strategy 'bats'"):
        Agent("scripted/x", strategy=StrategySpec(name="bats"), max_attemps=3)


class WidthOptions(StrategyOptions):
    width: int = Field(2, ge=1, description="How wide.")


def test_a_custom_builder_gets_a_dict_or_the_model_it_declares() -> None:
    seen: list[Any] = []

    def plain(options: Any) -> Workflow:
        seen.append(options)
        return Workflow("plain").node("solve", solve).edge("solve", END)

    @takes_options(WidthOptions)
    def typed(options: WidthOptions) -> Workflow:
        seen.append(options)
        return Workflow("typed").node("solve", solve).edge("solve", END)

    script = ScriptedModel([reply("Paris"), reply("Paris")])
    Agent(script.model, budget=Budget(total_tokens=2000), strategy=plain, anything=1).run("Capital?")
    Agent(script.model, budget=Budget(total_tokens=2000), strategy=typed, width=3).run("Capital?")
    assert seen == [{"anything": 1}, WidthOptions(width=3)]
    with pytest.raises(ValueError, match=r"'widht' is not an option of strategy 'typed'.*: width"):
        Agent(script.model, strategy=typed, widht=3)


def test_a_task_file_module_strategy_with_declared_options_is_checked(tmp_path: Path) -> None:
    (tmp_path / "declared_opts_mod.py").write_text(
        textwrap.dedent(
            """
            from pydantic import Field
            from thrifty.agents.solver import solve
            from thrifty.workflows import StrategyOptions, takes_options
            from thrifty.workflows.graph import END, Workflow

            class Options(StrategyOptions):
                width: int = Field(2, ge=1)

            @takes_options(Options)
            def build(options):
                assert isinstance(options, Options) and options.width == 3
                return Workflow("declared").node("solve", solve).edge("solve", END)
            """
        )
    )
    script = ScriptedModel([reply("Paris")])
    task = tmp_path / "task.yaml"
    body = f"question: Capital?\nmodel: {script.model}\noutput: {{store: null}}\nstrategy:\n"
    task.write_text(body + "  name: declared_opts_mod:build\n  options:\n    width: 3\n")
    assert run_task(load_task(task)).answer == "Paris"
    task.write_text(body + "  name: declared_opts_mod:build\n  options:\n    widht: 3\n")
    with pytest.raises(TaskFileError) as info:
        load_task(task)
    assert str(info.value) == (
        f"{task}:7: field 'strategy.options.widht': 'widht' is not an option of strategy "
        "'declared_opts_mod:build' (fix: check the spelling; the options of declared_opts_mod:build are: width)"
    )


def test_a_spec_built_in_python_is_checked_when_it_runs() -> None:
    script = ScriptedModel([reply("Paris")])
    spec = TaskSpec(question="Capital?", model=script.model, strategy={"name": "bats", "options": {"x": 1}})
    with pytest.raises(SetupError, match="'x' is not an option of strategy 'bats'"):
        run_task(spec, store=False)


def test_the_schema_checks_each_strategys_options() -> None:
    schema = json_schema()
    defs = schema["$defs"]
    assert defs["BatsOptions"]["additionalProperties"] is False
    assert defs["BatsOptions"]["properties"]["max_attempts"]["default"] == 4
    assert "k" in defs["ValueTreeOptions"]["properties"]
    rules = {r["if"]["properties"]["name"]["const"]: r for r in defs["StrategySpec"]["allOf"]}
    assert set(rules) == set(STRATEGIES)
    assert rules["bats"]["then"]["properties"]["options"] == {"$ref": "#/$defs/BatsOptions"}
    assert "required" not in rules["react"]["if"]  # no name: react
    assert "ModelSettings" in defs and defs["ModelSettings"]["properties"]["temperature"]["default"] == 0.7


def test_one_model_settings_with_each_default_defined_once() -> None:
    assert thrifty.ModelSettings is context.ModelSettings is settings.ModelSettings
    assert TaskSpec(question="q").model_settings == settings.ModelSettings()
    default = settings.ModelSettings()
    assert (default.temperature, default.max_tokens, default.seed, default.retries) == (
        settings.DEFAULT_TEMPERATURE,
        settings.DEFAULT_REPLY_TOKENS,
        None,
        settings.DEFAULT_RETRIES,
    )
    agent = Agent()
    assert agent.model == TaskSpec(question="q").model == settings.DEFAULT_MODEL
    assert agent.settings == default and agent.retries == default.retries
    assert agent.strategy.max_steps == StrategySpec().max_steps == context.DEFAULT_MAX_STEPS
    agent = Agent("scripted/x", temperature=None, max_tokens=64, seed=3, retries=0)
    assert agent.settings == settings.ModelSettings(temperature=None, max_tokens=64, seed=3, retries=0)
