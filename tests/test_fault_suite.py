"""The fault suite (benchmarks/fault_suite.py), small: runs with 30% faulted tool calls, providers
over-reporting tokens up to 1.6x, per-second pricing and tool timeouts longer than the time left cross no
limit without an explicit overrun event, and overrun events stay rare (issue 14)."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.scripts import load_script

RUNS = 150


def _suite() -> ModuleType:
    return load_script("benchmarks/fault_suite.py", "thrifty_fault_suite")


@pytest.mark.timeout(120)
def test_no_limit_is_crossed_silently_under_faults() -> None:
    summary = _suite().run_suite(RUNS, seed=7, workers=4)
    report = "\n".join(summary.lines())
    assert summary.runs == RUNS
    faulted = sum(v for k, v in summary.faults.items() if k != "ok")
    assert 0.2 < faulted / summary.tool_calls < 0.4, report
    assert all(summary.faults[k] for k in ("raise", "hang", "flood")), report
    assert summary.per_second_runs > RUNS // 4, report
    assert summary.silent_total == 0, report
    assert summary.overrun_runs <= max(1, RUNS // 100), report
