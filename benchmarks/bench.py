"""`agent bench` without the main CLI: ``python benchmarks/bench.py hotpotqa|report|overhead|inference ...``.

Identical to ``agent bench ...`` (the same typer app, thrifty.bench.cli.bench_app).
"""

from __future__ import annotations

import thrifty  # noqa: F401  (sets the offline environment before LiteLLM is imported)
from thrifty.bench.cli import bench_app

if __name__ == "__main__":
    bench_app(prog_name="agent bench")
