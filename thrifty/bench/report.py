"""From result records to a summary: one row per (strategy, budget), a rich table, CSV, JSON and a plot.

Per row: the number of runs, EM and F1 (mean and standard error over runs), the mean budget *used*
(tool calls, tokens, USD, seconds), cost-of-pass (mean USD / EM: dollars per correct answer), E^3
(EM^2 / mean tokens) and the share of runs that ended by the budget. USD is the unified cost: tokens at
their prices plus tool calls at theirs ($0.001 per search / read unless configured). Runs of a cascade
(several models) add two columns: escalations (to a stronger model) and resamples (of the same model) per
question.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thrifty.bench.metrics import budget_stop_share, cost_of_pass, e3, mean, stderr
from thrifty.extras import pip_install

__all__ = [
    "SummaryRow",
    "is_simulated",
    "render_table",
    "summarize",
    "title_for",
    "to_markdown",
    "write_csv",
    "write_json",
    "write_plot",
    "write_report",
]


@dataclass
class SummaryRow:
    strategy: str
    budget: int
    n: int
    em: float
    em_se: float
    f1: float
    f1_se: float
    tool_calls: float
    tokens: float
    usd: float
    seconds: float
    cost_of_pass: float
    e3: float
    budget_stop_share: float
    errors: int
    #: Per question, for cascade runs only (None when the records have no routing fields).
    escalations: float | None = None
    resamples: float | None = None


def summarize(records: Sequence[dict[str, Any]]) -> list[SummaryRow]:
    """One row per (strategy, budget), strategies in first-seen order, budgets ascending."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    order: dict[str, int] = {}
    for r in records:
        order.setdefault(str(r["strategy"]), len(order))
        groups.setdefault((str(r["strategy"]), int(r["budget"])), []).append(r)
    rows = []
    for (strategy, budget), runs in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        ems = [float(r.get("em", 0.0)) for r in runs]
        f1s = [float(r.get("f1", 0.0)) for r in runs]
        usage = [r.get("usage") or {} for r in runs]
        usd = mean(float(u.get("usd", 0.0)) for u in usage)
        tokens = mean(float(u.get("total_tokens", 0)) for u in usage)
        em = mean(ems)
        routed = [r for r in runs if "escalations" in r]
        rows.append(
            SummaryRow(
                strategy=strategy,
                budget=budget,
                n=len(runs),
                em=em,
                em_se=stderr(ems),
                f1=mean(f1s),
                f1_se=stderr(f1s),
                tool_calls=mean(float(u.get("tool_calls", 0)) for u in usage),
                tokens=tokens,
                usd=usd,
                seconds=mean(float(u.get("seconds", 0.0)) for u in usage),
                cost_of_pass=cost_of_pass(usd, em),
                e3=e3(em, tokens),
                budget_stop_share=budget_stop_share(r.get("stop_reason") for r in runs),
                errors=sum(1 for r in runs if str(r.get("stop_reason", "")).startswith("error")),
                escalations=mean(float(r["escalations"]) for r in routed) if routed else None,
                resamples=mean(float(r.get("resamples", 0)) for r in routed) if routed else None,
            )
        )
    return rows


def is_simulated(records: Sequence[dict[str, Any]]) -> bool:
    """True when any record comes from the simulated model (results are then always labelled so)."""
    return any(r.get("simulated") or str(r.get("model", "")).startswith("sim/") for r in records)


def title_for(records: Sequence[dict[str, Any]]) -> str:
    models = sorted({str(r.get("model", "?")) for r in records})
    datasets = sorted({str(r.get("dataset", "")) for r in records} - {""})
    seeds = sorted({int(r.get("seed", 0)) for r in records})
    questions = len({r.get("question_id") for r in records})
    title = f"{', '.join(datasets) or 'benchmark'} · {', '.join(models)} · {questions} questions"
    if len(seeds) > 1:
        title += f" x {len(seeds)} seeds"
    if is_simulated(records):
        title = f"SIMULATED model — {title}"
    return title


# ----------------------------------------------------------------------------------------------- table
def _money(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"${x:.4f}" if x < 10 else f"${x:.2f}"


def _routed(rows: Sequence[SummaryRow]) -> bool:
    """Whether any row has a cascade's columns."""
    return any(r.escalations is not None for r in rows)


def _routing_cells(row: SummaryRow) -> tuple[str, str]:
    def cell(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    return cell(row.escalations), cell(row.resamples)


#: (rich header, markdown header, right-justified) of every summary column, in order; a cascade adds two
_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("strategy", "strategy", False),
    ("budget", "B", True),
    ("n", "n", True),
    ("EM", "EM", True),
    ("F1", "F1", True),
    ("tool calls", "tool calls", True),
    ("tokens", "tokens", True),
    ("USD", "USD", True),
    ("seconds", "seconds", True),
    ("cost-of-pass", "cost-of-pass", True),
    ("E^3", "E^3", True),
    ("budget stop", "budget stop", True),
)
_ROUTED_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("escalations", "escalations", True),
    ("resamples", "resamples", True),
)


def _columns(routed: bool) -> tuple[tuple[str, str, bool], ...]:
    return _COLUMNS + (_ROUTED_COLUMNS if routed else ())


