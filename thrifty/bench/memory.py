"""``agent bench locomo|longmemeval``: memory quality against memory cost, per fixed tier and per router.

Protocol: per conversation a fresh in-memory store; every session ingested (LOW write); then, per question
and router, one memory recall on a capped child ledger, then one answer call (no tools) with the memory
block in the system prompt, through the real Gateway and Ledger. Results are JSON lines, one per
(conversation, question, router); a rerun skips what is done (resumable). The settings the rows depend on
(models, prices, memory options, the conversations' sessions) are kept beside them
(``results.settings.json``): a rerun with other settings is refused (:class:`MemBenchError`) rather than
mixed in. Both models are checked before anything runs, and an answer call that fails stops the run
without writing its row (a rerun does it again).

Scoring (offline, exact):

* LoCoMo's official token F1 (``task_eval/evaluation.py``): normalised (lower case, punctuation, articles and
  "and" dropped), Porter-stemmed (nltk); category 1 (multi-hop) splits prediction and gold on commas and
  averages the best match per gold part; category 3 keeps the gold before its first ``;``; category 5
  (adversarial) scores 1 when the reply says "no information available" or "not mentioned". The headline is
  categories 1-4; 5 is reported apart. EM is exact match after the same normalisation.
* Evidence recall: the share of the gold evidence turns whose text (as stored, dates resolved) is in the
  memory block; evidence hit: at least one of them is (MEMORY.md's retrieval measure).
* Memory cost per question: the USD of the memory node's charges plus the memory block's tokens at the
  answer model's input price (the context memory puts in front of the answerer is its main cost at LOW).

LoCoMo (CC BY-NC 4.0) is read from the path given; nothing of it is written except results in ``--out``.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from thrifty.budget import Budget, Ledger, Pricing
from thrifty.memory import Memory
from thrifty.memory.chunking import reached, turn_pieces
from thrifty.memory.formats import ChatSession, load_locomo, load_longmemeval
from thrifty.memory.memory import LowFilter, WriteLevel
from thrifty.memory.records import Level
from thrifty.memory.temporal import resolve_relative
from thrifty.redact import redact

__all__ = [
    "MemBenchConfig",
    "MemBenchError",
    "MemConversation",
    "MemQuestion",
    "locomo_conversations",
    "locomo_f1",
    "longmemeval_conversations",
    "run_memory_bench",
    "summarize_memory",
]

ANSWER_PROMPT = (
    "Answer the question from the memory below in a few words (a name, a date, a short phrase). If the "
    "memory does not say, reply: No information available."
)
LOCOMO_CATEGORIES = {
    "1": "multi-hop",
    "2": "temporal",
    "3": "open-domain",
    "4": "single-hop",
    "5": "adversarial",
}


@dataclass(frozen=True)
class MemQuestion:
    index: int
    question: str
    answer: str
    category: str
    evidence_lines: tuple[str, ...]
    adversarial: bool = False
    evidence_refs: tuple[str, ...] = ()  # the gold turns' refs (scored on the lines memory stores them as)


@dataclass(frozen=True)
class MemConversation:
    id: str
    sessions: tuple[ChatSession, ...]
    questions: tuple[MemQuestion, ...]


def _lines_by_ref(sessions: Sequence[ChatSession]) -> dict[str, str]:
    """Each turn's line as memory stores it (``Speaker: text``, relative dates resolved)."""
    return {
        t.ref: f"{t.speaker}: {resolve_relative(t.text, s.date)}" for s in sessions for t in s.turns if t.ref
    }


def locomo_conversations(path: str | Path) -> list[MemConversation]:
    out: list[MemConversation] = []
    for conv in load_locomo(path):
        lines = _lines_by_ref(conv.sessions)
        questions = tuple(
            MemQuestion(
                index=i,
                question=qa.question,
                answer=qa.answer,
                category=qa.category,
                evidence_lines=tuple(lines[r] for r in qa.evidence if r in lines),
                adversarial=qa.category == "5",
                evidence_refs=tuple(r for r in qa.evidence if r in lines),
            )
            for i, qa in enumerate(conv.qa)
        )
        out.append(MemConversation(conv.id, conv.sessions, questions))
    return out


