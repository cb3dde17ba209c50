"""Task files, strategies (graph builders), the runner and the Python Agent API."""

from thrifty.workflows.agent import Agent
from thrifty.workflows.options import StrategyOptions, StrategyOptionsError, takes_options
from thrifty.workflows.result import Cost, RunResult, Usage
from thrifty.workflows.runner import SetupError, execute, run_task
from thrifty.workflows.spec import TaskFileError, TaskSpec, json_schema, load_task
from thrifty.workflows.strategies import STRATEGIES, register_strategy

__all__ = [
    "STRATEGIES",
    "Agent",
    "Cost",
    "RunResult",
    "SetupError",
    "StrategyOptions",
    "StrategyOptionsError",
    "TaskFileError",
    "TaskSpec",
    "Usage",
    "execute",
    "json_schema",
    "load_task",
    "register_strategy",
    "run_task",
    "takes_options",
]
