"""The install hint names the folder thrifty was installed from, not a package index that lacks it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thrifty import extras
from thrifty.extras import installed_from, pip_install


class _Dist:
    def __init__(self, text: str | None) -> None:
        self.text = text

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return self.text


def _installed(monkeypatch: pytest.MonkeyPatch, text: str | None) -> tuple[str, bool] | None:
    # the checkout's own egg-info (no record) comes first, as it does from the checkout's root
    monkeypatch.setattr(extras.metadata, "distributions", lambda name: [_Dist(None), _Dist(text)])
    installed_from.cache_clear()
    try:
        return installed_from()
    finally:
        installed_from.cache_clear()


def test_an_editable_checkout_is_named_by_its_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = {"url": tmp_path.as_uri(), "dir_info": {"editable": True}}
    assert _installed(monkeypatch, json.dumps(info)) == (str(tmp_path), True)
    assert pip_install("ray", source=(str(tmp_path), True), cwd=str(tmp_path)) == "pip install -e '.[ray]'"
    inner = tmp_path / "thrifty"
    assert pip_install("ray", source=(str(inner), True), cwd=str(tmp_path)) == "pip install -e 'thrifty[ray]'"
    away = pip_install("memory", source=(str(tmp_path), False), cwd=str(tmp_path / "elsewhere"))
    assert away == f"pip install '{tmp_path}[memory]'"


def test_a_folder_with_a_quote_is_quoted_for_the_shell(tmp_path: Path) -> None:
    folder = tmp_path / "it's here"
    hint = pip_install("local", source=(str(folder), True), cwd=str(tmp_path / "elsewhere"))
    assert hint == f"pip install -e '{tmp_path}/it'\"'\"'s here[local]'"


@pytest.mark.parametrize(
    "text",
    [
        None,  # installed from an index: no direct_url.json
        "not json",
        json.dumps({"url": "https://example.org/thrifty-0.1.0.tar.gz", "archive_info": {}}),
        json.dumps({"url": "file:///no/such/folder", "dir_info": {"editable": True}}),  # checkout gone
    ],
)
def test_otherwise_the_package_name(monkeypatch: pytest.MonkeyPatch, text: str | None) -> None:
    assert _installed(monkeypatch, text) is None
    assert pip_install("hf", "torch==2.13.0", source=None) == "pip install 'thrifty[hf]' torch==2.13.0"


def test_not_installed_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extras.metadata, "distributions", lambda name: [])
    installed_from.cache_clear()
    try:
        assert installed_from() is None
    finally:
        installed_from.cache_clear()


def test_this_checkout_installed_editable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # The README installs thrifty with `pip install -e ".[...]"` from the checkout: from its root the hint
    # is the command the README uses, never `pip install 'thrifty[ray]'` (no index has that package).
    root = Path(__file__).resolve().parents[1]
    if installed_from() != (str(root), True):
        pytest.skip("thrifty is not installed editable from this checkout")
    monkeypatch.chdir(root)
    assert pip_install("ray") == "pip install -e '.[ray]'"
