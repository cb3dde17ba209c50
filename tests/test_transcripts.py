"""The README's example output must be what the example produces (benchmarks/transcripts.py).

``test_readme_matches_the_run`` runs ``agent run examples/hotpotqa.yaml`` and ``python examples/webqa.py``
with the embedded model (marked ``local_model``) and fails when the README's block shows another answer, stop reason, step actions or spend;
regenerate it with ``python benchmarks/transcripts.py --update-readme``. The other tests need no model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
transcripts = load_script("benchmarks/transcripts.py", "transcripts")

SAMPLE = """$ agent run examples/hotpotqa.yaml
Question: Who was born first, Morgan Llywelyn or Robert Jordan?
[step 1] calls read({"title": "Morgan Llywelyn"})  | left: tool calls 6, seconds 279.7s | HIGH
[step 2] proposes: Morgan Llywelyn  | left: tool calls 5, seconds 200.1s | MEDIUM
╭────────────────────────────── run 7267d99cfb02 ──────────────────────────────╮
│ Answer: Morgan Llywelyn (born December 3, 1937) is born as Robert Jordan     │
│ (born December 2, 1985)                                                      │
│ Expected: Morgan Llywelyn                                                    │
│ Stopped: completed                                                           │
╰──────────────────────────────────────────────────────────────────────────────╯
                   Spent
┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━┓
┃ dimension            ┃    used ┃   limit ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━┩
│ tokens               │    3158 │   12000 │
│ tool calls           │       1 │       6 │
│ USD (tokens + tools) │ $0.0010 │ $0.0500 │
│ seconds              │    81.2 │  300.0s │
└──────────────────────┴─────────┴─────────┘
"""


def test_fields_keep_what_matters_and_drop_what_varies() -> None:
    got = transcripts.fields(SAMPLE)
    assert got["steps"] == ['1 calls read({"title": "Morgan Llywelyn"})', "2 proposes: Morgan Llywelyn"]
    assert (
        got["answer"]
        == "Morgan Llywelyn (born December 3, 1937) is born as Robert Jordan (born December 2, 1985)"
    )
    assert got["expected"] == "Morgan Llywelyn"
    assert got["stopped"] == "completed"
    assert got["spent"] == {"tokens": "3158", "tool calls": "1", "USD (tokens + tools)": "$0.0010"}
    # Times and the run id may differ between runs; the answer or the spend may not.
    later = SAMPLE.replace("81.2", "12.0").replace("279.7s", "20.0s").replace("7267d99cfb02", "0123456789ab")
    assert transcripts.differences(SAMPLE, later) == []
    assert transcripts.differences(SAMPLE, SAMPLE.replace("$0.0010", "$0.0020"))
    assert transcripts.differences(SAMPLE, SAMPLE.replace("Stopped: completed ", "Stopped: max_steps "))


def test_readme_block_round_trip() -> None:
    readme = "intro\n<!-- transcript:hotpotqa -->\nold\n<!-- /transcript -->\nrest\n"
    updated = transcripts.update_readme("hotpotqa", SAMPLE, readme)
    assert updated.startswith("intro\n") and updated.endswith("rest\n")
    assert transcripts.readme_block("hotpotqa", updated) == SAMPLE


WEBQA = """$ python examples/webqa.py
local web: http://127.0.0.1:38537 (bundled HotpotQA paragraphs, one page each)
question: Who was born first, Morgan Llywelyn or Robert Jordan?
answer:   Morgan Llywelyn
stopped:  completed after 3 tool calls {'web_search': 3}
cost:     $0.0030 (tools $0.0030), 3760 tokens, 29.8s
sources:
  http://127.0.0.1:38537/wiki/Morgan%20Llywelyn
  http://127.0.0.1:38537/wiki/Lion%20of%20Ireland
"""


def test_webqa_fields_drop_the_port_and_seconds_but_not_the_spend() -> None:
    got = transcripts.fields(WEBQA)
    assert got["answer"] == "Morgan Llywelyn"
    assert got["stopped"] == "completed after 3 tool calls {'web_search': 3}"
    assert got["spent"] == {"cost": "$0.0030 (tools $0.0030), 3760 tokens"}
    assert got["sources"] == [
        "http://127.0.0.1:PORT/wiki/Morgan%20Llywelyn",
        "http://127.0.0.1:PORT/wiki/Lion%20of%20Ireland",
    ]
    later = WEBQA.replace("38537", "40001").replace("29.8s", "55.0s")
    assert transcripts.differences(WEBQA, later) == []
    assert transcripts.differences(WEBQA, WEBQA.replace("3760 tokens", "5173 tokens"))
    assert transcripts.differences(WEBQA, WEBQA.replace("Lion%20of%20Ireland", "Robert%20Jordan"))


def test_token_counts_may_move_a_little_with_the_seconds_the_model_sees() -> None:
    """A run with a `seconds` limit shows the model the seconds left, so its prompts' tokens move with the
    machine's load (a full suite on 2 cores gave webqa 3762 tokens, the README 3760); little else may."""
    assert transcripts.differences(WEBQA, WEBQA.replace("3760 tokens", "3762 tokens")) == []
    assert transcripts.differences(WEBQA, WEBQA.replace("3760 tokens", "3800 tokens"))
    assert transcripts.differences(WEBQA, WEBQA.replace("$0.0030 (tools", "$0.0031 (tools"))
    assert transcripts.differences(SAMPLE, SAMPLE.replace("3158", "3160")) == []
    assert transcripts.differences(SAMPLE, SAMPLE.replace("3158", "3300"))


def _shown(name: str) -> str:
    shown = transcripts.readme_block(name, (ROOT / "README.md").read_text(encoding="utf-8"))
    assert shown is not None, (
        f"README.md has no <!-- transcript:{name} --> block: add the markers and run "
        "python benchmarks/transcripts.py --update-readme"
    )
    return shown


@pytest.mark.parametrize("name", sorted(transcripts.EXAMPLES))
def test_readme_shows_the_recorded_transcript(name: str) -> None:
    """The README's block and benchmarks/results/transcripts/<name>.txt come from the same run."""
    recorded = (transcripts.OUT_DIR / f"{name}.txt").read_text(encoding="utf-8")
    assert transcripts.differences(_shown(name), recorded) == []


@pytest.mark.local_model
@pytest.mark.parametrize("name", sorted(transcripts.EXAMPLES))
def test_readme_matches_the_run(name: str) -> None:
    pytest.importorskip("llama_cpp")
    shown = _shown(name)
    produced = transcripts.run_example(name)
    assert transcripts.differences(shown, produced) == [], (
        "the README's transcript is stale: run python benchmarks/transcripts.py --update-readme"
    )


def test_the_readme_commands_and_ci_build_the_same_llama_cpp() -> None:
    """The transcript holds on any x86-64 machine with AVX2 only when llama.cpp is built for that, not for
    the machine's own CPU (a native AVX-512 build gives the embedded model other greedy replies): the
    README's two commands, CONTRIBUTING's and CI's install all say so."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 2 and "agent run examples/hotpotqa.yaml" in commands[0]
    assert "pytest -q" in commands[1]
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if "pip install" in line
    ]
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    contributing_cmds = [
        line for line in contributing.splitlines() if "pip install" in line and "[local" in line
    ]
    for line in [*commands, *[c for c in ci if "[local" in c], *contributing_cmds]:
        assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install' in line, line
