"""Budget limits: what a run (or a branch of it) may spend, per dimension.

Dimensions are plain strings so that the Ledger can treat them uniformly:

* ``input_tokens``, ``output_tokens``, ``total_tokens`` — model tokens;
* ``usd`` — dollars (model tokens at their prices plus tool calls at theirs);
* ``model_requests`` — model calls (every retry is a call);
* ``tool_calls`` — tool calls in total (a batched call costs one unit per item);
* ``tool:<name>`` — calls of one tool;
* ``memory_ops`` — memory operations (each write, recall or forget of a memory tier is one);
* ``seconds`` — wall-clock time since the ledger opened (checked, never reserved).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, field_validator

TOKEN_DIMENSIONS = ("input_tokens", "output_tokens", "total_tokens")
DIMENSIONS = (*TOKEN_DIMENSIONS, "usd", "model_requests", "tool_calls", "memory_ops", "seconds")
TOOL_PREFIX = "tool:"


def tool_dimension(tool_name: str) -> str:
    """The ledger dimension that counts calls of one tool.

    >>> tool_dimension("search")
    'tool:search'
    """
    return f"{TOOL_PREFIX}{tool_name}"


#: A positive, finite number: an infinite limit is no limit (leave the field unset), and ``inf`` broke the
#: arithmetic of the reservations.
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: The largest whole-number limit: the Ledger keeps limits as floats, which hold whole numbers exactly up to
#: 2 ** 53; a larger one (``tool_calls: 1000...0`` with 400 zeros) overflowed them.
MAX_COUNT = 10**15


def _no_bool(value: object) -> object:
    """``tool_calls: true`` is a typo, not a limit of 1 (pydantic would read a bool as 0 or 1); a whole
    number written ``2.0`` is 2, as for every other limit."""
    if isinstance(value, bool):
        raise ValueError("a limit is a number, not true or false")
    return value


def _at_most_max_count(value: int | None) -> int | None:
    if value is not None and value > MAX_COUNT:
        raise ValueError(f"a whole-number limit is at most {MAX_COUNT:,} (10^15)")
    return value


class Budget(BaseModel):
    """Hard limits for a run. Any field left unset is unlimited.

    Every limit must be positive: a zero budget is almost always a typo, and a run that can spend
    nothing cannot even answer.

    >>> budget = Budget(tool_calls=10, usd=0.5, per_tool={"search": 4})
    >>> budget.limits()
    {'usd': 0.5, 'tool_calls': 10.0, 'tool:search': 4.0}
    >>> budget.scaled(0.25).limits()  # integer limits round down, never below 1
    {'usd': 0.125, 'tool_calls': 2.0, 'tool:search': 1.0}
    >>> budget.merged(Budget(tool_calls=5, seconds=60)).limits()  # the tighter of each
    {'usd': 0.5, 'tool_calls': 5.0, 'seconds': 60.0, 'tool:search': 4.0}
    >>> Budget().is_unlimited()
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: PositiveInt | None = Field(default=None, description="Prompt tokens over all model calls.")
    output_tokens: PositiveInt | None = Field(
        default=None, description="Completion tokens over all model calls."
    )
    total_tokens: PositiveInt | None = Field(default=None, description="Prompt + completion tokens.")
    usd: PositiveFinite | None = Field(
        default=None, description="Dollars: tokens at their prices plus tool calls."
    )
    model_requests: PositiveInt | None = Field(default=None, description="Model calls, retries included.")
    tool_calls: PositiveInt | None = Field(
        default=None, description="Tool calls over all tools (batch items count)."
    )
    per_tool: dict[str, Annotated[PositiveInt, BeforeValidator(_no_bool)]] = Field(
        default_factory=dict, description="Calls allowed per tool, e.g. {search: 5, read: 3}."
    )
    memory_ops: PositiveInt | None = Field(
        default=None, description="Memory operations (each write, recall or forget of a memory tier is one)."
    )
    seconds: PositiveFinite | None = Field(default=None, description="Wall-clock seconds for the whole run.")

    @field_validator(*DIMENSIONS, mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        return _no_bool(value)

    @field_validator(
        "input_tokens", "output_tokens", "total_tokens", "model_requests", "tool_calls", "memory_ops"
    )
    @classmethod
    def _countable(cls, value: int | None) -> int | None:
        return _at_most_max_count(value)

    @field_validator("per_tool")
    @classmethod
    def _tool_names(cls, value: dict[str, int]) -> dict[str, int]:
        for name, limit in value.items():
            if not name or ":" in name:
                raise ValueError(f"per_tool key {name!r} is not a tool name")
            _at_most_max_count(limit)
        return value

    def limits(self) -> dict[str, float]:
        """The limits that are set, keyed by ledger dimension."""
        out: dict[str, float] = {}
        for dim in DIMENSIONS:
            value = getattr(self, dim)
            if value is not None:
                out[dim] = float(value)
        for name, value in self.per_tool.items():
            out[tool_dimension(name)] = float(value)
        return out

    @classmethod
    def from_limits(cls, limits: dict[str, float]) -> Budget:
        """Build a Budget from ledger dimensions (the inverse of :meth:`limits`)."""
        fields: dict[str, object] = {}
        per_tool: dict[str, int] = {}
        for dim, value in limits.items():
            if dim.startswith(TOOL_PREFIX):
                per_tool[dim[len(TOOL_PREFIX) :]] = max(1, int(value))
            elif dim in ("usd", "seconds"):
                fields[dim] = value
            else:
                fields[dim] = max(1, int(value))
        fields["per_tool"] = per_tool
        return cls.model_validate(fields)

    def scaled(self, fraction: float) -> Budget:
        """This budget times ``fraction`` (integer limits round down, but never below 1)."""
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        return Budget.from_limits({dim: value * fraction for dim, value in self.limits().items()})

    def merged(self, other: Budget) -> Budget:
        """The tighter of two budgets, dimension by dimension (e.g. a task file's and the CLI's)."""
        limits = self.limits()
        for dim, value in other.limits().items():
            limits[dim] = min(value, limits.get(dim, value))
        return Budget.from_limits(limits)

    def is_unlimited(self) -> bool:
        return not self.limits()
