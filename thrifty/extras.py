"""The pip command that installs one of thrifty's optional extras, spelt for how this copy was installed.

thrifty is installed from its checkout (the README's ``pip install -e ".[local]"``), so an error that says
``pip install 'thrifty[ray]'`` would send the user to a package index that does not have it. The hint names
the folder pip installed from instead, when pip recorded one (its ``direct_url.json``), and falls back to
the package name when thrifty came from an index or an archive.

>>> pip_install("ray", source=("/work/thrifty", True), cwd="/work/thrifty")
"pip install -e '.[ray]'"
>>> pip_install("ray", source=("/work/thrifty", False), cwd="/home/me")
"pip install '/work/thrifty[ray]'"
>>> pip_install("hf", "torch==2.13.0", source=None)
"pip install 'thrifty[hf]' torch==2.13.0"
"""

from __future__ import annotations

import functools
import json
import os
import shlex
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

__all__ = ["pip_install"]


@functools.cache
def installed_from() -> tuple[str, bool] | None:
    """(folder, editable) when pip installed thrifty from a local folder that still exists, else None."""
    # A checkout holds the build's own thrifty.egg-info, which is found first from its root and has no
    # direct_url.json: the record is the installed dist-info's.
    texts = [d.read_text("direct_url.json") for d in metadata.distributions(name="thrifty")]
    text = next((t for t in texts if t), None)
    if text is None:
        return None
    try:
        info = json.loads(text or "")
    except ValueError:
        return None
    url = info.get("url") if isinstance(info, dict) else None
    dir_info = info.get("dir_info") if isinstance(info, dict) else None
    if not isinstance(url, str) or not url.startswith("file:") or not isinstance(dir_info, dict):
        return None
    folder = url2pathname(urlparse(url).path)
    if not os.path.isdir(folder):
        return None
    return folder, bool(dir_info.get("editable"))


_UNSET: tuple[str, bool] = ("", False)


def pip_install(
    extra: str, *also: str, source: tuple[str, bool] | None = _UNSET, cwd: str | None = None
) -> str:
    """``pip install`` with thrifty's ``extra`` (and the requirements ``also``), for this installation:
    the checkout's folder (``-e`` when it was installed editable; ``.`` when it is the current folder),
    else the package name. ``source`` and ``cwd`` stand in for the installation and the current folder
    (tests)."""
    where = installed_from() if source is _UNSET else source
    if where is None:
        target = f"thrifty[{extra}]"
        editable = False
    else:
        folder, editable = where
        here = Path(cwd or os.getcwd()).absolute()
        path = Path(folder).absolute()
        shown = str(path.relative_to(here)) if path.is_relative_to(here) else str(path)
        target = f"{shown}[{extra}]"
    parts = ["pip install", *(["-e"] if editable else []), shlex.quote(target), *also]
    return " ".join(parts)
