"""What the model reads when the budget refuses a tool call (thrifty.agents.solver.observe)."""

from __future__ import annotations

from thrifty import Agent, Budget, tool
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply


@tool(batch_arg="items")
def lookup(items: list[str]) -> str:
    """Look several things up at once."""
    return ", ".join(items)


def _tool_texts(request: ScriptedRequest) -> list[str]:
    return [str(m.get("content")) for m in request.messages if m.get("role") == "tool"]


def test_a_batch_larger_than_what_is_left_is_told_so() -> None:
    """A batch of 10 under 3 tool calls was told "the budget for tool_calls is spent" with all 3 left."""
    seen: list[list[str]] = []

    def step(request: ScriptedRequest) -> ScriptedReply:
        seen.append(_tool_texts(request))
        done = len(seen[-1])
        if done == 0:
            return call("lookup", items=[str(i) for i in range(10)])
        if done == 1:
            return call("lookup", items=["a", "b", "c"])
        return reply("done")

    result = Agent(ScriptedModel([], default=step).model, tools=[lookup], budget=Budget(tool_calls=3)).run(
        "q"
    )
    assert result.usage.tool_calls == 3
    texts = seen[-1]
    assert texts[0].startswith("Not run: this call needs 10 tool_calls, only 3 left.")
    assert texts[1].startswith("a, b, c")
