"""Grounding (thrifty.agents.grounding): what a grammar-constrained model may search for and answer."""

from __future__ import annotations

import json

from thrifty.agents import grounding
from thrifty.agents.context import RunContext
from thrifty.agents.solver import agent_step
from thrifty.budget import Budget, Ledger
from thrifty.models.gateway import Gateway
from thrifty.models.settings import ModelSettings
from thrifty.testing import ScriptedModel, call, reply
from thrifty.tools import Corpus, ToolRunner, make_search_tools

QUESTION = "Who was born first, Morgan Llywelyn or Robert Jordan?"
PASSAGES = [
    ("Morgan Llywelyn", "Morgan Llywelyn (born December 3, 1937) is an American-Irish author."),
    ("Robert Jordan", "Robert Jordan (October 17, 1948 - 2007) was an American author of fantasy."),
]


def test_question_phrases_are_its_names_then_its_keywords() -> None:
    assert grounding.question_phrases(QUESTION) == [
        "Morgan Llywelyn",
        "Robert Jordan",
        "born first Morgan Llywelyn Robert Jordan",
    ]
    assert grounding.question_phrases('The band who released the album "Tinted Windows" played where?')[
        0
    ] == ("Tinted Windows")


def test_answer_kinds() -> None:
    assert grounding.answer_kind(QUESTION) == "choice"
    assert grounding.choices_in(QUESTION) == ["Morgan Llywelyn", "Robert Jordan"]
    assert grounding.answer_kind("Are Cryptanthus and Gagea, both a genus?") == "yesno"
    assert grounding.answer_kind("What year did Christopher Nolan's magic-themed drama come out?") == "year"
    assert grounding.answer_kind("In which year was this figure skater coached by Frank Carroll?") == "year"
    assert grounding.answer_kind("When was the host of Religion on the Line born?") == "date"
    assert grounding.answer_kind("How many animals does the wall depict?") == "number"
    assert grounding.answer_kind("The band Tinted Windows played first in what city?") == "span"


def test_answer_spans_follow_the_kind_and_the_observations() -> None:
    seen = [
        "Title: Tinted Windows (band)\nTinted Windows was a band. Their first show was in Tulsa, Oklahoma."
    ]
    spans = grounding.answer_spans("Tinted Windows played their first show in what city?", seen)
    assert "Tulsa" in spans and "Their" not in spans
    assert "Tinted Windows" not in spans  # the question's own name is not its answer
    assert grounding.answer_spans("What year was Tinted Windows formed?", ["It was formed in 2009."]) == [
        "2009"
    ]
    assert grounding.answer_spans(QUESTION, seen) == ["Morgan Llywelyn", "Robert Jordan"]
    actor = [
        "Title: Zach Galifianakis\nGalifianakis was born on October 1, 1969, and acted in Weeds in 2006."
    ]
    # "in what year" offers years only (a date's year too), which a gold "1969" can match ...
    assert grounding.answer_spans("The actor from Weeds was born in what year?", actor) == ["1969", "2006"]
    # ... while "when" offers the whole date as well
    assert grounding.answer_spans("When was the actor from Weeds born?", actor) == [
        "October 1, 1969",
        "1969",
        "2006",
    ]
    assert grounding.answer_format(QUESTION, []) is None  # nothing observed: no grounded answer yet
    born = ["Title: Ruprekha Banerjee\nRuprekha Banerjee (born 1984 in Kolkata) is a Bengali singer."]
    assert "Kolkata" in grounding.answer_spans("The singer was born where?", born)  # not "1984 in Kolkata"


def test_non_answers() -> None:
    for text in ["", "unknown", "The answer to the question is:", "Based on the text, 1937", "Answer is"]:
        assert not grounding.usable_answer(text), text
    assert grounding.usable_answer("Morgan Llywelyn")


def _context(script: ScriptedModel, grounded: bool | None) -> RunContext:
    ledger = Ledger(Budget(tool_calls=6, total_tokens=100_000))
    tools = make_search_tools(Corpus(PASSAGES), k=1)
    return RunContext(
        ledger=ledger,
        gateway=Gateway(ledger),
        runner=ToolRunner(tools, ledger),
        model=script.model,
        tools=tools,
        settings=ModelSettings(grounded=grounded, temperature=0.0),
        max_steps=8,
    )


