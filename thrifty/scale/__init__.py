"""Scale out: run a grid's or a batch's runs on threads or on Ray workers, under one shared budget.

* :mod:`thrifty.scale.executors`: the executor protocol, the local (threads) executor, :class:`Refused`.
* :mod:`thrifty.scale.ray_executor`: the Ray executor and the shared budget held by a Ray actor (Ray is the
  optional ``ray`` extra and is imported only when asked for).
* :mod:`thrifty.scale.batch`: many task files as one batch (``agent batch``).

The shared budget itself (:class:`thrifty.budget.pool.BudgetPool`) is in the budget package and knows
nothing of Ray.
"""

from thrifty.scale.executors import Dispatch, LocalExecutor, Refused, ScaleError, Worker

__all__ = ["Dispatch", "LocalExecutor", "Refused", "ScaleError", "Worker"]
