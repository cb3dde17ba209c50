"""50 concurrent runs against `agent serve` on 127.0.0.1: latency p50/p95, no lost run, no overspend.

    python benchmarks/serve_load.py --runs 50 --out /tmp/serve-load.md

Starts the real server (uvicorn, in this process, on a free loopback port) with a server-wide budget smaller
than the runs would spend together, submits every run at once from as many client threads, follows each
one's event stream (server-sent events) to its result, then checks that every run ended, that the server's
spend never passed its budget, and that each run's usage equals the sum of its charge events.
The model is the scripted one (each reply after a 20-60 ms pause, as a fast remote model).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from thrifty.budget import Budget
from thrifty.serve import ServeSettings, create_app
from thrifty.testing import ScriptedModel, ScriptedReply, ScriptedRequest, call, reply

TOKEN = "load-test-token-0123456789"


def _step(request: ScriptedRequest) -> ScriptedReply:
    time.sleep(random.uniform(0.02, 0.06))
    done = sum(1 for m in request.messages if m.get("role") == "tool")
    return call("calculator", expression=f"{done}+1") if done < 3 else reply("3")


def _serve(settings: ServeSettings) -> tuple[uvicorn.Server, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def _one(base: str, model: str) -> dict[str, Any]:
    started = time.monotonic()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as http:
        res = http.post("/runs", json={"question": "count to 3", "model": model, "tools": ["calculator"]})
        if res.status_code != 202:
            return {"status": res.status_code, "error": res.json()["error"]["message"], "seconds": 0.0}
        run_id = res.json()["run_id"]
        charges, result = [], None
        with http.stream("GET", f"/runs/{run_id}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["kind"] == "charge":
                        charges.append(event["charge"])
                    elif event["kind"] == "result":
                        result = event["result"]
    return {
        "status": 202,
        "run_id": run_id,
        "seconds": time.monotonic() - started,
        "result": result,
        "charged_tools": sum(c["units"].get("tool_calls", 0) for c in charges),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load `agent serve` with concurrent runs.")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="Checkpoint the runs in this file (as `agent serve` does).",
    )
    args = parser.parse_args(argv)
    script = ScriptedModel([], name="serve-load", default=_step)
    # tool calls the server may pay in all: the warm-up run's 3, then less than the runs want together
    cap = 3 + 3 * args.runs - 10
    settings = ServeSettings(
        token=TOKEN,
        server_budget=Budget(tool_calls=cap),
        request_cap=Budget(tool_calls=5),
        max_concurrent=args.runs,
        checkpoint=args.checkpoint,
    )
    server, base = _serve(settings)
    _one(base, script.model)  # warm-up (not timed): the first run imports LiteLLM's providers
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.runs) as pool:
        outcomes = list(pool.map(lambda _: _one(base, script.model), range(args.runs)))
    wall = time.monotonic() - started
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        listed = http.get("/runs").json()
    server.should_exit = True
    listed["runs"] = listed["runs"][:-1]  # the warm-up run
    ended = [o for o in outcomes if o.get("result")]
    latencies = sorted(o["seconds"] for o in ended)
    spent = listed["server"]["spent"].get("tool_calls", 0)
    exact = all(o["result"]["usage"]["tool_calls"] == o["charged_tools"] for o in ended)
    summary = {
        "runs": args.runs,
        "accepted": sum(o["status"] == 202 for o in outcomes),
        "ended_with_result": len(ended),
        "answered": sum(o["result"]["answer"] == "3" for o in ended),
        "stopped_by_server_budget": sum(
            o["result"]["stop_reason"].startswith("budget_exhausted") for o in ended
        ),
        "server_tool_call_budget": cap,
        "server_spent_tool_calls": spent,
        "usage_equals_charge_events": exact,
        "p50_seconds": round(statistics.median(latencies), 3) if latencies else None,
        "p95_seconds": round(latencies[max(0, int(len(latencies) * 0.95) - 1)], 3) if latencies else None,
        "wall_seconds": round(wall, 2),
    }
    print(json.dumps(summary, indent=2))
    ok = summary["ended_with_result"] == args.runs and spent <= cap and exact
    if args.out is not None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in summary.items())
        args.out.write_text(
            f"# `agent serve` under load (`python benchmarks/serve_load.py --runs {args.runs}`)\n\n"
            f"| figure | value |\n|---|---|\n{rows}\n"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
