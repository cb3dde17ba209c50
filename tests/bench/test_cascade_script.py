"""benchmarks/cascade.py: policies named on the command line, slices of the questions, and the paired EM gap
against always-strong on the same questions."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_script
from thrifty.bench.datasets import load_dataset
from thrifty.models.routing import Scope


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("benchmarks/cascade.py", "cascade_bench")


def test_policies_from_the_command_line(script: ModuleType) -> None:
    assert script.parse_policy("default") == script.EscalationPolicy()
    policy = script.parse_policy("scope=run,min_confidence_moves=0.4,moves_when_tools_left=2")
    assert (policy.scope, policy.min_confidence_moves, policy.moves_when_tools_left) == (Scope.RUN, 0.4, 2)
    assert script.parse_policy("min_confidence=null").min_confidence is None
    with pytest.raises(SystemExit, match="not key=value"):
        script.parse_policy("scope")
    with pytest.raises(ValueError, match="min_confidence_moves"):
        script.parse_policy("min_confidence_moves=2")


def test_a_slice_of_the_questions(script: ModuleType, hotpot_file: Path) -> None:
    dataset = load_dataset(hotpot_file)
    part = script._slice(dataset, "1:3", None)
    assert [i.id for i in part.items] == [i.id for i in dataset.items[1:3]]
    assert part.corpus_path == dataset.corpus_path  # the same corpus to search
    assert len(script._slice(dataset, None, 1)) == 1


def test_the_paired_gap_against_always_strong(script: ModuleType) -> None:
    strong = [{"question_id": q, "budget": 5, "em": em} for q, em in [("a", 1.0), ("b", 1.0), ("c", 0.0)]]
    cascade = [{"question_id": q, "budget": 5, "em": em} for q, em in [("a", 1.0), ("b", 0.0), ("c", 1.0)]]
    diff, se = script._paired(cascade, strong, 5)
    assert diff == pytest.approx(0.0) and se == pytest.approx(1 / 3**0.5)  # differences 0, -1, 1
    assert script._paired(cascade, strong, 3)[0] != script._paired(cascade, strong, 3)[0]  # nan: no runs
