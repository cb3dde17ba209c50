"""Model access (the Gateway, local and scripted providers) and the node logic of strategies."""

from thrifty.agents.gateway import Gateway, ModelError, ModelReply, ToolCall
from thrifty.agents.scripted import ScriptedModel, ScriptedReply, call, reply

__all__ = [
    "Gateway",
    "ModelError",
    "ModelReply",
    "ScriptedModel",
    "ScriptedReply",
    "ToolCall",
    "call",
    "reply",
]
