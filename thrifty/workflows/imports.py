"""``module:function`` references in task files (custom strategies and tools).

A reference is resolved against the installed packages first, then against the task file's folder. The
folder is on ``sys.path`` only while the module is imported: the host process's import path is left as
it was.

Two ways to check a reference:

* :func:`check_reference` runs no code: it finds the module's source file the way ``import`` would (the
  parent packages are located, not imported), parses it with :mod:`ast` and checks that the name is bound
  at the module's top level (and, for a tool, that a ``def`` carries a decorator). ``agent validate`` uses
  it, so validating a file from someone else executes nothing of theirs.
* :func:`import_object` imports the module (``agent run``, ``agent validate --import``). Whatever the
  module does at import, an exception or ``sys.exit`` comes back as :class:`ReferenceImportError`. A module
  that never finishes importing (an endless loop at import) is the user's own code running: it hangs the
  run like any other code of theirs would.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import keyword
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_path_lock = threading.Lock()

MAX_SOURCE_BYTES = 8 * 1024 * 1024
"""Largest module source parsed by the static check."""

REFERENCE_FIX = "write package.module:function, e.g. my_tools:lookup for a my_tools.py next to the task file"


class BadReference(ValueError):
    """A ``module:function`` reference that is malformed or does not resolve; ``fix`` says what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})"


