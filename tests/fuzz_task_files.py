"""A seeded fuzzer of task files for ``agent validate`` (issue 14: bad input never crashes, never hangs,
never runs code it should not).

It writes task files made to break the loader: mutations of every field (hostile values, wrong types,
missing and unknown keys, duplicate keys, raw YAML such as tags, anchors and aliases), byte-level damage
(truncation, flipped and inserted bytes, tabs, CRLF), encodings (UTF-8 with a BOM, UTF-16/32 with and
without one, Latin-1, invalid UTF-8), deep nesting, alias bombs, special files (a FIFO, ``/dev/zero``, a
directory, a symlink to a FIFO, a file over the size cap), many unknown keys, question templates, and
``module:function`` references to modules that exit, raise, loop or write a file at import.

Each file is validated in process (``typer.testing.CliRunner``) with a per-file timeout, and checked:
exit code 0 or 2, no traceback, no task module imported or run, and every error line saying the file,
the line (wherever the problem is inside the file), the field and a "(fix: ...)". A file that validates
is then set up for a run (tools, corpus, strategy) and a sample is run with a scripted model.

``python -m tests.fuzz_task_files [N] [SEED]`` prints the counts (the README's figure);
``tests/test_task_file_fuzz.py`` runs it in CI.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from typer.testing import CliRunner

DEFAULT_CASES = 1100
DEFAULT_SEED = 14
CASE_TIMEOUT = 10.0  # seconds one validate may take before it counts as a hang
RUN_TIMEOUT = 120.0  # a run (the first one imports LiteLLM)
RUN_SAMPLE = int(
    os.environ.get("THRIFTY_FUZZ_RUNS", "12")
)  # accepted files also run with a scripted model (the rest are only set up)


class Raw(str):
    """A YAML snippet inserted as is (a tag, an anchor, an alias, nesting), not dumped as a string."""


# ------------------------------------------------------------------------------------------- values
# fmt: off
HOSTILE_SCALARS: list[Any] = [
    None, "", " ", "hi", 0, -1, 1, 3, 7.5, -0.0, 2**63, 10**30, 1e308, float("nan"), float("inf"),
    float("-inf"), True, False, "yes", "null", "~", "0x1F", "1e3", "2024-01-01", "12:30:00",
    "a" * 3000, "\u202e\u200b", "日本語のテキスト", "emoji 🤖", "tab\there", "line\nbreak", "nul\x00byte",
    "bell\x07", "{a.b}", "{", "}", "{}", "{{x}}", "{0}", "{a!r}", "{a:>99999999}", "{a}", "{a[0]}",
    "../evil:x", "os:system", "os.path:join", "a:b:c", ":", "x:", ":y", "sys:exit", "/dev/zero",
    "/dev/null", "../../etc/passwd", "builtin:nope", "builtin:hotpotqa", "C:\\x\\y", "x" * 300 + ".jsonl",
    "~/nowhere.jsonl", "local/", "/x", "openai/gpt 4", "  openai/x", "openai//x", "sim/default",
    "local/smollm2", "openai/gpt-4o-mini", "scripted/none", "search", "read", "calculator",
    "react", "bats", "value_tree", "self_consistency", "-", "'", '"', "\\", "%s%n", "${HOME}", "$(rm -rf /)",
]

RAW_SNIPPETS = [
    "!!binary aGk=", "!!python/object/apply:os.system ['echo pwned']", "!!python/name:os.system",
    "!!int 1" + "0" * 5000, "1" + "0" * 5000, "!!timestamp 2024-13-45", "!!float nope", "!!bool maybe",
    "!!set {a, b}", "!!omap [a: 1]", "&a [*a]", "*undefined", "&x 3", "[" * 80 + "]" * 80,
    "{a: " * 80 + "1" + "}" * 80, "[1, 2", "{a: 1, a: 2}", "'unterminated", '"bad \\q escape"',
    "|\n  block\n  text", ">-\n  folded", "? complex\n  : key", "!custom tag", "&anchor {k: v}", "@reserved",
    "`backtick", "%TAG ! tag:x", ".nan", ".inf", "-.inf", "0o17", "0b101", "+12", "1_000", "1:20",
    "[" * 1000 + "]" * 1000, "{a: " * 1000 + "}" * 1000, '"\\ud800"', '"\\x1b[2J"', '"a\\u2028b"',
]

MODEL_NAMES = [
    "local/smollm2", "openai/gpt-4o-mini", "openrouter/anthropic/claude-3.5-sonnet", "local//m/My Model.gguf",
    "openai/", "/gpt-4o", "gpt-4o", "openai/gpt 4o", " openai/x", "openai/x ", "open ai/x", "openai//x",
    "openai/x/", "a\tb/c", "openai/x\u200b", "", "/", "//", "hf/./m", "sim/default", "ollama/llama3:8b",
]
# fmt: on


def hostile(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.55:
        return rng.choice(HOSTILE_SCALARS)
    if pick < 0.75:
        return Raw(rng.choice(RAW_SNIPPETS))
    if pick < 0.85:
        return [hostile(rng) for _ in range(rng.randint(0, 4))]
    if pick < 0.95:
        return {
            rng.choice(["a", "k", "name", "question", "1", "<<"]): hostile(rng)
            for _ in range(rng.randint(0, 3))
        }
    depth = rng.choice([10, 63, 65, 200, 2000])
    return Raw("[" * depth + "]" * depth)


# ----------------------------------------------------------------------------------------- documents
STRATEGY_OPTIONS = {
    "react": {},
    "bats": {"max_attempts": 2},
    "value_tree": {"k": 2},
    "self_consistency": {},
}


def base_document(rng: random.Random, folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": f"case-{rng.randint(0, 999)}",
        "question": "What is the capital of France?",
    }
    if rng.random() < 0.3:
        doc["question"] = "Who was born first, {a} or {b}?"
        doc["inputs"] = {"a": "Ada", "b": "Alan"}
    doc["model"] = rng.choice(["local/smollm2", "openai/gpt-4o-mini", "local/smollm2"])
    tools: list[Any] = []
    if rng.random() < 0.7:
        tools = rng.sample(["search", "read", "calculator"], rng.randint(1, 3))
        if rng.random() < 0.3:
            tools = [{"name": t, "k": 2} if t == "search" else t for t in tools]
        doc["tools"] = tools
    if (
        any((t if isinstance(t, str) else t["name"]) in ("search", "read") for t in tools)
        or rng.random() < 0.2
    ):
        if rng.random() < 0.5:
            doc["corpus"] = "builtin:hotpotqa"
        else:
            corpus = folder / "passages.jsonl"
            corpus.write_text(
                json.dumps({"title": "Paris", "text": "Paris is the capital of France."}) + "\n"
            )
            doc["corpus"] = "passages.jsonl"
    if rng.random() < 0.7:
        doc["budget"] = {
            k: v
            for k, v in {
                "tool_calls": 5,
                "total_tokens": 20000,
                "usd": 0.05,
                "seconds": 60,
                "model_requests": 10,
            }.items()
            if rng.random() < 0.5
        }
    if rng.random() < 0.3:
        doc["pricing"] = {"tools": {"search": 0.001}}
    if rng.random() < 0.6:
        name = rng.choice(list(STRATEGY_OPTIONS))
        doc["strategy"] = {
            "name": name,
            "max_steps": rng.randint(1, 12),
            "options": dict(STRATEGY_OPTIONS[name]),
        }
        if rng.random() < 0.3:
            doc["strategy"] = name
    if rng.random() < 0.4:
        doc["model_settings"] = {"temperature": 0.2, "max_tokens": 64, "seed": 7, "retries": 1}
    if rng.random() < 0.3:
        doc["system_prompt"] = "Answer briefly."
    if rng.random() < 0.5:
        doc["output"] = {"store": None, "trace": True}
    if rng.random() < 0.3:
        doc["expected_answer"] = "Paris"
    return doc


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a document (mapping keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


def set_path(doc: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> None:
    target = doc
    for part in path[:-1]:
        target = target[part]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value


TYPOS = [
    "questoin",
    "budgett",
    "tool",
    "strategy_name",
    "modle",
    "base_dir",
    "inputs ",
    "Question",
    "1",
    "true",
    "<<",
]


def mutate(doc: dict[str, Any], rng: random.Random) -> None:
    for _ in range(rng.randint(1, 3)):
        paths = paths_of(doc)
        op = rng.random()
        if op < 0.55 and paths:
            set_path(doc, rng.choice(paths), hostile(rng))
        elif op < 0.65 and paths:
            path = rng.choice(paths)
            with contextlib.suppress(KeyError, IndexError, TypeError):
                set_path(doc, path, None, delete=True)
        elif op < 0.8:
            parents = [p for p in paths if isinstance(_get(doc, p), dict)]
            parent = rng.choice(parents) if parents and rng.random() < 0.5 else ()
            target = _get(doc, parent) if parent else doc
            target[rng.choice(TYPOS)] = hostile(rng)
        elif op < 0.9:
            field_name = rng.choice(["question", "model", "tools", "corpus", "strategy", "budget", "inputs"])
            doc[field_name] = hostile(rng)
        else:
            doc["model"] = rng.choice(MODEL_NAMES)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def to_yaml(value: Any, rng: random.Random, indent: int = 0) -> str:
    """A document as YAML text; Raw snippets go in verbatim, the rest block or flow style at random."""
    pad = "  " * indent
    if isinstance(value, dict) and value and (indent == 0 or rng.random() < 0.6):
        lines = []
        for k, v in value.items():
            key = _scalar(k)
            body = to_yaml(v, rng, indent + 1)
            lines.append(f"{pad}{key}:" + (body if body.startswith("\n") else " " + body))
        return ("\n" if indent else "") + "\n".join(lines)
    if isinstance(value, list) and value and rng.random() < 0.5:
        lines = []
        for v in value:
            body = to_yaml(v, rng, indent + 1)
            lines.append(f"{pad}-" + (body if body.startswith("\n") else " " + body))
        return "\n" + "\n".join(lines)
    return _flow(value)


def _flow(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def damage(data: bytes, rng: random.Random) -> bytes:
    """Byte-level damage: truncate, flip, insert, tabs, CRLF, or re-encode."""
    op = rng.random()
    if op < 0.15 and data:
        return data[: rng.randrange(len(data))]
    if op < 0.3 and data:
        at = rng.randrange(len(data))
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
    if op < 0.45:
        at = rng.randrange(len(data) + 1)
        junk = rng.choice(
            [
                b"\x00",
                b"\xff\xfe",
                b"\xc3",
                b"\xed\xa0\x80",
                b"\x1b[31m",
                b"\t",
                b"\r",
                b":",
                b"\n  - ",
                b"\xef\xbb\xbf",
            ]
        )
        return data[:at] + junk + data[at:]
    if op < 0.55:
        return data.replace(b"  ", b"\t", rng.randint(1, 3))
    if op < 0.65:
        return data.replace(b"\n", b"\r\n")
    text = data.decode("utf-8", "replace")
    encoding = rng.choice(["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252"])
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "replace")


# -------------------------------------------------------------------------------- special cases
MODULE_BEHAVIOURS = {
    "exits": "import sys\nsys.exit(3)\n",
    "raises": "raise RuntimeError('boom at import')\n",
    "loops": "while True:\n    pass\n",
    "writes": "open(__file__ + '.ran', 'w').write('ran')\n",
    "recurses": "def r():\n    return r()\nr()\n",
    "keyboard": "raise KeyboardInterrupt\n",
    "syntax": "def broken(:\n",
    "clean": "",
}
MODULE_BODY = (
    "from thrifty import tool\n\n@tool\ndef lookup(query: str) -> str:\n    return query\n\n"
    "def plain(x):\n    return x\n\ndef build(options):\n    raise RuntimeError('never built')\n"
)


@dataclass
class Case:
    kind: str
    path: Path
    modules: list[str] = field(default_factory=list)  # names that validate must not import


def module_case(index: int, folder: Path, rng: random.Random) -> Case:
    behaviour = rng.choice(list(MODULE_BEHAVIOURS))
    name = f"fuzzmod_{behaviour}_{index}"
    if rng.random() < 0.3:  # a package whose __init__ misbehaves, and a submodule
        pkg = folder / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(MODULE_BEHAVIOURS[behaviour])
        (pkg / "tools.py").write_text(MODULE_BEHAVIOURS[rng.choice(list(MODULE_BEHAVIOURS))] + MODULE_BODY)
        module = f"{name}.tools"
    else:
        (folder / f"{name}.py").write_text(MODULE_BEHAVIOURS[behaviour] + MODULE_BODY)
        module = name
    attr = rng.choice(["lookup", "plain", "build", "missing", "sys"])
    ref = rng.choice(
        [f"{module}:{attr}", f"{module}.sub:{attr}", f"../{module}:{attr}", f"{module}:{attr}.x"]
    )
    where = rng.choice(["tools", "strategy", "both"])
    lines = ["question: hi", "model: local/smollm2"]
    if where in ("tools", "both"):
        lines.append(f"tools: [{json.dumps(ref)}, calculator]")
    if where in ("strategy", "both"):
        lines.append(f"strategy: {json.dumps(f'{module}:build')}")
    path = folder / "task.yaml"
    path.write_text("\n".join(lines) + "\n")
    return Case("module", path, [name, module])


def special_case(index: int, folder: Path, rng: random.Random) -> Case:
    # (A NUL byte in the task file's path cannot come from a command line: argv cannot hold one.)
    kind = rng.choice(
        [
            "fifo",
            "dev-zero",
            "dev-null",
            "directory",
            "symlink-fifo",
            "missing",
            "huge",
            "empty",
            "long-path",
            "fifo-corpus",
            "dir-corpus",
            "dev-corpus",
        ]
    )
    path = folder / "task.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "dev-null":
        path = Path("/dev/null")
    elif kind == "directory":
        path = folder
    elif kind == "symlink-fifo":
        os.mkfifo(folder / "pipe")
        path.symlink_to(folder / "pipe")
    elif kind == "missing":
        path = folder / "nope.yaml"
    elif kind == "huge":
        path.write_bytes(b"question: hi\nname: " + b"x" * (2 * 1024 * 1024 + rng.randint(1, 1000)) + b"\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "long-path":
        path = folder / ("d" * 300) / "task.yaml"
    else:
        corpus = folder / "c.jsonl"
        if kind == "fifo-corpus":
            os.mkfifo(corpus)
        elif kind == "dir-corpus":
            corpus.mkdir()
        else:
            corpus = Path("/dev/zero")
        path.write_text(f"question: hi\ntools: [search]\ncorpus: {corpus}\n")
    return Case(kind, path)


def nesting_case(index: int, folder: Path, rng: random.Random) -> Case:
    depth = rng.choice([30, 63, 64, 65, 100, 1000, 5000])
    style = rng.choice(["brackets", "braces", "block", "mixed", "options"])
    if style == "brackets":
        body = "question: " + "[" * depth + "]" * depth
    elif style == "braces":
        body = "question: " + "{a: " * depth + "1" + "}" * depth
    elif style == "block":
        body = "question: hi\nbudget:\n" + "".join(
            "  " * (i + 1) + f"k{i}:\n" for i in range(min(depth, 400))
        )
    elif style == "mixed":
        body = "question: " + "".join(rng.choice(["[", "{a: "]) for _ in range(depth))
    else:
        body = "question: hi\nstrategy:\n  options:\n    x: " + "[" * depth + "]" * depth
    path = folder / "task.yaml"
    path.write_text(body + "\n")
    return Case(f"nesting-{style}", path)


def alias_case(index: int, folder: Path, rng: random.Random) -> Case:
    fan, levels = rng.choice([(2, 5), (9, 9), (10, 6), (3, 20), (50, 4)])
    lines = ['l0: &l0 ["lol"' + ', "lol"' * (fan - 1) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    where = rng.choice(["options", "top", "inputs", "merge", "loop", "undefined"])
    if where == "options":
        body = "question: hi\nstrategy:\n  options:\n" + "".join(f"    {x}\n" for x in lines)
    elif where == "top":
        body = "question: hi\n" + "".join(f"{x}\n" for x in lines)
    elif where == "inputs":
        body = "question: '{a}'\ninputs:\n" + "".join(f"  {x}\n" for x in lines)
    elif where == "merge":
        body = "base: &base {question: hi, model: local/smollm2}\n<<: *base\nname: merged\n"
    elif where == "loop":
        body = "question: hi\nstrategy:\n  options: &o {a: *o}\n"
    else:
        body = "question: *nothere\n"
    path = folder / "task.yaml"
    path.write_text(body)
    return Case(f"alias-{where}", path)


def many_keys_case(index: int, folder: Path, rng: random.Random) -> Case:
    # 10,000 and 100,000 keys: tests/workflows/test_hostile_task_files.py
    count = rng.choice([25, 300, 1000, 3000])
    where = rng.choice(["top", "budget", "options", "tools"])
    if where == "top":
        body = "question: hi\n" + "".join(f"k{i}: {i}\n" for i in range(count))
    elif where == "budget":
        body = "question: hi\nbudget:\n" + "".join(f"  k{i}: {i}\n" for i in range(count))
    elif where == "options":
        body = "question: hi\nstrategy:\n  name: bats\n  options:\n" + "".join(
            f"    k{i}: {i}\n" for i in range(count)
        )
    else:
        body = "question: hi\ncorpus: builtin:hotpotqa\ntools:\n" + "".join(
            "  - {name: search, k: -1}\n" for _ in range(count)
        )
    path = folder / "task.yaml"
    path.write_text(body)
    return Case(f"many-{where}", path)


def template_case(index: int, folder: Path, rng: random.Random) -> Case:
    pieces = [
        "{a}",
        "{b}",
        "{",
        "}",
        "{{",
        "}}",
        "{}",
        "{0}",
        "{a.b}",
        "{a[0]}",
        "{a!r}",
        "{a:>9}",
        "{ a }",
        "text ",
        "?",
    ]
    question = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
    inputs = rng.choice([{}, {"a": "x"}, {"a": "x", "b": "{y.z}"}, {"a": 1}, {"": "e"}])
    path = folder / "task.yaml"
    path.write_text(f"question: {json.dumps(question)}\ninputs: {json.dumps(inputs)}\n")
    return Case("template", path)


def encoding_case(index: int, folder: Path, rng: random.Random) -> Case:
    text = "question: Qui a écrit « Germinal » ?\nmodel: local/smollm2\nname: 日本\n"
    choice = rng.choice(
        [
            "utf-8-sig",
            "utf-16",
            "utf-16-le",
            "utf-16-be",
            "utf-32",
            "utf-32-be-bom",
            "latin-1",
            "cp1252",
            "invalid",
            "surrogate",
            "overlong",
            "bom-mid",
        ]
    )
    if choice == "utf-32-be-bom":
        data = b"\x00\x00\xfe\xff" + text.encode("utf-32-be")
    elif choice == "invalid":
        data = text.encode() + b"name2: \xff\xfe\xfd\n"
    elif choice == "surrogate":
        data = b"question: \xed\xa0\x80\n"
    elif choice == "overlong":
        data = b"question: \xc0\xaf\n"
    elif choice == "bom-mid":
        data = b"question: a\xef\xbb\xbfb\n"
    else:
        data = text.encode(choice, "replace")
    path = folder / "task.yaml"
    path.write_bytes(data)
    return Case(f"encoding-{choice}", path)


def mutated_case(index: int, folder: Path, rng: random.Random) -> Case:
    doc = base_document(rng, folder)
    kind = "valid"
    if rng.random() < 0.85:
        mutate(doc, rng)
        kind = "mutated"
    data = to_yaml(doc, rng).encode("utf-8", "surrogatepass") + b"\n"
    if rng.random() < 0.25:
        data = damage(data, rng)
        kind += "+damaged"
    path = folder / "task.yaml"
    path.write_bytes(data)
    return Case(kind, path)


GENERATORS: list[tuple[float, Callable[[int, Path, random.Random], Case]]] = [
    (0.55, mutated_case),
    (0.08, module_case),
    (0.07, special_case),
    (0.07, nesting_case),
    (0.06, alias_case),
    (0.04, many_keys_case),
    (0.07, template_case),
    (0.06, encoding_case),
]


def generate(index: int, folder: Path, rng: random.Random) -> Case:
    pick, total = rng.random(), 0.0
    for weight, make in GENERATORS:
        total += weight
        if pick < total:
            return make(index, folder, rng)
    return mutated_case(index, folder, rng)


# ------------------------------------------------------------------------------------------ checking
@dataclass
class Counts:
    files: int = 0
    accepted: int = 0
    refused: int = 0
    other_exit: int = 0
    tracebacks: int = 0
    hangs: int = 0
    imported: int = 0
    messages: int = 0
    with_file: int = 0
    with_line: int = 0
    line_expected: int = 0
    with_field: int = 0
    field_expected: int = 0
    with_fix: int = 0
    set_up: int = 0
    set_up_failed: int = 0
    runs: int = 0
    runs_ok: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    slowest: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    kind_seconds: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def report(self, seed: int) -> str:
        return "\n".join(
            [
                f"task-file fuzz, seed {seed}: {self.files:,} files in {self.seconds:.1f} s, "
                f"{self.cpu_seconds:.1f} s of CPU (slowest file {self.slowest:.2f} s)",
                f"  validate exit 0: {self.accepted:,}; exit 2: {self.refused:,}; any other exit: {self.other_exit}",
                f"  tracebacks: {self.tracebacks}; hangs (over {CASE_TIMEOUT:.0f} s): {self.hangs}; "
                f"task modules imported or run by validate: {self.imported}",
                f"  error messages: {self.messages:,}; with file: {self.with_file:,}; "
                f"with line: {self.with_line:,} of {self.line_expected:,} about a place in the file; "
                f"with field: {self.with_field:,} of {self.field_expected:,} about a field; "
                f"with fix: {self.with_fix:,}",
                f"  accepted files set up for a run (tools, corpus, strategy): {self.set_up:,} of "
                f"{self.set_up + self.set_up_failed:,}; run with a scripted model: {self.runs_ok} of {self.runs} "
                "ended with exit 0 or 4",
            ]
        )


#: Messages about the file as a whole (it cannot be opened or read): no line, no field.
FILE_LEVEL = (
    "no such file",
    "not a regular file",
    "too large",
    "cannot open",
    "cannot read",
    "the path holds a NUL byte",
)
_FIELD = re.compile(r"field ('[^']*'|\"(?:[^\"\\]|\\.)*\"): ")
_MORE = re.compile(r"^[\d,]+ more errors not shown \(fix: .+\)$")


def check_messages(stderr: str, shown_file: str, counts: Counts) -> list[str]:
    """Count the error lines of one refused file; return what is wrong with their shape."""
    problems = []
    if not stderr.startswith("error: "):
        return [f"stderr does not start with 'error: ': {stderr[:200]!r}"]
    for text in stderr.removeprefix("error: ").rstrip("\n").split("\n"):
        if not text.startswith(shown_file):
            problems.append(f"line does not start with the file: {text[:200]!r}")
            continue
        rest = text[len(shown_file) :]
        line = re.match(r"^:(\d+)", rest)
        rest = rest[line.end() :] if line else rest
        if not rest.startswith(": "):
            problems.append(f"no ': ' after the file and line: {text[:200]!r}")
            continue
        rest = rest[2:]
        if _MORE.match(rest):
            continue  # the count of errors not shown
        counts.messages += 1
        counts.with_file += 1
        file_level = any(rest.startswith(p) for p in FILE_LEVEL)
        has_field = _FIELD.match(rest) is not None
        has_fix = rest.endswith(")") and " (fix: " in rest
        counts.with_fix += has_fix
        if not file_level:
            counts.line_expected += 1
            counts.field_expected += 1
            counts.with_line += line is not None
            counts.with_field += has_field
            if line is None or not has_field:
                problems.append(f"no line or field: {text[:200]!r}")
        if not has_fix:
            problems.append(f"no fix: {text[:200]!r}")
    return problems


@contextlib.contextmanager
def _command_built_once() -> Iterator[None]:
    """Typer rebuilds the click command on every CliRunner.invoke (about 50 ms here, 30 times what
    validating a file costs): build it once for the whole fuzz run."""
    import typer.testing

    built: dict[int, Any] = {}
    original = typer.testing._get_command

    def cached(app: Any) -> Any:
        if id(app) not in built:
            built[id(app)] = original(app)
        return built[id(app)]

    with mock.patch.object(typer.testing, "_get_command", cached):
        yield


def _invoke(args: list[str], timeout: float) -> tuple[Any, float, bool]:
    """CliRunner.invoke in a worker thread, so a hang is seen (and counted) instead of blocking."""
    from thrifty.cli import app

    box: dict[str, Any] = {}

    def work() -> None:
        box["result"] = CliRunner().invoke(app, args)

    started = time.monotonic()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout)
    return box.get("result"), time.monotonic() - started, worker.is_alive()


def set_up_for_run(path: Path) -> str | None:
    """What run does before the first model call, for a file validate accepted; the error, or None."""
    from thrifty.budget import Ledger
    from thrifty.tools import ToolRunner
    from thrifty.workflows import load_task
    from thrifty.workflows.options import parse_options
    from thrifty.workflows.runner import resolve_tools
    from thrifty.workflows.strategies import get_builder

    try:
        spec = load_task(path, import_references=False)
        spec.rendered_question()
        tools, pricing = resolve_tools(spec)
        builder = get_builder(spec.strategy.name, spec.base_dir)
        parse_options(spec.strategy.name, builder, spec.strategy.options)
        ToolRunner(tools, Ledger(spec.budget), pricing).close()
        spec.store_target()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run_fuzz(cases: int = DEFAULT_CASES, seed: int = DEFAULT_SEED, *, verbose: bool = False) -> Counts:
    from thrifty.testing import ScriptedModel, reply

    rng = random.Random(seed)
    counts = Counts()
    root = Path(tempfile.mkdtemp(prefix="thrifty-fuzz-"))
    started, cpu = time.monotonic(), time.process_time()
    stack = contextlib.ExitStack()
    stack.enter_context(_command_built_once())
    try:
        for index in range(cases):
            folder = root / f"case{index:05d}"
            folder.mkdir()
            case = generate(index, folder, rng)
            counts.files += 1
            counts.kinds[case.kind] = counts.kinds.get(case.kind, 0) + 1
            result, elapsed, hung = _invoke(["validate", str(case.path)], CASE_TIMEOUT)
            counts.slowest = max(counts.slowest, elapsed)
            counts.kind_seconds[case.kind] = counts.kind_seconds.get(case.kind, 0.0) + elapsed
            label = f"case {index} ({case.kind}, {case.path})"
            if hung or result is None:
                counts.hangs += 1
                counts.failures.append(f"{label}: hang")
                continue
            output = result.stdout + result.stderr
            crashed = "Traceback" in output or (
                result.exception is not None and not isinstance(result.exception, SystemExit)
            )
            if crashed:
                counts.tracebacks += 1
                counts.failures.append(f"{label}: traceback {result.exception!r} {output[-500:]!r}")
            if any(m in sys.modules for m in case.modules) or list(folder.rglob("*.ran")):
                counts.imported += 1
                counts.failures.append(f"{label}: a task module was imported")
            if result.exit_code == 0:
                counts.accepted += 1
                problem = set_up_for_run(case.path) if not case.modules else None
                if case.modules:
                    pass
                elif problem is None:
                    counts.set_up += 1
                    if counts.runs < RUN_SAMPLE:
                        counts.runs += 1
                        script = ScriptedModel(default=reply("Paris"))
                        res, _, run_hung = _invoke(
                            ["run", str(case.path), "--model", script.model, "--no-store", "--quiet"],
                            RUN_TIMEOUT,
                        )
                        if (
                            not run_hung
                            and res is not None
                            and res.exit_code in (0, 4)
                            and "Traceback" not in res.output
                        ):
                            counts.runs_ok += 1
                        else:
                            code = None if res is None else res.exit_code
                            tail = "" if res is None else res.output[-300:]
                            counts.failures.append(f"{label}: run exit {code}: {tail!r}")
                else:
                    counts.set_up_failed += 1
                    counts.failures.append(f"{label}: validated but cannot be set up: {problem}")
            elif result.exit_code == 2:
                counts.refused += 1
                problems = check_messages(result.stderr, str(case.path), counts)
                counts.failures += [f"{label}: {p}" for p in problems]
            else:
                counts.other_exit += 1
                counts.failures.append(f"{label}: exit {result.exit_code}: {output[-300:]!r}")
            if verbose and counts.failures and counts.failures[-1].startswith(label):
                print(counts.failures[-1], file=sys.stderr)
            _cleanup(folder)
    finally:
        stack.close()
        counts.seconds = time.monotonic() - started
        counts.cpu_seconds = time.process_time() - cpu
        shutil.rmtree(root, ignore_errors=True)
    return counts


def _cleanup(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cases = int(args[0]) if args else DEFAULT_CASES
    seed = int(args[1]) if len(args) > 1 else DEFAULT_SEED
    counts = run_fuzz(cases, seed, verbose=True)
    print(counts.report(seed))
    if os.environ.get("THRIFTY_FUZZ_TIMES"):
        for kind, secs in sorted(counts.kind_seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {kind}: {counts.kinds[kind]} files, {secs:.2f} s")
    for failure in counts.failures[:20]:
        print("  FAIL", failure)
    return 1 if counts.failures else 0


if __name__ == "__main__":
    os.environ.setdefault("THRIFTY_BLOCK_REMOTE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    raise SystemExit(main())