def longmemeval_conversations(
    path: str | Path, *, haystack: int = 45, seed: int = 0
) -> list[MemConversation]:
    """One conversation per question. ``haystack`` > 0 mixes the question's own (evidence) sessions among
    other questions' sessions up to that many sessions (LongMemEval-S style); 0 keeps the oracle setting."""
    items = load_longmemeval(path)
    pool = [s for q in items for s in q.sessions]
    out: list[MemConversation] = []
    for i, item in enumerate(items):
        own = list(item.sessions)
        ids = {s.id for s in own}
        sessions = own
        if haystack > 0:
            rng = random.Random(f"{seed}|{item.qa.id}")
            others = [s for s in pool if s.id not in ids]
            rng.shuffle(others)
            extra: list[ChatSession] = []
            for s in others:
                if len(own) + len(extra) >= haystack:
                    break
                if s.id not in {x.id for x in extra}:
                    extra.append(s)
            sessions = own + extra
            rng.shuffle(sessions)
        lines = _lines_by_ref(own)
        evidence = tuple(lines[t.ref] for s in own for t in s.turns if t.has_answer and t.ref in lines)
        question = MemQuestion(
            index=0,
            question=item.qa.question,
            answer=item.qa.answer,
            category=item.qa.category + ("_abs" if item.qa.id.endswith("_abs") else ""),
            evidence_lines=evidence,
            adversarial=item.qa.id.endswith("_abs"),
            evidence_refs=tuple(t.ref for s in own for t in s.turns if t.has_answer and t.ref in lines),
        )
        out.append(MemConversation(f"{i}:{item.qa.id}", tuple(sessions), (question,)))
    return out


# ------------------------------------------------------------------------------------------------ scoring
_STEMMER: Any = None


def _stem(word: str) -> str:
    global _STEMMER
    if _STEMMER is None:
        from nltk.stem import PorterStemmer

        _STEMMER = PorterStemmer()
    return _STEMMER.stem(word)


def _normalize(text: str) -> str:
    text = text.replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the|and)\b", " ", text)
    return " ".join(text.split())


def _token_f1(prediction: str, gold: str) -> float:
    pred = [_stem(w) for w in _normalize(prediction).split()]
    ref = [_stem(w) for w in _normalize(gold).split()]
    common: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for w in ref:
        counts[w] += 1
    same = 0
    for w in pred:
        if counts[w] > common[w]:
            common[w] += 1
            same += 1
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def locomo_f1(prediction: str, gold: str, category: str) -> float:
    """LoCoMo's official per-category score (see the module docstring)."""
    prediction = prediction or ""
    if category == "5":
        low = prediction.lower()
        return float("no information available" in low or "not mentioned" in low)
    if category == "3":
        gold = gold.split(";")[0].strip()
    if category == "1":
        parts = [p for p in prediction.split(",") if p.strip()] or [prediction]
        golds = [g for g in gold.split(",") if g.strip()] or [gold]
        return sum(max(_token_f1(p, g) for p in parts) for g in golds) / len(golds)
    return _token_f1(prediction, gold)


def _exact(prediction: str, gold: str) -> float:
    return float(_normalize(prediction) == _normalize(gold))


