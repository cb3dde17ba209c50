"""Does a time budget stop the embedded model mid-generation? ``python benchmarks/local_timeout.py``

One Gateway call to ``local/smollm2`` asking for a long story (``max_tokens`` 400, greedy) under
``Budget(seconds=S)`` (``--seconds``, default 2), after the model is loaded. Prints how long the call took,
how it ended, what the Ledger charged and any overrun. Before in-process generations checked their stop
signal, the call ran to its 400 tokens whatever the budget and the Ledger recorded a ``seconds`` overrun;
now it stops at the token where the Gateway's timeout (0.9 x the time left) passed. Timings depend on the
machine; what to look for is the overrun line.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from thrifty.budget import Budget, BudgetExceeded, Ledger
from thrifty.models import Gateway, ModelError
from thrifty.models.local import count_tokens

MESSAGES = [{"role": "user", "content": "Write a very long story about a dragon."}]


def main() -> None:
    parser = argparse.ArgumentParser(description="Does a time budget stop the embedded model mid-generation?")
    parser.add_argument("--seconds", type=float, default=2.0, help="the time budget of the call")
    args = parser.parse_args()
    count_tokens("local/smollm2", MESSAGES)  # load the model first: its load is not the call's time
    ledger = Ledger(Budget(seconds=args.seconds))
    started = time.monotonic()
    try:
        reply = Gateway(ledger).complete("local/smollm2", MESSAGES, max_tokens=400, temperature=0)
        ended = f"a reply of {reply.usage.completion_tokens} tokens"
    except (BudgetExceeded, ModelError) as exc:
        ended = f"{type(exc).__name__}: {exc}"
    took = time.monotonic() - started
    spent = {k: round(v, 4) for k, v in sorted(ledger.spent.items())}
    print(f"budget {args.seconds:g} s; the call took {took:.2f} s and ended with {ended}")
    print(f"charged: {spent}")
    print(f"overruns: {[(o.dimension, o.limit, round(o.spent, 2)) for o in ledger.overruns] or 'none'}")


if __name__ == "__main__":
    main()