def _run(ctx: RunContext) -> dict:
    state: dict = {"question": QUESTION, "messages": [], "trace": []}
    go_on = True
    while go_on:
        update, go_on = agent_step(state, ctx)  # type: ignore[arg-type]
        for key, value in update.items():
            state[key] = [*state.get(key, []), *value] if key in ("messages", "trace") else value
    return state


def test_grounded_steps_look_first_never_repeat_and_answer_from_the_options() -> None:
    script = ScriptedModel(
        [
            call("read", title="Morgan Llywelyn"),
            call("read", title="Robert Jordan"),
            call("search", query="born first Morgan Llywelyn Robert Jordan"),
            reply('"Morgan Llywelyn"'),
        ]
    )
    state = _run(_context(script, grounded=True))
    assert state["answer"] == "Morgan Llywelyn"
    first, second, _, last = script.requests
    assert first.params["tool_choice"] == "required"  # nothing observed yet: look before answering
    assert "response_format" not in first.params
    titles = {t["function"]["name"]: t for t in second.params["tools"]}["read"]
    assert titles["function"]["parameters"]["properties"]["title"]["enum"] == ["Robert Jordan"]
    # Three lookups for a question naming two things: the tools are withdrawn, the answer is one of its options.
    assert not last.params.get("tools")
    answer = last.params["response_format"]["json_schema"]["schema"]
    assert answer == {"type": "string", "enum": ["Morgan Llywelyn", "Robert Jordan"]}


def test_ungrounded_requests_are_unchanged() -> None:
    script = ScriptedModel([call("search", query="Morgan Llywelyn"), reply("unknown")])
    state = _run(_context(script, grounded=None))  # a scripted provider has no grammar: off by default
    assert state["answer"] == "unknown"
    for request in script.requests:
        assert "tool_choice" not in request.params and "response_format" not in request.params
        query = request.params["tools"][0]["function"]["parameters"]["properties"]["query"]
        assert "enum" not in query


def _branches(schema: dict) -> dict:
    return {b["properties"]["tool"]["const"]: b for b in schema["properties"]["actions"]["items"]["anyOf"]}


def test_grounded_tree_candidates_look_first_and_answer_from_the_options() -> None:
    from thrifty.agents.tree import ANSWER_TOOL, candidates_schema

    ctx = _context(ScriptedModel([]), grounded=True)
    first = _branches(candidates_schema(ctx, 2, question=QUESTION, path=[]))
    assert ANSWER_TOOL not in first  # nothing observed on the path: look before answering
    assert first["read"]["properties"]["arguments"]["properties"]["title"]["enum"] == [
        "Morgan Llywelyn",
        "Robert Jordan",
    ]
    path = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "read", "arguments": '{"title": "Morgan Llywelyn"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Title: Morgan Llywelyn\n" + PASSAGES[0][1]},
    ]
    after = _branches(candidates_schema(ctx, 2, question=QUESTION, path=path))
    assert after["read"]["properties"]["arguments"]["properties"]["title"]["enum"] == ["Robert Jordan"]
    answer = after[ANSWER_TOOL]["properties"]["arguments"]["properties"]["answer"]
    assert answer == {"type": "string", "enum": ["Morgan Llywelyn", "Robert Jordan"]}
    # Off (the default for a provider without a grammar): the free schema, an answer always allowed.
    free = _branches(
        candidates_schema(_context(ScriptedModel([]), grounded=None), 2, question=QUESTION, path=[])
    )
    assert (
        ANSWER_TOOL in free and "enum" not in free["read"]["properties"]["arguments"]["properties"]["title"]
    )


def test_the_python_api_turns_grounding_on_for_any_provider() -> None:
    """``Agent(grounded=True)``: the policies for a small model served over HTTP (no grammar to infer it
    from); the default leaves a scripted (grammar-less) provider untouched."""
    from thrifty import Agent

    tools = make_search_tools(Corpus(PASSAGES), k=1)
    for grounded, choice in ((True, "required"), (None, None)):
        script = ScriptedModel([call("read", title="Morgan Llywelyn"), reply("Morgan Llywelyn")])
        agent = Agent(script.model, tools=tools, budget=Budget(tool_calls=3), grounded=grounded)
        assert agent.settings.grounded is grounded
        agent.run(QUESTION)
        assert script.requests[0].params.get("tool_choice") == choice
    assert Agent(response_format="json_object").settings.response_format == "json_object"


