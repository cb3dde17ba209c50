"""Benchmarks: datasets, metrics, the strategy x budget grid, reports, and the simulated model.

    from thrifty.bench import BenchConfig, load_dataset, parse_budgets, parse_strategies, run_grid, write_report

    config = BenchConfig(load_dataset("hotpotqa").head(20), parse_strategies("react,react_tracker"),
                         parse_budgets("3,5"), model="sim/default")
    records = run_grid(config, "out/results.jsonl")
    rows, files = write_report(records, "out")

The ``sim/`` model (:mod:`thrifty.bench.sim`) is for benchmarks only; its results are always labelled
simulated. ``agent bench`` is the command-line front end (:mod:`thrifty.bench.cli`).
"""

from thrifty.bench.datasets import Dataset, DatasetError, QAItem, load_dataset, register_format
from thrifty.bench.metrics import (
    budget_stop_share,
    cost_of_pass,
    e3,
    exact_match,
    f1_score,
    mean,
    normalize_answer,
    stderr,
    stdev,
)
from thrifty.bench.report import SummaryRow, render_table, summarize, write_report
from thrifty.bench.runner import (
    BenchConfig,
    BenchError,
    BudgetRule,
    GlobalBudgetReached,
    StrategyChoice,
    load_results,
    make_pricing,
    parse_budgets,
    parse_strategies,
    run_grid,
)

__all__ = [
    "BenchConfig",
    "BenchError",
    "BudgetRule",
    "Dataset",
    "DatasetError",
    "GlobalBudgetReached",
    "QAItem",
    "StrategyChoice",
    "SummaryRow",
    "budget_stop_share",
    "cost_of_pass",
    "e3",
    "exact_match",
    "f1_score",
    "load_dataset",
    "load_results",
    "make_pricing",
    "mean",
    "normalize_answer",
    "parse_budgets",
    "parse_strategies",
    "register_format",
    "render_table",
    "run_grid",
    "stderr",
    "stdev",
    "summarize",
    "write_report",
]
