"""Persistence: the run store (every run and the charges it made) and the database helpers it shares.

It sits next to the budget at the bottom of the layers and imports nothing else of thrifty (but the shared
scrubber): the workflows write runs to it, the CLI reads them, and a memory tier may keep its tables in the
same database.
"""

from thrifty.store.check import StoreError, StoreWarning, check_store
from thrifty.store.db import database_url, make_engine
from thrifty.store.runs import RUNNING, RunRecorder, RunStore

__all__ = [
    "RUNNING",
    "RunRecorder",
    "RunStore",
    "StoreError",
    "StoreWarning",
    "check_store",
    "database_url",
    "make_engine",
]