# ------------------------------------------------------------------------------------------------- runner
@dataclass
class MemBenchConfig:
    dataset: str  # locomo | longmemeval | longmemeval-oracle
    conversations: list[MemConversation]
    routers: list[tuple[str, float]]  # (router, lambda)
    model: str
    pricing: Pricing
    memory_model: str | None = None  # HIGH tiers; default: the answer model
    embedder: str = "auto"
    memory_budget: Budget = field(default_factory=lambda: Budget(memory_ops=10, total_tokens=4000))
    max_tokens: int = 64
    k: int = 5
    chunk_tokens: int | None = 320  # Memory's chunking (None: by chunk_turns only)
    chunk_turns: int | None = None
    facts: str = "none"  # write-time facts: none | low | high
    summaries: str = "none"  # write-time session summaries: none | low | high
    learned_weights: str | None = None  # the learned router's weights file (None: the shipped one)
    low_filter: str = "turns"  # LOW condense: turns (the turn filter) | none (the k best chunks whole)
    filter_k: int = 15  # chunks the LOW turn filter reads from
    stem: bool = True  # BM25 over stemmed words

    def memory_options(self) -> dict[str, Any]:
        """The Memory(...) options of this configuration (chunking, write layers, LOW retrieval)."""
        return {
            "embedder": self.embedder,
            "model": self.memory_model or self.model,
            "pricing": self.pricing,
            "k": self.k,
            "chunk_tokens": self.chunk_tokens,
            "chunk_turns": self.chunk_turns,
            "facts": cast(WriteLevel, self.facts),  # checked by Memory
            "summaries": cast(WriteLevel, self.summaries),
            "low_filter": cast(LowFilter, self.low_filter),
            "filter_k": self.filter_k,
            "stem": self.stem,
        }


class MemBenchError(ValueError):
    """A memory benchmark that cannot run as asked: an unusable model, results made with other settings,
    an answer call that failed (what was finished is kept)."""


def check_models(config: MemBenchConfig) -> None:
    """Refuse, before any run, an answer or memory model that cannot be called or priced (the check a run
    makes on its own model, :func:`thrifty.models.routing.check_model`)."""
    import thrifty.bench.memsim  # noqa: F401  (registers the simulated answerer)
    from thrifty.models.routing import MODEL_CHECK_ERRORS, check_model

    for what, model in (
        ("answer model (--model)", config.model),
        ("memory model (--memory-model)", config.memory_model),
    ):
        if model is None:
            continue
        try:
            check_model(model, config.pricing)
        except MODEL_CHECK_ERRORS as exc:
            raise MemBenchError(f"{what} {model!r}: {exc}") from None


def settings_path(results: Path) -> Path:
    """Where the settings of the rows in ``results`` are kept (``results.settings.json`` beside it)."""
    return results.with_name(f"{results.stem}.settings.json")


def _embedder_used(choice: str) -> str:
    """The embedder a run really uses (``auto`` is minilm where it is installed, else none)."""
    if choice != "auto":
        return choice
    from thrifty.memory.embed import minilm_available

    return "minilm" if minilm_available() else "none"


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


def run_settings(config: MemBenchConfig) -> dict[str, Any]:
    """What every row of a run depends on besides its (conversation, question, router) key: the models and
    their prices, the memory options and cap, the answer's length, the learned weights (by content), and
    each conversation's sessions (by id: another --haystack or data file changes them)."""
    options = {k: v for k, v in config.memory_options().items() if k != "pricing"}
    models = {m for m in (config.model, config.memory_model or config.model)}
    weights = config.learned_weights
    return {
        "dataset": config.dataset,
        "model": config.model,
        **options,
        "embedder": _embedder_used(config.embedder),
        "prices": {
            m: p.model_dump() if (p := config.pricing.model_price(m)) else None for m in sorted(models)
        },
        "memory_budget": config.memory_budget.limits(),
        "max_tokens": config.max_tokens,
        "learned_weights": _digest(Path(weights).read_bytes())
        if weights and Path(weights).is_file()
        else weights,
        "conversations": {
            c.id: _digest("\n".join(s.id for s in c.sessions).encode()) for c in config.conversations
        },
    }


