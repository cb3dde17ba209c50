"""The page of `agent serve` (issue 16), in a real headless browser (Debian's chromium, driven by Selenium)
against the real server on 127.0.0.1: it lists the runs, shows one live (budget bars, steps, answer) and
draws a value_tree run's tree. The token is typed into the page and sent as a header, never in a URL.

Skipped when /usr/bin/chromium is absent, unless THRIFTY_REQUIRE_BROWSER=1 (CI), where that fails."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import served
from thrifty.serve import ServeSettings, create_app
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "p4ge-t0ken-9f8e7d6c5b4a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def _browser_or_skip() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    message = f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install -y chromium chromium-driver)"
    if os.environ.get("THRIFTY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"THRIFTY_REQUIRE_BROWSER=1 but the browser is missing: {message}")
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


@contextmanager
def _serving(app: Any) -> Iterator[tuple[str, list[str]]]:
    """``app`` on uvicorn on loopback (:func:`tests.serving.served`, with its access log); its log lines are
    kept to check for the token."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.access", "uvicorn.error")]
    with served(app, log_level="info") as (base, _):
        for logger in loggers:  # after uvicorn has configured its loggers (that replaces their handlers)
            logger.addHandler(handler)
        try:
            yield base, lines
        finally:
            for logger in loggers:
                logger.removeHandler(handler)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """The real server on loopback."""
    settings = ServeSettings(token=TOKEN, checkpoint=tmp_path / "checkpoints.db")
    with _serving(create_app(settings)) as served:
        yield served


class Gate:
    """Lets a scripted model answer one call at a time, when the test says so."""

    def __init__(self) -> None:
        self._sem = threading.Semaphore(0)

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._sem.release()

    def wrap(
        self, step: Callable[[ScriptedRequest], ScriptedReply]
    ) -> Callable[[ScriptedRequest], ScriptedReply]:
        def gated(request: ScriptedRequest) -> ScriptedReply:
            assert self._sem.acquire(timeout=120), "the test never let this call through"
            return step(request)

        return gated


def _counting(request: ScriptedRequest) -> ScriptedReply:
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("calculator", expression=f"{done}+1") if done < 3 else reply("3")


def _tree_script(gate: Gate) -> ScriptedModel:
    def actions(*acts: tuple[str, dict[str, str]]) -> ScriptedReply:
        return reply(
            json.dumps({"thought": "try", "actions": [{"tool": t, "arguments": a} for t, a in acts]})
        )

    def progress(p: float) -> ScriptedReply:
        return reply(json.dumps({"progress": p, "reason": f"p={p}"}))

    replies = [
        actions(("calculator", {"expression": "6*7"}), ("calculator", {"expression": "6+7"})),
        progress(0.9),
        progress(0.0),
        actions(("answer", {"answer": "42"})),
        reply(json.dumps({"decision": "SUCCESS", "trajectory_summary": "s", "justification": "j"})),
    ]
    return ScriptedModel([gate.wrap(lambda request, r=r: r) for r in replies])


def _wait(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # the element is being replaced: look again
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# The page redraws its list, bars and tree as events come (and a time limit's bar twice a second), so it is
# read in one script call each time (an element found earlier may have been replaced since).
def _bars(driver: Any) -> dict[str, dict[str, Any]]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#bars .bar')].map(b => [b.dataset.dim, "
        "{left: Number(b.dataset.left), width: b.querySelector('.fill').style.width}]))"
    )


def _bar_left(driver: Any, dim: str) -> float | None:
    bar = _bars(driver).get(dim)
    return None if bar is None else float(bar["left"])


def _texts(driver: Any, selector: str) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)", selector
    )


def _rows(driver: Any) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#runs tbody tr')]"
        ".map(r => [r.dataset.runId, r.innerText]))"
    )


def _tree(driver: Any) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#tree li[data-node]')]"
        ".map(n => [n.dataset.node, n.className]))"
    )


def _click_row(driver: Any, run_id: str) -> None:
    from selenium.webdriver.common.by import By

    def click() -> bool:
        driver.find_element(By.CSS_SELECTOR, f"#runs tbody tr[data-run-id='{run_id}']").click()
        return True

    _wait(click, f"a click on run {run_id}'s row")
    _wait(lambda: driver.find_element(By.ID, "run-id").text == run_id, f"run {run_id} shown")


