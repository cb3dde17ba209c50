"""``agent bench``: accuracy against cost for every strategy and budget, and the framework's own costs.

Mounted by the main CLI as ``app.add_typer(bench_app, name="bench")``. Exit codes: 0 done, 2 bad input
(unknown strategy, bad budget, missing data file, bad model name, Ray missing or unreachable, a global budget
smaller than one run), 4 stopped by the global budget (finished runs kept), 130 interrupted (rerun to
resume).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.text import Text

from thrifty.bench.runner import DEFAULT_TOKENS_PER_CALL
from thrifty.console import err, fail, out
from thrifty.models.settings import (
    DEFAULT_ANSWER_CHOICE,
    DEFAULT_ANSWER_CONTEXT,
    DEFAULT_MODEL,
    DEFAULT_REPLY_TOKENS,
    DEFAULT_TEMPERATURE,
    AnswerChoice,
    AnswerContext,
)

__all__ = ["bench_app"]

EXIT_INTERRUPTED = 130
EXIT_BUDGET = 4  # the global budget stopped the grid (finished runs kept), as a run stopped by its budget

bench_app = typer.Typer(
    name="bench",
    help="Benchmarks: accuracy against cost per strategy and budget; framework overhead; local inference speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "model"


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    parts = [p.strip() for p in text.split(",")]
    if "" in parts and any(parts):  # "0,,2": a seed left out (an empty shell variable?)
        raise typer.BadParameter(
            f"{text!r}: a seed is missing between two commas or at an end (fix: e.g. --seed 0,1,2)",
            param_hint="--seed",
        )
    for part in parts:
        if not part:
            continue
        try:
            seeds.append(int(part))
        except ValueError:
            raise typer.BadParameter(f"seed {part!r} is not an integer", param_hint="--seed") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise typer.BadParameter(
            "give one or more distinct integer seeds, e.g. 0 or 0,1,2", param_hint="--seed"
        )
    return seeds


def check_out(target: Path, file_name: str | None = None, option: str = "--out") -> None:
    """Refuse, before anything runs, an output folder that cannot hold the results (``file_name``): it is
    created, and a scratch file made in it and removed. Exit 2 naming the option and the fix."""
    import tempfile

    try:
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(20, "is a file, not a folder")
        target.mkdir(parents=True, exist_ok=True)
        if file_name is not None and (target / file_name).is_dir():
            raise IsADirectoryError(21, f"its {file_name} is a folder")
        with tempfile.TemporaryFile(dir=target):  # a file can be made there
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        fix = "give a folder you can write (it is created if missing), e.g. " + option + " results/run1"
        raise fail(f"{option} {target}: {reason} (fix: {fix})") from None


def _show_report(records: list[dict[str, Any]], out_dir: Path, plot: bool) -> None:
    import importlib.util

    from thrifty.bench.report import render_table, title_for, write_report

    if plot and importlib.util.find_spec("matplotlib") is None:
        # The table and summaries are the results; the plot is a picture of them.
        from rich.markup import escape

        from thrifty.extras import pip_install

        hint = escape(pip_install("bench"))
        err.print(f"[yellow]note: plot.png skipped: matplotlib is not installed ({hint})[/yellow]")
        plot = False
    rows, files = write_report(records, out_dir, plot=plot)
    # Piped or redirected output gets a wide page, so that the table stays one line per row.
    console = out if out.is_terminal else Console(width=max(out.width, 160))
    console.print(render_table(rows, title_for(records)))
    written = ", ".join(str(p) for p in files.values())
    err.print(f"[dim]wrote {written}[/dim]")


@bench_app.command("hotpotqa")
def hotpotqa(
    ctx: typer.Context,
    strategies: Annotated[
        str,
        typer.Option(
            help="Comma-separated: react (tracker off), react_tracker, or any registered strategy; "
            "name:key=val,key=val passes options."
        ),
    ] = "react,react_tracker",
    budgets: Annotated[str, typer.Option(help="Tool-call budgets B, comma-separated.")] = "3,5,10,20",
    model: Annotated[
        str,
        typer.Option(
            help="LiteLLM model, local/smollm2, or sim/p=..,q=.. (simulated, benchmark only); a cascade "
            "'cheap>strong' or per-role models 'cheap>strong;verifier=strong' (thrifty.models.routing)."
        ),
    ] = DEFAULT_MODEL,
    escalate: Annotated[
        str,
        typer.Option(
            help="With a cascade: how long an escalation lasts: step, node or run (no effect with one model)."
        ),
    ] = "step",
    min_confidence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="With a cascade: resample, then escalate, a reply reported below this confidence.",
        ),
    ] = 0.6,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N questions.")] = None,
    data: Annotated[
        str | None, typer.Option(help="HotpotQA .jsonl (or question/answer .json); default: the bundled 50.")
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option(help="Corpus for search/read (default: the data file's own paragraphs).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default .thrifty/bench/<dataset>-<model>).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Questions run at once (threads).")] = 1,
    shard: Annotated[
        str,
        typer.Option(
            help="K/N: run only questions K, K+N, K+2N, ... (0-based), so N processes share one grid "
            "and --out folder (e.g. one per core with a local model)."
        ),
    ] = "0/1",
    seed: Annotated[str, typer.Option(help="Seed, or comma-separated seeds (each is a full pass).")] = "0",
    timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds per question (a seconds budget on the run).")
    ] = None,
    tokens_per_call: Annotated[
        int,
        typer.Option(min=0, help="Token budget per tool call: total_tokens = N x B (0: no token limit)."),
    ] = DEFAULT_TOKENS_PER_CALL,
    max_tokens: Annotated[
        int, typer.Option(min=1, help="Completion tokens per model call.")
    ] = DEFAULT_REPLY_TOKENS,
    temperature: Annotated[
        float, typer.Option(min=0.0, max=2.0, help="Sampling temperature.")
    ] = DEFAULT_TEMPERATURE,
    answer_choice: Annotated[
        str,
        typer.Option(
            help="Grounded answers on llama.cpp: likelihood (the span the model is likeliest to write) or "
            "grammar (the grammar's token-by-token pick)."
        ),
    ] = DEFAULT_ANSWER_CHOICE,
    answer_context: Annotated[
        str,
        typer.Option(
            help="Grounded answers once no tool is left: focused (the observed sentences closest to the "
            "question) or conversation (the whole run). Use another --out per setting."
        ),
    ] = DEFAULT_ANSWER_CONTEXT,
    price_in: Annotated[
        float | None, typer.Option(min=0.0, help="Model price, USD per 1M input tokens (sim/local are free).")
    ] = None,
    price_out: Annotated[
        float | None, typer.Option(min=0.0, help="Model price, USD per 1M output tokens.")
    ] = None,
    tool_price: Annotated[
        float | None, typer.Option(min=0.0, help="USD per search/read call (default 0.001).")
    ] = None,
    k: Annotated[int, typer.Option(min=1, help="Passages per search.")] = 3,
    executor: Annotated[
        str,
        typer.Option(
            help="local (threads, see --concurrency) or ray (Ray workers; needs thrifty's optional extra \\[ray])."
        ),
    ] = "local",
    workers: Annotated[
        int | None, typer.Option(min=1, help="Ray workers (default: the local Ray's or the cluster's CPUs).")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="An existing Ray cluster (host:port, ray://host:port or auto); default: start one."
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float, typer.Option(min=0.0, help="GPUs Ray gives each worker (a local or hf model on GPU workers).")
    ] = 0.0,
    global_usd: Annotated[
        float | None, typer.Option(min=0.0, help="USD for the whole grid, over every run and worker.")
    ] = None,
    global_tokens: Annotated[int | None, typer.Option(min=1, help="Total tokens for the whole grid.")] = None,
    global_tool_calls: Annotated[
        int | None, typer.Option(min=1, help="Tool calls for the whole grid.")
    ] = None,
    plot: Annotated[bool, typer.Option(help="Write plot.png (needs matplotlib).")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    web: Annotated[
        bool,
        typer.Option(
            "--web",
            help="Search and read through a local web (the corpus served on 127.0.0.1): web_search via "
            "LiteLLM's SearXNG provider and read_url over real HTTP, instead of the in-process search/read.",
        ),
    ] = False,
) -> None:
    """Run strategies x budgets x questions, print the table, write results.jsonl, summaries and a plot.

    Rerun the same command to resume after an interruption: finished runs are skipped.
    """
    from thrifty.bench.datasets import DatasetError, load_dataset
    from thrifty.bench.runner import (
        BenchConfig,
        BenchError,
        BudgetRule,
        GlobalBudgetReached,
        make_pricing,
        parse_budgets,
        parse_shard,
        parse_strategies,
        run_grid,
    )
    from thrifty.scale import ScaleError
    from thrifty.tools import CorpusError, load_corpus
    from thrifty.workflows.runner import SetupError

    try:
        choices = parse_strategies(strategies)
        budget_values = parse_budgets(budgets)
        seeds = _parse_seeds(seed)
        shard_kn = parse_shard(shard)
        if timeout is not None and not math.isfinite(timeout):  # a Budget would refuse it mid-grid
            raise BenchError(
                f"--timeout {timeout}: not a number of seconds (fix: e.g. --timeout 60, or leave it out)"
            )
        dataset = load_dataset(data or "hotpotqa").head(limit)
        _check_shard_has_questions(shard_kn, len(dataset))
        if data and corpus is None and dataset.corpus_path is None:
            raise BenchError(f"{data}: question/answer file without passages: give --corpus for search/read")
        # the data file's own paragraphs are read now, so that a bad one is exit 2 before --out is made
        corpus_obj = load_corpus(corpus) if corpus is not None else dataset.corpus()
        pricing = make_pricing(model, price_in=price_in, price_out=price_out, tool_price=tool_price)
        escalation = _escalation(model, escalate, min_confidence, price_in, price_out)
        if escalation is None:
            _note_unused_escalation(ctx, model)
        choice = _one_of("--answer-choice", answer_choice, get_args(AnswerChoice))
        context = _one_of("--answer-context", answer_context, get_args(AnswerContext))
        _check_model(model, pricing)
        global_budget = global_limits(global_usd, global_tokens, global_tool_calls)
        check_executor(executor, ray_address, gpus_per_worker)
        if web and executor != "local":
            raise BenchError("--web serves its pages from this process: run it with --executor local")
    except (BenchError, DatasetError, CorpusError, SetupError, ScaleError, ValueError) as exc:
        raise fail(str(exc)) from None
    except typer.BadParameter as exc:
        raise fail(exc.format_message()) from None  # str(exc) would not name the option

    target = out_dir or Path(".thrifty/bench") / f"{dataset.name}-{_slug(model)}{'-web' if web else ''}"
    config = BenchConfig(
        dataset=dataset,
        strategies=choices,
        budgets=budget_values,
        model=model,
        seeds=seeds,
        concurrency=concurrency,
        rule=BudgetRule(tokens_per_call=tokens_per_call or None, timeout=timeout),
        pricing=pricing,
        temperature=temperature,
        max_tokens=max_tokens,
        answer_choice=choice,
        answer_context=context,
        search_k=k,
        corpus=corpus_obj,
        shard=shard_kn,
        global_budget=global_budget,
        escalation=escalation,
    )
    results = target / "results.jsonl"
    check_out(target, results.name)
    if config.simulated:
        err.print("[bold yellow]SIMULATED model[/bold yellow]: results measure strategies, not a real model.")
    local_web = None
    try:
        if web:
            local_web = _start_local_web(config, tool_price)
        records = run_grid(
            config,
            results,
            progress=not quiet,
            executor=executor,
            workers=workers,
            ray_address=ray_address,
            gpus_per_worker=gpus_per_worker,
        )
    except GlobalBudgetReached as exc:
        _show_report(_shown(exc.records, choices, budget_values), target, plot)
        raise fail(str(exc), EXIT_BUDGET) from None
    except (BenchError, SetupError, DatasetError, ScaleError, CorpusError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail(
            f"interrupted: finished runs are saved in {results}; rerun the same command to resume",
            EXIT_INTERRUPTED,
        ) from None
    finally:
        if local_web is not None:
            local_web.close()
    _show_report(_shown(records, choices, budget_values), target, plot)


def _check_shard_has_questions(shard: tuple[int, int], questions: int) -> None:
    """Refuse a --shard K/N that picks no question (K at or past the number of questions): it would run
    nothing and print an empty table, exit 0."""
    from thrifty.bench.runner import BenchError

    k, n = shard
    if k >= questions:
        raise BenchError(
            f"--shard {k}/{n}: shard {k} has no questions, as the grid has {questions} (after --limit) "
            f"(fix: use K below {questions} and N at most {questions}, e.g. --shard 0/{min(n, questions)}, "
            "or give more questions)"
        )


def _shown(records: list[dict[str, Any]], choices: list[Any], budgets: list[int]) -> list[dict[str, Any]]:
    wanted = {c.label for c in choices}
    return [r for r in records if r["strategy"] in wanted and int(r["budget"]) in budgets]


def global_limits(usd: float | None, tokens: int | None, tool_calls: int | None) -> Any:
    """The Budget of --global-usd / --global-tokens / --global-tool-calls, or None when none is given."""
    from thrifty.budget import Budget

    if usd is not None and usd <= 0:
        raise typer.BadParameter("must be more than 0", param_hint="--global-usd")
    if usd is not None and not math.isfinite(usd):  # Budget would refuse it in pydantic's words
        raise typer.BadParameter(
            f"{usd} is not an amount of dollars (fix: give a finite number, e.g. --global-usd 5, or leave it "
            "out for no global dollar limit)",
            param_hint="--global-usd",
        )
    limits = {"usd": usd, "total_tokens": tokens, "tool_calls": tool_calls}
    given = {dim: value for dim, value in limits.items() if value is not None}
    return Budget(**given) if given else None


def check_executor(executor: str, ray_address: str | None, gpus_per_worker: float = 0.0) -> None:
    """Refuse, before anything runs, an unknown executor, a Ray that is not installed, an address on which
    no Ray answers (ScaleError or BenchError)."""
    from thrifty.bench.runner import EXECUTORS, BenchError

    if executor not in EXECUTORS:
        raise BenchError(f"--executor {executor!r}: use local or ray")
    if executor == "ray":
        from thrifty.scale.ray_executor import check_address, import_ray

        import_ray()
        if ray_address:
            check_address(ray_address)
        elif os.environ.get("RAY_ADDRESS"):  # Ray would refuse to start a local Ray, with a traceback
            raise BenchError(
                "--executor ray without --ray-address starts a local Ray, which Ray refuses while "
                "RAY_ADDRESS is set in the environment (fix: give that cluster as "
                '--ray-address "$RAY_ADDRESS", or unset RAY_ADDRESS to start a local Ray)'
            )
    elif ray_address or gpus_per_worker:
        given = " and ".join(
            flag
            for flag, value in (("--ray-address", ray_address), ("--gpus-per-worker", gpus_per_worker))
            if value
        )
        raise BenchError(
            f"{given} {'is' if ' and ' not in given else 'are'} for --executor ray "
            f"(fix: add --executor ray, or leave out {given})"
        )


def _start_local_web(config: Any, tool_price: float | None) -> Any:
    """Serve the grid's corpus on 127.0.0.1 and give the grid the web tools pointed at it."""
    from thrifty.bench.localweb import LocalWeb, web_tools
    from thrifty.bench.runner import BenchError

    corpus = config.corpus if config.corpus is not None else config.dataset.corpus()
    if corpus is None:
        raise BenchError(
            f"dataset '{config.dataset.name}' has no passages: give a corpus (--corpus) for --web"
        )
    web = LocalWeb(corpus).start()
    try:
        config.tools = web_tools(web, k=config.search_k, price=0.001 if tool_price is None else tool_price)
    except ValueError as exc:
        web.close()
        raise BenchError(str(exc)) from None
    err.print(f"[dim]local web: {web.base} (search: {web.base}/search, pages: {web.base}/wiki/<title>)[/dim]")
    return web


