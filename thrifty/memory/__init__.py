"""Memory and storage. For now: the run store (SQLAlchemy) that keeps every run and its charges."""

from thrifty.memory.store import RunStore

__all__ = ["RunStore"]