def test_the_page_lists_runs_and_shows_one_live(server: tuple[str, list[str]], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base, log_lines = server
    gate = Gate()
    script = ScriptedModel([], default=gate.wrap(_counting))
    tree_gate = Gate()
    tree = _tree_script(tree_gate)
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        task = {"name": "count", "question": "count to 3", "model": script.model, "tools": ["calculator"]}
        live_id = http.post("/runs", json={**task, "budget": {"tool_calls": 5, "seconds": 900}}).json()[
            "run_id"
        ]
        tree_task = {
            "name": "tree",
            "question": "What is 6 times 7?",
            "model": tree.model,
            "tools": ["calculator"],
            "strategy": {
                "name": "value_tree",
                "options": {"k": 2, "parallel": False, "adaptive_width": False},
            },
            "budget": {"tool_calls": 10},
        }
        tree_id = http.post("/runs", json=tree_task).json()["run_id"]
        tree_gate.release(3)  # its first expansion: the actions asked for, then each child's progress

    browser.get(base + "/")
    notice = browser.find_element(By.ID, "notice")
    assert "Enter the server's token" in notice.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")  # nothing shown without it
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.ID, "token-save").click()
    _wait(
        lambda: "refused the token" in browser.find_element(By.ID, "notice").text, "the wrong token refused"
    )
    assert not browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    browser.find_element(By.ID, "token-forget").click()
    assert browser.execute_script("return sessionStorage.getItem('thrifty-serve-token')") is None
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    assert browser.find_element(By.ID, "token").get_attribute("value") == ""  # not left in the field

    # both runs are listed
    rows = _wait(lambda: _rows(browser) if len(_rows(browser)) == 2 else None, "two runs in the list")
    assert set(rows) == {live_id, tree_id}
    assert "running" in rows[live_id] and "running" in rows[tree_id]

    # the running run: its budget bars burn down and its steps appear as the model is let through
    _click_row(browser, live_id)
    _wait(lambda: _bar_left(browser, "tool_calls") == 5.0, "the tool calls bar at its limit")
    assert set(_bars(browser)) == {"tool_calls", "total_tokens", "usd", "seconds"}
    # the time limit burns while the model is held (no event comes): its bar is redrawn as time passes
    seconds = _bar_left(browser, "seconds") or 0.0
    assert 0 < seconds <= 900
    _wait(lambda: (_bar_left(browser, "seconds") or 900) < seconds - 1, "the seconds bar to go down")
    tokens_before = _bar_left(browser, "total_tokens")
    gate.release(1)  # the first model call: it asks for a tool call, which is made
    _wait(lambda: _bar_left(browser, "tool_calls") == 4.0, "the tool calls bar to go down")
    assert (_bar_left(browser, "total_tokens") or 0) < (tokens_before or 0)
    steps = _texts(browser, "#events li.trace")
    assert any("calculator" in s for s in steps), steps
    assert browser.find_element(By.ID, "outcome").is_displayed() is False
    assert _bars(browser)["tool_calls"]["width"] == "80%"
    gate.release(3)
    _wait(lambda: browser.find_element(By.ID, "answer").text == "3", "the answer")
    assert browser.find_element(By.ID, "stop-reason").text == "completed"
    assert _bar_left(browser, "tool_calls") == 2.0
    assert len(_texts(browser, "#events li.trace")) >= 7
    _wait(lambda: "finished" in browser.find_element(By.ID, "run-status").text, "the status to say finished")

    # the value_tree run: its tree grows from the expansion events as they come...
    _click_row(browser, tree_id)
    first = _wait(lambda: _tree(browser) if len(_tree(browser)) == 3 else None, "the first expansion's tree")
    assert set(first) == {"0", "1", "2"} and "expanded" in first["0"] and "pruned" in first["2"]
    assert not any("chosen" in c for c in first.values())
    assert not browser.find_element(By.ID, "outcome").is_displayed()
    # ...and ends as the final tree, with the pruned branch and the path to the chosen answer
    tree_gate.release(2)
    _wait(lambda: browser.find_element(By.ID, "answer").text == "42", "the tree run's answer")
    nodes = _tree(browser)
    assert set(nodes) == {"0", "1", "2", "3"}
    assert "pruned" in nodes["2"] and "expanded" in nodes["1"] and "terminal" in nodes["3"]
    assert all("chosen" in nodes[n] for n in ("0", "1", "3")) and "chosen" not in nodes["2"]
    child = _texts(browser, "#tree li[data-node='1'] > .node-box")[0]
    assert "calculator" in child and "V=0.90" in child
    assert browser.find_element(By.ID, "tree").is_displayed()

    # a run paused at its budget: the page offers to resume it with a raised limit, and shows it go on
    paused_script = ScriptedModel([], default=_counting)
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        pause_task = {**task, "model": paused_script.model, "budget": {"tool_calls": 2}, "on_limit": "pause"}
        paused_id = http.post("/runs", json=pause_task).json()["run_id"]
        _wait(lambda: http.get(f"/runs/{paused_id}").json()["status"] == "paused", "the run to pause")
    _click_row(browser, paused_id)
    _wait(lambda: browser.find_element(By.ID, "stop-reason").text == "paused:tool_calls", "the pause")
    assert browser.find_element(By.ID, "resume-form").is_displayed()
    assert "Paused at its budget" in browser.find_element(By.ID, "resume-why").text
    browser.find_element(By.ID, "resume-tool_calls").send_keys("1")
    browser.find_element(By.ID, "resume").click()
    _wait(lambda: "already spent 2 tool_calls" in browser.find_element(By.ID, "notice").text, "the refusal")
    browser.find_element(By.ID, "resume-tool_calls").clear()
    browser.find_element(By.ID, "resume-tool_calls").send_keys("5")
    browser.find_element(By.ID, "resume").click()
    _wait(lambda: browser.find_element(By.ID, "answer").text == "3", "the resumed run's answer")
    assert browser.find_element(By.ID, "stop-reason").text == "completed"
    assert _texts(browser, "#events li.start") == ["started", "resumed"]
    assert _bar_left(browser, "tool_calls") == 2.0  # 3 of the raised 5
    _wait(lambda: not browser.find_element(By.ID, "resume-form").is_displayed(), "the resume form to go")

    # the token went in headers only: not in the page's address, not in the server's log
    assert TOKEN not in browser.current_url
    assert log_lines and not any(TOKEN in line for line in log_lines)
    assert browser.execute_script("return sessionStorage.getItem('thrifty-serve-token')") == TOKEN


