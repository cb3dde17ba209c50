"""The `agent` command end to end, in process, with the scripted model (its registry is per process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.testing import ScriptedModel, call, reply
from thrifty.workflows.result import RunResult

runner = CliRunner()

CORPUS = [
    {"title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"title": "Berlin", "text": "Berlin is the capital of Germany."},
]


def write_task(tmp_path: Path, model: str, extra: str = "", budget: str = "  tool_calls: 5\n") -> Path:
    corpus = tmp_path / "passages.jsonl"
    corpus.write_text("\n".join(json.dumps(p) for p in CORPUS) + "\n")
    task = tmp_path / "task.yaml"
    task.write_text(
        f"name: capital\nquestion: What is the capital of France?\nmodel: {model}\n"
        f"corpus: passages.jsonl\ntools: [search, read]\nbudget:\n{budget}"
        f"output:\n  store: {tmp_path / 'runs.db'}\n{extra}"
    )
    return task


def test_run_json_prints_a_run_result(tmp_path: Path) -> None:
    script = ScriptedModel([call("search", query="France capital"), reply("Paris")])
    res = runner.invoke(app, ["run", str(write_task(tmp_path, script.model)), "--json"])
    assert res.exit_code == 0, res.output
    result = RunResult.model_validate_json(res.stdout)
    assert result.answer == "Paris" and result.stop_reason == "completed"
    data = json.loads(res.stdout)
    for key in ("answer", "stop_reason", "usage", "cost", "trace", "events", "budget"):
        assert key in data
    assert data["usage"]["tool_calls"] == 1


def test_max_tool_calls_override_and_budget_exit_code(tmp_path: Path) -> None:
    script = ScriptedModel([call("search", query=f"q{i}") for i in range(3)] + [reply("Paris")])
    task = write_task(tmp_path, script.model, budget="  tool_calls: 10\n")
    res = runner.invoke(app, ["run", str(task), "--json", "--max-tool-calls", "3"])
    assert res.exit_code == 4, res.output
    result = RunResult.model_validate_json(res.stdout)
    assert result.usage.tool_calls <= 3
    assert result.stop_reason == "budget_exhausted:tool_calls"
    assert result.answer == "Paris"


def test_human_output_shows_answer_stop_and_spend(tmp_path: Path) -> None:
    script = ScriptedModel([call("search", query="France"), reply("Paris")])
    res = runner.invoke(app, ["run", str(write_task(tmp_path, script.model)), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "Paris" in res.stdout and "completed" in res.stdout
    assert "tool calls" in res.stdout and "USD" in res.stdout


def test_progress_lines_without_a_terminal(tmp_path: Path) -> None:
    script = ScriptedModel([call("search", query="France"), reply("Paris")])
    res = runner.invoke(app, ["run", str(write_task(tmp_path, script.model))])
    assert res.exit_code == 0, res.output
    assert "[step 1] search" in res.stderr
    assert "left:" in res.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("question: [unclosed\n", ["task.yaml:2", "invalid YAML", "starts at line 1"]),
        (
            "question: hi\nmodel: local/smollm2\nbudget:\n  tool_calls: 0\n",
            ["task.yaml:4", "budget.tool_calls", "positive"],
        ),
        ("question: hi\nbudget:\n  tool_calls: -3\n", ["task.yaml:3", "budget.tool_calls"]),
        ("question: hi\nbudgett:\n  tool_calls: 3\n", ["task.yaml:2", "budgett", "spelling"]),
        (
            "question: hi\ntools: [search, teleport]\ncorpus: x.jsonl\n",
            ["task.yaml:2", "tools.1", "unknown tool 'teleport'"],
        ),
        ("question: hi\ntools: [search]\ncorpus: missing.jsonl\n", ["task.yaml:3", "corpus", "not found"]),
        ("question: hi\ntools: [search]\n", ["need a `corpus:`"]),
        ("question: hi\nmodel: gpt-4o\n", ["task.yaml:2", "provider prefix"]),
        ("model: local/smollm2\n", ["question", "add it"]),
        ("- just\n- a list\n", ["must be a mapping"]),
        ("question: hi\nstrategy: nosuch\n", ["unknown strategy"]),
        (
            "question: hi\nstrategy: {name: bats, options: {max_attemps: 2}}\n",
            ["task.yaml:2", "field 'strategy.options.max_attemps'", "not an option of strategy 'bats'"],
        ),
        (
            "question: hi\nstrategy:\n  name: value_tree\n  options:\n    k: 0\n",
            ["task.yaml:5: field 'strategy.options.k'", "greater than 0", "the default: 1"],
        ),
        (
            "question: hi\nstrategy:\n  options:\n    max_steps: 3\n",
            [
                "task.yaml:4",
                "'max_steps' is not an option of strategy 'react'",
                "field of the strategy itself",
            ],
        ),
    ],
)
def test_bad_task_files_get_a_clear_message_and_exit_2(
    tmp_path: Path, content: str, expected: list[str]
) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(content)
    for command in (["validate", str(task)], ["run", str(task), "--quiet"]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2, (command, res.output)
        assert "Traceback" not in res.output
        for part in expected:
            assert part in res.stderr, (part, res.stderr)


def test_a_misspelt_strategy_option_names_the_line_field_and_valid_options(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(
        "question: hi\nstrategy:\n  name: bats\n  options:\n    max_attempts: 2\n    max_attemps: 2\n"
    )
    for command in (["validate", str(task)], ["run", str(task), "--quiet"]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2, (command, res.output)
        assert " ".join(res.stderr.split()) == (
            f"error: {task}:6: field 'strategy.options.max_attemps': 'max_attemps' is not an option of "
            "strategy 'bats' (fix: check the spelling; the options of bats are: max_attempts)"
        )


def test_valid_strategy_options_reach_the_strategy(tmp_path: Path) -> None:
    plan = json.dumps({"exploration": ["France"], "verification": []})
    verdict = json.dumps({"decision": "CONTINUE", "justification": "-", "trajectory_summary": "-"})
    script = ScriptedModel([reply(plan), reply("Berlin"), reply(verdict), reply("Paris")])
    task = write_task(tmp_path, script.model, extra="strategy:\n  name: bats\n  options: {max_attempts: 1}\n")
    res = runner.invoke(app, ["run", str(task), "--json"])
    assert res.exit_code == 4, res.output  # stopped after one attempt: max_steps
    result = RunResult.model_validate_json(res.stdout)
    assert result.stop_reason == "max_steps" and result.answer == "Berlin"
    assert script.remaining == 1


def test_unknown_model_and_remote_block_are_bad_input(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(write_task(tmp_path, "nosuchprovider/x")), "--quiet"])
    assert res.exit_code == 2 and "unknown provider" in res.stderr
    res = runner.invoke(app, ["run", str(write_task(tmp_path, "local/no-such-model")), "--quiet"])
    assert res.exit_code == 2


@pytest.mark.parametrize("option", ["--max-usd", "--max-tokens", "--max-tool-calls", "--max-seconds"])
def test_negative_cli_limit_is_bad_input_naming_its_option(tmp_path: Path, option: str) -> None:
    script = ScriptedModel([reply("x")])
    res = runner.invoke(app, ["run", str(write_task(tmp_path, script.model)), option, "-1"])
    assert res.exit_code == 2 and "must be a positive finite number" in res.stderr
    assert f"{option}: " in res.stderr  # --max-tokens was reported as "--max-total-tokens", no such option


def test_missing_file(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "no such file" in res.stderr


def test_validate_ok_and_schema() -> None:
    res = runner.invoke(app, ["validate", "examples/hotpotqa.yaml"])
    assert res.exit_code == 0, res.output
    assert "ok" in res.stdout
    res = runner.invoke(app, ["schema"])
    schema = json.loads(res.stdout)
    assert schema["title"] == "thrifty task"
    assert {"question", "model", "budget", "tools", "strategy"} <= set(schema["properties"])
    assert "base_dir" not in schema["properties"]
    options = schema["$defs"]["ValueTreeOptions"]["properties"]
    assert options["k"]["default"] == 1 and options["k"]["description"]
    assert schema["$defs"]["BatsOptions"]["properties"]["max_attempts"]["default"] == 4


def test_a_limit_meant_as_no_limit_is_shown_short(tmp_path: Path) -> None:
    """`usd: 1e26` printed as a 27-digit dollar amount."""
    task = tmp_path / "t.yaml"
    task.write_text(
        "question: hi\nmodel: local/smollm2\nbudget: {usd: 1e26, seconds: 2.5e9, tool_calls: 3}\n"
    )
    res = runner.invoke(app, ["validate", str(task)])
    assert res.exit_code == 0, res.output
    assert "USD $1e+26, tool calls 3, seconds 2.5e+09s" in res.stdout


def test_runs_lists_recorded_runs(tmp_path: Path) -> None:
    script = ScriptedModel([reply("Paris")])
    res = runner.invoke(app, ["run", str(write_task(tmp_path, script.model)), "--json"])
    run_id = json.loads(res.stdout)["run_id"]
    res = runner.invoke(app, ["runs", "--store", str(tmp_path / "runs.db")])
    assert res.exit_code == 0 and run_id in res.stdout
    # on a narrow terminal the id stays whole (it is what `agent resume` takes): it was cut to "e359aed5d8…"
    narrow = runner.invoke(app, ["runs", "--store", str(tmp_path / "runs.db")], env={"COLUMNS": "50"})
    assert narrow.exit_code == 0 and run_id in narrow.stdout


def test_tree_out_writes_the_value_tree(tmp_path: Path) -> None:
    from thrifty.agents.records import TreeNode
    from thrifty.cli import render_tree

    script = ScriptedModel(
        [
            reply(json.dumps({"actions": [{"tool": "search", "arguments": {"query": "France capital"}}]})),
            reply(json.dumps({"progress": 0.9, "reason": "found Paris"})),
            reply(json.dumps({"actions": [{"tool": "answer", "arguments": {"answer": "Paris"}}]})),
            reply(json.dumps({"decision": "SUCCESS", "trajectory_summary": "ok"})),
        ]
    )
    task = write_task(tmp_path, script.model, extra="strategy:\n  name: value_tree\n  options:\n    k: 1\n")
    out_file = tmp_path / "tree.json"
    res = runner.invoke(app, ["run", str(task), "--tree-out", str(out_file)])
    assert res.exit_code == 0, res.output
    assert "expand node 0" in res.stderr
    tree = json.loads(out_file.read_text())
    assert tree["answer"] == "Paris" and tree["path"] == [0, 1, 2]
    text = render_tree([TreeNode.model_validate(n) for n in tree["nodes"]], tree["path"])
    assert "answer 'Paris' [SUCCESS]" in text and "search(" in text


@pytest.mark.parametrize(
    "option",
    ["--max-usd=nan", "--max-seconds=nan", "--max-usd=inf", "--max-seconds=-1", "--max-tool-calls=0"],
)
def test_non_finite_or_non_positive_command_line_limits_exit_2(tmp_path: Path, option: str) -> None:
    script = ScriptedModel([reply("Paris")])
    res = runner.invoke(app, ["run", str(write_task(tmp_path, script.model)), option, "--json"])
    assert res.exit_code == 2, res.output
    assert option.split("=")[0] in res.output and "positive" in res.output
    assert script.requests == []  # nothing was spent


def test_validate_checks_the_run_store(tmp_path: Path) -> None:
    script = ScriptedModel([reply("x")])
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    task = write_task(tmp_path, script.model)
    task.write_text(task.read_text().replace(str(tmp_path / "runs.db"), str(text)))
    res = runner.invoke(app, ["validate", str(task)])
    assert res.exit_code == 2, res.output
    line = next(i for i, row in enumerate(task.read_text().splitlines(), 1) if "notes.txt" in row)
    assert f"{task}:{line}: field 'output.store'" in res.stderr and "fix" in res.stderr  # with its line
    assert text.read_text() == "not a database\n"


@pytest.mark.parametrize(("weights", "problem"), [(None, "no such file"), ("{", "not valid JSON")])
def test_validate_loads_learned_router_weights(tmp_path: Path, weights: str | None, problem: str) -> None:
    if weights is not None:
        (tmp_path / "w.json").write_text(weights)  # relative to the task file, as at run time
    memory = "memory:\n  store: mem.db\n  scope: {user_id: c}\n  router: learned:w.json\n"
    task = write_task(tmp_path, ScriptedModel([reply("x")]).model, extra=memory)
    res = runner.invoke(app, ["validate", str(task)])
    assert res.exit_code == 2, res.output
    assert "field 'memory.router'" in res.stderr and problem in res.stderr and "w.json" in res.stderr
    assert "fix: " in res.stderr and not (tmp_path / "mem.db").exists()  # refused before anything opened
    (tmp_path / "w.json").unlink(missing_ok=True)
    shipped = runner.invoke(
        app,
        ["validate", str(write_task(tmp_path, ScriptedModel([]).model, extra=memory.replace(":w.json", "")))],
    )
    assert shipped.exit_code == 0, shipped.output


@pytest.mark.parametrize("command", [["batch"], ["bench", "hotpotqa"]])
def test_help_names_the_extra_to_install(command: list[str]) -> None:
    # Rich reads "[ray]" as markup and drops it unless escaped: the help said "pip install 'thrifty'".
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "optional extra [ray]" in res.output


@pytest.mark.parametrize(
    ("model", "settings", "field", "problem"),
    [
        ("nosuch/x", "", "model", "unknown provider 'nosuch'"),
        # a server on this machine (tests reach no other), unpriced: the task's usd limit needs a price
        ("ollama/qwen3", 'model_settings: {api_base: "http://127.0.0.1:9"}\n', "model", "has no known price"),
        ("local/nosuchmodel", "", "model", "unknown local model"),
        (
            "local/smollm2",
            'model_settings: {api_base: "http://127.0.0.1:9/v1"}\n',
            "model_settings.api_base",  # the base is what is wrong, not the model
            "api_base is for remote models",
        ),
    ],
)
def test_validate_and_run_check_the_model_before_anything_else(
    tmp_path: Path, model: str, settings: str, field: str, problem: str
) -> None:
    task = write_task(tmp_path, model, extra=settings, budget="  tool_calls: 5\n  usd: 0.05\n")
    checked = runner.invoke(app, ["validate", str(task)])
    assert checked.exit_code == 2, checked.output  # validate said ok, and only the run refused it
    assert f"field '{field}'" in checked.stderr and problem in checked.stderr and str(task) in checked.stderr
    ran = runner.invoke(app, ["run", str(task)])
    assert ran.exit_code == 2 and problem in ran.stderr
    assert "Question:" not in ran.stderr  # refused before the run began, nothing shown as started
    assert not (tmp_path / "runs.db").exists()


def test_a_checkpoint_folder_is_refused_before_anything_is_shown(tmp_path: Path) -> None:
    task = write_task(tmp_path, ScriptedModel([reply("Paris")]).model)
    for target in (tmp_path, tmp_path / "runs.db" / "x.db"):  # a folder; a path under a file
        if target != tmp_path:
            (tmp_path / "runs.db").write_text("")
        res = runner.invoke(app, ["run", str(task), "--checkpoint", str(target)])
        assert res.exit_code == 2, res.output
        assert res.stderr.startswith(f"error: {target}: ") and "fix:" in res.stderr, res.stderr
        assert "Question:" not in res.stderr and "Traceback" not in res.output
    (tmp_path / "junk.db").write_text("not a database\n")
    res = runner.invoke(app, ["run", str(task), "--checkpoint", str(tmp_path / "junk.db")])
    assert res.exit_code == 2 and "is not a SQLite database" in res.stderr and "Question:" not in res.stderr
    assert (tmp_path / "junk.db").read_text() == "not a database\n"


def test_a_refused_resume_creates_no_checkpoint_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    task = tmp_path / "task.yaml"
    task.write_text(f"question: hi\nmodel: {ScriptedModel([reply('hi')]).model}\n")  # default stores
    res = runner.invoke(app, ["run", str(task), "--resume", "nosuchrun"])
    assert res.exit_code == 2, res.output
    assert " ".join(res.stderr.split()) == (
        "error: no run 'nosuchrun' in .thrifty/checkpoints.db; "  # relative to the current folder
        "fix: `agent runs` lists the runs that can be resumed"
    )
    assert not (tmp_path / ".thrifty").exists()
    beside = write_task(tmp_path, ScriptedModel([]).model)  # checkpoints beside the task's run store
    res = runner.invoke(app, ["run", str(beside), "--resume", "nosuchrun", "--quiet"])
    assert res.exit_code == 2 and "no run 'nosuchrun'" in res.stderr
    assert not (tmp_path / "checkpoints.db").exists() and not (tmp_path / "runs.db").exists()


def test_progress_line_of_an_escalation_claims_no_budget(tmp_path: Path) -> None:
    weak, big = ScriptedModel([reply("I cannot answer")]), ScriptedModel([reply("Paris")])
    task = tmp_path / "task.yaml"
    task.write_text(
        f"question: What is the capital of France?\nmodels: [{weak.model}, {big.model}]\n"
        f"pricing:\n  models:\n    {weak.model}: {{input_per_token: 1.0e-6, output_per_token: 2.0e-6}}\n"
        f"    {big.model}: {{input_per_token: 2.0e-5, output_per_token: 4.0e-5}}\n"
        f"budget:\n  usd: 0.05\noutput:\n  store: {tmp_path / 'runs.db'}\n"
    )
    res = runner.invoke(app, ["run", str(task)])
    assert res.exit_code == 0, res.output
    [line] = [x for x in res.stderr.splitlines() if "escalated" in x]
    assert "left:" not in line and "unlimited" not in line, line  # an EscalationEvent has no budget snapshot
    answered = [x for x in res.stderr.splitlines() if x.startswith("[step") and "escalated" not in x]
    assert answered and all("left: USD" in x for x in answered), answered  # the others still show theirs


def test_a_paused_runs_checkpoint_is_shown_relative_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "agent resume ... --checkpoint FILE" hint names the file as `agent runs` does: relative to the
    folder the command ran in (it printed the absolute path)."""
    script = ScriptedModel(
        [call("calculator", expression="1+1"), call("calculator", expression="2+1"), reply("3")]
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "task.yaml").write_text(
        f"question: count\nmodel: {script.model}\ntools: [calculator]\nbudget:\n  tool_calls: 1\non_limit: pause\n"
    )
    res = runner.invoke(app, ["run", "task.yaml", "--quiet"])
    assert res.exit_code == 4, res.output
    assert "--checkpoint .thrifty/checkpoints.db --max-tool-calls N" in res.stderr, res.stderr


