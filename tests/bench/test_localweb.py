"""The local web: a corpus served on 127.0.0.1 (SearXNG-shaped search, one page per passage), and
``agent bench hotpotqa --web`` running the real web tools over it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.request import urlopen

from typer.testing import CliRunner

from thrifty.bench.datasets import load_dataset
from thrifty.bench.localweb import LocalWeb, web_tools
from thrifty.budget import Budget, Ledger
from thrifty.cli import app
from thrifty.tools import ToolRunner


def test_search_and_pages(hotpot_file: Path) -> None:
    corpus = load_dataset(hotpot_file).corpus()
    assert corpus is not None
    with LocalWeb(corpus) as web:
        data = json.loads(urlopen(f"{web.base}/search?q=Mara+Quell+museum&format=json").read())
        assert data["results"][0]["title"] == "Mara Quell"
        assert data["results"][0]["url"] == web.page_url("Mara Quell")
        page = urlopen(web.page_url("Mara Quell")).read().decode()
        assert "<h1>Mara Quell</h1>" in page and "Lyonsford" in page
        assert json.loads(urlopen(f"{web.base}/search?q=&format=json").read())["results"] == []


def test_web_tools_over_http(hotpot_file: Path) -> None:
    corpus = load_dataset(hotpot_file).corpus()
    assert corpus is not None
    with LocalWeb(corpus) as web:
        ledger = Ledger(Budget())
        with ToolRunner(web_tools(web, k=2), ledger) as runner:
            found = runner.run("web_search", {"query": "Vantoria capital"})
            page = runner.run("read_url", {"url": web.page_url("Oberhal")})
    assert found.ok and "Title: Vantoria\nURL: " in found.content
    assert page.ok and "Oberhal lies on the banks of the Sella river." in page.content
    assert "Privacy policy" not in page.content  # the page's boilerplate is removed
    assert ledger.spent["usd"] == 0.002  # priced like the in-process search/read


def test_bench_grid_through_the_local_web(hotpot_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "web"
    res = CliRunner().invoke(
        app,
        ["bench", "hotpotqa", "--data", str(hotpot_file), "--model", "sim/p=1,q=1", "--strategies", "react_tracker",
         "--budgets", "4", "--web", "--out", str(out), "--no-plot", "-q"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3
    used = {tool for r in records for tool in r["usage"]["per_tool"]}
    assert "web_search" in used and used <= {"web_search", "read_url"}  # never the in-process search/read
    assert sum(r["em"] for r in records) >= 2  # a perfect simulated model finds the evidence over HTTP


def test_the_local_webs_port_does_not_change_the_simulated_replies(hotpot_file: Path, tmp_path: Path) -> None:
    from thrifty.bench.sim import _request_hash

    def messages(port: int) -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{port}/wiki/Oberhal"
        return [
            {"role": "user", "content": "Where is Oberhal?", "calls": []},
            {"role": "assistant", "content": "", "calls": [("read_url", {"url": url})]},
            {"role": "tool", "content": f"[web page: {url} -- untrusted content]\nOberhal\n[end of web page]",
             "calls": []},
        ]  # fmt: skip

    assert _request_hash("sim/default", messages(40001), {}) == _request_hash(
        "sim/default", messages(51234), {}
    )
    runs = []
    for name in ("first", "second"):  # each run serves the corpus on a new ephemeral port
        out = tmp_path / name
        res = CliRunner().invoke(
            app,
            ["bench", "hotpotqa", "--data", str(hotpot_file), "--model", "sim/default", "--strategies", "react",
             "--budgets", "4", "--web", "--out", str(out), "--no-plot", "-q"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        runs.append(
            sorted((r["question_id"], r["answer"], r["steps"], r["usage"]["per_tool"]) for r in records)
        )
    assert runs[0] == runs[1]