def _cells(row: SummaryRow, *, routed: bool, pm: str) -> list[str]:
    """One row's cells, in the order of :func:`_columns` (``pm`` joins a mean and its standard error)."""
    return [
        row.strategy,
        str(row.budget),
        str(row.n) + (f" ({row.errors} err)" if row.errors else ""),
        f"{row.em:.3f}{pm}{row.em_se:.3f}",
        f"{row.f1:.3f}{pm}{row.f1_se:.3f}",
        f"{row.tool_calls:.2f}",
        f"{row.tokens:,.0f}",
        _money(row.usd),
        f"{row.seconds:.2f}",
        _money(row.cost_of_pass),
        f"{row.e3:.2e}",
        f"{row.budget_stop_share:.0%}",
        *(_routing_cells(row) if routed else ()),
    ]


def render_table(rows: Sequence[SummaryRow], title: str) -> Any:
    """A rich Table of the summary: on a narrow terminal the strategy names stay whole and the figures
    wrap rather than being cut short."""
    from rich.table import Table

    table = Table(title=title, header_style="bold", title_style="bold")
    routed = _routed(rows)
    cells = [_cells(r, routed=routed, pm="±") for r in rows]
    (first, _, _), *figures = _columns(routed)
    # the strategy: whole on any terminal, the other columns give way
    table.add_column(first, no_wrap=True, min_width=max([len(first), *(len(c[0]) for c in cells)]))
    for name, _, right in figures:  # a figure too wide wraps onto a second line, never "0.1…"
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for row in cells:
        table.add_row(*row)
    return table


def to_markdown(rows: Sequence[SummaryRow], title: str) -> str:
    """The summary as a GitHub markdown table (for READMEs)."""
    routed = _routed(rows)
    columns = _columns(routed)
    head = "| " + " | ".join(md for _, md, _ in columns) + " |"
    rule = "|" + "|".join("--:" if right else "---" for _, _, right in columns) + "|"
    lines = [f"**{title}**", "", head, rule]
    lines += ["| " + " | ".join(_cells(r, routed=routed, pm=" ± ")) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- files
def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and (math.isinf(x) or math.isnan(x)) else x


def write_csv(rows: Sequence[SummaryRow], path: str | Path) -> Path:
    """The summary as CSV (an infinite cost-of-pass is written as ``inf``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(SummaryRow.__dataclass_fields__)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for row in rows:
            data = asdict(row)
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in data.items()})
    return path


def write_json(rows: Sequence[SummaryRow], records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The summary as JSON, with the model, dataset and the simulated flag (inf / NaN become null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "title": title_for(records),
        "simulated": is_simulated(records),
        "models": sorted({str(r.get("model")) for r in records}),
        "datasets": sorted({str(r.get("dataset", "")) for r in records}),
        "runs": len(records),
        "rows": [{k: _finite(v) for k, v in asdict(row).items()} for row in rows],
    }
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def save_result(result: Any, out_dir: str | Path, name: str, *, text: bool = False) -> Path:
    """Write a timing benchmark's result (anything with ``to_dict()`` and ``lines()``) as ``NAME.json`` in
    ``out_dir`` (created), and its printed lines as ``NAME.txt`` with ``text``. Returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if text:
        (out / f"{name}.txt").write_text("\n".join(result.lines()) + "\n", encoding="utf-8")
    return path


def write_plot(rows: Sequence[SummaryRow], title: str, path: str | Path) -> Path:
    """EM and F1 (with standard errors) against mean USD per question: one line per strategy, points
    labelled by budget. Needs matplotlib (the ``bench`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the plot needs matplotlib: {pip_install('bench')}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    strategies = list(dict.fromkeys(r.strategy for r in rows))
    for metric, ax in zip(("em", "f1"), axes, strict=True):
        for strategy in strategies:
            pts = sorted((r for r in rows if r.strategy == strategy), key=lambda r: r.budget)
            xs = [r.usd for r in pts]
            ys = [getattr(r, metric) for r in pts]
            errs = [getattr(r, f"{metric}_se") for r in pts]
            line = ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=strategy)
            colour = line[0].get_color()
            for i, (r, x, y) in enumerate(zip(pts, xs, ys, strict=True)):
                ax.annotate(
                    f"B={r.budget}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(5, 5 if i % 2 == 0 else -12),  # alternate: close points stay readable
                    fontsize=8,
                    color=colour,
                )
        ax.set_xlabel("mean cost per question (USD: tokens + tool calls)")
        ax.set_ylabel("exact match" if metric == "em" else "token F1")
        ax.set_title("EM" if metric == "em" else "F1")
        ax.set_ylim(bottom=0)
        ax.margins(x=0.1)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11, color="darkred" if title.startswith("SIMULATED") else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    records: Sequence[dict[str, Any]], out_dir: str | Path, *, plot: bool = True
) -> tuple[list[SummaryRow], dict[str, Path]]:
    """Write ``summary.csv``, ``summary.json``, ``summary.md`` and (with ``plot``) ``plot.png`` into
    ``out_dir``."""
    out = Path(out_dir)
    rows = summarize(records)
    title = title_for(records)
    files = {
        "csv": write_csv(rows, out / "summary.csv"),
        "json": write_json(rows, records, out / "summary.json"),
        "md": out / "summary.md",
    }
    files["md"].write_text(to_markdown(rows, title), encoding="utf-8")
    if plot and rows:
        files["plot"] = write_plot(rows, title, out / "plot.png")
    return rows, files