def test_an_empty_model_option_is_refused_not_ignored(tmp_path: Path) -> None:
    """`--model ""` (an unset $MODEL in a script) ran the task file's model without a word."""
    script = ScriptedModel([reply("Paris")])
    res = runner.invoke(app, ["run", str(write_task(tmp_path, script.model)), "--model", "", "--json"])
    assert res.exit_code == 2, res.output
    assert "field 'model': --model: the model name is empty (fix: " in res.stderr
    assert res.stdout == "" and not (tmp_path / "runs.db").exists()  # refused before anything ran


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_runs_limit_must_be_positive(tmp_path: Path, limit: str) -> None:
    """`agent runs --limit 0` printed an empty table and `--limit -1` every run (SQLite's LIMIT -1)."""
    script = ScriptedModel([reply("Paris")])
    assert runner.invoke(app, ["run", str(write_task(tmp_path, script.model)), "--quiet"]).exit_code == 0
    res = runner.invoke(app, ["runs", "--store", str(tmp_path / "runs.db"), "--limit", limit])
    assert res.exit_code == 2 and "--limit" in res.output, res.output


def test_runs_on_a_file_that_is_not_a_store_says_so_without_the_hint_for_runs(tmp_path: Path) -> None:
    """The store's fix ended "or pass --no-store", an option of `agent run` that `agent runs` lacks."""
    bad = tmp_path / "notes.db"
    bad.write_text("not a database")
    res = runner.invoke(app, ["runs", "--store", str(bad)])
    assert res.exit_code == 2 and "is not a SQLite database" in res.stderr
    assert "--no-store" not in res.stderr and "output.store" not in res.stderr


