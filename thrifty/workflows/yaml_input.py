"""Reading a task file that nobody vouches for: bounded, never a traceback, never a hang.

The file is opened only if it is a regular file (a FIFO would block, ``/dev/zero`` never ends) and read
up to :data:`MAX_BYTES`. The text is decoded from UTF-8, or from UTF-16/32 when it starts with a byte-order
mark. Before anything is built from it, the YAML event stream is scanned once, without recursion, for
what would otherwise crash or exhaust the process: nesting deeper than :data:`MAX_DEPTH` (PyYAML builds
nodes recursively), aliases that expand to more than :data:`MAX_NODES` nodes (a 1.6 KB "billion laughs"
expands to a billion), an alias that refers to the node that holds it, duplicate keys (YAML keeps the
last silently) and unknown top-level keys (so a file of 100,000 of them is reported at once).

Every problem is an :class:`Issue`: the line where one exists, the field, what is wrong and the fix.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

MAX_BYTES = 2 * 1024 * 1024
"""Largest task file read (a task file is a few hundred bytes; this leaves room for big pricing tables)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists, aliases expanded (a task file needs about 5)."""
MAX_NODES = 250_000
"""Most YAML nodes, aliases expanded."""

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Characters YAML does not allow in a stream (C0 controls but tab, CR, LF; DEL; C1 but NEL; surrogates).
_UNPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class Issue:
    """One problem: ``line`` (1-based) where one exists, ``field`` (dotted path; None for the file itself)."""

    line: int | None
    field: str | None
    message: str
    fix: str

    def render(self, file: str) -> str:
        """``file:line: field 'a.b': message (fix: ...)``, on one line whatever the parts hold."""
        where = f"{file}:{self.line}" if self.line else file
        what = ""
        if self.field is not None:
            name = printable(self.field)
            what = f"field '{name}': " if "'" not in name else f"field {json.dumps(name)}: "
        return f"{where}: {what}{printable(self.message)} (fix: {printable(self.fix)})"


class InputError(ValueError):
    """The file cannot be used; ``issues`` says why (at least one)."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__(issues[0].message if issues else "bad task file")


#: What a message never prints as is: controls (newlines too: one message, one line), surrogates, and the
#: invisible or direction-changing characters that could make a message read differently.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ud800-\udfff\ufeff]"
)


def printable(value: Any) -> str:
    """``value`` with control and invisible characters escaped (a file name can hold a newline or ESC)."""
    text = str(value)
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def short(value: Any, limit: int = 60) -> str:
    """``value`` for a message: one line, at most ``limit`` characters."""
    text = printable(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dotted(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


# --------------------------------------------------------------------------------------------- read
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a plain file")


def check_regular(path: Path) -> os.stat_result:
    """``stat`` of ``path`` if it is a regular file; InputError (no line, no field) otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(
            [Issue(None, None, "no such file", "check the path; examples live in examples/")]
        ) from None
    except ValueError:  # a NUL byte in the path
        raise InputError([Issue(None, None, "the path holds a NUL byte", "give a plain file path")]) from None
    except OSError as exc:
        raise InputError([Issue(None, None, f"cannot open it: {exc.strerror}", "check the path")]) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            [Issue(None, None, f"not a regular file but {_kind(st.st_mode)}", "give the path of a YAML file")]
        )
    return st


def read_capped(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file, at most ``limit`` of them; never opens a FIFO or a device."""
    check_regular(path)
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    )
    too_big = Issue(
        None, None, f"too large (over {limit // 1024:,} KB): not a task file", "give the path of a task file"
    )
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputError(
            [Issue(None, None, f"cannot read: {exc.strerror}", "check the file's permissions")]
        ) from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())  # the file opened, not one swapped in since the check
        if not stat.S_ISREG(st.st_mode):
            raise InputError(
                [
                    Issue(
                        None,
                        None,
                        f"not a regular file but {_kind(st.st_mode)}",
                        "give the path of a YAML file",
                    )
                ]
            )
        if st.st_size > limit:
            raise InputError([too_big])
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputError([Issue(None, None, f"cannot read: {exc.strerror}", "check the file")]) from None
    if len(data) > limit:
        raise InputError([too_big])
    return data


