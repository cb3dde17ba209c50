"""llama.cpp's own log lines never reach the user's terminal (issue 14 item 13).

llama-cpp-python 0.3.x maps ggml's log levels wrongly, so with ``verbose=False`` a warning such as
``llama_context: n_ctx_per_seq (4096) < n_ctx_train (8192)`` was still printed on every model load.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.local_model

PROBE = "from thrifty.models.local import _load; _load('smollm2'); print('loaded')"


@pytest.mark.timeout(600)
def test_loading_the_local_model_prints_nothing_of_llama_cpp() -> None:
    env = {k: v for k, v in os.environ.items() if k != "THRIFTY_LLAMA_LOG"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=580)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"
    assert "llama_context" not in done.stderr and "n_ctx" not in done.stderr, done.stderr
    assert done.stderr.strip() == "", done.stderr