def test_an_unreadable_task_file_gets_the_task_file_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task file that cannot be read (chmod 000) got typer's boxed "Invalid value for 'file': path ... is
    not readable", with no fix, instead of the task file's own message. (Simulated: as root every file is
    readable.)"""
    import os

    task = write_task(tmp_path, "local/smollm2")
    real_open, real_access = os.open, os.access

    def denied_open(path: str, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if str(path) == str(task):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode, **kwargs)

    def denied_access(path: str, mode: int, **kwargs: Any) -> bool:
        return False if str(path) == str(task) else real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "open", denied_open)
    monkeypatch.setattr(os, "access", denied_access)
    for command in ("run", "validate"):
        res = runner.invoke(app, [command, str(task)])
        assert res.exit_code == 2, res.output
        assert (
            f"error: {task}: cannot read: Permission denied (fix: check the file's permissions)" in res.stderr
        )


def test_a_key_in_a_task_file_is_never_printed_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key pasted into a task file was echoed by the error about it, by the `Question:` line and by
    `--json` (the run store already masked it)."""
    pasted, env_key = "sk-live9876543210zyxwvu", "sk-test1234567890abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"question: hi\nmodel: {pasted}\n")
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2 and "field 'model': model 'sk-***' needs a provider prefix" in res.stderr
    assert pasted not in res.output
    shown = "What is the capital of France? (key sk-***, env ***)"
    for args in (["--json"], []):
        script = ScriptedModel([reply("Paris")])
        task = write_task(tmp_path, script.model)
        task.write_text(task.read_text().replace("France?", f"France? (key {pasted}, env {env_key})"))
        res = runner.invoke(app, ["run", str(task), *args])
        assert res.exit_code == 0, res.output
        assert pasted not in res.output and env_key not in res.output
        if args:
            assert json.loads(res.stdout)["question"] == shown
        else:
            assert f"Question: {shown}" in res.stderr
