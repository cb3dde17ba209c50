"""Test-wide guards: offline, and no remote model may ever be called."""

from __future__ import annotations

import atexit
import os
import warnings

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["THRIFTY_BLOCK_REMOTE"] = "1"  # the Gateway refuses every non-local, non-scripted model

# Sockets the HTTP client pool of the remote-path tests leaves to the garbage collector are reported at
# interpreter exit, after pytest's summary; they are closed by then and say nothing about thrifty.
# pytest restores the warning filters when the session ends, so the filter is set again at exit too.
warnings.filterwarnings("ignore", category=ResourceWarning)
atexit.register(warnings.filterwarnings, "ignore", category=ResourceWarning)
