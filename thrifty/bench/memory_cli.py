"""``agent memory train-router``: build the configuration grid on LongMemEval and train the learned router."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from thrifty.console import err, fail, out

memory_app = typer.Typer(help="Long-term memory: train the learned router.", no_args_is_help=True)

EXIT_INTERRUPTED = 130
_LAMS = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)


def _split(n: int, holdout: int) -> tuple[set[int], set[int]]:
    """Question indexes (train, held out): every ``holdout``-th question (K-1, 2K-1, ...) is held out."""
    if holdout <= 1:
        return set(range(n)), set()
    held = {i for i in range(n) if i % holdout == holdout - 1}
    return set(range(n)) - held, held


def _check_file(path: Path, shown: str, fix: str) -> None:
    """Refuse, before the grid runs, a file path that cannot be written: a folder, a path under a regular
    file, or a folder that cannot be written. Its folder is created if missing. Exit 2 naming the option and
    the fix (it used to be a traceback once the whole grid and the training had run)."""
    import os
    import tempfile

    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder, not a file")
        above = path.parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise NotADirectoryError(20, f"{above} is a file, not a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryFile(dir=path.parent):  # a file can be made there
                pass
        except OSError as exc:
            raise OSError(
                exc.errno, f"no file can be made in {path.parent} ({exc.strerror or exc})"
            ) from None
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "the file cannot be written")
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise fail(f"{shown}: {reason} (fix: {fix})") from None


def _offline_table(weights: Any, table: Any, label: str) -> None:
    from thrifty.memory.learned import CONFIGS, config_name
    from thrifty.memory.train import evaluate

    out.print(f"{label}: {len(table.keys)} questions (grid outcomes, no rerun)", markup=False)
    out.print("| router | score | memory USD/q |\n|---|---|---|", markup=False)
    for i, c in enumerate(CONFIGS):
        out.print(
            f"| {config_name(c)} | {table.score[:, i].mean():.3f} | {table.usd[:, i].mean():.6f} |",
            markup=False,
        )
    for row in evaluate(weights, table, _LAMS):
        out.print(f"| learned:{row['lam']:g} | {row['score']:.3f} | {row['usd']:.6f} |", markup=False)


@memory_app.command("train-router")
def train_router_cmd(
    data: Annotated[
        Path, typer.Option(help="A LongMemEval file (MIT), e.g. longmemeval_oracle_subset98.json.")
    ],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the weights (JSON).")] = Path(
        "router.json"
    ),
    grid: Annotated[
        Path | None,
        typer.Option(help="The grid's JSON lines (resumed if present; default next to --out)."),
    ] = None,
    haystack: Annotated[
        int, typer.Option(min=0, help="Sessions per question (0: the oracle setting), as the bench.")
    ] = 45,
    holdout: Annotated[
        int, typer.Option(min=0, help="Hold out every K-th question (K-1, 2K-1, ...) from training; 0: none.")
    ] = 4,
    score: Annotated[
        str, typer.Option(help="Training score: evidence (evidence recall) or f1.")
    ] = "evidence",
    model: Annotated[
        str, typer.Option(help="Answer model of the grid (memsim/q=0.8 is SIMULATED, labelled so).")
    ] = "memsim/q=0.8",
    embedder: Annotated[str, typer.Option(help="MID tier embedder: auto, minilm or none.")] = "none",
    price_in: Annotated[float, typer.Option(min=0.0, help="USD per 1M input tokens.")] = 0.15,
    price_out: Annotated[float, typer.Option(min=0.0, help="USD per 1M output tokens.")] = 0.60,
    chunk_turns: Annotated[int, typer.Option(min=1, max=64, help="Turns per stored memory item.")] = 1,
    hidden: Annotated[int, typer.Option(min=2, max=512)] = 32,
    epochs: Annotated[int, typer.Option(min=1, max=100000)] = 400,
    seed: int = 0,
) -> None:
    """Run every training question under all 9 (retrieve, condense) configurations (resumable), then fit
    the router (torch) and write its weights (JSON, run by numpy). Only LongMemEval is read: a router
    trained on LoCoMo (CC BY-NC) must never be shipped."""
    from thrifty.bench.memory import MemBenchConfig, check_models, check_settings, longmemeval_conversations
    from thrifty.bench.router_grid import load_grid, run_router_grid
    from thrifty.bench.runner import make_pricing
    from thrifty.budget import Budget
    from thrifty.memory import MemoryFormatError
    from thrifty.memory.embed import EmbedderError
    from thrifty.memory.learned import load_weights
    from thrifty.memory.train import grid_table, train_router

    grid_path = grid or out_path.with_suffix(".grid.jsonl")
    try:
        if score not in ("evidence", "f1"):
            raise ValueError(f"--score {score!r}: use evidence or f1")
        convs = longmemeval_conversations(data, haystack=haystack)
        config = MemBenchConfig(
            dataset="longmemeval" if haystack else "longmemeval-oracle",
            conversations=convs,
            routers=[],
            model=model,
            pricing=make_pricing(model, price_in=price_in, price_out=price_out),
            embedder=embedder,
            memory_budget=Budget(memory_ops=10, total_tokens=4000),
            chunk_tokens=None,  # whole turns, as the shipped weights were trained
            chunk_turns=chunk_turns,
        )
        check_models(config)  # before any run: an unusable model is exit 2, not rows of errors
        # before any run: a path the weights (or the grid) cannot be written to is exit 2, not a traceback
        # once the whole grid and the training have run
        writable = "give a file path you can write, e.g."
        _check_file(out_path, f"--out {out_path}", f"{writable} --out router.json")
        if grid is not None:
            _check_file(grid_path, f"--grid {grid_path}", f"{writable} --grid router.grid.jsonl")
        else:  # the default grid file, next to --out
            _check_file(
                grid_path,
                f"--out {out_path}: its grid file {grid_path}",
                f"{writable} --grid router.grid.jsonl",
            )
        check_settings(config, grid_path, "--grid")  # a grid of other settings is never resumed into
    except (MemoryFormatError, ValueError, EmbedderError) as exc:
        raise fail(str(exc)) from None
    if model.startswith("memsim/"):
        err.print(
            "[bold yellow]SIMULATED answerer[/bold yellow]: the grid's F1 measures memory, not a model."
        )
    train_ids, held_ids = _split(len(convs), holdout)
    n = 0
    try:
        for _ in run_router_grid(config, grid_path):
            n += 1
            if n % 90 == 0:
                err.print(f"[dim]{n} grid runs...[/dim]")
    except KeyboardInterrupt:
        raise fail(
            f"interrupted: the grid so far is in {grid_path}; rerun the same command to resume",
            EXIT_INTERRUPTED,
        ) from None
    except (ValueError, EmbedderError) as exc:
        raise fail(str(exc)) from None
    try:
        records = [
            r
            for r in load_grid([grid_path])
            if r.get("model") == model and r.get("chunk_turns", 8) == chunk_turns
        ]
        index = {c.id: i for i, c in enumerate(convs)}
        train = grid_table([r for r in records if index.get(r["conversation"], -1) in train_ids], score)
        card = {
            "data": data.name,
            "license": "LongMemEval: MIT",
            "haystack": haystack,
            "holdout": f"every {holdout}th question (index % {holdout} == {holdout - 1})"
            if holdout > 1
            else "",
            "score": score,
            "answerer": model + (" (SIMULATED)" if model.startswith("memsim/") else ""),
            "embedder": embedder,
            "chunk_turns": chunk_turns,
            "price_per_m_tokens": [price_in, price_out],
        }
        weights = train_router(train, hidden=hidden, epochs=epochs, seed=seed, card=card)
    except ImportError as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(weights, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")
    loaded = load_weights(out_path)
    err.print(f"[dim]wrote {out_path} ({len(train.keys)} training questions; grid {grid_path})[/dim]")
    _offline_table(loaded, train, "training questions")
    held = [r for r in records if index.get(r["conversation"], -1) in held_ids]
    if held:
        with contextlib.suppress(ValueError):
            _offline_table(loaded, grid_table(held, score), "held-out questions")
