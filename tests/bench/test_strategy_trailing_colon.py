"""``--strategies value_tree:`` (a colon and no options) is the strategy itself, not a label of its own."""

from __future__ import annotations

import pytest

from thrifty.bench.runner import BenchError, parse_strategies


@pytest.mark.parametrize("text", ["value_tree:", "value_tree: ", "value_tree:,"])
def test_a_trailing_colon_means_no_options(text: str) -> None:
    (choice,) = parse_strategies(text)
    assert (choice.label, choice.name, choice.options) == ("value_tree", "value_tree", {})
    assert choice == parse_strategies("value_tree")[0]


def test_react_aliases_keep_their_meaning_with_a_trailing_colon() -> None:
    react, tracker = parse_strategies("react:,react_tracker:")
    assert (react.label, react.tracker) == ("react", False)
    assert (tracker.label, tracker.tracker) == ("react_tracker", True)


def test_the_same_strategy_with_and_without_the_colon_is_given_twice() -> None:
    with pytest.raises(BenchError, match="strategy 'value_tree' given twice"):
        parse_strategies("value_tree,value_tree:")