def _one_of(flag: str, value: str, allowed: tuple[str, ...]) -> Any:
    """``value`` if it is one of ``allowed``, else a BenchError naming the flag and the choices."""
    from thrifty.bench.runner import BenchError

    if value not in allowed:
        *most, last = allowed
        choices = f"{', '.join(most)} or {last}" if most else last
        raise BenchError(f"{flag} {value!r}: use {choices}")
    return value


def _escalation(
    model: str, scope: str, min_confidence: float | None, price_in: float | None, price_out: float | None
) -> Any:
    """The escalation policy for a cascade (None for one model); BenchError for what cannot be used (a
    malformed --escalate whatever the model, as a task file's malformed ``escalation:`` is refused)."""
    from thrifty.bench.runner import BenchError
    from thrifty.models.routing import EscalationPolicy, Scope, parse_model_spec

    scope = _one_of("--escalate", scope, tuple(s.value for s in Scope))
    try:
        routing = parse_model_spec(model)
    except ValueError as exc:
        raise BenchError(f"--model {model!r}: {exc}") from None
    if routing is None:
        return None
    if price_in is not None or price_out is not None:
        raise BenchError(
            "--price-in/--price-out price one model; with several, give each its price: pin=/pout= in a "
            "sim/ name, LiteLLM's prices for API models"
        )
    return EscalationPolicy(scope=Scope(scope), min_confidence=min_confidence)


