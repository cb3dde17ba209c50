"""No key leaks: a key planted in a tool's error, a tool's refusal, a tool's output, a provider's error or
the environment never reaches stdout, ``--json``, the trace, the run store, a prompt or a tree file.

The figure in the README (``0 leaks`` per channel and key format) is printed by
``python -m tests.test_no_leaks``; the tests below assert the same table in CI.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_redact import KEYS
from thrifty.cli import app
from thrifty.testing import ScriptedModel, call, reply

runner = CliRunner()

TOOLS = '''
import os

from thrifty.tools import ToolError, tool

def _key():
    return os.environ["THRIFTY_PLANTED"]

@tool
def fail(q: str) -> str:
    """Fails the way an HTTP client does."""
    raise PermissionError(f"401 Unauthorized: invalid api key {_key()} for https://api.test/v1?key={_key()}")

@tool
def refuse(q: str) -> str:
    """Refuses, quoting the credential."""
    raise ToolError(f"upstream refused the credential {_key()}")

@tool
def echo(q: str) -> str:
    """Echoes a request dump."""
    return f"sent Authorization: Bearer {_key()}; api_key={_key()}"
'''


def _task(tmp_path: Path, model: str, module: str, extra: str = "") -> Path:
    (tmp_path / f"{module}.py").write_text(TOOLS)
    task = tmp_path / "task.yaml"
    task.write_text(
        f"name: leak\nquestion: What is the capital of France?\nmodel: {model}\n"
        f"tools: ['{module}:fail', '{module}:refuse', '{module}:echo']\n"
        f"budget:\n  tool_calls: 10\noutput:\n  store: {tmp_path / 'runs.db'}\n{extra}"
    )
    return task


def _store_text(path: Path) -> str:
    """Every cell of every table of the run store, as text."""
    if not path.exists():
        return ""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return "\n".join(
            "\t".join(str(cell) for cell in row)
            for table in tables
            for row in conn.execute(f"select * from {table}")
        )


def test_a_key_in_a_tool_error_never_leaves_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = KEYS["openai"]
    monkeypatch.setenv("THRIFTY_PLANTED", key)
    script = ScriptedModel([call("fail", q="x"), reply("Paris")])
    module = f"leaky_{uuid.uuid4().hex[:8]}"
    res = runner.invoke(app, ["run", str(_task(tmp_path, script.model, module)), "--json"])
    assert res.exit_code == 0, res.output
    assert "PermissionError" in res.stdout  # the error is still reported, scrubbed
    assert key not in res.stdout
    assert key not in json.dumps([r.messages for r in script.requests])
    assert key not in _store_text(tmp_path / "runs.db")


# ------------------------------------------------------------------------------------------ the figure
CHANNELS = ("stdout", "--json", "trace", "store", "prompts", "tree file")
#: The secret planted in the environment under a secret-looking name: no known shape, only its exact
#: value can give it away.
ENV_SECRET = "plain-words-that-look-harmless-42"


def _pieces(key: str) -> list[str]:
    """The key and every long piece of it (the part after a '+' or '/', a JWT's signature)."""
    parts = key.replace("+", " ").replace("/", " ").replace(".", " ").split()
    return [key, *(p for p in parts if len(p) >= 12)]


def _leaks(text: str, key: str) -> int:
    return int(any(piece in text for piece in _pieces(key)))


def _provider_error(key: str) -> BaseException:
    from thrifty.models._litellm import get_litellm

    litellm = get_litellm()
    return litellm.RateLimitError(
        f"429: slow down, key {key} is over its quota", llm_provider="scripted", model="x"
    )


def _tree_script(model_error: BaseException) -> list[object]:
    """value_tree: expand with the failing tool (a pruned, errored node), then with the echoing one, then
    answer; the verifier's call fails (a provider error that ends the run)."""
    actions = [{"tool": "fail", "arguments": {"q": "a"}}, {"tool": "echo", "arguments": {"q": "b"}}]
    return [
        reply(json.dumps({"actions": actions})),
        reply(json.dumps({"progress": 0.5, "reason": "echoed"})),
        reply(json.dumps({"actions": [{"tool": "answer", "arguments": {"answer": "Paris"}}]})),
        model_error,
    ]


def leak_counts(
    tmp_path: Path, key: str, planted_in_env: str = "THRIFTY_PLANTED", *, check_masked: bool = True
) -> dict[str, int]:
    """Plant ``key`` in a provider's errors and a tool's error, refusal and output (the tools read it from
    the environment variable ``planted_in_env``), run the CLI three ways, and count the output texts of
    each channel that hold it."""
    os.environ[planted_in_env] = key
    os.environ["THRIFTY_PLANTED"] = key
    module = f"leaky_{uuid.uuid4().hex[:8]}"
    texts: dict[str, list[str]] = {c: [] for c in CHANNELS}
    store = tmp_path / "runs.db"

    # 1. react, --json: a retried provider error, then the tool's error, refusal and output.
    script = ScriptedModel(
        [
            _provider_error(key),
            call("fail", q="a"),
            call("refuse", q="b"),
            call("echo", q="c"),
            reply("Paris"),
        ]
    )
    task = _task(tmp_path, script.model, module, extra="model_settings:\n  retries: 1\n")
    res = runner.invoke(app, ["run", str(task), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    texts["--json"].append(res.stdout)
    texts["trace"] += [json.dumps(data["trace"])]
    prompts = [json.dumps(r.messages) for r in script.requests]

    # 2. react, human output and progress lines: the tool fails, then the provider fails for good.
    script = ScriptedModel([call("fail", q="a"), ValueError(f"401: invalid api key {key}")])
    res = runner.invoke(app, ["run", str(task)])
    texts["stdout"].append(res.stdout)
    texts["trace"].append(res.stderr)
    prompts += [json.dumps(r.messages) for r in script.requests]

    # 3. value_tree with --tree-out: the tree's nodes carry the observations and the pruning reasons.
    # default: whatever else the search asks for later gets a plain reply, so the run records its tree
    script = ScriptedModel(
        _tree_script(ValueError(f"403 forbidden for api_key={key}")), default=reply("Paris")
    )
    tree_task = _task(
        tmp_path, script.model, module, extra="strategy:\n  name: value_tree\n  options:\n    k: 1\n"
    )
    tree_file = tmp_path / "tree.json"
    res = runner.invoke(app, ["run", str(tree_task), "--tree-out", str(tree_file), "--json"])
    texts["--json"].append(res.stdout)
    texts["trace"].append(json.dumps(json.loads(res.stdout)["trace"]))
    texts["tree file"].append(tree_file.read_text() if tree_file.exists() else "")
    prompts += [json.dumps(r.messages) for r in script.requests]

    texts["prompts"] = prompts
    texts["store"].append(_store_text(store))
    # The channels did carry the planted texts, masked: the figure is not 0 for want of a key to leak.
    if check_masked:
        assert "***" in texts["store"][0] and "***" in "".join(prompts) and "***" in texts["tree file"][0]
    return {channel: sum(_leaks(t, key) for t in found) for channel, found in texts.items()}


def _formats() -> dict[str, tuple[str, str]]:
    """Format -> (key, where it is planted): the shaped keys under a neutral name (only their shape can
    give them away), and a shapeless secret under a secret-looking name (only its exact value can)."""
    out = {kind: (key, "THRIFTY_PLANTED") for kind, key in KEYS.items()}
    out["env value, no shape"] = (ENV_SECRET, "ACME_API_KEY")
    return out


@pytest.mark.parametrize("kind", sorted(_formats()))
def test_no_key_leaks_through_any_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    key, variable = _formats()[kind]
    monkeypatch.setenv(variable, key)  # restored afterwards
    monkeypatch.setenv("THRIFTY_PLANTED", key)
    counts = leak_counts(tmp_path, key, variable)
    assert counts == dict.fromkeys(CHANNELS, 0), (kind, counts)


def figure(tmp_path: Path) -> str:
    """The README's table: leaks per key format and output channel."""
    rows: list[tuple[str, dict[str, int]]] = []
    saved = dict(os.environ)
    try:
        for i, (kind, (key, variable)) in enumerate(sorted(_formats().items())):
            folder = tmp_path / str(i)
            folder.mkdir()
            rows.append((kind, leak_counts(folder, key, variable)))
            os.environ.clear()
            os.environ.update(saved)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    width = max(len(kind) for kind, _ in rows)
    lines = [f"{'key format':<{width}}  " + "  ".join(CHANNELS)]
    for kind, counts in rows:
        lines.append(f"{kind:<{width}}  " + "  ".join(f"{counts[c]:>{len(c)}}" for c in CHANNELS))
    total = sum(sum(c.values()) for _, c in rows)
    lines.append(f"{len(rows)} keys x {len(CHANNELS)} channels: {total} leaks")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tests.test_no_leaks
    import tempfile

    os.environ.setdefault("THRIFTY_BLOCK_REMOTE", "1")
    with tempfile.TemporaryDirectory() as folder:
        print(figure(Path(folder)))
