"""Memory: what an agent remembers across runs. (The run store moved to :mod:`thrifty.store`.)"""

__all__: list[str] = []
