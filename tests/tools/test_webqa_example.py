"""``examples/webqa.py`` on bad input: a clear ``error:`` line and exit 2, never a traceback."""

from __future__ import annotations

import pytest

from tests.scripts import load_script


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "openai/gpt-4o-mini"], "error: "),  # no key (and no remote model in the tests)
        (["--strategy", "bogus"], "error: unknown strategy 'bogus'"),
        (["--tool-calls", "0"], "argument --tool-calls: 0 is not more than 0"),
        (["--usd", "-1"], "argument --usd: -1 is not more than 0"),
        (["--seconds", "abc"], "argument --seconds: 'abc' is not a float"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    argv: list[str], expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    module = load_script("examples/webqa.py", "webqa_example_bad_input")
    monkeypatch.setattr("sys.argv", ["webqa.py", *argv])
    try:
        code = module.main()
    except SystemExit as exc:  # argparse's own exit
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
