"""The colon mistakes of a hand-written task file: `model:local/smollm2` (no space after the colon, so YAML
reads text, not a field) and `question: What is 2: 3?` (a ': ' inside an unquoted value). Each is reported
on the line that has it, naming its field and the fix; they were reported on a later line (or one past the
end of the file), under another field, as "could not find expected ':'" or "mapping values are not
allowed in this context" with the fix "check indentation and quoting"."""

from __future__ import annotations

from pathlib import Path

import pytest

from thrifty.workflows.spec import TaskFileError, load_task


def _error(tmp_path: Path, text: str) -> str:
    task = tmp_path / "task.yaml"
    task.write_text(text)
    with pytest.raises(TaskFileError) as caught:
        load_task(task, import_references=False)
    return str(caught.value).replace(str(task), "task.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # the last line: PyYAML reported line 3 of a 2-line file, under 'question'
            "question: hi\nmodel:local/smollm2\n",
            "task.yaml:2: field 'model': invalid YAML: 'model:local/smollm2' has no space after the colon, so "
            "YAML reads it as text, not as a field (fix: write a space after the colon: model: local/smollm2)",
        ),
        (  # a middle line: reported on the next line, under that line's field ('name')
            "question: hi\nmodel:local/smollm2\nname: x\n",
            "task.yaml:2: field 'model': invalid YAML: 'model:local/smollm2' has no space after the colon",
        ),
        (  # the first line: reported on line 2, under 'model'
            "question:hi\nmodel: local/smollm2\n",
            "task.yaml:1: field 'question': invalid YAML: 'question:hi' has no space after the colon",
        ),
        (  # nested: named with its parent
            "question: hi\nmodel: local/smollm2\nbudget:\n  tool_calls:3\n  usd: 1\n",
            "task.yaml:4: field 'budget.tool_calls': invalid YAML: 'tool_calls:3' has no space after the colon, "
            "so YAML reads it as text, not as a field (fix: write a space after the colon: tool_calls: 3)",
        ),
        (  # a ': ' in a value
            "question: What is 2: the answer?\nmodel: local/smollm2\n",
            "task.yaml:1: field 'question': invalid YAML: the value holds ': ', which YAML reads as the start "
            'of another field (fix: quote the value: question: "What is 2: the answer?")',
        ),
        (  # the same, a comment after it left out of the quoted value
            "question: hi\nmodel: local/smollm2\nsystem_prompt: Be brief: answer in English.  # note\n",
            "task.yaml:3: field 'system_prompt': invalid YAML: the value holds ': ', which YAML reads as the "
            'start of another field (fix: quote the value: system_prompt: "Be brief: answer in English.")',
        ),
    ],
)
def test_colon_mistakes_name_their_line_field_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    assert _error(tmp_path, text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # valid YAML, but budget is the text "tool_calls:3"
            "question: hi\nmodel: local/smollm2\nbudget:\n  tool_calls:3\n",
            "task.yaml:3: field 'budget': Input should be a valid dictionary or instance of Budget "
            "(fix: write a space after the colon: tool_calls: 3)",
        ),
        (  # a flow mapping: the key is "name:bats"
            "question: hi\nmodel: local/smollm2\nstrategy: {name:bats}\n",
            "task.yaml:3: field 'strategy.name:bats': Extra inputs are not permitted "
            "(fix: write a space after the colon: name: bats)",
        ),
    ],
)
def test_a_key_value_read_as_text_gets_the_colon_fix(tmp_path: Path, text: str, expected: str) -> None:
    assert _error(tmp_path, text) == f"{expected}"


def test_other_yaml_errors_and_urls_are_unchanged(tmp_path: Path) -> None:
    """A URL (`://`) is not the mistake; other syntax errors keep their message."""
    text = "question: hi\nmodel: openai/x\nmodel_settings: {api_base: http://127.0.0.1:8080/v1}\n"
    task = tmp_path / "ok.yaml"
    task.write_text(text)
    assert load_task(task, import_references=False).model == "openai/x"
    message = _error(tmp_path, "question: hi\nmodel: local/smollm2\nbudget:\n  tool_calls: 3\n usd: 1\n")
    assert "did not find expected key" in message and "check indentation and quoting" in message
