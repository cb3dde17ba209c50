"""Ray scaling figures: a simulated-model grid on 1 and on 2 Ray workers, and a worker killed mid-grid.

    python benchmarks/ray_scaling.py                       # 50 questions x 2 strategies x 4 budgets x 5 seeds
    python benchmarks/ray_scaling.py --seeds 1 --kill-questions 10   # a smaller, quicker reading

Prints, for the same grid (at least 2,000 runs by default):

* wall time with 1 Ray worker and with 2 (the goal: 2 workers <= 0.6x of 1), and whether the two results
  files hold identical runs (compared without run ids, finish times and measured seconds);
* a second grid on 2 workers where one worker process is killed (SIGKILL) part-way: the grid completes, no
  finished run is lost, none is recorded twice, and the runs equal those of the 1-worker grid;
* the machine's CPU count and load averages before and after (the wall times mean little on a busy machine).

The results files are written under ``--out`` (a temporary folder by default). The simulated model's results
measure the executor, not a model.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from thrifty.bench.datasets import load_dataset
from thrifty.bench.runner import BenchConfig, load_results, parse_budgets, parse_strategies, run_grid

Key = tuple[str, int, str, int]


def comparable(records: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for r in records:
        row = {k: v for k, v in r.items() if k not in ("run_id", "finished")}
        row["usage"] = {k: v for k, v in r["usage"].items() if k != "seconds"}
        out[(r["strategy"], r["budget"], r["question_id"], r["seed"])] = row
    return out


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def timed_grid(
    config: BenchConfig, path: Path, workers: int, **kw: Any
) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    records = run_grid(config, path, progress=False, executor="ray", workers=workers, **kw)
    return time.perf_counter() - started, records


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", default="react,react_tracker")
    parser.add_argument("--budgets", default="3,5,10,20")
    parser.add_argument("--kill-questions", type=int, default=10, help="questions in the kill grid")
    parser.add_argument("--kill-after", type=int, default=50, help="kill a worker after this many runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import ray

    out = args.out or Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    dataset = load_dataset("hotpotqa").head(args.questions)
    config = BenchConfig(
        dataset=dataset,
        strategies=parse_strategies(args.strategies),
        budgets=parse_budgets(args.budgets),
        model="sim/default",
        seeds=list(range(args.seeds)),
    )
    runs = len(dataset.items) * len(config.strategies) * len(config.budgets) * len(config.seeds)
    print(f"machine: {os.cpu_count()} CPUs, load average (1/5/15 min) {load()} at start")
    print(
        f"grid: {runs} runs of sim/default ({len(dataset.items)} questions x {args.strategies} x budgets "
        f"{args.budgets} x {args.seeds} seeds)"
    )
    # One local Ray with 2 CPUs for both readings: its start is not in the timings; each grid starts its
    # own workers (included: they are part of what a grid costs).
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        one_s, one = timed_grid(config, out / "one" / "results.jsonl", 1)
        print(f"1 worker:  {one_s:8.1f} s  ({len(one)} runs, {runs / one_s:.1f} runs/s)  load {load()}")
        two_s, two = timed_grid(config, out / "two" / "results.jsonl", 2)
        print(f"2 workers: {two_s:8.1f} s  ({len(two)} runs, {runs / two_s:.1f} runs/s)  load {load()}")
        same = comparable(one) == comparable(two) and len(one) == len(two) == runs
        print(f"ratio 2/1 workers: {two_s / one_s:.2f}x (goal <= 0.60x); identical results: {same}")

        kill_config = BenchConfig(
            dataset=dataset.head(args.kill_questions),
            strategies=config.strategies,
            budgets=config.budgets,
            model=config.model,
            seeds=config.seeds,
        )
        kill_runs = len(kill_config.dataset.items) * len(config.strategies) * len(config.budgets) * args.seeds
        path = out / "kill" / "results.jsonl"
        pids: list[int] = []
        seen: list[int] = []
        on_file: list[int] = []

        def kill_one(record: dict[str, Any]) -> None:
            seen.append(1)
            if len(seen) == args.kill_after:
                on_file.append(len(load_results(path)))
                os.kill(pids[0], signal.SIGKILL)

        kill_s, _ = timed_grid(kill_config, path, 2, on_workers=pids.extend, on_result=kill_one)
        kept = load_results(path)
        reference = comparable(one)
        lines = sum(1 for line in path.read_text().splitlines() if line.strip())
        equal = all(reference[k] == v for k, v in comparable(kept).items())
        print(
            f"kill grid: {kill_runs} runs on 2 workers, worker pid {pids[0]} killed after {args.kill_after} "
            f"finished runs ({on_file[0] if on_file else '?'} on file then); completed in {kill_s:.1f} s with "
            f"{len(kept)} runs, {lines} lines (none twice), equal to the 1-worker runs: {equal}"
        )
        ok = same and len(kept) == kill_runs == lines and equal
    finally:
        ray.shutdown()
    print(f"load average at end {load()}; results under {out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