def _note_unused_escalation(ctx: typer.Context, model: str) -> None:
    """A note for --escalate / --min-confidence given with one model: they apply to a cascade only (as a task
    file's ``escalation:`` without ``models:`` or ``roles:``), so the grid runs without them."""
    given = [
        flag
        for flag, name in (("--escalate", "escalate"), ("--min-confidence", "min_confidence"))
        # by name: typer ships its own copy of click, whose ParameterSource is another enum than click's
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    ]
    if given:
        err.print(
            Text(
                f"note: {' and '.join(given)} {'has' if len(given) == 1 else 'have'} no effect with one model "
                f"({model}): escalation moves a call up a cascade; give --model 'cheap>strong' to use it"
            ),
            soft_wrap=True,
        )


def _check_model(model: str, pricing: Any) -> None:
    """Refuse a model that cannot run before any question is asked (bad sim/ name, missing local model)."""
    from thrifty.models.routing import parse_model_spec
    from thrifty.workflows.runner import SetupError

    routing = parse_model_spec(model)
    if routing is not None:
        for each in routing.all_models():
            _check_model(each, pricing)
        return
    if model.startswith("sim/"):
        from thrifty.bench.sim import SimParams

        SimParams.parse(model)
        return
    from thrifty.budget import Ledger, UnpricedModelError
    from thrifty.models.gateway import Gateway, ModelError

    try:
        Gateway(Ledger(), pricing).check_model(model)
    except (ModelError, UnpricedModelError) as exc:
        raise SetupError(str(exc)) from None


