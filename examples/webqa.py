"""A small web-QA command: answer a question with web search and page reading under a per-question budget,
with the strategy of your choice, and print the answer, its sources and what it cost.

Offline by default: the bundled HotpotQA paragraphs are served as a local web on 127.0.0.1 (a SearXNG-style
search endpoint and one page per paragraph), and the embedded local model answers. The tools are the real
ones: ``web_search`` goes through ``litellm.search`` and ``read_url`` fetches pages over HTTP.

    python examples/webqa.py
    python examples/webqa.py "Which magazine was started first, Arthur's Magazine or First for Women?" \\
        --strategy bats --tool-calls 6 --usd 0.02

On the real web (needs network; a model key for a remote model, e.g. OPENAI_API_KEY):

    python examples/webqa.py --provider duckduckgo --model openai/gpt-4o-mini "..."
    TAVILY_API_KEY=... python examples/webqa.py --provider tavily --fallback duckduckgo --model ... "..."

An MCP server's tools join with ``--mcp "python my_server.py"`` (each becomes a tool under the budget).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from contextlib import ExitStack

from thrifty import Agent, Budget, RunResult
from thrifty.agents.events import ObservationEvent
from thrifty.bench.localweb import LocalWeb, web_tools
from thrifty.models.gateway import ModelError
from thrifty.models.search import LiteLLMSearch
from thrifty.tools import Tool, bundled_dataset_path, load_corpus
from thrifty.tools.mcp import MCPServerConfig, MCPStartupError, connect_mcp
from thrifty.tools.web import make_read_url
from thrifty.tools.web_search import make_web_search

DEFAULT_QUESTION = "Who was born first, Morgan Llywelyn or Robert Jordan?"
HOW_TO_SEARCH = (
    "First call web_search with a few keywords (a name or a title). Then call read_url with a URL listed in "
    "its results if the snippet is not enough. Answer with a short phrase."
)


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number > 0 (argparse then exits 2 naming the option)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} is not more than 0: give a positive limit")
        return value

    return parse


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("question", nargs="?", default=DEFAULT_QUESTION)
    p.add_argument("--model", default="local/smollm2", help="any LiteLLM model, or local/smollm2 (default)")
    p.add_argument("--strategy", default="react", help="react, bats, self_consistency, value_tree, ...")
    p.add_argument("--tool-calls", type=positive(int), default=5, help="tool calls allowed for the question")
    p.add_argument(
        "--usd", type=positive(float), default=0.05, help="dollars allowed for the question (tokens + tools)"
    )
    p.add_argument("--seconds", type=positive(float), default=300.0, help="seconds allowed for the question")
    p.add_argument("--k", type=positive(int), default=3, help="search results per query")
    p.add_argument("--provider", help="a LiteLLM search provider on the real web (default: the local web)")
    p.add_argument(
        "--fallback", action="append", default=[], help="a provider tried when the one before fails"
    )
    p.add_argument("--mcp", action="append", default=[], help="an MCP server's stdio command (repeatable)")
    return p.parse_args()


def web_search_tools(args: argparse.Namespace, stack: ExitStack) -> list[Tool]:
    if args.provider is None:
        web = stack.enter_context(LocalWeb(load_corpus(bundled_dataset_path("hotpotqa"))))
        print(f"local web: {web.base} (bundled HotpotQA paragraphs, one page each)", file=sys.stderr)
        return web_tools(web, k=args.k)
    search = make_web_search(LiteLLMSearch(), args.provider, k=args.k, fallbacks=args.fallback)
    return [search, make_read_url()]


def sources(result: RunResult) -> list[str]:
    """Pages read, else the pages a search listed, in the order they came."""
    read, listed = [], []
    for event in result.trace:
        if not isinstance(event, ObservationEvent) or not event.ok:
            continue
        if event.tool == "read_url":
            read.append(json.loads(event.arguments or "{}").get("url", ""))
        elif event.tool == "web_search":
            # The trace keeps a result's first 600 characters: its last line may be a URL cut short.
            lines = event.observation.splitlines()[:-1]
            listed += [line[5:] for line in lines if line.startswith("URL: ")]
    return list(dict.fromkeys(read or listed))


def main() -> int:
    args = parse_args()
    with ExitStack() as stack:
        try:
            tools = web_search_tools(args, stack)
            for i, command in enumerate(args.mcp):
                connection = stack.enter_context(
                    connect_mcp(MCPServerConfig(f"mcp{i}", command=shlex.split(command)))
                )
                tools += connection.tools
            agent = Agent(
                args.model,
                tools=tools,
                budget=Budget(tool_calls=args.tool_calls, usd=args.usd, seconds=args.seconds),
                strategy=args.strategy,
                temperature=0.2,
                seed=7,
                max_tokens=96,
                system_prompt=HOW_TO_SEARCH,
            )
            result = agent.run(args.question)  # a model that cannot start raises before spending anything
        # a missing key, an unknown provider or strategy, a bad limit, an MCP server down
        except (ValueError, MCPStartupError, ModelError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"question: {args.question}")
    print(f"answer:   {result.answer}")
    print(
        f"stopped:  {result.stop_reason} after {result.usage.tool_calls} tool calls {result.usage.per_tool}"
    )
    print(
        f"cost:     ${result.cost.total_usd:.4f} (tools ${result.cost.tools_usd:.4f}), "
        f"{result.usage.total_tokens} tokens, {result.usage.seconds:.1f}s"
    )
    print("sources:")
    for url in sources(result) or ["(none)"]:
        print(f"  {url}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
