"""Take the README's screenshot of the page of `agent serve` (docs/serve-page.png).

Starts the real server on 127.0.0.1 (a free port, a temporary checkpoint file) with scripted models (no
model server, nothing from the network), submits three runs (a react run, one that pauses at its budget,
and a value_tree run), opens the page in headless chromium (Debian's: /usr/bin/chromium and
/usr/bin/chromedriver, driven by Selenium), enters the token, selects the value_tree run and saves a PNG.

    python benchmarks/serve_page_screenshot.py [--out docs/serve-page.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from thrifty.serve import ServeSettings, create_app
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply
from thrifty.testing.serving import served

TOKEN = "screenshot-token-not-a-secret"
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
    "--hide-scrollbars",
)


def _json_reply(data: dict[str, Any]) -> ScriptedReply:
    return ScriptedReply(content=json.dumps(data), prompt_tokens=140, completion_tokens=45)


def tree_model() -> ScriptedModel:
    """A value_tree run of two expansions: three calculations from the root (one pruned: no progress),
    then a check and the answer from the best one, verified."""
    expansions = iter(
        [
            [("calculator", {"expression": "6*7"}), ("calculator", {"expression": "6+7"}),
             ("calculator", {"expression": "7-6"})],
            [("calculator", {"expression": "42/6"}), ("answer", {"answer": "42"})],
        ]
    )  # fmt: skip
    progress = iter([0.9, 0.35, 0.0, 0.7])

    def step(request: ScriptedRequest) -> ScriptedReply:
        text = " ".join(str(m.get("content") or "") for m in request.messages)
        if "trajectory_summary" in text:
            return _json_reply(
                {"decision": "SUCCESS", "trajectory_summary": "6*7 = 42", "justification": "computed"}
            )
        if '"progress"' in text:
            p = next(progress)
            return _json_reply(
                {"progress": p, "reason": "the product is what was asked" if p > 0.5 else "not it"}
            )
        acts = next(expansions)
        return _json_reply(
            {"thought": "compute it", "actions": [{"tool": t, "arguments": a} for t, a in acts]}
        )

    return ScriptedModel([], default=step, name="screenshot-tree")


def counting_model(name: str) -> ScriptedModel:
    def step(request: ScriptedRequest) -> ScriptedReply:
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        return call("calculator", expression=f"{done}+1") if done < 3 else reply("3")

    return ScriptedModel([], default=step, name=name)


def submit_runs(base: str) -> str:
    """The three runs; returns the value_tree run's id once they have all ended (or paused)."""
    count = {"name": "count-to-3", "question": "Count to 3 with the calculator.", "tools": ["calculator"]}
    approval = {**count, "name": "approval", "budget": {"tool_calls": 2}, "on_limit": "pause"}
    tree = {
        "name": "six-times-seven",
        "question": "What is 6 times 7? Check it with the calculator.",
        "tools": ["calculator"],
        "strategy": {
            "name": "value_tree",
            "options": {"k": 3, "parallel": False, "adaptive_width": False, "seed": 3},
        },
        "budget": {"tool_calls": 8, "total_tokens": 3000, "usd": 0.25},
    }
    models = [counting_model("screenshot-count"), counting_model("screenshot-pause"), tree_model()]
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as http:
        ids = []
        for task, script in zip((count, approval, tree), models, strict=True):
            body = {**task, "model": script.model, "pricing": prices(script.model)}
            ids.append(http.post("/runs", json=body).json()["run_id"])
        for run_id in ids:
            while http.get(f"/runs/{run_id}").json()["status"] == "running":
                time.sleep(0.1)
        return ids[-1]


def prices(model: str) -> dict[str, Any]:
    """Made-up prices, so that the dollar bars move (a scripted model is free)."""
    return {
        "models": {model: {"input_per_token": 3e-5, "output_per_token": 6e-5}},
        "tools": {"calculator": 0.01},
    }


def screenshot(base: str, run_id: str, out: Path, profile: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, "--window-size=1400,820", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(base + "/")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "token-save").click()
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and len(driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) < 3
        ):
            time.sleep(0.1)
        driver.find_element(By.CSS_SELECTOR, f"#runs tbody tr[data-run-id='{run_id}']").click()
        while time.monotonic() < deadline and driver.find_element(By.ID, "answer").text != "42":
            time.sleep(0.1)
        time.sleep(0.6)  # the bars' width transition
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/serve-page.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServeSettings(token=TOKEN, checkpoint=Path(tmp) / "checkpoints.db"))
        with served(app) as (base, _):
            run_id = submit_runs(base)
            screenshot(base, run_id, args.out, Path(tmp) / "profile")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