@bench_app.command("report")
def report(
    results: Annotated[Path, typer.Argument(help="A results.jsonl written by `agent bench hotpotqa`.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: next to the file).")
    ] = None,
    plot: Annotated[bool, typer.Option(help="Write plot.png (needs matplotlib).")] = True,
) -> None:
    """Re-render the table, summary.csv, summary.json and plot.png from saved results."""
    from thrifty.bench.runner import load_results

    if results.is_dir():
        raise fail(f"{results}: is a folder (fix: give its results.jsonl, e.g. {results / 'results.jsonl'})")
    if not results.is_file():
        raise fail(f"{results}: results file not found (fix: give the results.jsonl of an `agent bench` run)")
    records = load_results(results)
    if not records:
        raise fail(f"{results}: no benchmark results in this file")
    check_out(out_dir or results.parent)
    _show_report(records, out_dir or results.parent, plot)


@bench_app.command("overhead")
def overhead(
    steps: Annotated[
        int, typer.Option(min=2, help="Model calls in the react run (tool calls = steps - 1).")
    ] = 20,
    repeats: Annotated[
        int, typer.Option(min=1, help="Timed runs per variant (the median is reported).")
    ] = 30,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also write overhead.json here.")] = None,
    without_litellm: Annotated[
        bool,
        typer.Option(
            "--without-litellm",
            help="Framework-only reading: every variant calls the scripted provider directly, not via LiteLLM.",
        ),
    ] = False,
) -> None:
    """Framework overhead per step: thrifty react vs bare LangGraph graphs vs a plain loop, plus the Ledger."""
    from thrifty.bench.overhead import run_overhead
    from thrifty.bench.report import save_result

    if out_dir is not None:
        check_out(out_dir)
    result = run_overhead(steps=steps, repeats=repeats, with_litellm=not without_litellm)
    for line in result.lines():
        out.print(Text(line), highlight=False)
    if out_dir is not None:
        err.print(f"[dim]wrote {save_result(result, out_dir, 'overhead')}[/dim]")


