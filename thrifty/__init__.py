"""thrifty: LLM agents that spend wisely.

Every model call, tool call and memory operation is charged to a Ledger that reserves before and settles
after, so a run never spends past its budget and always returns its best answer with a typed stop reason.

Importing thrifty changes nothing in the host process (no environment variable, no ``sys.path`` entry).
"""

from thrifty.agents.context import RunContext
from thrifty.budget import Budget, BudgetExceeded, Ledger, Pricing, StopKind
from thrifty.models import Provider, register_provider
from thrifty.models.settings import ModelSettings
from thrifty.tools import Tool, tool
from thrifty.workflows import (
    Agent,
    RunResult,
    StrategyOptions,
    TaskSpec,
    load_task,
    register_strategy,
    run_task,
    takes_options,
)
from thrifty.workflows.graph import END, Workflow

__version__ = "0.1.0"

__all__ = [
    "END",
    "Agent",
    "Budget",
    "BudgetExceeded",
    "Ledger",
    "ModelSettings",
    "Pricing",
    "Provider",
    "RunContext",
    "RunResult",
    "StopKind",
    "StrategyOptions",
    "TaskSpec",
    "Tool",
    "Workflow",
    "__version__",
    "load_task",
    "register_provider",
    "register_strategy",
    "run_task",
    "takes_options",
    "tool",
]