def test_a_server_that_ignores_tool_choice_gets_the_moves_as_json() -> None:
    """An OpenAI-compatible server without a tool-call template answers in prose whatever ``tool_choice``
    says: the grounded move is asked for again as JSON (a schema such servers enforce), becomes the tool
    call, and the rest of the run asks for its moves that way, with the history sent as plain text."""
    script = ScriptedModel(
        [
            reply("Morgan Llywelyn was born in 1920."),  # tools and tool_choice ignored
            reply('{"tool": "read", "arguments": {"title": "Morgan Llywelyn"}}'),
            reply('{"tool": "answer", "answer": "Morgan Llywelyn"}'),
        ]
    )
    state = _run(_context(script, grounded=True))
    assert state["answer"] == "Morgan Llywelyn"
    ignored, move, answer = script.requests
    assert ignored.params["tool_choice"] == "required"
    for request in (move, answer):
        assert not request.params.get("tools") and "response_format" in request.params
        assert all(m["role"] != "tool" and not m.get("tool_calls") for m in request.messages)
    schema = json.dumps(move.params["response_format"])
    assert '"Morgan Llywelyn"' in schema and '"answer"' not in schema  # nothing observed: look first
    assert "Result of read:" in json.dumps(answer.messages)  # the page it read, as plain text
    assert '"answer"' in json.dumps(answer.params["response_format"])


def test_an_unreadable_json_move_is_no_answer() -> None:
    script = ScriptedModel([reply("Sure."), reply("no json here"), reply("still none")])
    state = _run(_context(script, grounded=True))
    assert state["answer"] == "unknown"  # never the prose the server sent instead of a move


def _fn(name: str, arg: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]},
        },
    }