@bench_app.command("inference")
def inference(
    model: Annotated[str, typer.Option(help="A local/ model.")] = "local/smollm2",
    max_tokens: Annotated[int, typer.Option(min=1, help="Completion tokens per call.")] = 128,
    repeats: Annotated[int, typer.Option(min=1, help="Timed calls per path (the median is reported).")] = 5,
    threads: Annotated[int | None, typer.Option(min=1, help="llama.cpp threads on both paths.")] = None,
    prompt: Annotated[str | None, typer.Option(help="The user message to complete.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also write inference.json here.")] = None,
) -> None:
    """Local inference: tokens/second through the Gateway vs raw llama-cpp-python (goal >= 0.9x)."""
    from thrifty.bench.inference import DEFAULT_PROMPT, run_inference
    from thrifty.bench.report import save_result

    if out_dir is not None:
        check_out(out_dir)
    try:
        result = run_inference(
            model, prompt=prompt or DEFAULT_PROMPT, max_tokens=max_tokens, repeats=repeats, threads=threads
        )
    except (ValueError, ImportError) as exc:
        raise fail(str(exc)) from None
    for line in result.lines():
        out.print(Text(line), highlight=False)
    if out_dir is not None:
        err.print(f"[dim]wrote {save_result(result, out_dir, 'inference')}[/dim]")


