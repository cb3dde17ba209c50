"""Test helpers for applications built on thrifty: the scripted model, and (in :mod:`thrifty.testing.memory`,
which needs pytest) the conformance suite a memory tier must pass.

``ScriptedModel`` is a real provider (``scripted/<name>``) that plays back fixed replies with fixed token
counts through the real Gateway and Ledger, so an application's tests are exact and never call a remote
model::

    from thrifty.testing import ScriptedModel, call, reply

    script = ScriptedModel([call("search", query="Paris"), reply("Paris", prompt_tokens=30)])
    Agent(script, tools=..., budget=Budget(tool_calls=1)).run("...")
    script.requests[0].max_tokens   # what the Gateway asked for
"""

import thrifty.models  # noqa: F401  (registers the scripted provider)
from thrifty.models.scripted import (
    ScriptedModel,
    ScriptedReply,
    ScriptedRequest,
    ScriptExhausted,
    call,
    reply,
)

__all__ = ["ScriptExhausted", "ScriptedModel", "ScriptedReply", "ScriptedRequest", "call", "reply"]
