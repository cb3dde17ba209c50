"""A clock for tests that read time: it moves only when told (``advance``), or by ``step`` at every read."""

from __future__ import annotations


class FakeClock:
    """Seconds as a float, like ``time.monotonic``: call it, or pass ``clock.monotonic`` where a module's
    ``monotonic`` is patched."""

    def __init__(self, now: float = 100.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def monotonic(self) -> float:
        return self()

    def advance(self, seconds: float) -> None:
        self.now += seconds
