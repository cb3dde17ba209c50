"""Bad task files never crash, never hang and never run code at validate time (issue 14, items 8-11).

Each test reproduces one observed failure: a traceback, a hang, code run by `agent validate`, a file that
validates and then fails at run time, or an output path that lost the answer or overwrote a file.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.testing import ScriptedModel, call, reply
from thrifty.workflows import TaskFileError, load_task
from thrifty.workflows.result import RunResult

runner = CliRunner()

#: One error line: file, then line (where one exists), then field, then the message and its fix.
ERROR_LINE = re.compile(
    r"^(?P<file>[^\n]+?)(?::(?P<line>\d+))?: (?:field '(?P<field>[^']*)': )?.+ \(fix: .+\)$"
)


def validate(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["validate", *args])
    return res.exit_code, res.stdout, res.stderr


def error_lines(stderr: str) -> list[str]:
    assert stderr.startswith("error: "), stderr
    return stderr.removeprefix("error: ").rstrip("\n").split("\n")


def assert_clean_error(code: int, stderr: str, *, field: str | None = None, line: int | None = None) -> None:
    """Exit 2, no traceback, and every line says file, line, field and fix."""
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = error_lines(stderr)
    for text in lines:
        assert ERROR_LINE.match(text), text
    if field is not None:
        first = ERROR_LINE.match(lines[0])
        assert first is not None and first["field"] == field, lines[0]
        if line is not None:
            assert first["line"] == str(line), lines[0]


def task(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------- item 8: crashes
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "body",
    [
        "question: " + "[" * 1000 + "]" * 1000 + "\n",
        "question: " + "{a: " * 1000 + "}" * 1000 + "\n",
        "question: hi\nstrategy:\n  options:\n" + "".join("  " * (i + 2) + f"k{i}:\n" for i in range(300)),
    ],
    ids=["brackets", "braces", "indentation"],
)
def test_deep_nesting_is_refused_without_a_traceback(tmp_path: Path, body: str) -> None:
    started = time.monotonic()
    code, _, stderr = validate(str(task(tmp_path, body)))
    assert_clean_error(code, stderr)
    assert "nested" in stderr
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("corpus", "why"),
    [("a" * 5000 + ".jsonl", "too long"), ('"a\\0b.jsonl"', "NUL"), ('"a\\x01b"', "control")],
)
def test_corpus_paths_that_cannot_exist_are_field_errors(tmp_path: Path, corpus: str, why: str) -> None:
    code, _, stderr = validate(str(task(tmp_path, f"question: hi\ntools: [search]\ncorpus: {corpus}\n")))
    assert_clean_error(code, stderr, field="corpus", line=3)
    assert why in stderr
    assert len(stderr) < 1000  # the 5,000-character path is not echoed in full


def test_a_corpus_with_a_bad_line_names_the_line_and_gives_one_fix(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"title": "a", "text": "b"}\nnot json\n', encoding="utf-8")
    code, _, stderr = validate(str(task(tmp_path, "question: hi\ntools: [search]\ncorpus: corpus.jsonl\n")))
    assert_clean_error(code, stderr, field="corpus", line=3)
    assert "line 2" in stderr and stderr.count("(fix:") == 1, stderr


@pytest.mark.parametrize(
    "ref", ["../evil:x", "evil:", ":x", "a b:c", "os.path:x:y", "1abc:f", "class:f", "mod:f.g", "é:"]
)
@pytest.mark.parametrize("where", ["strategy", "tools"])
def test_malformed_references_are_refused(tmp_path: Path, ref: str, where: str) -> None:
    text = (
        f"question: hi\nstrategy: {json.dumps(ref)}\n"
        if where == "strategy"
        else f"question: hi\ntools: [{json.dumps(ref)}]\n"
    )
    code, _, stderr = validate(str(task(tmp_path, text)))
    assert_clean_error(code, stderr, line=2)
    assert f"field '{where}" in stderr


@pytest.mark.timeout(20)
def test_special_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    started = time.monotonic()
    if os.path.exists("/dev/zero"):
        code, _, stderr = validate("/dev/zero")
        assert_clean_error(code, stderr)
        assert "not a regular file" in stderr
    fifo = tmp_path / "task.yaml"
    os.mkfifo(fifo)
    code, _, stderr = validate(str(fifo))
    assert_clean_error(code, stderr)
    assert "not a regular file" in stderr and "FIFO" in stderr
    code, _, stderr = validate(str(tmp_path))
    assert_clean_error(code, stderr)
    assert "directory" in stderr
    assert time.monotonic() - started < 5


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text("question: hi\nname: " + "x" * 3_000_000 + "\n")
    code, _, stderr = validate(str(path))
    assert_clean_error(code, stderr)
    assert "too large" in stderr


@pytest.mark.parametrize(
    ("data", "why", "line"),
    [
        (b"question: hi\nname: caf\xe9\n", "not valid UTF-8", 2),
        ("question: hi\n".encode("utf-16-le"), "NUL", 1),
        (b"question: hi\nname: a\x07b\n", "control character", 2),
    ],
    ids=["latin-1", "utf-16 without BOM", "bell"],
)
def test_undecodable_files_name_the_line(tmp_path: Path, data: bytes, why: str, line: int) -> None:
    path = tmp_path / "task.yaml"
    path.write_bytes(data)
    code, _, stderr = validate(str(path))
    assert_clean_error(code, stderr)
    assert why in stderr and f"task.yaml:{line}:" in stderr


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_files_with_a_byte_order_mark_are_read(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "task.yaml"
    data = "question: Qui a écrit « Germinal » ?\nmodel: local/smollm2\n".encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    code, _, stderr = validate(str(path))
    assert code == 0, stderr
    assert load_task(path).question.startswith("Qui a écrit")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("count", [10_000, 100_000])
def test_many_unknown_keys_are_reported_fast_first_ones_and_a_count(tmp_path: Path, count: int) -> None:
    path = task(tmp_path, "question: hi\n" + "".join(f"k{i}: 1\n" for i in range(count)))
    started = time.process_time()  # CPU time: the wall clock of a shared CI machine says little
    code, _, stderr = validate(str(path))
    elapsed = time.process_time() - started
    assert_clean_error(code, stderr, field="k0", line=2)
    lines = error_lines(stderr)
    assert len(lines) <= 21
    assert f"{count - 20:,} more errors" in lines[-1]
    assert "the fields are: name, question" in lines[0] and "listed above" in lines[1]
    assert elapsed < (2 if count == 10_000 else 10), elapsed  # it took 4.4 s and over 30 s


def test_many_bad_values_are_capped_too(tmp_path: Path) -> None:
    path = task(
        tmp_path, "question: hi\ntools:\n" + "".join("  - {name: search, k: -1}\n" for _ in range(500))
    )
    code, _, stderr = validate(str(path))
    assert_clean_error(code, stderr)
    assert len(error_lines(stderr)) <= 21 and "more errors" in stderr


@pytest.mark.parametrize(
    "body",
    [
        "question: hi\nbase_dir: /etc\n",  # a field of the model, never of the file
        "question: hi\nquestion: again\n",  # YAML would silently keep the last
        "question: 1" + "0" * 5000 + "\n",  # int() refuses more than 4,300 digits
        "question: !!int 1" + "0" * 5000 + "\n",
        "question: !!timestamp 2024-13-45\n",
        "question: !!python/name:os.system\n",
        "question: &a [*a]\n",
        "question: hi\n---\nquestion: two\n",
        "question: *nowhere\n",
        "? [a, b]\n: c\nquestion: hi\n",
        "1: x\nquestion: hi\n",
        "question: hi\nbudget: 3\n",
        "question: hi\ntools: search\n",
        "question: hi\nstrategy: [react]\n",
        "question: hi\nstrategy: {name: react, max_steps: .nan}\n",
        "question: hi\ninputs: [a]\n",
        "question: hi\noutput: {store: 3}\n",
        "question: hi\nmodel_settings: {temperature: .inf}\n",
        "question: hi\npricing: {tools: {search: -1}}\n",
        # an infinite limit or price is refused (no limit is an unset field); usd: .inf ran and ended in an
        # OverflowError inside the run (exit 1)
        "question: hi\nbudget: {usd: .inf}\n",
        "question: hi\nbudget: {seconds: .inf}\n",
        "question: hi\npricing: {tools: {search: .inf}}\n",
        "question: hi\ntools: [{name: search, price: .inf}]\n",
        "question: hi\n\tmodel: x/y\n",
        "",
        "~\n",
        "question\n",
    ],
)
def test_odd_yaml_gets_a_clean_error(tmp_path: Path, body: str) -> None:
    code, _, stderr = validate(str(task(tmp_path, body)))
    assert_clean_error(code, stderr)


def test_duplicate_keys_name_the_second_line(tmp_path: Path) -> None:
    code, _, stderr = validate(str(task(tmp_path, "question: hi\nmodel: local/smollm2\nquestion: again\n")))
    assert_clean_error(code, stderr, field="question", line=3)
    assert "twice" in stderr


def test_every_field_error_has_a_fix(tmp_path: Path) -> None:
    body = (
        "question: 3\nexpected_answer: [a]\nmodel: 7\ntools: [{name: search, k: x, price: -2}]\n"
        "corpus: builtin:hotpotqa\nbudget: {tool_calls: 1.5, usd: abc}\nstrategy: {tracker: maybe, max_steps: 0}\n"
        "system_prompt: {a: b}\noutput: {trace: 3}\n"
    )
    code, _, stderr = validate(str(task(tmp_path, body)))
    assert_clean_error(code, stderr)
    assert len(error_lines(stderr)) >= 9


# --------------------------------------------------------------------------- item 9: validate runs no code
BAD_MODULES = {
    "exits": "import sys\nsys.exit(3)\n",
    "raises": "raise RuntimeError('boom at import')\n",
    "writes": "open(__file__ + '.ran', 'w').write('ran')\n",
    "loops": "while True:\n    pass\n",
}
TOOL_BODY = "from thrifty import tool\n\n@tool\ndef lookup(query: str) -> str:\n    return query\n"
STRATEGY_BODY = "def build(options):\n    raise RuntimeError('never built')\n"


def write_module(folder: Path, name: str, behaviour: str) -> None:
    (folder / f"{name}.py").write_text(BAD_MODULES[behaviour] + TOOL_BODY + STRATEGY_BODY)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("behaviour", list(BAD_MODULES))
def test_validate_checks_references_without_importing_them(tmp_path: Path, behaviour: str) -> None:
    name = f"hostile_{behaviour}_{tmp_path.name[-6:].replace('-', '_')}"
    write_module(tmp_path, name, behaviour)
    path = task(tmp_path, f"question: hi\ntools: ['{name}:lookup']\nstrategy: '{name}:build'\n")
    code, stdout, stderr = validate(str(path))
    assert code == 0, stderr
    assert "ok" in stdout and "not imported" in stdout
    assert name not in sys.modules
    assert not (tmp_path / f"{name}.py.ran").exists()


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("{m}:nothing", "defines no 'nothing'"),
        ("{m}:plain", "not decorated with @tool"),
        ("nosuchmodule_xyz:f", "no module 'nosuchmodule_xyz'"),
        ("{m}.sub:f", "not a package"),
        ("os:system", "not a @tool"),
        ("os:sep", "not a @tool"),
        ("thrifty.tools:Tool", "not a @tool"),
    ],
)
def test_static_check_finds_what_import_would(tmp_path: Path, ref: str, why: str) -> None:
    name = f"static_{tmp_path.name[-6:].replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(TOOL_BODY + "def plain(x):\n    return x\n")
    path = task(tmp_path, f"question: hi\ntools: ['{ref.format(m=name)}']\n")
    code, _, stderr = validate(str(path))
    assert_clean_error(code, stderr, field="tools.0", line=2)
    assert why in stderr


def test_static_check_reads_packages_and_syntax_errors(tmp_path: Path) -> None:
    pkg = tmp_path / f"pkg_{tmp_path.name[-6:].replace('-', '_')}"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise SystemExit(4)\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "tools.py").write_text(TOOL_BODY)
    (pkg / "broken.py").write_text("def f(:\n")
    ok = task(tmp_path, f"question: hi\ntools: ['{pkg.name}.sub.tools:lookup']\n")
    code, _, stderr = validate(str(ok))
    assert code == 0, stderr
    bad = task(tmp_path, f"question: hi\nstrategy: '{pkg.name}.broken:f'\n", "bad.yaml")
    code, _, stderr = validate(str(bad))
    assert_clean_error(code, stderr, field="strategy", line=2)
    assert "syntax error" in stderr and "broken.py:1" in stderr


@pytest.mark.timeout(30)
@pytest.mark.parametrize("behaviour", ["exits", "raises"])
def test_validate_import_flag_imports_and_turns_failures_into_exit_2(tmp_path: Path, behaviour: str) -> None:
    name = f"flag_{behaviour}_{tmp_path.name[-6:].replace('-', '_')}"
    write_module(tmp_path, name, behaviour)
    path = task(tmp_path, f"question: hi\ntools: ['{name}:lookup']\n")
    code, _, stderr = validate(str(path), "--import")
    assert_clean_error(code, stderr, field="tools.0", line=2)
    assert "failed at import" in stderr
    assert ("SystemExit: 3" if behaviour == "exits" else "RuntimeError: boom at import") in stderr


def test_validate_import_flag_accepts_a_good_tool(tmp_path: Path) -> None:
    name = f"good_{tmp_path.name[-6:].replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(TOOL_BODY + "def plain(x):\n    return x\n")
    code, stdout, stderr = validate(
        str(task(tmp_path, f"question: hi\ntools: ['{name}:lookup']\n")), "--import"
    )
    assert code == 0, stderr
    assert "imported" in stdout and "not imported" not in stdout
    code, _, stderr = validate(str(task(tmp_path, f"question: hi\ntools: ['{name}:plain']\n")), "--import")
    assert_clean_error(code, stderr, field="tools.0")
    assert "not a @tool" in stderr


@pytest.mark.timeout(30)
@pytest.mark.parametrize("behaviour", ["exits", "raises"])
@pytest.mark.parametrize("where", ["tools", "strategy"])
def test_run_turns_a_failing_import_into_exit_2(tmp_path: Path, behaviour: str, where: str) -> None:
    name = f"run_{behaviour}_{where}_{tmp_path.name[-6:].replace('-', '_')}"
    write_module(tmp_path, name, behaviour)
    script = ScriptedModel([reply("x")])
    ref = f"'{name}:lookup'" if where == "tools" else f"'{name}:build'"
    path = task(
        tmp_path,
        f"question: hi\nmodel: {script.model}\n{where}: {'[' + ref + ']' if where == 'tools' else ref}\noutput: {{store: null}}\n",
    )
    res = runner.invoke(app, ["run", str(path), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert f"module '{name}' failed at import" in res.stderr
    assert script.remaining == 1  # nothing was spent


# --------------------------------------------------------------------- item 10: what validates must run
@pytest.mark.parametrize(
    ("question", "why"),
    [
        ("{a.b}", "only plain {name} fields"),
        ("{a[0]}", "only plain {name} fields"),
        ("{}", "positional"),
        ("{0}", "positional"),
        ("{", "Single '{'"),
        ("}", "Single '}'"),
        ("{a!r}", "conversion"),
        ("{a:>99999999999}", "format spec"),
        ("{b}", "inputs` has no 'b'"),
    ],
)
def test_question_templates_are_checked_at_validate_time(tmp_path: Path, question: str, why: str) -> None:
    path = task(tmp_path, f"question: {json.dumps(question)}\ninputs: {{a: x}}\n")
    code, _, stderr = validate(str(path))
    assert_clean_error(code, stderr, field="question", line=1)
    assert why in stderr


def test_question_templates_render_without_str_format(tmp_path: Path) -> None:
    spec = load_task(task(tmp_path, 'question: "{{literal}} {a} and {a}"\ninputs: {a: "{x.y}"}\n'))
    assert spec.rendered_question() == "{literal} {x.y} and {x.y}"
    spec = load_task(task(tmp_path, 'question: "set {}, {a.b} and {"\n'))  # no inputs: used as written
    assert spec.rendered_question() == "set {}, {a.b} and {"


@pytest.mark.timeout(20)
def test_a_yaml_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    body = "question: hi\nstrategy:\n  options:\n" + "".join(f"    {line}\n" for line in lines)
    assert len(body) < 1700
    started = time.monotonic()
    code, _, stderr = validate(str(task(tmp_path, body)))
    assert_clean_error(code, stderr)
    assert "aliases" in stderr
    assert time.monotonic() - started < 3


def test_small_aliases_are_fine(tmp_path: Path) -> None:
    body = "question: hi\nbudget: &b {tool_calls: 3}\nstrategy: {name: bats, options: {max_attempts: 2}}\n"
    assert load_task(task(tmp_path, body)).budget.tool_calls == 3


@pytest.mark.parametrize("tools", ["[search, search]", "[calculator, {name: calculator, price: 0.1}]"])
def test_duplicate_tools_are_refused(tmp_path: Path, tools: str) -> None:
    path = task(tmp_path, f"question: hi\ncorpus: builtin:hotpotqa\ntools: {tools}\n")
    code, _, stderr = validate(str(path))
    assert_clean_error(code, stderr, field="tools.1", line=3)
    assert "twice" in stderr


def test_a_custom_tool_named_like_a_builtin_is_exit_2_at_run(tmp_path: Path) -> None:
    name = f"dup_{tmp_path.name[-6:].replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "from thrifty import tool\n\n@tool(name='calculator')\ndef calc(expression: str) -> str:\n    return '1'\n"
    )
    script = ScriptedModel([reply("x")])
    path = task(
        tmp_path,
        f"question: hi\nmodel: {script.model}\ntools: [calculator, '{name}:calc']\noutput: {{store: null}}\n",
    )
    res = runner.invoke(app, ["run", str(path), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "duplicate tool names: calculator" in res.stderr


@pytest.mark.parametrize(
    "model",
    [
        "openai/",
        "/gpt-4o",
        "openai/gpt 4o",
        " openai/x",
        "openai/x ",
        "open ai/x",
        "openai//x",
        "openai/x/",
        "a\tb/c",
        "openai/x\u200b",
    ],
)
def test_malformed_model_names_are_refused(tmp_path: Path, model: str) -> None:
    path = task(tmp_path, f"question: hi\nmodel: {json.dumps(model)}\n")
    code, _, stderr = validate(str(path))
    assert_clean_error(code, stderr, field="model", line=2)


@pytest.mark.parametrize(
    "model",
    [
        "local/smollm2",
        "openrouter/anthropic/claude-3.5-sonnet",
        "local//models/My Model.gguf",
        "hf/./my model",
        "ollama/llama3:8b",
    ],
)
def test_well_formed_model_names_pass(tmp_path: Path, model: str) -> None:
    assert load_task(task(tmp_path, f"question: hi\nmodel: {json.dumps(model)}\n")).model == model


@pytest.mark.parametrize("command", ["validate", "run"])
def test_sim_models_serve_only_agent_bench(tmp_path: Path, command: str) -> None:
    path = task(tmp_path, "question: hi\nmodel: sim/default\noutput: {store: null}\n")
    res = runner.invoke(app, [command, str(path)])
    assert_clean_error(res.exit_code, res.stderr, field="model", line=2)
    assert "only `agent bench`" in res.stderr
    res = runner.invoke(
        app, ["run", str(task(tmp_path, "question: hi\n", "t2.yaml")), "--model", "sim/default"]
    )
    assert res.exit_code == 2 and "only `agent bench`" in res.stderr


def test_a_malformed_model_on_the_command_line_is_exit_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(task(tmp_path, "question: hi\n")), "--model", "openai/ x"])
    assert res.exit_code == 2 and "field 'model'" in res.stderr and "(fix: " in res.stderr


# ---------------------------------------------------------------------------------- item 11: outputs
CORPUS = [{"title": "Paris", "text": "Paris is the capital of France."}]


def tree_task(tmp_path: Path, model: str, strategy: str = "value_tree") -> Path:
    (tmp_path / "passages.jsonl").write_text("\n".join(json.dumps(p) for p in CORPUS) + "\n")
    return task(
        tmp_path,
        f"question: capital of France?\nmodel: {model}\ncorpus: passages.jsonl\ntools: [search]\n"
        f"strategy: {{name: {strategy}, options: {{k: 1}}}}\noutput: {{store: null}}\n"
        if strategy == "value_tree"
        else f"question: capital of France?\nmodel: {model}\ncorpus: passages.jsonl\ntools: [search]\n"
        f"strategy: {strategy}\noutput: {{store: null}}\n",
    )


def tree_script() -> ScriptedModel:
    return ScriptedModel([call("search", query="France capital"), reply("Paris")], default=reply("Paris"))


@pytest.mark.parametrize("where", ["directory", "under a file", "the task file", "another file"])
def test_tree_out_that_cannot_or_must_not_be_written_fails_before_the_run(tmp_path: Path, where: str) -> None:
    script = tree_script()
    path = tree_task(tmp_path, script.model)
    other = tmp_path / "notes.json"
    other.write_text('{"mine": true}')
    target = {
        "directory": tmp_path,
        "under a file": path / "x.json",
        "the task file": path,
        "another file": other,
    }[where]
    before = {p: p.read_bytes() for p in (path, other)}
    res = runner.invoke(app, ["run", str(path), "--quiet", "--tree-out", str(target)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "--tree-out" in res.stderr and "(fix: " in res.stderr
    assert script.remaining == 2  # refused before anything was spent
    assert {p: p.read_bytes() for p in (path, other)} == before


def test_tree_out_replaces_a_previous_tree(tmp_path: Path) -> None:
    out = tmp_path / "out" / "tree.json"
    for _ in range(2):
        script = tree_script()
        res = runner.invoke(
            app, ["run", str(tree_task(tmp_path, script.model)), "--quiet", "--tree-out", str(out)]
        )
        assert res.exit_code in (0, 4), res.output  # answered (4: the search's step limit stopped it)
        assert json.loads(out.read_text())["answer"] == "Paris"


def test_tree_out_write_failure_after_the_run_keeps_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import thrifty.cli as cli

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli.os, "replace", refuse)
    script = tree_script()
    res = runner.invoke(
        app, ["run", str(tree_task(tmp_path, script.model)), "--json", "--tree-out", str(tmp_path / "t.json")]
    )
    assert res.exit_code in (0, 4), res.output  # answered (4: the search's step limit stopped it)
    assert RunResult.model_validate_json(res.stdout).answer == "Paris"
    assert "warning: --tree-out" in res.stderr and "Permission denied" in res.stderr
    assert not list(tmp_path.glob("*.tmp"))


def test_tree_out_after_a_failed_run_does_not_blame_the_strategy(tmp_path: Path) -> None:
    script = ScriptedModel([])  # every model call fails: the run ends with an error
    res = runner.invoke(
        app,
        ["run", str(tree_task(tmp_path, script.model)), "--quiet", "--tree-out", str(tmp_path / "t.json")],
    )
    assert res.exit_code == 1 and "builds no tree" not in res.stderr
    # the tree searched so far is kept, with why it has no answer (it used to be lost with the run)
    tree = json.loads((tmp_path / "t.json").read_text())
    assert tree["answer"] is None and tree["method"].startswith("forced answer failed: model")
    res = runner.invoke(
        app,
        [
            "run",
            str(tree_task(tmp_path, tree_script().model, "react")),
            "--quiet",
            "--tree-out",
            str(tmp_path / "t.json"),
        ],
    )
    assert res.exit_code == 0 and "builds no tree" in res.stderr


def test_output_store_is_relative_to_the_task_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tasks"
    folder.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    script = ScriptedModel([reply("Paris")])
    path = task(folder, f"question: hi\nmodel: {script.model}\noutput: {{store: runs.db}}\n")
    res = runner.invoke(app, ["run", str(path), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (folder / "runs.db").exists() and not (elsewhere / "runs.db").exists()


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_corpus_error_does_not_echo_the_files_keys(tmp_path: Path, suffix: str) -> None:
    record = {"aws_secret_access_key": "v", "db_password": "w"}
    corpus = tmp_path / f"secrets{suffix}"
    corpus.write_text(json.dumps([record] if suffix == ".json" else record))
    path = task(tmp_path, f"question: hi\ntools: [search]\ncorpus: {corpus.name}\n")
    for command in (["validate", str(path)], ["run", str(path), "--quiet"]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2, res.output
        assert "aws_secret" not in res.output and "db_password" not in res.output
        assert "field 'corpus'" in res.stderr and "(fix: " in res.stderr


def test_validate_rejects_a_special_file_as_corpus(tmp_path: Path) -> None:
    fifo = tmp_path / "c.jsonl"
    os.mkfifo(fifo)
    code, _, stderr = validate(str(task(tmp_path, "question: hi\ntools: [search]\ncorpus: c.jsonl\n")))
    assert_clean_error(code, stderr, field="corpus", line=3)
    assert "not a regular file" in stderr


def test_load_task_raises_task_file_error_not_anything_else(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError):
        load_task(task(tmp_path, "question: " + "[" * 5000 + "\n"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # a mapping with a bad value: only the mapping's error (pydantic also said "should be a valid string")
        (
            "memory:\n  scope: {user_id: c}\n  router: {retrieve: medium}\n",
            ["field 'memory.router.retrieve': Input should be 'low', 'mid' or 'high'"],
        ),
        # neither kind: one message naming both
        (
            "memory:\n  scope: {user_id: c}\n  router: 5\n",
            ["field 'memory.router': Input should be a valid string, or a valid dictionary"],
        ),
        (
            "roles: {verifier: 5}\n",
            ["field 'roles.verifier': Input should be a valid string, or a valid list"],
        ),
    ],
)
def test_a_field_of_two_kinds_reports_one_error_without_pydantics_branch_tags(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(f"question: q\n{body}", encoding="utf-8")
    code, _, stderr = validate(str(path))
    lines = error_lines(stderr)
    assert code == 2 and len(lines) == len(expected), stderr
    assert all(want in line for want, line in zip(expected, lines, strict=True)), stderr
    assert ".str'" not in stderr and "dict[" not in stderr and "list[" not in stderr  # no branch tags


@pytest.mark.parametrize("question", ['""', '"   "', '"\\n\\t"'])
def test_an_empty_question_is_refused_before_anything_is_spent(tmp_path: Path, question: str) -> None:
    script = ScriptedModel([reply("x")])
    task = tmp_path / "task.yaml"
    task.write_text(f"question: {question}\nmodel: {script.model}\noutput: {{store: null}}\n")
    for command in (["validate", str(task)], ["run", str(task)]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2, res.output
        assert "field 'question': question is empty (fix: write the question to answer)" in res.output
    assert script.requests == []  # it was run, and paid for, before
