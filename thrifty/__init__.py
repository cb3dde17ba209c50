"""thrifty: LLM agents that spend wisely.

Every model call, tool call and memory operation is charged to a Ledger that reserves before and settles
after, so a run never spends past its budget and always returns its best answer with a typed stop reason.
"""

from thrifty.agents._litellm import offline_env

offline_env()

from thrifty.budget import Budget, BudgetExceeded, Ledger, Pricing  # noqa: E402
from thrifty.tools import Tool, tool  # noqa: E402
from thrifty.workflows import Agent, RunResult, TaskSpec, load_task, run_task  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Budget",
    "BudgetExceeded",
    "Ledger",
    "Pricing",
    "RunResult",
    "TaskSpec",
    "Tool",
    "__version__",
    "load_task",
    "run_task",
    "tool",
]
