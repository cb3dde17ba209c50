"""Writers that open the same new store at once (a batch's tasks sharing ``memory.store``) all get it."""

from __future__ import annotations

import threading
from pathlib import Path

from thrifty.memory import Memory


def test_memories_opening_one_new_sqlite_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Before the fix most of them failed with MemoryStoreError '... cannot open (table memory_items already
    exists)': each checked that the table was missing, then one created it first (every trial of six)."""
    for trial in range(3):
        path = tmp_path / f"mem{trial}.db"
        barrier = threading.Barrier(6)
        errors: list[BaseException] = []

        def open_and_write(
            n: int,
            path: Path = path,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            barrier.wait()
            try:
                with Memory(path, embedder="none") as memory:
                    memory.remember(f"note number {n} of this writer", scope={"user_id": "c"})
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_and_write, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with Memory(path, embedder="none") as memory:
            assert memory.count({"user_id": "c"}) == 6
