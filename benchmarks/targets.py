"""Issue 13's targets, read from grid results: the compact EM table and value_tree against react_tracker.

    python benchmarks/targets.py benchmarks/results/sim-dev300-default [more result folders ...]

For each folder: one line per strategy with ``EM ± SE (mean tool calls)`` at each budget, then, per budget,
value_tree − react_tracker in EM and in standard errors of the difference (the square root of the sum of the
two squared SEs), the two strategies' tool calls and their difference in its standard errors, and whether the two targets hold there (EM at least
react_tracker's minus one SE; no more mean cost), and the BAVT headline (value_tree at B = 5 against
self_consistency at B = 20). The rows are those of ``agent bench report`` (same loader, same summary).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from thrifty.bench.metrics import stderr
from thrifty.bench.report import SummaryRow, summarize
from thrifty.bench.runner import load_results


def _cell(row: SummaryRow | None) -> str:
    return "—" if row is None else f"{row.em:.2f} ± {row.em_se:.2f} ({row.tool_calls:.2f})"


def report(folder: Path) -> str:
    records = load_results(folder / "results.jsonl")
    rows = {(r.strategy, r.budget): r for r in summarize(records)}
    calls: dict[tuple[str, int], list[float]] = {}
    for rec in records:
        usage = rec.get("usage") or {}
        calls.setdefault((str(rec["strategy"]), int(rec["budget"])), []).append(
            float(usage.get("tool_calls", 0))
        )
    strategies = list(dict.fromkeys(s for s, _ in rows))
    budgets = sorted({b for _, b in rows})
    ns = sorted({r.n for r in rows.values()})
    lines = [f"`{folder.name}`: n = {'/'.join(map(str, ns))} per cell, EM ± SE (mean tool calls)", ""]
    lines.append("| strategy | " + " | ".join(f"B = {b}" for b in budgets) + " |")
    lines.append("|---|" + "--:|" * len(budgets))
    for s in strategies:
        lines.append(f"| {s} | " + " | ".join(_cell(rows.get((s, b))) for b in budgets) + " |")
    lines += [
        "",
        "| B | value_tree − react_tracker | in SE(diff) | tool calls (vt / rt) | calls diff in SE(diff) "
        "| EM >= rt − 1 SE | no more cost |",
        "|--:|--:|--:|--:|--:|---|---|",
    ]
    for b in budgets:
        vt, rt = rows.get(("value_tree", b)), rows.get(("react_tracker", b))
        if vt is None or rt is None:
            continue
        diff = vt.em - rt.em
        se = math.hypot(vt.em_se, rt.em_se)
        z = diff / se if se > 0 else 0.0
        ok_em = "yes" if vt.em >= rt.em - rt.em_se else "**no**"
        ok_cost = (
            "yes"
            if vt.tool_calls <= rt.tool_calls + 1e-9
            else f"no ({vt.tool_calls / rt.tool_calls - 1:+.1%})"
        )
        call_se = math.hypot(stderr(calls[("value_tree", b)]), stderr(calls[("react_tracker", b)]))
        call_z = (vt.tool_calls - rt.tool_calls) / call_se if call_se > 0 else 0.0
        lines.append(
            f"| {b} | {diff:+.3f} | {z:+.1f} | {vt.tool_calls:.2f} / {rt.tool_calls:.2f} | {call_z:+.1f} "
            f"| {ok_em} | {ok_cost} |"
        )
    vt5, sc20 = rows.get(("value_tree", 5)), rows.get(("self_consistency", 20))
    if vt5 is not None and sc20 is not None:
        lines += [
            "",
            f"BAVT headline: value_tree at B = 5 {vt5.em:.3f} ± {vt5.em_se:.3f} against self_consistency at "
            f"B = 20 {sc20.em:.3f} ± {sc20.em_se:.3f} ({'holds' if vt5.em >= sc20.em else 'does not hold'}).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args(argv)
    print("\n\n".join(report(f) for f in args.folders))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
