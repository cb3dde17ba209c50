"""A tool whose calls charge another limited dimension (a ``recall`` tool spends ``memory_ops``): the
<budget> block, spent_tools and the regime count the calls that dimension can still pay."""

from __future__ import annotations

import gc
import weakref

from thrifty.budget import Budget, BudgetView, Ledger, Regime, budget_block, regime, spent_tools
from thrifty.budget.awareness import declare_tool_charge, tool_status


def recall(ledger: Ledger, ops: int = 2) -> None:
    """One recall as a run pays it: the call on the run's ledger, its memory_ops where memory charges."""
    ledger.charge({"memory_ops": ops}, kind="memory", name="retrieve:low")


def test_memory_ops_bind_the_recall_tool_and_the_block_says_by_what() -> None:
    run = Ledger(Budget(memory_ops=5))
    declare_tool_charge(run, "recall", {"memory_ops": 2})
    assert budget_block(run, ["recall"]) == (
        "<budget>recall used: 0, recall remaining: 2 (memory_ops left: 5, 2 per call), regime: HIGH</budget>"
    )
    run.charge({"tool_calls": 1, "tool:recall": 1}, kind="tool", name="recall")
    recall(run)
    run.charge({"tool_calls": 1, "tool:recall": 1}, kind="tool", name="recall")
    recall(run)
    view = BudgetView.read(run, ["recall"])
    assert view.tools == {"recall": (2.0, 0.0)}
    assert "recall remaining: 0 (memory_ops left: 1, 2 per call)" in view.block()
    assert spent_tools(run, ["recall"]) == ["recall"]  # hidden like a tool whose call limit is spent
    assert view.regime is Regime.CRITICAL  # ratio 1/5 alone would be LOW: the tool at 0 makes it critical


def test_the_payer_ledgers_own_cap_binds_and_a_branch_sees_the_declaration() -> None:
    run = Ledger(Budget(total_tokens=10_000))  # nothing limits memory_ops in the run itself
    memory = run.child(Budget(memory_ops=4), name="memory")
    declare_tool_charge(run, "recall", {"memory_ops": 2}, payer=memory)
    branch = run.child(name="branch")
    assert tool_status(branch, ["recall", "search"]) == {"recall": (0.0, 2.0), "search": (0.0, None)}
    recall(memory, 3)  # a recall with a facts lookup: 3 operations
    assert tool_status(branch, ["recall"]) == {"recall": (0.0, 0.0)}
    assert spent_tools(branch, ["recall", "search"]) == ["recall"]
    assert regime(branch, ["recall", "search"]) is Regime.CRITICAL
    assert regime(branch, ["search"]) is Regime.HIGH  # without the recall tool nothing is spent


def test_a_tighter_call_limit_still_binds_and_needs_no_note() -> None:
    run = Ledger(Budget(memory_ops=20, tool_calls=3))
    declare_tool_charge(run, "recall", {"memory_ops": 2})
    view = BudgetView.read(run, ["recall"])
    assert view.tools == {"recall": (0.0, 3.0)} and view.bounds == {}
    assert "recall remaining: 3," in view.block() and "per call" not in view.block()


def test_an_unlimited_charged_dimension_changes_nothing() -> None:
    run = Ledger(Budget(total_tokens=1000))
    declare_tool_charge(run, "recall", {"memory_ops": 2, "usd": 0.0})
    assert budget_block(run, ["recall"]).startswith("<budget>recall used: 0, recall remaining: unlimited,")


def test_the_cheapest_dimension_to_run_out_is_the_one_shown() -> None:
    run = Ledger(Budget(memory_ops=10, usd=0.05))
    declare_tool_charge(run, "recall", {"memory_ops": 2, "usd": 0.02})
    assert "recall remaining: 2 (usd left: 0.0500, 0.0200 per call)" in budget_block(run, ["recall"])


def test_a_declaration_does_not_outlive_its_run() -> None:
    run = Ledger(Budget(memory_ops=4))
    declare_tool_charge(run, "recall", {"memory_ops": 2}, payer=run.child(name="memory"))
    gone = weakref.ref(run)
    del run
    gc.collect()
    assert gone() is None  # the declaration and the payer it names do not keep the run's ledger alive