def check_settings(config: MemBenchConfig, results: Path, flag: str = "--out") -> None:
    """Refuse to add rows to ``results`` made with other settings (MemBenchError naming the differences);
    else record this run's settings beside it (the conversations of both runs kept). Memory's options are
    checked first (a ValueError), so a refused run leaves no settings behind to refuse the next one."""
    Memory(**{**config.memory_options(), "embedder": None}).close()  # no embedder: nothing to load
    mine = run_settings(config)
    path = settings_path(results)
    has_rows = results.exists() and results.stat().st_size > 0
    if not path.exists():
        if has_rows:
            raise MemBenchError(
                f"{results} has rows but no {path.name}: their settings are unknown, so they cannot be resumed; "
                f"fix: give {flag} a new location, or delete {results} to start again"
            )
        _write_settings(path, mine)
        return
    try:
        theirs = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(theirs, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise MemBenchError(
            f"{path}: unreadable ({exc}); fix: give {flag} a new location, or delete the folder's results"
        ) from None
    differ = [k for k in mine if k != "conversations" and theirs.get(k) != mine[k]]
    convs: dict[str, Any] = dict(theirs.get("conversations") or {})
    differ += [f"conversation {c}" for c, d in mine["conversations"].items() if convs.get(c, d) != d][:3]
    if differ:
        shown = ", ".join(
            f"{k} (was {json.dumps(theirs.get(k))}, now {json.dumps(mine[k])})" if k in mine else k
            for k in differ
        )
        raise MemBenchError(
            f"{results} was made with other settings: {shown}; fix: give {flag} a new location for these "
            "settings, or rerun with the settings it was made with"
        )
    _write_settings(path, {**mine, "conversations": {**convs, **mine["conversations"]}})


def _write_settings(path: Path, settings: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def parse_routers(text: str) -> list[tuple[str, float]]:
    """``low,mid,high,rules,rules:0.1,learned:0.5`` -> [(router, lambda)] (lambda default 0.3)."""
    out: list[tuple[str, float]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, lam = part.partition(":")
        if name not in ("low", "mid", "high", "rules", "learned"):
            raise ValueError(
                f"unknown memory router {name!r}: use low, mid, high, rules[:lambda] or learned[:lambda]"
            )
        try:
            value = float(lam) if lam else 0.3
        except ValueError:
            raise ValueError(f"router {part!r}: lambda must be a number within [0, 1]") from None
        if not 0 <= value <= 1:
            raise ValueError(f"router {part!r}: lambda must be within [0, 1]")
        out.append((name, value))
    if not out:
        raise ValueError("give at least one router, e.g. --routers low,mid,high,rules")
    return out


def _label(router: str, lam: float) -> str:
    return f"{router}:{lam:g}" if router in ("rules", "learned") else router


def done_runs(path: Path, field: str = "router") -> set[tuple[str, int, str]]:
    """The (conversation, question index, ``field``) runs already in the results file ``path`` (``field``:
    the router of a bench row, the configuration of a router-grid line)."""
    done: set[tuple[str, int, str]] = set()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
                done.add((r["conversation"], int(r["question_index"]), r[field]))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError):
                continue  # a line cut by an interruption: that run is done again
    return done


def _answer(config: MemBenchConfig, ledger: Ledger, question: str, block: str) -> str:
    """The answer model's reply; MemBenchError when the call fails (no row is written for it: a rerun asks
    again, where a stored error would have counted as a finished run)."""
    from thrifty.models.gateway import Gateway, ModelError

    system = f"{ANSWER_PROMPT}\n\n{block}" if block else ANSWER_PROMPT
    try:
        reply = Gateway(ledger, config.pricing, retries=1).complete(
            config.model,
            [{"role": "system", "content": system}, {"role": "user", "content": question}],
            max_tokens=config.max_tokens,
            node="answer",
        )
    except ModelError as exc:
        raise MemBenchError(
            redact(f"the answer model {config.model} failed: {' '.join(str(exc).split())}")[:500]
            + "; the finished runs are saved: rerun the same command to resume"
        ) from None
    return (reply.content or "").strip()


def evidence_pieces(q: MemQuestion, pieces: dict[str, tuple[str, ...]] | None) -> list[tuple[str, ...]]:
    """Each gold turn as the lines memory stored it (a long turn cut into pieces); its whole line when the
    refs are unknown."""
    if pieces is None or not q.evidence_refs:
        return [(line,) for line in q.evidence_lines]
    return [pieces.get(ref, (line,)) for ref, line in zip(q.evidence_refs, q.evidence_lines, strict=True)]


def _router_choice(config: MemBenchConfig, router: str) -> str:
    if router == "learned" and config.learned_weights:
        return f"learned:{config.learned_weights}"
    return router


def _question_record(
    config: MemBenchConfig,
    mem: Memory,
    conv: MemConversation,
    q: MemQuestion,
    router: str,
    lam: float,
    pieces: dict[str, tuple[str, ...]] | None = None,
    *,
    tiers: Mapping[str, Level] | None = None,
) -> dict[str, Any]:
    """One question under one router (``tiers``: a fixed configuration instead, for the router's grid)."""
    from thrifty.bench.memsim import register_question

    gold = evidence_pieces(q, pieces)
    register_question(q.question, q.answer, () if q.adversarial else gold)
    ledger = Ledger(Budget(), name="run")
    mem_ledger = ledger.child(config.memory_budget, name="memory")
    got = mem.recall(
        q.question,
        scope={"run_id": conv.id},
        ledger=mem_ledger,
        router=dict(tiers) if tiers is not None else _router_choice(config, router),
        lam=lam,
        k=config.k,
    )
    started = time.perf_counter()
    prediction = _answer(config, ledger, q.question, got.block)
    answer_ms = (time.perf_counter() - started) * 1000
    found = [turn for turn in gold if reached(got.block, turn)]
    price = config.pricing.model_price(config.model)
    mem_usd = got.report.usd + got.report.block_tokens * (price.input_per_token if price else 0.0)
    score = locomo_f1(prediction, q.answer, "5" if q.adversarial else q.category)
    return {
        "dataset": config.dataset,
        "conversation": conv.id,
        "question_index": q.index,
        "category": q.category,
        "adversarial": q.adversarial,
        "router": _label(router, lam),
        "lambda": lam,
        "model": config.model,
        "simulated": config.model.startswith("memsim/"),
        "prediction": prediction,
        "f1": score,
        "em": _exact(prediction, q.answer) if not q.adversarial else score,
        "evidence_recall": len(found) / len(gold) if gold else None,
        "evidence_hit": bool(found) if gold else None,
        "facts": got.report.facts,
        "ran": got.report.ran,
        "proposed": got.report.proposed,
        "memory_ops": got.report.memory_ops,
        "memory_model_tokens": got.report.model_tokens,
        "block_tokens": got.report.block_tokens,
        "memory_usd": mem_usd,
        "memory_ms": got.report.recall_ms,
        "router_ms": got.report.router_ms,
        "answer_ms": answer_ms,
        "notes": got.report.notes,
    }


def run_memory_bench(
    config: MemBenchConfig, results: Path, *, progress: bool = True
) -> Iterator[dict[str, Any]]:
    """Run what is not done yet (appending to ``results``), yielding each new record. MemBenchError before
    any run when a model cannot be used or ``results`` holds rows of other settings."""
    check_models(config)
    check_settings(config, results)
    done = done_runs(results)
    with results.open("a", encoding="utf-8") as out:
        for conv in config.conversations:
            todo = [
                (q, r, lam)
                for q in conv.questions
                for r, lam in config.routers
                if (conv.id, q.index, _label(r, lam)) not in done
            ]
            if not todo:
                continue
            with Memory(**config.memory_options()) as mem:
                mem.ingest(list(conv.sessions), scope={"run_id": conv.id})
                pieces = {r: p for s in conv.sessions for r, p in turn_pieces(s, mem.chunk_tokens).items()}
                for q, router, lam in todo:
                    record = _question_record(config, mem, conv, q, router, lam, pieces)
                    out.write(json.dumps(record) + "\n")
                    out.flush()
                    yield record


# ------------------------------------------------------------------------------------------------ report
def _pct(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1))]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summarize_memory(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per router: headline (non-adversarial) F1 / EM / evidence recall, per-category F1, the
    adversarial score apart, memory cost and latency, tier shares, and whether it is on the Pareto front."""
    by_router: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_router[r["router"]].append(r)
    rows: list[dict[str, Any]] = []
    for router, rs in by_router.items():
        main = [r for r in rs if not r["adversarial"]]
        adv = [r for r in rs if r["adversarial"]]
        ev = [r["evidence_recall"] for r in main if r["evidence_recall"] is not None]
        row: dict[str, Any] = {
            "router": router,
            "n": len(main),
            "f1": _mean([r["f1"] for r in main]),
            "em": _mean([r["em"] for r in main]),
            "evidence_recall": _mean(ev),
            "evidence_hit": _mean([float(r["evidence_hit"]) for r in main if r["evidence_hit"] is not None]),
            "adversarial": _mean([r["f1"] for r in adv]) if adv else None,
            "memory_usd_q": _mean([r["memory_usd"] for r in rs]),
            "memory_ops_q": _mean([r["memory_ops"] for r in rs]),
            "memory_model_tokens_q": _mean([r["memory_model_tokens"] for r in rs]),
            "block_tokens_q": _mean([r["block_tokens"] for r in rs]),
            "memory_p50_ms": _pct([r["memory_ms"] for r in rs], 0.5),
            "memory_p95_ms": _pct([r["memory_ms"] for r in rs], 0.95),
            "router_p50_ms": _pct([r["router_ms"] for r in rs], 0.5),
            "router_p95_ms": _pct([r["router_ms"] for r in rs], 0.95),
            "per_category": {
                c: _mean([r["f1"] for r in main if r["category"] == c])
                for c in sorted({r["category"] for r in main})
            },
            "shares": {
                m: {t: sum(1 for r in rs if r["ran"].get(m) == t) / len(rs) for t in ("low", "mid", "high")}
                for m in ("retrieve", "condense")
            },
            "simulated": any(r.get("simulated") for r in rs),
        }
        rows.append(row)
    for row in rows:
        row["pareto"] = not any(
            o["f1"] >= row["f1"]
            and o["memory_usd_q"] <= row["memory_usd_q"]
            and (o["f1"] > row["f1"] or o["memory_usd_q"] < row["memory_usd_q"])
            for o in rows
        )
    return sorted(rows, key=lambda r: r["memory_usd_q"])


def _shares(row: dict[str, Any]) -> str:
    def one(m: str) -> str:
        s = row["shares"][m]
        return "/".join(f"{100 * s[t]:.0f}" for t in ("low", "mid", "high"))

    return f"R {one('retrieve')} C {one('condense')}"


def markdown_table(rows: Sequence[dict[str, Any]], title: str) -> str:
    cats = sorted({c for r in rows for c in r["per_category"]})
    head = (
        "| router | n | F1 | EM | ev. recall | ev. hit | "
        + " | ".join(f"F1 {LOCOMO_CATEGORIES.get(c, c)}" for c in cats)
        + " | adversarial | mem USD/q | mem ops/q | mem model tok/q | block tok/q | mem p50/p95 ms | "
        "route p50/p95 ms | LOW/MID/HIGH % | Pareto |"
    )
    sep = "|" + "---|" * (head.count("|") - 1)
    lines = [f"**{title}**", "", head, sep]
    for r in rows:
        adv = "-" if r["adversarial"] is None else f"{r['adversarial']:.3f}"
        lines.append(
            f"| {r['router']} | {r['n']} | {r['f1']:.3f} | {r['em']:.3f} | {r['evidence_recall']:.3f} | "
            f"{r['evidence_hit']:.3f} | "
            + " | ".join(f"{r['per_category'].get(c, math.nan):.3f}" for c in cats)
            + f" | {adv} | {r['memory_usd_q']:.6f} | {r['memory_ops_q']:.1f} | {r['memory_model_tokens_q']:.0f} | "
            f"{r['block_tokens_q']:.0f} | {r['memory_p50_ms']:.1f}/{r['memory_p95_ms']:.1f} | "
            f"{r['router_p50_ms']:.3f}/{r['router_p95_ms']:.3f} | {_shares(r)} | {'yes' if r['pareto'] else ''} |"
        )
    return "\n".join(lines)


def write_plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """F1 against memory USD per question, the Pareto frontier drawn (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r["memory_usd_q"] * 1e6, r["f1"], color="tab:blue" if r["pareto"] else "tab:gray")
        ax.annotate(r["router"], (r["memory_usd_q"] * 1e6, r["f1"]), fontsize=8)
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["memory_usd_q"])
    ax.plot([r["memory_usd_q"] * 1e6 for r in front], [r["f1"] for r in front], color="tab:blue")
    ax.set_xlabel("memory cost per question (micro-USD)")
    ax.set_ylabel("F1 (non-adversarial)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