class ReferenceImportError(ImportError):
    """Importing the module of a reference failed: not found, or its code raised or exited."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})"


def split_reference(ref: str) -> tuple[str, str]:
    """``"pkg.mod:attr"`` -> ``("pkg.mod", "attr")``; BadReference unless every part is an identifier."""
    from thrifty.workflows.yaml_input import short

    module_name, sep, attr = ref.partition(":")
    parts = module_name.split(".")
    if (
        not sep
        or not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts)
        or not attr.isidentifier()
        or keyword.iskeyword(attr)
    ):
        raise BadReference(
            f"'{short(ref)}' is not a reference of the form package.module:function "
            "(dotted Python names, no paths)",
            REFERENCE_FIX,
        )
    return module_name, attr


def is_reference(value: str) -> bool:
    try:
        split_reference(value)
    except BadReference:
        return False
    return True


# ------------------------------------------------------------------------------------------- import
def import_object(ref: str, search_path: Path | None = None) -> Any:
    """Import ``package.module:attribute``; ``search_path`` (a task file's folder) is tried too.

    Raises BadReference (malformed), ReferenceImportError (not found, or the module raised or called
    ``sys.exit`` while importing) or AttributeError (no such attribute).
    """
    module_name, attr = split_reference(ref)
    try:
        module = _import(module_name, search_path)
    except ModuleNotFoundError as exc:
        raise ReferenceImportError(
            f"cannot import module '{module_name}': {exc}",
            "put the module next to the task file, or install its package",
        ) from None
    except (Exception, SystemExit) as exc:  # the module's own code failed: never a traceback, never an exit
        code = f": {exc.code}" if isinstance(exc, SystemExit) else f": {exc}"
        raise ReferenceImportError(
            f"module '{module_name}' failed at import: {type(exc).__name__}{code}",
            f"make `python -c 'import {module_name}'` work from the task file's folder",
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"module '{module_name}' has no '{attr}'") from None
    except Exception as exc:  # a module __getattr__ that raised
        raise AttributeError(
            f"module '{module_name}': getting '{attr}' failed: {type(exc).__name__}: {exc}"
        ) from None


def _import(module_name: str, search_path: Path | None) -> Any:
    folder = str(search_path) if search_path is not None else None
    if folder is None or folder in sys.path:
        return importlib.import_module(module_name)
    with _path_lock:
        sys.path.append(folder)
        try:
            return importlib.import_module(module_name)
        finally:
            if folder in sys.path:
                sys.path.remove(folder)


# ------------------------------------------------------------------------------------ static check
@dataclass(frozen=True)
class StaticCheck:
    """Where a reference was found, and whether its name could be checked in the source."""

    module: str
    origin: str | None
    checked: bool


def check_reference(ref: str, search_path: Path | None = None, *, kind: str = "tool") -> StaticCheck:
    """Check ``ref`` without importing anything; BadReference says what is wrong and the fix.

    ``kind`` is ``"tool"`` (a ``def`` must carry a decorator: ``@tool``) or ``"strategy"``.
    """
    module_name, attr = split_reference(ref)
    spec = _find_spec(module_name, search_path)
    loaded = sys.modules.get(module_name)
    if loaded is not None:  # already imported by this process: looking costs nothing and runs nothing new
        namespace = vars(loaded)
        if attr not in namespace:
            if "__getattr__" in namespace:
                return StaticCheck(module_name, getattr(spec, "origin", None), False)
            raise BadReference(f"module '{module_name}' has no '{attr}'", _attr_fix(module_name, attr))
        _check_loaded(namespace[attr], ref, kind)
        return StaticCheck(module_name, getattr(spec, "origin", None), True)
    origin = spec.origin if spec.has_location else None
    if spec.submodule_search_locations is not None and origin is None:
        raise BadReference(
            f"'{module_name}' is a folder without __init__.py (a namespace package), not a module",
            "name the module inside it, e.g. " + module_name + ".tools:" + attr,
        )
    if origin is None or not origin.endswith(".py"):
        return StaticCheck(module_name, origin, False)  # compiled or built in: only an import can tell
    _check_source(Path(origin), module_name, attr, kind)
    return StaticCheck(module_name, origin, True)


def _check_loaded(obj: Any, ref: str, kind: str) -> None:
    """The object a reference names in a module this process has already imported."""
    if kind == "tool":
        from thrifty.tools import Tool

        if not isinstance(obj, Tool):
            raise BadReference(
                f"'{ref}' is not a @tool-decorated function",
                "name a function decorated with @tool from thrifty",
            )
    elif not callable(obj):
        raise BadReference(f"strategy '{ref}' is not callable", "name a function that builds the graph")


def _find_spec(module_name: str, search_path: Path | None) -> importlib.machinery.ModuleSpec:
    """The spec ``import module_name`` would use, found without importing any package on the way."""
    parts = module_name.split(".")
    extra = [str(search_path)] if search_path is not None else []
    spec: importlib.machinery.ModuleSpec | None = None
    for i, part in enumerate(parts):
        name = ".".join(parts[: i + 1])
        loaded = sys.modules.get(name)
        if loaded is not None and getattr(loaded, "__spec__", None) is not None:
            spec = loaded.__spec__
        elif i == 0:
            spec = _find_top_level(name, extra)
        else:
            assert spec is not None
            locations = spec.submodule_search_locations
            if locations is None:
                parent = ".".join(parts[:i])
                raise BadReference(
                    f"'{parent}' is a module, not a package: it has no '{part}' inside",
                    f"write {parent}:function, or check the dotted name",
                )
            try:
                spec = importlib.machinery.PathFinder.find_spec(name, list(locations))
            except (ImportError, OSError, ValueError):
                spec = None
        if spec is None:
            where = "installed packages or " if i == 0 else ""
            raise BadReference(
                f"no module '{name}' in the {where}{'task folder' if i == 0 else 'package ' + '.'.join(parts[:i])}",
                "put the module next to the task file, or install its package; check the spelling",
            )
    assert spec is not None
    return spec


def _find_top_level(name: str, extra: list[str]) -> importlib.machinery.ModuleSpec | None:
    """Ask the import system's finders, as ``import`` does, with the task folder last on the path."""
    for finder in sys.meta_path:
        try:
            if finder is importlib.machinery.PathFinder:
                spec = importlib.machinery.PathFinder.find_spec(name, [*sys.path, *extra])
            else:
                find = getattr(finder, "find_spec", None)
                spec = find(name, None) if find is not None else None
        except (ImportError, OSError, ValueError, TypeError, AttributeError):
            spec = None
        if spec is not None:
            return spec
    return None


def _attr_fix(module_name: str, attr: str) -> str:
    return f"define {attr} at the top level of {module_name}, or check the name after ':'"


def _check_source(path: Path, module_name: str, attr: str, kind: str) -> None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise BadReference(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise BadReference(
            f"{path} is over {MAX_SOURCE_BYTES // 2**20} MB: too large to check",
            "pass --import to check it by importing it",
        )
    try:
        source = importlib.util.decode_source(data)
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise BadReference(
            f"module '{module_name}' has a syntax error at {path}:{exc.lineno}: {exc.msg}",
            "fix the module's syntax",
        ) from None
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        raise BadReference(
            f"module '{module_name}' cannot be parsed ({path}): {type(exc).__name__}",
            "fix the module's source (UTF-8 Python)",
        ) from None
    bound, dynamic = _top_level(tree.body)
    node = bound.get(attr)
    if node is None:
        if dynamic:
            return  # a star import or a module __getattr__: only an import can tell
        raise BadReference(
            f"module '{module_name}' ({path}) defines no '{attr}' at its top level",
            _attr_fix(module_name, attr),
        )
    if (
        kind == "tool"
        and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and not node.decorator_list
    ):
        raise BadReference(
            f"'{attr}' in module '{module_name}' is a plain function, not decorated with @tool",
            "decorate it: from thrifty import tool, then @tool above def " + attr,
        )


def _assigned(node: ast.AST) -> list[str]:
    """The names an assignment target binds (``a``, ``a, (b, *c)``)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [name for elt in node.elts for name in _assigned(elt)]
    if isinstance(node, ast.Starred):
        return _assigned(node.value)
    return []


def _bound_by(stmt: ast.stmt) -> tuple[list[str], bool]:
    """The names one top-level statement binds, and whether it may bind names no one can read statically
    (``from x import *``, a module ``__getattr__``)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name], stmt.name == "__getattr__"
    if isinstance(stmt, ast.Assign):
        return [name for target in stmt.targets for name in _assigned(target)], False
    if isinstance(stmt, (ast.AugAssign, ast.For, ast.AsyncFor)) or (
        isinstance(stmt, ast.AnnAssign) and stmt.value is not None
    ):
        return _assigned(stmt.target), False
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return [n for item in stmt.items if item.optional_vars for n in _assigned(item.optional_vars)], False
    if isinstance(stmt, ast.Import):
        return [alias.asname or alias.name.split(".")[0] for alias in stmt.names], False
    if isinstance(stmt, ast.ImportFrom):
        names = [alias.asname or alias.name for alias in stmt.names if alias.name != "*"]
        return names, any(alias.name == "*" for alias in stmt.names)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.NamedExpr):
        return _assigned(stmt.value.target), False
    return [], False


