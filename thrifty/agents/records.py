"""The typed records nodes keep in the run state and show in the trace: BATS checklist items and value-tree
nodes.

Their JSON form is the one the trace and ``agent run --tree-out`` have always written: the fields in
declaration order, and the optional fields listed in ``_omit_if_none`` left out while they are None (they
were keys that only some entries had).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

ItemStatus = Literal["pending", "done", "failed", "partial"]
ItemKind = Literal["exploration", "verification"]


class Record(BaseModel):
    """A model whose dump leaves out the fields named in ``_omit_if_none`` while they are None, and puts
    the fields named in ``_last`` at the end."""

    _omit_if_none: ClassVar[tuple[str, ...]] = ()
    _last: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return self._shape(handler(self))

    def _shape(self, data: dict[str, Any]) -> dict[str, Any]:
        for key in self._omit_if_none:
            if key in data and data[key] is None:
                del data[key]
        for key in self._last:
            if key in data:
                data[key] = data.pop(key)
        return data


class ChecklistItem(BaseModel):
    """One clue of the BATS plan. Items are only added or moved between states, never deleted."""

    id: int
    text: str
    kind: ItemKind
    status: ItemStatus = "pending"
    spent: dict[str, float] = Field(default_factory=dict)  # what the attempts on this item spent
    attempt: int  # the attempt that added it


class TreeNode(Record):
    """One node of the value tree: the action that led to it, what it observed, and its value.

    ``value`` is the mean progress along the path (the root's is 0.5); ``progress`` is what the residual
    critic gave this step alone. A pruned node is never expanded; a terminal node is a proposed answer.
    """

    _omit_if_none: ClassVar[tuple[str, ...]] = ("key", "progress_sum", "critic")

    id: int
    parent: int | None
    depth: int
    thought: str = ""
    tool: str | None = None
    arguments: str | None = None  # the tool's arguments as JSON text
    observation: str = ""
    progress: float = 0.0
    value: float = 0.0
    pruned: bool = False
    prune_reason: str | None = None
    terminal: bool = False
    answer: str | None = None
    verdict: str | None = None  # the verifier's decision on an answer, or UNVERIFIED
    expanded: int = 0  # how many times this node was expanded
    spent: dict[str, int | float] = Field(default_factory=dict)
    key: str | None = None  # the action's identity, so a re-expansion asks for new ones (not on the root)
    progress_sum: float | None = None  # progress summed along the path (set once scored)
    critic: str | None = None  # the critic's reason (set once scored)
