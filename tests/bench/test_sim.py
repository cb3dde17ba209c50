"""The simulated model: roles recognised from the request, skill parameters obeyed over many draws."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from thrifty.agents.structured import StructuredRole
from thrifty.bench import sim
from thrifty.bench.datasets import load_dataset
from thrifty.bench.sim import SimModelError, SimParams, SimProvider

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read",
            "parameters": {"type": "object", "properties": {"title": {"type": "string"}}},
        },
    },
]
DRAWS = 400


@pytest.fixture()
def items(hotpot_file: Path) -> Iterator[dict[str, Any]]:
    ds = load_dataset(hotpot_file)
    sim.clear_items()
    sim.register_items(ds.items, ds.corpus())
    yield {i.id: i for i in ds.items}
    sim.clear_items()


def ask(question: str, *, observations: Sequence[str] = ()) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You answer questions."},
        {"role": "user", "content": f"Question: {question}"},
    ]
    for i, obs in enumerate(observations):
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{i}",
                        "type": "function",
                        "function": {"name": "search", "arguments": json.dumps({"query": f"q{i}"})},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "name": "search", "content": obs})
    return messages


def respond(model: str, messages: list[dict[str, Any]], **params: Any) -> Any:
    out, _usage = SimProvider().respond(model, messages, params)
    return out


def structured(
    model: str, messages: list[dict[str, Any]], name: str, schema: dict[str, Any] | None = None
) -> Any:
    rf = {"type": "json_schema", "json_schema": {"name": name, "schema": schema or {"type": "object"}}}
    out = respond(model, messages, response_format=rf)
    assert not out.calls
    return json.loads(out.content)


def within_3_se(hits: int, n: int, p: float) -> bool:
    se = math.sqrt(p * (1 - p) / n)
    return abs(hits / n - p) <= 3 * se


Q1 = "Which city hosts the museum founded by the painter of Blue Dawn?"
BLUE = "Title: Blue Dawn\nBlue Dawn is a 1921 painting by Mara Quell. It hangs in a private house."
MARA = "Title: Mara Quell\nMara Quell was a painter. She founded the Quell Museum in Lyonsford."
RED = "Title: Red Dusk\nRed Dusk is a painting by Tom Arde."


# ----------------------------------------------------------------------------------------- parameters
def test_params_parse_strictly() -> None:
    assert SimParams.parse("sim/default") == SimParams() == SimParams.parse("sim/")
    params = SimParams.parse("sim/p=0.5,q=1,noise=0.3,bias=0.2,seed=7")
    assert (params.p, params.q, params.noise, params.bias, params.seed) == (0.5, 1.0, 0.3, 0.2, 7)
    assert params.model == "sim/p=0.5,q=1,noise=0.3,bias=0.2,seed=7"
    for bad, message in [
        ("sim/x=1", "unknown parameter 'x'"),
        ("sim/p=2", "p must be in"),
        ("sim/p=abc", "is not a number"),
        ("sim/seed=1.5", "is not an integer"),
        ("sim/p", "not key=value"),
        ("sim/p=0.1,p=0.2", "given twice"),
        ("sim/noise=-1", "noise must be >= 0"),
    ]:
        with pytest.raises(SimModelError, match=message):
            SimParams.parse(bad)


# ---------------------------------------------------------------------------------------------- actor
def test_actor_obeys_p(items: dict[str, Any]) -> None:
    gold_hits = 0
    for seed in range(DRAWS):
        out = respond(f"sim/p=0.7,seed={seed}", ask(Q1), tools=TOOLS)
        ((name, args),) = out.calls
        assert name == "search"
        if args["query"] == "Blue Dawn":
            gold_hits += 1
        else:
            assert args["query"] in ("Red Dusk", "Harbour Gallery")  # a distractor from the item's context
    assert within_3_se(gold_hits, DRAWS, 0.7), gold_hits


def test_actor_second_hop_only_after_the_first(items: dict[str, Any]) -> None:
    before = {respond(f"sim/p=1,seed={s}", ask(Q1), tools=TOOLS).calls[0][1].get("query") for s in range(30)}
    assert before == {"Blue Dawn"}
    after = respond("sim/p=1", ask(Q1, observations=[BLUE]), tools=TOOLS)
    assert after.calls == [("search", {"query": "Mara Quell"})]


def test_actor_reads_a_title_seen_in_a_search_result(items: dict[str, Any]) -> None:
    snippet = "Title: Blue Dawn\nA painting (snippet without the supporting sentence) ..."
    out = respond("sim/p=1", ask(Q1, observations=[snippet]), tools=TOOLS)
    assert out.calls == [("read", {"title": "Blue Dawn"})]


def test_actor_answers_once_both_gold_paragraphs_are_observed(items: dict[str, Any]) -> None:
    out = respond("sim/q=1", ask(Q1, observations=[BLUE, MARA]), tools=TOOLS)
    assert out.calls == [] and out.content == "Lyonsford"


def test_comparison_questions_know_both_titles(items: dict[str, Any]) -> None:
    question = items["q3"].question
    obs = "Title: Pillan Spire\nPillan Spire is a spire in Sudmark."
    out = respond("sim/p=1", ask(question, observations=[obs]), tools=TOOLS)
    assert out.calls == [("search", {"query": "Grelt Tower"})]


# ------------------------------------------------------------------------------------------- answerer
def test_answerer_obeys_q_only_with_both_paragraphs(items: dict[str, Any]) -> None:
    right = sum(
        respond(f"sim/q=0.8,seed={s}", ask(Q1, observations=[BLUE, MARA])).content == "Lyonsford"
        for s in range(DRAWS)
    )
    assert within_3_se(right, DRAWS, 0.8), right
    guesses = {respond(f"sim/q=1,seed={s}", ask(Q1, observations=[BLUE, RED])).content for s in range(50)}
    assert "Lyonsford" not in guesses and guesses <= {"Blue Dawn", "Red Dusk"}
    assert respond("sim/q=1", ask(Q1)).content == "unknown"


def test_yes_no_guesses(items: dict[str, Any]) -> None:
    question = items["q3"].question
    guesses = {respond(f"sim/seed={s}", ask(question)).content for s in range(40)}
    assert guesses == {"yes", "no"}


# ---------------------------------------------------------------------------------- structured roles
def test_critic_reports_progress_of_the_last_step(items: dict[str, Any]) -> None:
    new = structured("sim/noise=0,bias=0", ask(Q1, observations=[RED, BLUE]), "critic")
    assert new["progress"] == 1.0 and isinstance(new["reason"], str)
    repeat = structured("sim/noise=0,bias=0", ask(Q1, observations=[BLUE, BLUE]), "critic")
    assert repeat["progress"] == 0.0
    biased = structured("sim/noise=0,bias=0.25", ask(Q1, observations=[RED]), "critic")
    assert biased["progress"] == 0.25
    noisy = [
        structured(f"sim/noise=0.1,bias=0,seed={s}", ask(Q1, observations=[RED]), "critic")["progress"]
        for s in range(200)
    ]
    assert (
        min(noisy) >= 0.0 and max(noisy) <= 1.0 and 0.02 < sum(noisy) / len(noisy) < 0.08
    )  # half clipped to 0


def test_critic_reads_a_trajectory_pasted_in_one_prompt(items: dict[str, Any]) -> None:
    prompt = f"Question: {Q1}\nObservation: {RED}\nObservation: {MARA}\nRate the last step."
    result = structured("sim/noise=0,bias=0", [{"role": "user", "content": prompt}], "critic")
    assert result["progress"] == 1.0


def test_verdict(items: dict[str, Any]) -> None:
    def verdict(answer: str, observations: list[str], bias: float = 0.0) -> dict[str, Any]:
        msgs = ask(Q1, observations=observations)
        msgs.append({"role": "user", "content": f"Proposed answer: {answer}\nVerify it."})
        return structured(f"sim/bias={bias}", msgs, "verdict")

    ok = verdict("Lyonsford", [BLUE, MARA])
    assert ok["decision"] == "SUCCESS" and set(ok) == {
        "verification",
        "decision",
        "justification",
        "trajectory_summary",
    }
    assert verdict("Portwell", [BLUE])["decision"] == "CONTINUE"
    assert verdict("Portwell", [RED])["decision"] == "PIVOT"
    assert "She founded the Quell Museum" in ok["trajectory_summary"]
    over = sum(
        structured(
            f"sim/bias=0.3,seed={s}",
            [*ask(Q1, observations=[RED]), {"role": "user", "content": "Answer: Portwell"}],
            "verdict",
        )["decision"]
        == "SUCCESS"
        for s in range(DRAWS)
    )
    assert within_3_se(over, DRAWS, 0.3), over


def test_plan_judge_candidates_and_unknown_schemas(items: dict[str, Any]) -> None:
    plan = structured("sim/default", ask(Q1), "plan")
    assert 1 <= len(plan["exploration"]) <= 2 and plan["verification"]

    listing = f"Question: {Q1}\nCandidates:\n0. Portwell\n1. Lyonsford\n2. unknown\nPick the best."
    assert structured("sim/q=1", [{"role": "user", "content": listing}], "judge")["index"] == 1
    assert structured("sim/q=0", [{"role": "user", "content": listing}], "judge")["index"] == 0

    schema = {"type": "object", "properties": {"actions": {"type": "array", "maxItems": 3}}}
    cands = structured("sim/p=0.5", [*ask(Q1, observations=[BLUE])], "candidates", schema)["actions"]
    assert len(cands) == 3
    assert len({json.dumps(c, sort_keys=True) for c in cands}) == 3
    assert all(c["tool"] in ("search", "read") and c["arguments"] for c in cands)

    odd = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 2}, "tag": {"enum": ["a", "b"]}},
        "required": ["n", "tag"],
    }
    assert structured("sim/default", ask(Q1), "mystery", odd) == {"n": 2, "tag": "a"}


def test_every_structured_role_is_played(items: dict[str, Any]) -> None:
    """The nodes and the simulator share one enum of roles: each gets its own reply, not a minimal object."""
    keys = {
        StructuredRole.PLAN: {"exploration", "verification"},
        StructuredRole.VERDICT: {"verification", "decision", "justification", "trajectory_summary"},
        StructuredRole.JUDGE: {"index", "reason"},
        StructuredRole.CANDIDATES: {"actions"},
        StructuredRole.CRITIC: {"progress", "reason"},
        StructuredRole.FINAL_ANSWER: {"answer"},
    }
    assert set(keys) == set(StructuredRole)
    for role, expected in keys.items():
        assert expected <= set(structured("sim/default", ask(Q1, observations=[BLUE]), role)), role


def test_usage_and_unknown_questions(items: dict[str, Any]) -> None:
    messages = ask(Q1)
    out, (prompt, completion) = SimProvider().respond("sim/default", messages, {"tools": TOOLS})
    text = "".join(m["content"] or "" for m in messages) + "".join(
        c["function"]["name"] + json.dumps(json.loads(c["function"]["arguments"]))
        for m in messages
        for c in m.get("tool_calls", [])
    )
    assert prompt == len(text) // 4
    name, args = out.calls[0]
    assert completion == len(name + json.dumps(args)) // 4 + 1
    with pytest.raises(SimModelError, match="no registered question"):
        SimProvider().respond("sim/default", [{"role": "user", "content": "What is 2 + 2?"}], {})


def test_deterministic_per_scope_and_fresh_for_repeats(items: dict[str, Any]) -> None:
    def draws(scope: str) -> list[str]:
        with sim.run_scope(scope):
            return [json.dumps(respond("sim/p=0.5", ask(Q1), tools=TOOLS).calls) for _ in range(12)]

    first, second = draws("a"), draws("b")
    assert first == second  # the k-th repeat draws the same in every run
    assert len(set(first)) > 1  # repeats of one request are fresh draws (self-consistency samples)
