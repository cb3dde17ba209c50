"""The grid: strategy parsing, budgets, exact costs with the scripted model, resume without recomputation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from thrifty.bench.datasets import load_dataset
from thrifty.bench.runner import (
    BenchConfig,
    BenchError,
    BudgetRule,
    load_results,
    make_pricing,
    parse_budgets,
    parse_shard,
    parse_strategies,
    run_grid,
)
from thrifty.models.scripted import ScriptedReply, ScriptedRequest
from thrifty.testing import ScriptedModel, call, reply
from thrifty.workflows import strategies as registry
from thrifty.workflows.react import build_react


# ------------------------------------------------------------------------------------------- parsing
def test_strategy_aliases_and_options() -> None:
    react, tracker, opts, tree = parse_strategies(
        "react,react_tracker,react_tracker:keep_observations=1,max_steps=9,value_tree:k=2,branch_budget=0.5"
    )
    assert (react.name, react.tracker, react.label) == ("react", False, "react")
    assert (tracker.name, tracker.tracker) == ("react", True)
    assert opts.label == "react_tracker:keep_observations=1,max_steps=9"
    assert opts.keep_observations == 1 and opts.max_steps == 9 and opts.options == {}
    spec = opts.spec(5)
    assert spec.max_steps == 9 and spec.keep_observations == 1 and spec.options == {}
    assert tracker.spec(5).max_steps == 12  # 2B + 2 by default
    assert parse_strategies("react:tracker=true")[0].tracker is True
    # The options as written (the results file records them so), checked against the strategy's model.
    assert tree.options == {"k": 2, "branch_budget": 0.5} and tree.spec(3).options == tree.options


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "bats:max_attemps=2",
            "strategy 'bats:max_attemps=2': 'max_attemps' is not an option of strategy 'bats' "
            "(fix: check the spelling; the options of bats are: max_attempts)",
        ),
        ("react_tracker:x=0.5", "'x' is not an option of strategy 'react' (fix: remove it; react takes no"),
        ("value_tree:k=0", "option 'k' of strategy 'value_tree': Input should be greater than 0"),
        ("self_consistency:samples=two", "option 'samples' of strategy 'self_consistency'"),
        ("value_tree:branch_budget=1.5", "option 'branch_budget' of strategy 'value_tree'"),
    ],
)
def test_strategy_options_are_checked(text: str, message: str) -> None:
    with pytest.raises(BenchError) as info:
        parse_strategies(f"react,{text}")
    assert message in str(info.value)


def test_strategies_come_from_the_registry_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchError, match="unknown strategy 'my_search'") as unknown:
        parse_strategies("react,my_search")
    assert str(unknown.value).count("use one of") == 1  # the list once, not the registry's message again
    # A builder that declares no options model gets its options as a plain dict, unchecked.
    monkeypatch.setitem(registry.STRATEGIES, "my_search", lambda options: build_react())
    (choice,) = parse_strategies("my_search:width=3")
    assert choice.name == "my_search" and choice.tracker and choice.options == {"width": 3}
    assert {c.name for c in parse_strategies(",".join(registry.STRATEGIES))} == set(registry.STRATEGIES)
    with pytest.raises(BenchError, match="given twice"):
        parse_strategies("react,react")
    with pytest.raises(BenchError, match="unknown strategy"):
        parse_strategies("my_search:width")  # no '=': read as module:function, which does not import
    with pytest.raises(BenchError, match="no strategies"):
        parse_strategies(" , ")


def test_budgets() -> None:
    assert parse_budgets("3, 5,10") == [3, 5, 10]
    for bad in ("", "3,x", "0", "-2", "3,3", "2.5"):
        with pytest.raises(BenchError):
            parse_budgets(bad)


def test_budget_rule() -> None:
    assert BudgetRule().budget(3).limits() == {"tool_calls": 3.0, "total_tokens": 6000.0}
    assert BudgetRule(tokens_per_call=None, timeout=30).budget(5).limits() == {
        "tool_calls": 5.0,
        "seconds": 30.0,
    }


# -------------------------------------------------------------------------------------------- the grid
PROMPT, COMPLETION = 100, 10


def one_search_then_answer(request: ScriptedRequest) -> ScriptedReply:
    """Search once, then answer with the gold answer of q1 (right for q1, wrong elsewhere)."""
    if any(m.get("role") == "tool" for m in request.messages):
        return reply("Lyonsford", prompt_tokens=PROMPT, completion_tokens=COMPLETION)
    return call("search", query="Mara Quell", prompt_tokens=PROMPT, completion_tokens=COMPLETION)


def grid(hotpot_file: Path, model: str, **kw: Any) -> BenchConfig:
    return BenchConfig(
        dataset=load_dataset(hotpot_file),
        strategies=parse_strategies("react,react_tracker"),
        budgets=[3],
        model=model,
        pricing=make_pricing(model, price_in=2.0, price_out=8.0),
        **kw,
    )


def test_scripted_grid_gives_exact_costs(hotpot_file: Path, tmp_path: Path) -> None:
    script = ScriptedModel(default=one_search_then_answer)
    records = run_grid(grid(hotpot_file, script.model), tmp_path / "results.jsonl", progress=False)
    assert len(records) == 6  # 2 strategies x 1 budget x 3 questions
    tokens_usd = 2 * (PROMPT * 2.0 + COMPLETION * 8.0) / 1e6  # two model calls at $2 / $8 per 1M tokens
    for r in records:
        u = r["usage"]
        assert (u["model_requests"], u["tool_calls"], u["total_tokens"]) == (2, 1, 2 * (PROMPT + COMPLETION))
        assert u["tokens_usd"] == pytest.approx(tokens_usd)
        assert u["tools_usd"] == pytest.approx(0.001)
        assert u["usd"] == pytest.approx(tokens_usd + 0.001)
        assert r["simulated"] is False and r["model"] == script.model
        assert r["limits"] == {"tool_calls": 3.0, "total_tokens": 6000.0}
        assert r["em"] == (1.0 if r["question_id"] == "q1" else 0.0)
        assert r["stop_reason"] == "completed" and r["budget_stop"] is False
    assert {(r["strategy"], r["tracker"]) for r in records} == {("react", False), ("react_tracker", True)}


def test_resume_skips_done_work(hotpot_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    script = ScriptedModel(default=one_search_then_answer)
    config = grid(hotpot_file, script.model)
    config.budgets = [3, 5]  # 2 strategies x 2 budgets x 3 questions = 12 runs

    seen: list[dict[str, Any]] = []

    def stop_after_five(record: dict[str, Any]) -> None:
        seen.append(record)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(config, path, progress=False, on_result=stop_after_five)
    assert len(load_results(path)) == 5
    assert len(script.requests) == 10  # 5 runs x 2 model calls

    records = run_grid(config, path, progress=False)
    assert len(script.requests) == 10 + 7 * 2  # only the 7 missing runs were computed
    keys = [(r["strategy"], r["budget"], r["question_id"], r["seed"]) for r in load_results(path)]
    assert len(keys) == len(set(keys)) == 12 == len(records)

    run_grid(config, path, progress=False)  # nothing left: nothing runs
    assert len(script.requests) == 24


def test_an_interrupted_run_is_not_recorded(hotpot_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    state = {"calls": 0}

    def interrupt_third_run(request: ScriptedRequest) -> ScriptedReply:
        state["calls"] += 1
        if state["calls"] == 5:  # first call of the third run: Ctrl-C inside the graph
            raise KeyboardInterrupt
        return one_search_then_answer(request)

    script = ScriptedModel(default=interrupt_third_run)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid(hotpot_file, script.model), path, progress=False)
    assert len(load_results(path)) == 2  # the cancelled run left no line
    assert len(run_grid(grid(hotpot_file, script.model), path, progress=False)) == 6


def test_results_of_another_model_are_refused(hotpot_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(
        json.dumps({"strategy": "react", "budget": 3, "question_id": "q1", "model": "other/m"}) + "\n"
    )
    with pytest.raises(BenchError, match="other/m"):
        run_grid(grid(hotpot_file, "sim/default"), path, progress=False)


def test_sim_grid_in_parallel_is_labelled_simulated(hotpot_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    config = grid(hotpot_file, "sim/p=0.9,q=1", concurrency=3, seeds=[0, 1])
    records = run_grid(config, path, progress=False)
    assert len(records) == 12 and all(r["simulated"] is True for r in records)
    assert {r["seed"] for r in records} == {0, 1}
    assert all(r["usage"]["total_tokens"] > 0 and r["usage"]["tokens_usd"] > 0 for r in records)
    # Deterministic: the same grid in another file gives the same answers.
    again = run_grid(
        grid(hotpot_file, "sim/p=0.9,q=1", seeds=[0, 1]), tmp_path / "again.jsonl", progress=False
    )
    key = lambda r: (r["strategy"], r["budget"], r["question_id"], r["seed"])  # noqa: E731
    assert {key(r): r["answer"] for r in records} == {key(r): r["answer"] for r in again}


def test_shards_split_the_questions_and_share_one_file(hotpot_file: Path, tmp_path: Path) -> None:
    import threading

    assert parse_shard("1/3") == (1, 3) and parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("3/3", "-1/2", "1/0", "1", "a/b"):
        with pytest.raises(BenchError):
            parse_shard(bad)
    whole = run_grid(grid(hotpot_file, "sim/p=0.9,q=1"), tmp_path / "whole.jsonl", progress=False)
    key = lambda r: (r["strategy"], r["budget"], r["question_id"], r["seed"])  # noqa: E731

    shared = tmp_path / "shared.jsonl"
    results: dict[int, list[dict[str, Any]]] = {}

    def shard(k: int) -> None:
        config = grid(hotpot_file, "sim/p=0.9,q=1", shard=(k, 2))
        results[k] = run_grid(config, shared, progress=False)

    threads = [threading.Thread(target=shard, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = load_results(shared)
    assert sorted(map(key, lines)) == sorted(map(key, whole))  # every run once, no line lost or mixed
    # The same answers as the unsharded grid (each run's draws do not depend on the shard).
    assert {key(r): r["answer"] for r in lines} == {key(r): r["answer"] for r in whole}
    # Alone, a shard runs only its questions: K, K + N, ... of the file.
    order = list(dict.fromkeys(r["question_id"] for r in whole))
    alone = run_grid(grid(hotpot_file, "sim/p=0.9,q=1", shard=(1, 2)), tmp_path / "one.jsonl", progress=False)
    assert {r["question_id"] for r in alone} == set(order[1::2]) and len(order) > 2
    # A shard returns the whole shared file at its end; a rerun has nothing left to do.
    assert len(run_grid(grid(hotpot_file, "sim/p=0.9,q=1", shard=(1, 2)), shared, progress=False)) == len(
        whole
    )
    with pytest.raises(BenchError, match="shard"):
        run_grid(grid(hotpot_file, "sim/p=0.9,q=1", shard=(2, 2)), shared, progress=False)


def test_load_results_skips_bad_lines_and_counts_a_run_once(tmp_path: Path) -> None:
    def line(budget: Any, answer: str, seed: int = 0) -> str:
        record = {"strategy": "react", "budget": budget, "question_id": "q1", "seed": seed, "answer": answer}
        return json.dumps(record)

    path = tmp_path / "results.jsonl"
    rows = [
        line(3, "a"),
        line(5, "b"),
        '{"strategy": "react", "bud',
        line("x", "bad"),
        line(3, "c"),
        line(3, "d", 1),
    ]
    path.write_text("\n".join(rows) + "\n")
    records = load_results(path)
    assert [(r["budget"], r["answer"], r["seed"]) for r in records] == [(3, "c", 0), (5, "b", 0), (3, "d", 1)]


def test_the_grid_runs_with_its_answer_settings(
    hotpot_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--answer-choice / --answer-context reach every run's ModelSettings (defaults: the settings')."""
    import thrifty.workflows.runner as workflow_runner
    from thrifty.models.settings import ModelSettings

    seen: list[ModelSettings] = []
    real = workflow_runner.execute

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["settings"])
        return real(*args, **kwargs)

    monkeypatch.setattr(workflow_runner, "execute", spy)
    script = ScriptedModel(default=one_search_then_answer)
    run_grid(grid(hotpot_file, script.model), tmp_path / "a.jsonl", progress=False)
    defaults = ModelSettings()
    assert {(s.answer_choice, s.answer_context) for s in seen} == {
        (defaults.answer_choice, defaults.answer_context)
    }
    seen.clear()
    config = grid(hotpot_file, script.model, answer_choice="grammar", answer_context="conversation")
    run_grid(config, tmp_path / "b.jsonl", progress=False)
    assert len(seen) == 6 and {(s.answer_choice, s.answer_context) for s in seen} == {
        ("grammar", "conversation")
    }
    # each record says which settings produced it, so one results file can hold several
    records = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert {
        (r["model_settings"]["answer_choice"], r["model_settings"]["answer_context"]) for r in records
    } == {("grammar", "conversation")}
    first = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])["model_settings"]
    assert (first["answer_choice"], first["answer_context"]) == (
        defaults.answer_choice,
        defaults.answer_context,
    )


@pytest.mark.parametrize(("flag", "value"), [("--answer-choice", "best"), ("--answer-context", "everything")])
def test_bad_answer_settings_are_refused_with_exit_2(
    hotpot_file: Path, tmp_path: Path, flag: str, value: str
) -> None:
    from typer.testing import CliRunner

    from thrifty.bench.cli import bench_app

    res = CliRunner().invoke(
        bench_app,
        ["hotpotqa", "--data", str(hotpot_file), "--out", str(tmp_path), "-q", "--no-plot", flag, value],
    )
    assert res.exit_code == 2, res.output
    assert f"{flag} '{value}': use" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "results.jsonl").exists()
