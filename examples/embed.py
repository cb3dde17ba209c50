"""Embed a budget-tracked agent in your own Python code: about ten lines."""

from thrifty import Agent, Budget
from thrifty.tools import bundled_dataset_path, load_corpus, make_search_tools

corpus = load_corpus(bundled_dataset_path("hotpotqa"))  # or your own .jsonl of {title, text}
agent = Agent(
    model="local/smollm2",  # or "openai/gpt-4o-mini" with OPENAI_API_KEY set
    tools=make_search_tools(corpus, k=3),
    budget=Budget(tool_calls=4, total_tokens=8000, usd=0.02),
    temperature=0.2,
    seed=7,
)
result = agent.run("Who was born first, Morgan Llywelyn or Robert Jordan?")
print(f"answer: {result.answer}")
print(f"stopped: {result.stop_reason}")
print(
    f"spent: {result.usage.total_tokens} tokens, {result.usage.tool_calls} tool calls, ${result.usage.usd:.4f}"
)
