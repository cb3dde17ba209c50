"""The run store (SQLAlchemy; SQLite by default, any database by URL): every run and every charge it made.

Why a database and not a log file: results and spending are what users audit later ("what did last week's
runs cost, and which stopped by budget?"), so they are kept queryable. Secrets never reach it: only the
RunResult (whose error texts are scrubbed by the Gateway) and the Ledger's events are written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from thrifty.store.db import database_url, make_engine


class _Base(DeclarativeBase):
    pass


class RunRow(_Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    task: Mapped[str] = mapped_column(String(200), default="")
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    stop_reason: Mapped[str] = mapped_column(String(80))
    strategy: Mapped[str] = mapped_column(String(80))
    model: Mapped[str] = mapped_column(String(200))
    usd: Mapped[float] = mapped_column(Float, default=0.0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class ChargeRow(_Base):
    __tablename__ = "charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Float)
    ledger: Mapped[str] = mapped_column(String(200))
    node: Mapped[str | None] = mapped_column(String(80), nullable=True)
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    units: Mapped[dict[str, float]] = mapped_column(JSON)
    usd: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")


class RunStore:
    """Runs and their charges. ``RunStore(".thrifty/runs.db")`` or ``RunStore("postgresql://...")``."""

    def __init__(self, target: str | Path = ".thrifty/runs.db") -> None:
        self.url = database_url(target)
        self.engine: Engine = make_engine(self.url)
        _Base.metadata.create_all(self.engine)

    def save(self, result: Any) -> None:
        """Write a RunResult and its charge events (one transaction)."""
        data = json.loads(result.model_dump_json())
        with Session(self.engine) as session, session.begin():
            session.merge(
                RunRow(
                    run_id=result.run_id,
                    created=datetime.now(UTC),
                    task=result.task or "",
                    question=result.question,
                    answer=result.answer,
                    stop_reason=result.stop_reason,
                    strategy=result.strategy,
                    model=result.model,
                    usd=result.usage.usd,
                    total_tokens=result.usage.total_tokens,
                    tool_calls=result.usage.tool_calls,
                    seconds=result.usage.seconds,
                    result=data,
                )
            )
            for event in result.events:
                session.add(
                    ChargeRow(
                        run_id=result.run_id,
                        seq=event["seq"],
                        time=event["time"],
                        ledger=event["ledger"],
                        node=event.get("node"),
                        kind=event["kind"],
                        name=event["name"],
                        units=event["units"],
                        usd=event["usd"],
                        ok=int(bool(event.get("ok", True))),
                        detail=event.get("detail", ""),
                    )
                )

    def get(self, run_id: str) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            row = session.get(RunRow, run_id)
            return dict(row.result) if row else None

    def charges(self, run_id: str) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(ChargeRow).where(ChargeRow.run_id == run_id).order_by(ChargeRow.seq)
            )
            return [
                {
                    "seq": r.seq,
                    "kind": r.kind,
                    "name": r.name,
                    "units": r.units,
                    "usd": r.usd,
                    "ok": bool(r.ok),
                }
                for r in rows
            ]

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.scalars(select(RunRow).order_by(RunRow.created.desc()).limit(limit))
            return [
                {
                    "run_id": r.run_id,
                    "created": r.created.isoformat(),
                    "task": r.task,
                    "answer": r.answer,
                    "stop_reason": r.stop_reason,
                    "usd": r.usd,
                    "total_tokens": r.total_tokens,
                    "tool_calls": r.tool_calls,
                }
                for r in rows
            ]
