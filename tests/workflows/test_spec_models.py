"""A task file's models as `agent validate` and `agent run` check them: each problem at the field (and line)
that names the model, and one way to name the run's models (`model:` or `models:`, not both)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thrifty.cli import app
from thrifty.testing import ScriptedModel

runner = CliRunner()


def _task(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(
        f"question: What is the capital of France?\noutput:\n  store: {tmp_path / 'runs.db'}\n{body}"
    )
    return path


def _refused(task: Path, *extra: str) -> list[str]:
    """The error lines of `agent validate` and of `agent run` (the same), each exit 2 with no traceback."""
    lines: list[list[str]] = []
    commands = [["validate", str(task)], ["run", str(task), "--quiet", *extra]]
    if extra:
        commands = commands[1:]
    for command in commands:
        res = runner.invoke(app, command)
        assert res.exit_code == 2, (command, res.output)
        assert "Traceback" not in res.output and "internal error" not in res.output
        lines.append([" ".join(line.split()) for line in res.stderr.removeprefix("error: ").splitlines()])
    assert all(found == lines[0] for found in lines)
    return lines[0]


def test_a_bad_role_model_is_reported_at_its_role_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    solver = ScriptedModel([], name="solver").model
    task = _task(
        tmp_path,
        f"model: {solver}\nroles:\n  solver: {solver}\n  verifier: openai/gpt-4o\n  judge: [{solver}, nope/x]\n",
    )
    [verifier, judge] = _refused(task)
    # the model is refused (no key, or a remote host the tests may not reach): at its role, on its line
    assert verifier.startswith(f"{task}:7: field 'roles.verifier': ") and "openai/gpt-4o" in verifier
    assert judge.startswith(f"{task}:8: field 'roles.judge.1': unknown provider 'nope'")


def test_a_bad_model_of_a_role_without_models_is_not_blamed_on_models_or_roles(tmp_path: Path) -> None:
    ScriptedModel([], name="default-one")
    task = _task(tmp_path, "model: scripted/default-one\nroles: {verifier: nope/x}\n")
    [line] = _refused(task)
    assert line.startswith(f"{task}:5: field 'roles.verifier': unknown provider 'nope' in model 'nope/x'")


def test_a_bad_model_of_the_cascade_is_reported_at_its_place(tmp_path: Path) -> None:
    cheap = ScriptedModel([], name="cheap").model
    task = _task(tmp_path, f"models:\n  - {cheap}\n  - nope/strong\nroles:\n  verifier: {cheap}\n")
    [line] = _refused(task)
    assert line.startswith(f"{task}:6: field 'models.1': unknown provider 'nope'")


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (
            "roles:\n  verifier: gpt-4o\n",
            ":5: field 'roles.verifier': model 'gpt-4o' needs a provider prefix",
        ),
        ("roles:\n  judge: [scripted/a, gpt]\n", ":5: field 'roles.judge.1': model 'gpt' needs a provider"),
        ("roles:\n  boss: scripted/a\n", ":5: field 'roles.boss': unknown role 'boss'"),
        (
            "roles:\n  solver: [scripted/a, scripted/a]\n",
            ":5: field 'roles.solver': role 'solver' names a model twice",
        ),
    ],
)
def test_a_malformed_role_is_reported_at_its_role(tmp_path: Path, roles: str, expected: str) -> None:
    task = _task(tmp_path, roles)
    [line] = _refused(task)
    assert line.startswith(f"{task}{expected}"), line


def test_model_and_models_together_are_refused_naming_both(tmp_path: Path) -> None:
    cheap, strong = ScriptedModel([], name="c1").model, ScriptedModel([], name="s1").model
    task = _task(tmp_path, f"model: {cheap}\nmodels: [{cheap}, {strong}]\n")
    [line] = _refused(task)
    assert line.startswith(f"{task}:5: field 'models': `model` and `models` are both given")
    assert "remove `model:`" in line and "remove `models:`" in line


def test_model_with_roles_is_the_default_cascade_and_still_accepted(tmp_path: Path) -> None:
    cheap, strong = ScriptedModel([], name="c2").model, ScriptedModel([], name="s2").model
    task = _task(tmp_path, f"model: {cheap}\nroles:\n  verifier: {strong}\n")
    res = runner.invoke(app, ["validate", str(task)])
    assert res.exit_code == 0, res.output


def test_dash_dash_model_cannot_silently_replace_a_cascade(tmp_path: Path) -> None:
    cheap, strong = ScriptedModel([], name="c3").model, ScriptedModel([], name="s3").model
    task = _task(tmp_path, f"models: [{cheap}, {strong}]\n")
    [line] = _refused(task, "--model", cheap)
    assert line.startswith(f"{task}:4: field 'models': --model cannot replace")
