"""Typed strategy options: each strategy declares a pydantic model of its options; unknown keys are refused.

A builder declares its options with :func:`takes_options`; it is then called with a validated instance
(defaults filled in), whether the options came from ``Agent(..., **options)``, a task file's
``strategy.options`` or ``agent bench --strategies name:key=val``::

    class WidthOptions(StrategyOptions):
        width: int = Field(default=3, ge=1, description="Actions per step.")

    @takes_options(WidthOptions)
    def build(options: WidthOptions) -> Workflow: ...

A builder that declares nothing (a plain ``module:function``, a :class:`~thrifty.workflows.graph.Workflow`)
receives the options as a plain dict, unchecked, as before.

``tracker``, ``max_steps`` and ``keep_observations`` are not options: they are fields of the strategy
itself (``strategy.max_steps`` in a task file, ``Agent(max_steps=...)``), shared by every strategy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "STRATEGY_FIELDS",
    "OptionIssue",
    "StrategyOptions",
    "StrategyOptionsError",
    "options_model",
    "parse_options",
    "takes_options",
]

#: Fields of the strategy itself (StrategySpec), which a user may put under ``options`` by mistake.
STRATEGY_FIELDS = ("tracker", "max_steps", "keep_observations")

OptionsT = TypeVar("OptionsT", bound="StrategyOptions")
F = TypeVar("F", bound=Callable[..., Any])


class StrategyOptions(BaseModel):
    """Base of every strategy's options: unknown keys are refused, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls: type[OptionsT], options: Mapping[str, Any] | BaseModel | None = None) -> OptionsT:
        """``options`` as this model: an instance as is, a mapping validated, None the defaults."""
        if isinstance(options, cls):
            return options
        if isinstance(options, BaseModel):
            options = options.model_dump(exclude_unset=True)
        return cls.model_validate(dict(options or {}))


def takes_options(model: type[StrategyOptions]) -> Callable[[F], F]:
    """Declare the options model of a graph builder: it is then called with a validated instance."""

    def mark(builder: F) -> F:
        builder.options_model = model  # type: ignore[attr-defined]
        return builder

    return mark


def options_model(builder: Any) -> type[StrategyOptions] | None:
    """The options model a builder declared with :func:`takes_options`, or None (it takes a plain dict)."""
    model = getattr(builder, "options_model", None)
    return model if isinstance(model, type) and issubclass(model, StrategyOptions) else None


@dataclass(frozen=True)
class OptionIssue:
    """One bad option: where (``("k",)``), what is wrong, and how to fix it (None: no advice)."""

    loc: tuple[str | int, ...]
    message: str
    fix: str | None
    type: str

    def __str__(self) -> str:
        return self.message + (f" (fix: {self.fix})" if self.fix else "")


class StrategyOptionsError(ValueError):
    """Options a strategy does not have, or values it refuses; the message names each one and the fix."""

    def __init__(self, strategy: str, issues: list[OptionIssue]) -> None:
        self.strategy = strategy
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues))


def _issues(strategy: str, model: type[BaseModel], err: ValidationError) -> list[OptionIssue]:
    valid = list(model.model_fields)
    out: list[OptionIssue] = []
    for e in err.errors():
        loc = tuple(e["loc"])
        name = ".".join(str(p) for p in loc) or "options"
        if e["type"] == "extra_forbidden":
            message = f"'{name}' is not an option of strategy '{strategy}'"
            if name in STRATEGY_FIELDS:
                fix = f"{name} is a field of the strategy itself, not one of its options: move it out of options"
            elif valid:
                fix = f"check the spelling; the options of {strategy} are: {', '.join(valid)}"
            else:
                fix = f"remove it; {strategy} takes no options"
        else:
            message = f"option '{name}' of strategy '{strategy}': {e['msg'].removeprefix('Value error, ')}"
            field = model.model_fields.get(str(loc[0])) if loc else None
            fix = None
            if field is not None and not field.is_required():
                fix = f"give a valid value, or drop it for the default: {json.dumps(field.default, default=str)}"
        out.append(OptionIssue(loc, message, fix, e["type"]))
    return out


def parse_options(strategy: str, builder: Any, options: Mapping[str, Any] | BaseModel | None) -> Any:
    """What ``builder`` is called with: an instance of its declared options model (validated, defaults
    filled in), or the options as a plain dict when it declares none.

    Raises :class:`StrategyOptionsError` for an unknown key or a bad value.
    """
    model = options_model(builder)
    if model is None:
        if isinstance(options, BaseModel):
            return options
        return dict(options or {})
    if isinstance(options, model):
        return options
    try:
        if issubclass(model, StrategyOptions):
            return model.of(options)
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        raise StrategyOptionsError(strategy, _issues(strategy, model, exc)) from None