def _top_level(body: list[ast.stmt]) -> tuple[dict[str, ast.AST], bool]:
    """Names bound at a module's top level (the last binding wins), and whether some could be dynamic."""
    bound: dict[str, ast.AST] = {}
    dynamic = False
    for stmt in _flatten(body):
        names, unknowable = _bound_by(stmt)
        for name in names:
            bound[name] = stmt
        dynamic = dynamic or unknowable
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _mutates_globals(
            stmt
        ):
            dynamic = True
    return bound, dynamic


def _flatten(body: list[ast.stmt]) -> list[ast.stmt]:
    """Top-level statements, with the blocks of top-level compound statements opened up (iteratively)."""
    out: list[ast.stmt] = []
    stack: list[ast.stmt] = list(reversed(body))
    while stack:
        stmt = stack.pop()
        out.append(stmt)
        blocks: list[list[ast.stmt]] = []
        if isinstance(stmt, (ast.If, ast.For, ast.AsyncFor, ast.While)):
            blocks = [stmt.body, stmt.orelse]
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            blocks = [stmt.body]
        elif isinstance(stmt, (ast.Try, ast.TryStar)):
            blocks = [stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody]
        elif isinstance(stmt, ast.Match):
            blocks = [case.body for case in stmt.cases]
        for block in reversed(blocks):
            stack.extend(reversed(block))
    return out


def _mutates_globals(stmt: ast.stmt) -> bool:
    """A statement that may bind names the parser cannot see: ``globals()[...] = ...``, ``exec(...)``."""
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id in ("globals", "setattr", "exec", "vars")
        for n in ast.walk(stmt)
    )