# ------------------------------------------------------------------------------------------------ memory
_MEM_MODEL_HELP = (
    "Answer model: memsim/q=0.8 (simulated, labelled so), any LiteLLM model, or local/smollm2. "
    "The HIGH memory tiers use --memory-model, else this one."
)


def _memory_bench(
    dataset: str,
    conversations: list[Any],
    *,
    routers: str,
    model: str,
    memory_model: str | None,
    embedder: str,
    price_in: float | None,
    price_out: float | None,
    memory_ops: int,
    memory_tokens: int,
    out_dir: Path | None,
    plot: bool,
    quiet: bool,
    chunk_tokens: int = 320,
    facts: str = "none",
    summaries: str = "none",
    router_weights: Path | None = None,
    chunk_turns: int | None = None,
    low_filter: str = "turns",
    filter_k: int = 15,
    stem: bool = True,
) -> None:
    from thrifty.bench.memory import (
        MemBenchConfig,
        _label,
        markdown_table,
        parse_routers,
        run_memory_bench,
        summarize_memory,
        write_plot,
    )
    from thrifty.bench.runner import make_pricing
    from thrifty.budget import Budget
    from thrifty.memory.embed import EmbedderError
    from thrifty.memory.learned import load_weights

    try:
        # checked before --out is made (they were refused only once the first conversation was ingested)
        _one_of("--facts", facts, ("none", "low", "high"))
        _one_of("--summaries", summaries, ("none", "low", "high"))
        _one_of("--embedder", embedder, ("auto", "minilm", "none"))
        parsed = parse_routers(routers)
        if any(r == "learned" for r, _ in parsed):
            load_weights(router_weights)  # a missing or bad weights file: exit 2 before any run
        pricing = make_pricing(model, price_in=price_in, price_out=price_out)
        if memory_model and memory_model != model:
            extra = make_pricing(memory_model, price_in=price_in, price_out=price_out)
            pricing = pricing.model_copy(update={"models": {**pricing.models, **extra.models}})
        config = MemBenchConfig(
            dataset=dataset,
            conversations=conversations,
            routers=parsed,
            model=model,
            pricing=pricing,
            memory_model=memory_model,
            embedder=embedder,
            memory_budget=Budget(memory_ops=memory_ops, total_tokens=memory_tokens),
            chunk_tokens=chunk_tokens or None,
            chunk_turns=chunk_turns if chunk_turns or chunk_tokens else 8,
            facts=facts,
            summaries=summaries,
            learned_weights=str(router_weights) if router_weights else None,
            low_filter=low_filter,
            filter_k=filter_k,
            stem=stem,
        )
        if low_filter not in ("turns", "none"):
            raise ValueError(f"--low-filter {low_filter!r}: use turns or none")
    except (ValueError, EmbedderError) as exc:
        raise fail(str(exc)) from None
    target = out_dir or Path(".thrifty/bench") / f"{dataset}-{_slug(model)}"
    results = target / "results.jsonl"
    check_out(target, results.name)
    if model.startswith("memsim/"):
        err.print("[bold yellow]SIMULATED answerer[/bold yellow]: F1/EM measure memory, not a real model.")
    n = 0
    try:
        for _ in run_memory_bench(config, results):
            n += 1
            if not quiet and n % 50 == 0:
                err.print(f"[dim]{n} runs...[/dim]")
    except KeyboardInterrupt:
        raise fail(
            f"interrupted: finished runs are saved in {results}; rerun the same command to resume",
            EXIT_INTERRUPTED,
        ) from None
    except (ValueError, EmbedderError) as exc:
        raise fail(str(exc)) from None
    import json

    wanted = {_label(r, lam) for r, lam in parsed}
    ids = {c.id for c in conversations}
    records = [
        r
        for r in (
            json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()
        )
        if r["router"] in wanted and r["conversation"] in ids and r["model"] == model
    ]
    rows = summarize_memory(records)
    simulated = " (SIMULATED answerer)" if any(r["simulated"] for r in rows) else ""
    title = f"{dataset}: {len(ids)} conversation(s), answer model {model}{simulated}"
    table = markdown_table(rows, title)
    (target / "table.md").write_text(table + "\n", encoding="utf-8")
    (target / "summary.json").write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    out.print(table, markup=False, highlight=False, soft_wrap=True)
    if plot and write_plot(rows, target / "plot.png", title) is None:
        err.print("[yellow]note: plot.png skipped: matplotlib is not installed[/yellow]")
    err.print(f"[dim]wrote {results}, {target / 'table.md'}[/dim]")


