"""The task-file fuzz suite (issue 14): at least 1,000 generated files through `agent validate`, with 0
tracebacks, 0 hangs, no task module imported, and every error message with file, line, field and fix.

``python -m tests.fuzz_task_files [N] [SEED]`` runs the same generator and prints the figure.
"""

from __future__ import annotations

import pytest

from tests.fuzz_task_files import DEFAULT_CASES, DEFAULT_SEED, run_fuzz


@pytest.mark.timeout(600)
def test_generated_task_files_never_crash_hang_or_run_code(capsys: pytest.CaptureFixture[str]) -> None:
    counts = run_fuzz(DEFAULT_CASES, DEFAULT_SEED)
    with capsys.disabled():
        print("\n" + counts.report(DEFAULT_SEED))
    assert counts.files >= 1000
    assert counts.failures == [], "\n".join(counts.failures[:10])
    assert counts.tracebacks == 0 and counts.hangs == 0 and counts.imported == 0 and counts.other_exit == 0
    assert counts.accepted + counts.refused == counts.files
    assert counts.with_fix == counts.with_file == counts.messages > 0
    assert counts.with_line == counts.line_expected and counts.with_field == counts.field_expected
    assert counts.set_up_failed == 0 and counts.runs_ok == counts.runs > 0
    # Every generator contributed (a refactoring that silently stopped producing a kind shows up here).
    for kind in (
        "mutated",
        "module",
        "template",
        "nesting-brackets",
        "alias-options",
        "fifo",
        "encoding-utf-16",
    ):
        assert counts.kinds.get(kind, 0) > 0, (kind, counts.kinds)