class _Cut(Exception):
    pass


class _CutStreams:
    """An ASGI wrapper that cuts the first ``cuts`` event streams after ``after`` writes each, as a proxy's
    timeout or a network blip would: the connection drops in the middle of the stream."""

    def __init__(self, app: Any, cuts: int, after: int) -> None:
        self.app, self.cuts, self.after = app, cuts, after

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/events") or self.cuts <= 0:
            return await self.app(scope, receive, send)
        self.cuts -= 1
        writes = 0

        async def cutting(message: Any) -> None:
            nonlocal writes
            if message["type"] == "http.response.body" and message.get("body"):
                writes += 1
                if writes > self.after:
                    raise _Cut
            await send(message)

        try:
            await self.app(scope, receive, cutting)
        except* _Cut:  # returning without ending the response: uvicorn drops the connection
            pass


def test_the_page_reconnects_a_broken_stream_and_shows_no_event_twice(tmp_path: Path, browser: Any) -> None:
    """A stream that drops before the run's result is opened again with Last-Event-ID: the page goes on
    to the answer, and each event is in its list once (before, it stopped at "The event stream broke")."""
    from selenium.webdriver.common.by import By

    app = _CutStreams(create_app(ServeSettings(token=TOKEN, checkpoint=tmp_path / "c.db")), cuts=2, after=3)
    gate = Gate()
    script = ScriptedModel([], default=gate.wrap(_counting))
    with _serving(app) as (base, _), httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        task = {"question": "count to 3", "model": script.model, "tools": ["calculator"]}
        run_id = http.post("/runs", json={**task, "budget": {"tool_calls": 5}}).json()["run_id"]
        browser.get(base + "/")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "token-save").click()
        _wait(lambda: run_id in _rows(browser), "the run in the list")
        _click_row(browser, run_id)
        for _ in range(4):  # one model call at a time: the streams are cut as the events come
            gate.release(1)
            time.sleep(0.5)
        _wait(lambda: browser.find_element(By.ID, "answer").text == "3", "the answer after the cuts")
        assert app.cuts == 0  # both streams were cut (and the page opened a third)
        indexes = browser.execute_script(
            "return [...document.querySelectorAll('#events li')].map(e => Number(e.dataset.index))"
        )
        with http.stream("GET", f"/runs/{run_id}/events") as stream:
            events = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert indexes == list(range(len(events)))  # every event once, in order
        assert browser.find_element(By.ID, "stop-reason").text == "completed"
        _wait(lambda: not browser.find_element(By.ID, "notice").is_displayed(), "the notice to go")


def test_the_page_is_served_without_a_token_and_the_data_is_not(server: tuple[str, list[str]]) -> None:
    base, _ = server
    with httpx.Client(base_url=base, timeout=30) as http:
        page = http.get("/")
        assert page.status_code == 200 and "thrifty" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for path in ("/page/app.js", "/page/style.css"):
            assert http.get(path).status_code == 200
        assert http.get("/runs").status_code == 401
        assert http.get("/page/other.js", headers=AUTH).status_code == 404


def test_a_missing_browser_skips_unless_ci_requires_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("THRIFTY_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium chromium-driver"):
        _browser_or_skip()
    monkeypatch.setenv("THRIFTY_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="THRIFTY_REQUIRE_BROWSER=1 but the browser is missing"):
        _browser_or_skip()