_Routers = Annotated[
    str,
    typer.Option(
        help="Comma-separated: low, mid, high (fixed tiers), rules[:lambda] (rule router), "
        "learned[:lambda] (learned router)."
    ),
]
_ChunkTurns = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=64,
        help="At most this many turns per stored item (default: none with --chunk-tokens, else 8).",
    ),
]
_RouterWeights = Annotated[
    Path | None,
    typer.Option(help="Weights of the learned router (default: the shipped ones, trained on LongMemEval)."),
]
_MemOps = Annotated[int, typer.Option(min=1, help="Memory cap per question: memory operations.")]
_MemTokens = Annotated[int, typer.Option(min=1, help="Memory cap per question: model tokens (HIGH tiers).")]
_ChunkTokens = Annotated[
    int, typer.Option(min=0, help="Chunk size in tokens (a long turn cut on sentences); 0: 8 turns a chunk.")
]
_Facts = Annotated[str, typer.Option(help="Write-time facts: none, low (rules) or high (the memory model).")]
_Summaries = Annotated[str, typer.Option(help="Write-time session summaries: none, low or high.")]
_LowFilter = Annotated[
    str,
    typer.Option(
        help="LOW condense: turns (the best turns of --filter-k chunks, each with the next one) or none "
        "(the k best chunks whole, as before)."
    ),
]
_FilterK = Annotated[int, typer.Option(min=1, max=100, help="Chunks the LOW turn filter reads from.")]
_Stem = Annotated[bool, typer.Option(help="Stem words for BM25 (--no-stem: exact words, as before).")]


