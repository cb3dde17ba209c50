"""README transcripts from real runs: ``python benchmarks/transcripts.py [--update-readme] [--check]``.

The README shows what the commands in :data:`EXAMPLES` print (``agent run examples/hotpotqa.yaml`` and
others). Written by hand, such a transcript goes stale the first time a prompt or a policy changes; here it
is produced by running the command, so it can be regenerated and checked:

* ``python benchmarks/transcripts.py`` runs every example in :data:`EXAMPLES` and writes its output to
  ``benchmarks/results/transcripts/<name>.txt``;
* ``--update-readme`` also replaces the README's block between ``<!-- transcript:<name> -->`` and
  ``<!-- /transcript -->`` with it;
* ``--check`` compares instead of writing, and exits 1 when the README's block shows another answer, stop
  reason, tool calls or spend than the run produces.

What is compared (:func:`fields`): each step's action (what it called and saw, or answered), the answer,
the expected answer, the stop reason, and every row of the Spent table except seconds (for webqa: its
answer, stop line, cost line less the seconds, and sources less the local web's port). The run is
deterministic (the task's seed, temperature and a greedy grammar), while times, the run id and the budget
left in seconds are not, so those are left out. ``tests/test_transcripts.py`` runs the same check (marked
``local_model``: it runs the embedded model).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OUT_DIR = ROOT / "benchmarks" / "results" / "transcripts"

#: name -> the command line shown in the README (run from the repository root).
EXAMPLES = {
    "hotpotqa": ["agent", "run", "examples/hotpotqa.yaml"],
    "webqa": ["python", "examples/webqa.py"],
    "hotpotqa_tree": ["agent", "run", "examples/hotpotqa_tree.yaml", "--no-store"],
}
#: Exit codes of a run that ended as designed: 0, or 4 when a limit (budget, max_steps) stopped it.
OK_EXITS = (0, 4)

WIDTH = 80  # the console width the transcript is rendered at (rich wraps the panel and table to it)
_NOISE = ("llama_context:", "llama_kv_cache", "ggml_")  # llama.cpp's own log lines on stderr


def run_example(name: str) -> str:
    """Run an example the way a user does and return what it printed (stderr and stdout interleaved)."""
    command = EXAMPLES[name]
    if command[0] == "python":
        program = sys.executable
    else:
        installed = Path(sys.executable).parent / command[0]
        program = str(installed) if installed.exists() else command[0]
    argv = [program, *command[1:]]
    env = {**os.environ, "COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    lines = [ln.rstrip() for ln in proc.stdout.splitlines() if not ln.startswith(_NOISE)]
    if proc.returncode not in OK_EXITS:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n" + "\n".join(lines[-20:]))
    return "\n".join([f"$ {' '.join(command)}", *lines]) + "\n"


# ------------------------------------------------------------------------------------------ comparing
_STEP = re.compile(r"^\[step (\d+)\] (.*?)(?:\s+\| left:.*)?$")
_PANEL = re.compile(r"^│ (.*?)\s*│$")
_ROW = re.compile(r"^│\s*(.+?)\s*│\s*(\S+)\s*│\s*(\S+)\s*│$")
# examples/webqa.py's plain lines ("answer:   ...", "cost: $0.0030 (tools $0.0030), 3760 tokens, 29.8s")
_LINE = re.compile(r"^(question|answer|stopped|cost):\s+(.*)$")
_SECONDS = re.compile(r",\s*[\d.]+s$")
_RATIO = re.compile(r" \(r=[\d.]+\)")  # the value tree's budget ratio r, which counts seconds too
_LOCAL_URL = re.compile(r"http://127\.0\.0\.1:\d+")  # the local web's port differs from run to run


def fields(transcript: str) -> dict[str, object]:
    """What must not go stale: step actions, answer, expected, stop reason, spend (not seconds, not ids)."""
    steps: list[str] = []
    panel: list[str] = []
    spent: dict[str, str] = {}
    plain: dict[str, str] = {}
    sources: list[str] = []
    in_sources = False
    for line in transcript.splitlines():
        line = line.rstrip()
        if in_sources and line.startswith("  "):
            sources.append(_LOCAL_URL.sub("http://127.0.0.1:PORT", line.strip()))
            continue
        in_sources = line == "sources:"
        line = _RATIO.sub("", line)
        if match := _LINE.match(line):
            plain[match.group(1)] = _SECONDS.sub("", match.group(2).strip())
        elif match := _STEP.match(line):
            steps.append(f"{match.group(1)} {match.group(2).strip()}")
        elif match := _ROW.match(line):
            dimension, used = match.group(1), match.group(2)
            if dimension not in ("dimension",) and not dimension.startswith("seconds"):
                spent[dimension] = used
        elif match := _PANEL.match(line):
            panel.append(match.group(1))
    # The panel's lines, unwrapped into "Label: value" entries.
    entries: dict[str, str] = {}
    label = None
    for text in panel:
        head = re.match(r"^(Answer|Expected|Stopped|Error): (.*)$", text)
        if head:
            label = head.group(1)
            entries[label] = head.group(2).strip()
        elif label:
            entries[label] = f"{entries[label]} {text.strip()}".strip()
    if "cost" in plain:  # webqa's one spend line
        spent["cost"] = plain["cost"]
    return {
        "steps": steps,
        "answer": entries.get("Answer", plain.get("answer")),
        "expected": entries.get("Expected"),
        "stopped": entries.get("Stopped", plain.get("stopped")),
        "spent": spent,
        "sources": sources,
    }


def readme_block(name: str, readme: str) -> str | None:
    """The transcript shown in the README for ``name`` (inside its markers), or None without markers."""
    match = re.search(
        rf"<!-- transcript:{re.escape(name)} -->\n(.*?)<!-- /transcript -->", readme, flags=re.DOTALL
    )
    if not match:
        return None
    body = match.group(1).strip()
    body = re.sub(r"^```\w*\n", "", body)
    return re.sub(r"\n```$", "", body).strip() + "\n"


def as_block(name: str, transcript: str) -> str:
    return f"<!-- transcript:{name} -->\n```text\n{transcript.rstrip()}\n```\n<!-- /transcript -->"


def update_readme(name: str, transcript: str, readme: str) -> str:
    pattern = rf"<!-- transcript:{re.escape(name)} -->\n.*?<!-- /transcript -->"
    if not re.search(pattern, readme, flags=re.DOTALL):
        raise SystemExit(f"README.md has no <!-- transcript:{name} --> ... <!-- /transcript --> block")
    return re.sub(pattern, lambda _: as_block(name, transcript), readme, count=1, flags=re.DOTALL)


_TOKENS = re.compile(r"(\d+)( tokens)")
#: How far a token count may move between runs of the same example: a run with a `seconds` limit shows the
#: model the seconds left, whose digits (and so the prompt's tokens) depend on the machine's load; a
#: different step, answer, tool call or price is never within it.
TOKEN_SLACK = 0.005


def _near(shown: str, produced: str) -> bool:
    """Whether two token counts (a cell, or a spend line with "N tokens") are within :data:`TOKEN_SLACK`."""
    a, b = _TOKENS.sub(r"#\2", shown), _TOKENS.sub(r"#\2", produced)
    found = [[int(m.group(1)) for m in _TOKENS.finditer(text)] for text in (shown, produced)]
    counts = list(zip(*found, strict=False))
    if shown.isdigit() and produced.isdigit():
        a, b, counts = "#", "#", [(int(shown), int(produced))]
    return a == b and all(abs(x - y) <= max(2, TOKEN_SLACK * x) for x, y in counts)


def _same_spend(shown: dict[Any, Any], produced: dict[Any, Any]) -> bool:
    if shown.keys() != produced.keys():
        return False
    for key, value in shown.items():
        tokens = "tokens" in key or key == "cost"
        if value != produced[key] and not (tokens and _near(str(value), str(produced[key]))):
            return False
    return True


def differences(shown: str, produced: str) -> list[str]:
    """Human-readable differences between the shown and the produced transcript's fields (token counts may
    differ by :data:`TOKEN_SLACK`: the seconds left, which the model sees, move them with the load)."""
    a, b = fields(shown), fields(produced)
    out: list[str] = []
    for key in a:
        x, y = a[key], b[key]
        same = _same_spend(x, y) if isinstance(x, dict) and isinstance(y, dict) else x == y
        if not same:
            out.append(f"{key}: README shows {a[key]!r}, the run gives {b[key]!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", default=sorted(EXAMPLES), help="examples to run")
    parser.add_argument("--update-readme", action="store_true", help="rewrite the README's blocks")
    parser.add_argument("--check", action="store_true", help="compare with the README, write nothing")
    args = parser.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    failed = False
    for name in args.names:
        transcript = run_example(name)
        if args.check:
            shown = readme_block(name, readme)
            problems = (
                ["no transcript block in README.md"] if shown is None else differences(shown, transcript)
            )
            for problem in problems:
                print(f"{name}: {problem}", file=sys.stderr)
            failed = failed or bool(problems)
            continue
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / f"{name}.txt").write_text(transcript, encoding="utf-8")
        print(f"wrote {OUT_DIR / f'{name}.txt'}")
        if args.update_readme:
            readme = update_readme(name, transcript, readme)
    if args.update_readme and not args.check:
        README.write_text(readme, encoding="utf-8")
        print(f"updated {README}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
