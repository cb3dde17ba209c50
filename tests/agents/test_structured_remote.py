"""Structured output over a real OpenAI-compatible server: llama-cpp-python's server (the embedded SmolLM2)
on 127.0.0.1, called as ``openai/...`` with ``api_base`` (the fixture of tests/models/test_remote_http.py).

That server rejects ``response_format={"type": "json_schema"}`` (a 500); ``auto`` sends it JSON mode with the
schema, which it turns into a grammar. Checked through the real Gateway: plans, verdicts, judge picks,
candidate actions and critic scores parse on the first call; a model LiteLLM believes takes ``json_schema``
steps down once and the server's format is remembered; and a whole ``bats`` run over HTTP verifies with
valid verdicts, never answers with a preamble and never searches a failed clue again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("llama_cpp")

from thrifty import Agent, Budget
from thrifty.agents import prompts
from thrifty.agents.answers import usable_answer
from thrifty.agents.context import RunContext
from thrifty.agents.events import PlanEvent, VerdictEvent
from thrifty.agents.judge import JudgeChoice
from thrifty.agents.planner import Plan, same_clue
from thrifty.agents.structured import StructuredRole, forget_formats, structured_format, structured_request
from thrifty.agents.tree import Action, Candidates, candidates_schema, describe_tools, score_progress
from thrifty.agents.verifier import Verdict
from thrifty.budget import Ledger
from thrifty.models import Gateway
from thrifty.models.settings import ModelSettings
from thrifty.tools import Corpus, ToolRunner, make_search_tools

from ..models.test_remote_http import server  # noqa: F401  (the module-scoped llama-cpp-python server)

# The 135M model writes every structured reply token by token on one thread (the first test also waits for
# the server to start): on a loaded machine that passes pytest's default 300 s.
pytestmark = [pytest.mark.local_model, pytest.mark.timeout(900)]

QUESTION = "Who directed the film Jaws?"
EVIDENCE = "Jaws (film): Jaws is a 1975 American thriller film directed by Steven Spielberg."
PASSAGES = [
    ("Jaws (film)", "Jaws is a 1975 American thriller film directed by Steven Spielberg."),
    ("Steven Spielberg", "Steven Spielberg is an American film director born in Cincinnati, Ohio."),
    ("Paris", "Paris is the capital and largest city of France."),
]


@pytest.fixture(autouse=True)
def no_learned_formats(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-thrifty-structured")
    forget_formats()
    yield
    forget_formats()


def context(base: str, model: str = "openai/smollm2", **settings: object) -> RunContext:
    ledger = Ledger(Budget(model_requests=20))
    tools = make_search_tools(Corpus(PASSAGES), k=1)
    return RunContext(
        ledger=ledger,
        gateway=Gateway(ledger, retries=0, backoff=0, api_base=f"{base}/v1"),
        runner=ToolRunner(tools, ledger),
        model=model,
        tools=tools,
        settings=ModelSettings(temperature=0.0, seed=7, **settings),  # type: ignore[arg-type]
    )


def test_every_structured_role_parses_over_http(server: str) -> None:  # noqa: F811
    ctx = context(server)
    assert structured_format(ctx) == "json_object"  # LiteLLM does not know "smollm2" takes json_schema
    plan = structured_request(
        ctx,
        StructuredRole.PLAN,
        Plan,
        [
            {"role": "system", "content": prompts.PLANNER_SYSTEM},
            {"role": "user", "content": prompts.PLANNER_TASK.format(question=QUESTION)},
        ],
        default=Plan(),
        node="plan",
        max_tokens=120,
    )
    verdict = structured_request(
        ctx,
        StructuredRole.VERDICT,
        Verdict,
        [
            {"role": "system", "content": prompts.VERIFIER_SYSTEM},
            {
                "role": "user",
                "content": prompts.VERIFIER_TASK.format(
                    question=QUESTION,
                    conditions="- (none given)",
                    answer="Steven Spielberg",
                    evidence=EVIDENCE,
                    budget="",
                ),
            },
        ],
        default=Verdict(decision="PIVOT"),
        node="verify",
        max_tokens=200,
        temperature=0.0,
    )
    pick = structured_request(
        ctx,
        StructuredRole.JUDGE,
        JudgeChoice,
        [
            {"role": "system", "content": prompts.JUDGE_SYSTEM},
            {
                "role": "user",
                "content": prompts.JUDGE_TASK.format(
                    question=QUESTION, candidates="0. Steven Spielberg\n1. Paris"
                ),
            },
        ],
        default=JudgeChoice(index=-1),
        node="judge",
        max_tokens=60,
    )
    for out in (plan, verdict, pick):
        assert out.ok and out.format == "json_object", out.label()
    assert plan.value.exploration  # a plan with clues, not the fallback
    assert verdict.value.decision in ("SUCCESS", "CONTINUE", "PIVOT")
    assert pick.value.index in (0, 1)
    cands = structured_request(
        ctx,
        StructuredRole.CANDIDATES,
        Candidates,
        [
            {"role": "system", "content": prompts.EXPAND_SYSTEM.format(k=2, tools=describe_tools(ctx))},
            {
                "role": "user",
                "content": prompts.EXPAND_TASK.format(question=QUESTION, evidence="(none)", budget=""),
            },
        ],
        default=Candidates(),
        node="expand",
        schema=candidates_schema(ctx, 2),
    )
    assert cands.ok and cands.value.actions, cands.label()
    assert {a.tool for a in cands.value.actions} <= {*ctx.tool_names, "answer"}
    _progress, reason = score_progress(
        ctx, QUESTION, "(nothing yet)", Action(tool="search", arguments={"query": "Jaws"}), EVIDENCE
    )
    assert reason != "critic reply invalid: no progress assumed"
    assert ctx.ledger.spent["model_requests"] == 5  # every role parsed on its first call: no re-ask


def test_a_server_that_rejects_json_schema_is_asked_again_with_json_mode_and_remembered(server: str) -> None:  # noqa: F811
    ctx = context(server, model="openai/gpt-4o-mini")  # the server serves its one model under any name
    assert structured_format(ctx) == "json_schema"  # what LiteLLM says this model name takes
    messages = [
        {"role": "system", "content": prompts.JUDGE_SYSTEM},
        {"role": "user", "content": prompts.JUDGE_TASK.format(question=QUESTION, candidates="0. A\n1. B")},
    ]
    first = structured_request(
        ctx, "judge", JudgeChoice, messages, default=JudgeChoice(index=-1), node="j", max_tokens=40
    )
    assert first.ok and first.format == "json_object"
    assert ctx.ledger.spent["model_requests"] == 2  # the rejected json_schema request, then JSON mode
    assert structured_format(ctx) == "json_object"  # remembered for this model and server
    second = structured_request(
        ctx, "judge", JudgeChoice, messages, default=JudgeChoice(index=-1), node="j", max_tokens=40
    )
    assert second.ok and ctx.ledger.spent["model_requests"] == 3
    # an explicit setting is respected: no stepping down, the default with the reason
    strict = context(server, model="openai/gpt-4o-mini", response_format="json_schema")
    out = structured_request(
        strict, "judge", JudgeChoice, messages, default=JudgeChoice(index=-1), node="j", max_tokens=40
    )
    assert not out.ok and out.error and out.error.startswith("model error")


def test_bats_over_http_verifies_and_never_accepts_a_preamble_or_repeats_a_clue(server: str) -> None:  # noqa: F811
    tools = make_search_tools(Corpus(PASSAGES), k=1)
    agent = Agent(
        "openai/smollm2", api_base=f"{server}/v1", tools=tools, strategy="bats", budget=Budget(tool_calls=3),
        max_attempts=2, temperature=0.0, seed=7, max_tokens=48, retries=0,
    )  # fmt: skip
    result = agent.run(QUESTION)
    assert result.error is None, result.error
    verdicts = [e for e in result.trace if isinstance(e, VerdictEvent)]
    plans = [e for e in result.trace if isinstance(e, PlanEvent)]
    assert plans and all(p.valid for p in plans)
    assert all(v.valid for v in verdicts), [v.justification for v in verdicts]
    assert result.answer == "unknown" or usable_answer(result.answer, QUESTION), result.answer
    clues = [i.text for i in plans[-1].items if i.kind == "exploration"]
    assert not any(same_clue(a, b) for n, a in enumerate(clues) for b in clues[:n]), clues