def decode(data: bytes) -> str:
    """Text of a task file: UTF-8 (a BOM is dropped), or UTF-16/32 with a BOM; problems name the line."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, data = name, data[len(bom) :]
            break
    else:
        if b"\x00" in data:
            at = data.index(b"\x00")
            raise InputError(
                [
                    Issue(
                        data.count(b"\n", 0, at) + 1,
                        _field_at(data[:at].decode("utf-8", "replace")),
                        "the file holds NUL bytes: UTF-16 or UTF-32 without a byte-order mark?",
                        "save it as UTF-8",
                    )
                ]
            )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode(encoding, "replace")
        bad = data[exc.start : exc.start + 4].hex(" ")
        raise InputError(
            [
                Issue(
                    before.count("\n") + 1,
                    _field_at(before),
                    f"not valid {encoding.upper().replace('-LE', '').replace('-BE', '')} "
                    f"(bytes {bad} at column {len(before) - before.rfind(chr(10))})",
                    f"save the file as UTF-8 (it reads as {encoding} {'after its BOM' if encoding != 'utf-8' else ''})".replace(
                        " )", ")"
                    ),
                )
            ]
        ) from None
    match = _UNPRINTABLE.search(text)
    if match:
        before = text[: match.start()]
        raise InputError(
            [
                Issue(
                    before.count("\n") + 1,
                    _field_at(before),
                    f"the file holds a control character U+{ord(match.group()):04X}, which YAML does not allow",
                    'remove it, or write it as an escape ("\\x07") inside a double-quoted string',
                )
            ]
        )
    return text


_TOP_KEY = re.compile(r"""^(?:"([^"\n]*)"|'([^'\n]*)'|([^\s#'"?:\-\[\]{},][^:#\n]*?))[ \t]*:(?:[ \t]|$)""")


def _field_at(before: str) -> str:
    """The top-level key whose value the end of ``before`` is in (a best guess for unparsable text)."""
    for line in reversed(before.split("\n")):
        match = _TOP_KEY.match(line)
        if match:
            return next(g for g in match.groups() if g is not None)
    return "(top level)"


# --------------------------------------------------------------------------------------------- scan
@dataclass
class _Frame:
    mapping: bool
    path: tuple[Any, ...]
    anchor: str | None
    line: int
    size: int = 1
    height: int = 1
    index: int = 0
    expecting_key: bool = True
    key: Any = None
    keys: dict[str, int] = field(default_factory=dict)


class IssueList(list[Issue]):
    """Issues in file order: the first :attr:`KEEP` are kept, the rest only counted (``dropped``)."""

    KEEP = 200

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self.fields_listed = False  # the valid top-level fields were listed in an earlier fix

    def append(self, issue: Issue) -> None:
        if len(self) < self.KEEP:
            super().append(issue)
        else:
            self.dropped += 1


@dataclass
class Scan:
    """What the scan found: problems that stop reading (``fatal``), and the others (``dropped``: how many
    more than the issues kept)."""

    issues: IssueList
    fatal: bool
    unknown_top_level: int

    @property
    def dropped(self) -> int:
        return self.issues.dropped


def _mark_line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


#: A ``key:value`` line: with no space after the colon YAML reads it as text, not as a field (a URL's ``://``
#: and a ``::`` are not this mistake).
_NO_SPACE_AFTER_COLON = re.compile(r"^([ \t]*)(?:-[ \t]+)?([A-Za-z_][\w.-]*):(?=[^\s/:])(\S.*)$")
#: A ``key: value`` line (for a value holding ``: ``, which must be quoted).
_KEY_VALUE = re.compile(r"^([ \t]*)(?:-[ \t]+)?([A-Za-z_][\w.-]*):[ \t]+(\S.*)$")
#: The PyYAML problems a missing space after a colon, or an unquoted ``: `` in a value, ends in.
_COLON_PROBLEMS = ("could not find expected ':'", "mapping values are not allowed")


def colon_space_fix(value: object) -> str | None:
    """``key: value`` for a ``key:value`` text that was meant as a field (None: it is not one)."""
    found = _NO_SPACE_AFTER_COLON.match(value) if isinstance(value, str) and "\n" not in value else None
    if found is None or found.group(1):
        return None
    return f"{found.group(2)}: {found.group(3)}"


def _dotted(lines: list[str], number: int, indent: str, key: str) -> str:
    """The dotted field name of ``key`` on line ``number`` (1-based): under its parent when indented."""
    parent = _field_at("\n".join(lines[: number - 1])) if indent else None
    return f"{parent}.{key}" if parent and parent != "(top level)" else key


def _colon_issue(text: str, line: int, context_line: int | None, problem: str) -> Issue | None:
    """The common colon mistakes behind ``problem`` (the line where PyYAML noticed, 1-based): ``model:x``
    (no space after the colon: YAML reads the line as text that runs on into the next lines, and reports a
    later line) or ``question: What is 2: 3?`` (a ``: `` inside an unquoted value). None: neither is seen."""
    lines = text.split("\n")
    last = min(line, len(lines))  # PyYAML may report the end of the stream, past the last line
    first = max(1, min(context_line or last, last) - 1, last - 8)
    for number in range(last, first - 1, -1):
        found = _NO_SPACE_AFTER_COLON.match(lines[number - 1])
        if found:
            indent, key, value = found.groups()
            return Issue(
                number,
                _dotted(lines, number, indent, key),
                f"invalid YAML: '{short(key + ':' + value, 60)}' has no space after the colon, so YAML reads "
                "it as text, not as a field",
                f"write a space after the colon: {short(key + ': ' + value, 60)}",
            )
    if "mapping values are not allowed" in problem:
        found = _KEY_VALUE.match(lines[last - 1])
        if found and found.group(3)[:1] not in ("'", '"', "[", "{", "|", ">"):
            indent, key, value = found.groups()
            quoted = json.dumps(value.split(" #")[0].rstrip(), ensure_ascii=False)
            return Issue(
                last,
                _dotted(lines, last, indent, key),
                "invalid YAML: the value holds ': ', which YAML reads as the start of another field",
                f"quote the value: {short(key + ': ' + quoted, 80)}",
            )
    return None


def yaml_issue(exc: yaml.YAMLError, fallback_field: str, text: str | None = None) -> Issue:
    """An Issue for a PyYAML error (syntax, undefined alias, unhashable key, unknown tag...)."""
    mark = getattr(exc, "problem_mark", None)
    line = _mark_line(mark)
    problem = getattr(exc, "problem", None) or str(exc)
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if text is not None and line is not None and any(p in problem for p in _COLON_PROBLEMS):
        colon = _colon_issue(text, line, _mark_line(cmark), problem)
        if colon is not None:
            return colon
    if context and cmark is not None:
        problem += f", {context} that starts at line {cmark.line + 1}"
    field_name = fallback_field
    if line is not None and text is not None and fallback_field == "(top level)":
        field_name = _field_at("\n".join(text.split("\n")[:line]))
    fix = "check indentation and quoting"
    if "nesting depth" in problem:
        problem = f"nested too deeply ({problem})"
        fix = _DEPTH_FIX
    elif "tag" in problem:
        fix = "remove the tag (a task file holds plain values: text, numbers, true/false, lists, mappings)"
    elif "alias" in problem:
        fix = "define the anchor (&name) before its alias (*name)"
    elif "single document" in problem:
        fix = "keep one document: remove the '---' line and what follows, or split it into files"
    return Issue(line, field_name, f"invalid YAML: {short(problem, 200)}", fix)


def scan(text: str, top_level_fields: Collection[str]) -> Scan:
    """One pass over the YAML events: depth, expanded size, alias loops, duplicate and unknown keys."""
    issues = IssueList()
    frames: list[_Frame] = []
    anchors: dict[str, tuple[int, int]] = {}  # name -> (expanded size, height)
    total = 0
    unknown = 0
    events = yaml.parse(text, Loader=_Loader)
    while True:
        try:
            event = next(events)
        except StopIteration:
            break
        except yaml.YAMLError as exc:
            issues.append(yaml_issue(exc, _current_field(frames), text))
            return Scan(issues, True, unknown)
        except RecursionError:  # pragma: no cover - the parser does not recurse; belt and braces
            issues.append(Issue(None, "(top level)", "nested too deeply to read", _DEPTH_FIX))
            return Scan(issues, True, unknown)
        if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            done = frames.pop()
            _complete(frames, anchors, done.anchor, done.size, done.height)
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        line = _mark_line(event.start_mark) or 1
        path = _place(frames, event, line, top_level_fields, issues)
        if path is None:  # an unknown top-level key: counted, and its value skipped in the path
            unknown += 1
            path = ()
        if isinstance(event, yaml.AliasEvent):
            name = event.anchor
            if any(f.anchor == name for f in frames):
                issues.append(
                    Issue(
                        line,
                        dotted(path),
                        f"the alias *{short(name)} refers to the node that holds it (a loop)",
                        "point the alias at a node defined before and outside it",
                    )
                )
                return Scan(issues, True, unknown)
            if name not in anchors:
                issues.append(
                    Issue(
                        line,
                        dotted(path),
                        f"the alias *{short(name)} has no anchor &{short(name)} before it",
                        "define the anchor (&name) before its alias (*name)",
                    )
                )
                return Scan(issues, True, unknown)
            size, height = anchors[name]
            total += size
            if total > MAX_NODES or len(frames) + height > MAX_DEPTH:
                issues.append(
                    Issue(
                        line,
                        dotted(path),
                        f"aliases expand this file past {MAX_NODES:,} nodes or {MAX_DEPTH} levels "
                        "(an alias bomb?)",
                        "write the values out, or use fewer aliases",
                    )
                )
                return Scan(issues, True, unknown)
            _complete(frames, anchors, None, size, height)
            continue
        total += 1
        if total > MAX_NODES:
            issues.append(
                Issue(
                    line,
                    dotted(path),
                    f"more than {MAX_NODES:,} values: not a task file",
                    "keep the file small",
                )
            )
            return Scan(issues, True, unknown)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(frames) + 1 > MAX_DEPTH:
                issues.append(
                    Issue(line, dotted(path), f"nested more than {MAX_DEPTH} levels deep", _DEPTH_FIX)
                )
                return Scan(issues, True, unknown)
            frames.append(_Frame(isinstance(event, yaml.MappingStartEvent), path, event.anchor, line))
        else:
            _complete(frames, anchors, event.anchor, 1, 1)
    return Scan(issues, False, unknown)


_DEPTH_FIX = "flatten the value: a task file nests a few levels at most"


def _current_field(frames: list[_Frame]) -> str:
    if not frames:
        return "(top level)"
    top = frames[-1]
    if top.mapping and not top.expecting_key:
        return dotted((*top.path, top.key))
    return dotted(top.path)


def _place(
    frames: list[_Frame], event: Any, line: int, top_level_fields: Collection[str], issues: IssueList
) -> tuple[Any, ...] | None:
    """The path of the node ``event`` starts; records duplicate and unknown keys. None: unknown key."""
    if not frames:
        return ()
    parent = frames[-1]
    if not parent.mapping:
        parent.index += 1
        return (*parent.path, parent.index - 1)
    if parent.expecting_key:
        parent.expecting_key = False
        key = event.value if isinstance(event, yaml.ScalarEvent) else "?"
        parent.key = key
        path = (*parent.path, key)
        if isinstance(event, yaml.ScalarEvent) and key != "<<":
            if key in parent.keys:
                issues.append(
                    Issue(
                        line,
                        dotted(path),
                        f"'{short(key)}' is given twice (first at line {parent.keys[key]}); YAML would keep "
                        "only this one",
                        "keep one of them",
                    )
                )
            else:
                parent.keys[key] = line
            if len(frames) == 1 and key not in top_level_fields and key != "<<":
                if issues.fields_listed:
                    fix = "remove it, or check its spelling against the fields listed above"
                else:
                    fix = "remove it, or check its spelling; the fields are: " + ", ".join(top_level_fields)
                    issues.fields_listed = True
                shown = short(key)
                issues.append(Issue(line, shown, f"'{shown}' is not a field of a task file", fix))
                return None
        return path
    parent.expecting_key = True
    return (*parent.path, parent.key)


def _complete(
    frames: list[_Frame], anchors: dict[str, tuple[int, int]], anchor: str | None, size: int, height: int
) -> None:
    if anchor is not None:
        anchors[anchor] = (size, height)
    if frames:
        parent = frames[-1]
        parent.size += size
        parent.height = max(parent.height, height + 1)


# -------------------------------------------------------------------------------------------- build
class _BoundedLoader(_Loader):  # type: ignore[misc, valid-type]
    """A safe loader whose constructors' own errors (an int of 5,000 digits, a 13th month) name the line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # "!!bool maybe" is a KeyError, "!!int 1" + 5,000 zeros a ValueError
            raise ConstructorError(
                None,
                None,
                f"cannot read this value: {type(exc).__name__}: {short(exc, 120)}",
                node.start_mark,
            ) from None


def compose_and_load(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data, built once; raises yaml.YAMLError."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


class LineIndex:
    """Line of each place in a node tree, built in one pass (looking up N errors is not N passes)."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root_line = root.start_mark.line + 1 if root is not None else 1
        self.lines: dict[tuple[str, ...], int] = {}
        if root is None:
            return
        stack: list[tuple[tuple[str, ...], yaml.Node]] = [((), root)]
        seen = 0
        while stack and seen <= MAX_NODES:
            path, node = stack.pop()
            seen += 1
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    here = (*path, str(getattr(key, "value", "?")))
                    # Point at the key: for a block value (a nested mapping) that is the line a user looks for.
                    self.lines.setdefault(here, key.start_mark.line + 1)
                    stack.append((here, value))
            elif isinstance(node, yaml.SequenceNode):
                for index, value in enumerate(node.value):
                    here = (*path, str(index))
                    self.lines.setdefault(here, value.start_mark.line + 1)
                    stack.append((here, value))

    def line(self, loc: tuple[Any, ...]) -> int:
        """The line of the deepest place of ``loc`` that exists in the file (1 for an empty file)."""
        parts = tuple(str(p) for p in loc)
        for n in range(len(parts), 0, -1):
            line = self.lines.get(parts[:n])
            if line is not None:
                return line
        return self.root_line


def line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """1-based line of the YAML node at a pydantic error location (the deepest one that exists)."""
    return LineIndex(root).line(loc)