@bench_app.command("locomo")
def locomo(
    data: Annotated[Path, typer.Option(help="LoCoMo's locomo10.json (CC BY-NC: read, never copied).")],
    routers: _Routers = "low,mid,high,rules:0.1,rules:0.5",
    model: Annotated[str, typer.Option(help=_MEM_MODEL_HELP)] = "memsim/q=0.8",
    memory_model: Annotated[str | None, typer.Option(help="Model for the HIGH memory tiers.")] = None,
    embedder: Annotated[str, typer.Option(help="MID tier embedder: auto, minilm or none.")] = "auto",
    conversations: Annotated[str | None, typer.Option(help="Conversation indexes, e.g. 0,1 or 8-9.")] = None,
    questions: Annotated[int | None, typer.Option(min=1, help="First N questions per conversation.")] = None,
    price_in: Annotated[float, typer.Option(min=0.0, help="USD per 1M input tokens.")] = 0.15,
    price_out: Annotated[float, typer.Option(min=0.0, help="USD per 1M output tokens.")] = 0.60,
    memory_ops: _MemOps = 10,
    memory_tokens: _MemTokens = 4000,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    plot: Annotated[bool, typer.Option(help="Write plot.png (needs matplotlib).")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    chunk_tokens: _ChunkTokens = 320,
    facts: _Facts = "none",
    summaries: _Summaries = "none",
    router_weights: _RouterWeights = None,
    chunk_turns: _ChunkTurns = None,
    low_filter: _LowFilter = "turns",
    filter_k: _FilterK = 15,
    stem: _Stem = True,
) -> None:
    """LoCoMo: memory then one answer per question, per router; official F1 per category, evidence recall,
    memory cost and latency. Rerun the same command to resume."""
    from thrifty.bench.memory import locomo_conversations
    from thrifty.memory import MemoryFormatError

    try:
        convs = _pick(locomo_conversations(data), conversations, questions)
    except (MemoryFormatError, ValueError) as exc:
        raise fail(str(exc)) from None
    _memory_bench(
        "locomo",
        convs,
        routers=routers,
        model=model,
        memory_model=memory_model,
        embedder=embedder,
        price_in=price_in,
        price_out=price_out,
        memory_ops=memory_ops,
        memory_tokens=memory_tokens,
        out_dir=out_dir,
        plot=plot,
        quiet=quiet,
        chunk_tokens=chunk_tokens,
        facts=facts,
        summaries=summaries,
        router_weights=router_weights,
        chunk_turns=chunk_turns,
        low_filter=low_filter,
        filter_k=filter_k,
        stem=stem,
    )


@bench_app.command("longmemeval")
def longmemeval(
    data: Annotated[Path, typer.Option(help="A LongMemEval file (oracle, S or M).")],
    haystack: Annotated[
        int,
        typer.Option(min=0, help="Sessions per question, mixing in other questions' (0: oracle setting)."),
    ] = 45,
    routers: _Routers = "low,mid,high,rules:0.1,rules:0.5",
    model: Annotated[str, typer.Option(help=_MEM_MODEL_HELP)] = "memsim/q=0.8",
    memory_model: Annotated[str | None, typer.Option(help="Model for the HIGH memory tiers.")] = None,
    embedder: Annotated[str, typer.Option(help="MID tier embedder: auto, minilm or none.")] = "auto",
    conversations: Annotated[str | None, typer.Option(help="Question indexes, e.g. 0-19.")] = None,
    price_in: Annotated[float, typer.Option(min=0.0, help="USD per 1M input tokens.")] = 0.15,
    price_out: Annotated[float, typer.Option(min=0.0, help="USD per 1M output tokens.")] = 0.60,
    memory_ops: _MemOps = 10,
    memory_tokens: _MemTokens = 4000,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    plot: Annotated[bool, typer.Option(help="Write plot.png (needs matplotlib).")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    chunk_tokens: _ChunkTokens = 320,
    facts: _Facts = "none",
    summaries: _Summaries = "none",
    router_weights: _RouterWeights = None,
    chunk_turns: _ChunkTurns = None,
    low_filter: _LowFilter = "turns",
    filter_k: _FilterK = 15,
    stem: _Stem = True,
) -> None:
    """LongMemEval: each question's sessions mixed into a haystack (or alone with --haystack 0), memory
    then one answer; F1, EM, evidence recall, memory cost and latency per router."""
    from thrifty.bench.memory import longmemeval_conversations
    from thrifty.memory import MemoryFormatError

    try:
        convs = _pick(longmemeval_conversations(data, haystack=haystack), conversations, None)
    except (MemoryFormatError, ValueError) as exc:
        raise fail(str(exc)) from None
    name = "longmemeval" if haystack else "longmemeval-oracle"
    _memory_bench(
        name,
        convs,
        routers=routers,
        model=model,
        memory_model=memory_model,
        embedder=embedder,
        price_in=price_in,
        price_out=price_out,
        memory_ops=memory_ops,
        memory_tokens=memory_tokens,
        out_dir=out_dir,
        plot=plot,
        quiet=quiet,
        chunk_tokens=chunk_tokens,
        facts=facts,
        summaries=summaries,
        router_weights=router_weights,
        chunk_turns=chunk_turns,
        low_filter=low_filter,
        filter_k=filter_k,
        stem=stem,
    )


def _pick(convs: list[Any], which: str | None, questions: int | None) -> list[Any]:
    from dataclasses import replace

    chosen = convs
    if which:
        idx: list[int] = []
        for part in filter(None, (p.strip() for p in which.split(","))):
            lo, _, hi = part.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise ValueError(f"--conversations {which!r}: give indexes such as 0,1 or 8-9")
            if int(hi or lo) < int(lo):  # "5-2" picked nothing and the bench ran 0 questions
                raise ValueError(
                    f"--conversations {which!r}: the range {part} is empty; write it low-high, e.g. 2-5"
                )
            idx.extend(range(int(lo), int(hi or lo) + 1))
        bad = [i for i in idx if i >= len(convs)]
        if bad:
            raise ValueError(f"--conversations: index {bad[0]} is out of range (0-{len(convs) - 1})")
        chosen = [convs[i] for i in idx]
    if questions:
        chosen = [replace(c, questions=c.questions[:questions]) for c in chosen]
    return chosen
