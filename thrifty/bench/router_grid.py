"""The learned router's training grid: every question under all 9 tier configurations.

For each question, each (retrieve, condense) configuration runs the benchmark's own path (a fresh store per
conversation, one recall on a capped memory ledger, one answer call through the Gateway) and one JSON line
records its score and its memory cost: ``f1`` (LoCoMo's official token F1 of the answer), ``evidence_recall``
(the share of the gold evidence turns in the memory block) and ``memory_usd`` (memory's charges + the memory
block's tokens at the answer model's input price). :func:`thrifty.memory.train.train_router` fits the router
on these lines. Resumable: a rerun skips the (conversation, question, configuration) already written.

Only data whose licence allows it may train a router that is shipped (LongMemEval, MIT); LoCoMo (CC BY-NC)
must never train one that is committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from thrifty.bench.memory import MemBenchConfig, _question_record, done_runs
from thrifty.memory import Memory
from thrifty.memory.learned import CONFIGS, config_name

__all__ = ["grid_done", "load_grid", "run_router_grid"]


def grid_done(path: Path) -> set[tuple[str, int, str]]:
    """The (conversation, question index, configuration) lines already in ``path``."""
    return done_runs(path, "config")


def run_router_grid(config: MemBenchConfig, out: Path) -> Iterator[dict[str, Any]]:
    """Run every configuration of every question not yet in ``out`` (appending), yielding each line."""
    import thrifty.bench.memsim  # noqa: F401  (registers the simulated answerer)

    out.parent.mkdir(parents=True, exist_ok=True)
    done = grid_done(out)
    with out.open("a", encoding="utf-8") as sink:
        for conv in config.conversations:
            todo = [
                (q, tiers)
                for q in conv.questions
                for tiers in CONFIGS
                if (conv.id, q.index, config_name(tiers)) not in done
            ]
            if not todo:
                continue
            with Memory(**config.memory_options()) as mem:
                mem.ingest(list(conv.sessions), scope={"run_id": conv.id})
                for q, tiers in todo:
                    record = _question_record(config, mem, conv, q, "grid", 0.0, tiers=tiers)
                    record["router"] = "grid"
                    record["config"] = config_name(tiers)
                    record["question"] = q.question
                    record["embedder"] = config.embedder
                    record["chunk_turns"] = config.chunk_turns
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
                    yield record


def load_grid(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The grid lines of ``paths`` (a cut last line is skipped); ValueError naming the file when a line is
    not a grid record."""
    records: list[dict[str, Any]] = []
    need = ("conversation", "question_index", "config", "question", "memory_usd", "f1")
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # an interrupted run's last line
            if not isinstance(r, dict) or any(k not in r for k in need):
                raise ValueError(
                    f"{path}, line {n}: not a router grid record (needs {', '.join(need)}); "
                    "make one with `agent memory train-router --data ... --grid FILE`"
                )
            records.append(r)
    return records