def test_a_page_is_read_only_from_an_address_a_search_listed() -> None:
    schemas = [_fn("web_search", "query"), _fn("read_url", "url")]
    # nothing observed: read_url has no address to take, so only the search is offered
    first = grounding.grounded_tool_schemas(schemas, QUESTION, [])
    assert [s["function"]["name"] for s in first] == ["web_search"]
    listing = (
        "Title: Morgan Llywelyn\nURL: http://127.0.0.1:8080/wiki/Morgan_Llywelyn\nMorgan Llywelyn (born 1937)...\n\n"
        "Title: Robert Jordan\nURL: http://127.0.0.1:8080/wiki/Robert_Jordan\nRobert Jordan (born 1948)..."
    )
    messages = [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "1", "function": {"name": "web_search", "arguments": '{"query": "Morgan Llywelyn"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": listing},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "2",
                    "function": {
                        "name": "read_url",
                        "arguments": '{"url": "http://127.0.0.1:8080/wiki/Morgan_Llywelyn"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "2", "content": "Morgan Llywelyn (born December 3, 1937) ..."},
    ]
    schemas_now = {
        s["function"]["name"]: s for s in grounding.grounded_tool_schemas(schemas, QUESTION, messages)
    }
    url = schemas_now["read_url"]["function"]["parameters"]["properties"]["url"]
    assert url["enum"] == ["http://127.0.0.1:8080/wiki/Robert_Jordan"]  # listed, and not read yet
    # an address is not an answer: no number or name is taken from the URL lines
    spans = grounding.answer_spans("How many novels did Robert Jordan write?", grounding.observed(messages))
    assert "8080" not in spans and "127.0.0.1" not in spans


def _on_provider(monkeypatch, script: ScriptedModel, settings: dict, **provider: bool) -> RunContext:
    """A grounded run's context with ``settings`` changed, on the scripted provider as if it had the
    capabilities in ``provider`` (``grammar``, ``enum_likelihood``)."""
    import dataclasses

    ctx = _context(script, grounded=True)
    ctx.settings = ctx.settings.model_copy(update=settings)
    changed = dataclasses.replace(ctx.gateway.provider(script.model), **provider)
    monkeypatch.setattr(ctx.gateway, "provider", lambda model: changed)
    return ctx


def test_a_grounded_answer_asks_a_scoring_provider_to_choose_by_likelihood(monkeypatch) -> None:
    """On a provider that can score whole options (llama.cpp's), the grounded answer's request asks it to
    (``enum_choice``), with the reply's full token cap to pay for the scoring, unless
    ``answer_choice: grammar``; a provider that cannot (the scripted one) never gets the field."""

    for choice, scoring, sent in (
        ("likelihood", True, True),
        ("grammar", True, False),
        ("likelihood", False, False),
    ):
        script = ScriptedModel(
            [
                call("read", title="Morgan Llywelyn"),
                call("read", title="Robert Jordan"),
                reply('"Robert Jordan"'),
            ]
        )
        ctx = _on_provider(monkeypatch, script, {"answer_choice": choice}, enum_likelihood=scoring)
        state = _run(ctx)
        assert state["answer"] == "Robert Jordan"
        first, *answerable = script.requests
        assert "enum_choice" not in first.params  # nothing observed: a tool call, no answer to score
        for request in answerable:  # every request that may answer with an observed span
            assert "response_format" in request.params
            assert (request.params.get("enum_choice") == "likelihood") is sent, (choice, scoring)


def test_the_final_answer_keeps_the_reply_cap_for_scoring(monkeypatch) -> None:
    """The forced last answer is short (64 tokens) unless its spans are to be scored from its tokens."""

    from thrifty.agents.solver import final_answer_call

    history = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "read", "arguments": '{"title": "Robert Jordan"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Title: Robert Jordan\n" + PASSAGES[1][1]},
    ]
    for scoring, cap in ((True, 256), (False, 64)):
        script = ScriptedModel([reply('"Robert Jordan"')])
        ctx = _on_provider(monkeypatch, script, {"max_tokens": 256}, grammar=True, enum_likelihood=scoring)
        final_answer_call(ctx, [{"role": "user", "content": QUESTION}, *history], QUESTION, "Time to answer.")
        (request,) = script.requests
        assert request.params["max_tokens"] == cap
        assert (request.params.get("enum_choice") == "likelihood") is scoring


def test_a_focused_answer_prompt_holds_the_closest_sentences_and_the_question() -> None:
    assert grounding.focused_messages(QUESTION, []) is None  # nothing observed: nothing to focus on
    history = [
        {"role": "tool", "content": "Title: Misc\nThe sky is blue. Paris is large."},
        {"role": "tool", "content": "Title: Robert Jordan\n" + PASSAGES[1][1]},
    ]
    system, user = grounding.focused_messages(QUESTION, history) or []
    assert system["role"] == "system" and user["role"] == "user"
    context, question = user["content"].split("\n\nQuestion: ")
    assert question == QUESTION
    assert context.startswith("Context: Robert Jordan (October 17, 1948")  # shares the question's words
    assert "Title:" not in context and "The sky is blue." in context


def test_once_no_tool_is_left_the_answer_is_asked_from_the_focused_prompt(monkeypatch) -> None:
    """On a grammar-constrained provider (answer_context: focused, the default); a provider without a
    grammar (a server over HTTP, grounded on request) and ``conversation`` get the whole run."""

    for mode, grammar, focused in (
        ("focused", True, True),
        ("conversation", True, False),
        ("focused", False, False),
    ):
        script = ScriptedModel(
            [
                call("read", title="Morgan Llywelyn"),
                call("read", title="Robert Jordan"),
                call("search", query="born first Morgan Llywelyn Robert Jordan"),
                reply('"Morgan Llywelyn"'),
            ]
        )
        ctx = _on_provider(monkeypatch, script, {"answer_context": mode}, grammar=grammar)
        assert _run(ctx)["answer"] == "Morgan Llywelyn"
        *looking, last = script.requests
        assert not last.params.get("tools")
        if focused:
            assert [m["role"] for m in last.messages] == ["system", "user"]
            assert "December 3, 1937" in last.messages[1]["content"]
        else:
            assert any(m["role"] == "tool" for m in last.messages), (mode, grammar)
        assert all(any(m["role"] == "tool" for m in r.messages) for r in looking[1:])
