"""TaskSpec: the schema of ``task.yaml``, and a loader whose errors name the file, line, field and fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from thrifty.agents.context import DEFAULT_MAX_STEPS
from thrifty.budget import Budget, Pricing
from thrifty.models.settings import DEFAULT_MODEL, ModelSettings
from thrifty.workflows.imports import import_object
from thrifty.workflows.options import StrategyOptionsError, parse_options
from thrifty.workflows.strategies import STRATEGIES, builtin_options, get_builder

BUILTIN_TOOLS = ("search", "read", "calculator")
CORPUS_TOOLS = ("search", "read")
BUILTIN_CORPORA = {"builtin:hotpotqa": "hotpotqa"}


class TaskFileError(ValueError):
    """A task file that cannot be used; the message says where and how to fix it."""


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="A built-in tool (search, read, calculator) or 'module:function' of a @tool."
    )
    k: PositiveInt | None = Field(default=None, description="search only: passages returned per query.")
    price: float | None = Field(default=None, ge=0, description="Dollars per call (overrides the default).")

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in BUILTIN_TOOLS and ":" not in value:
            raise ValueError(
                f"unknown tool '{value}': use one of {', '.join(BUILTIN_TOOLS)} or 'package.module:function'"
            )
        return value


class StrategySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        default="react",
        description=f"Strategy: {', '.join(STRATEGIES)}, or 'module:function' returning a graph builder.",
    )
    tracker: bool = Field(default=True, description="Show the model its remaining budget (BATS Budget Tracker).")
    max_steps: PositiveInt = Field(
        default=DEFAULT_MAX_STEPS, description="Model calls allowed before a forced answer."
    )
    keep_observations: PositiveInt | None = Field(
        default=None, description="Keep only the N most recent tool results in the prompt (BATS keeps 1)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Strategy-specific settings; a built-in strategy refuses keys it does not have "
        "(see the <Name>Options definitions).",
    )


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(
        default=".thrifty/runs.db",
        description="SQLite file (or SQLAlchemy URL) where runs are recorded; null to skip.",
    )
    trace: bool = Field(default=True, description="Include the step trace in the result.")


class TaskSpec(BaseModel):
    """A task: the question, the model, the tools and the budget to answer it with."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="A label for the run.")
    question: str = Field(description="The question; may use {name} fields filled from `inputs`.")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Values for the {name} fields in `question`."
    )
    expected_answer: str | None = Field(default=None, description="Gold answer, shown next to the result if given.")
    model: str = Field(
        default=DEFAULT_MODEL, description="LiteLLM model name (openai/gpt-4o-mini, ...) or local/smollm2."
    )
    tools: list[ToolSpec] = Field(default_factory=list)
    corpus: str | None = Field(
        default=None,
        description="Passages for search/read: builtin:hotpotqa, or a .jsonl/.json path relative to this file.",
    )
    budget: Budget = Field(default_factory=Budget)
    pricing: Pricing = Field(default_factory=Pricing)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    model_settings: ModelSettings = Field(default_factory=ModelSettings)
    system_prompt: str | None = Field(default=None, description="Extra instructions appended to the system prompt.")
    output: OutputSpec = Field(default_factory=OutputSpec)

    base_dir: Path = Field(default_factory=Path.cwd, exclude=True, description="Where relative paths start.")

    @field_validator("tools", mode="before")
    @classmethod
    def _tool_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError(
                f"model '{value}' needs a provider prefix, e.g. 'openai/{value}' or 'local/smollm2'"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        names = [t.name for t in self.tools]
        if any(n in CORPUS_TOOLS for n in names) and not self.corpus:
            raise ValueError(
                "tools search/read need a `corpus:` (builtin:hotpotqa or a path to a .jsonl file)"
            )
        missing = sorted(set(re.findall(r"{(\w+)}", self.question)) - set(self.inputs))
        if missing:
            raise ValueError(f"question uses {{{missing[0]}}} but `inputs` has no '{missing[0]}'")
        return self

    def rendered_question(self) -> str:
        return self.question.format(**self.inputs) if self.inputs else self.question

    def corpus_path(self) -> Path | None:
        """The corpus file, resolved against the task file's folder (built-ins from the package)."""
        if not self.corpus:
            return None
        if self.corpus in BUILTIN_CORPORA:
            from thrifty.tools.corpus import bundled_dataset_path

            return bundled_dataset_path(BUILTIN_CORPORA[self.corpus])
        path = Path(self.corpus).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of task files (``agent schema``)."""
    schema = TaskSpec.model_json_schema(mode="validation")
    schema["properties"].pop("base_dir", None)
    # Each built-in strategy's options, checked against its name (JSON Schema if/then): an editor that
    # reads the schema flags an option the strategy does not have, as `agent validate` does.
    defs = schema.setdefault("$defs", {})
    rules = []
    for name, model in builtin_options().items():
        defs[model.__name__] = model.model_json_schema()
        when: dict[str, Any] = {"properties": {"name": {"const": name}}}
        if name != StrategySpec.model_fields["name"].default:
            when["required"] = ["name"]
        rules.append({"if": when, "then": {"properties": {"options": {"$ref": f"#/$defs/{model.__name__}"}}}})
    defs["StrategySpec"]["allOf"] = rules
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "thrifty task"
    return schema


# ------------------------------------------------------------------------------------------ loading
def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at a pydantic error location (the deepest one that exists)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)), None)
            if pair is None:
                return line
            # Point at the key: for a block value (a nested mapping) that is the line a user looks for.
            line = pair[0].start_mark.line + 1
            node = pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
    return line


_FIXES = {
    "extra_forbidden": "remove it, or check its spelling against `agent schema`",
    "greater_than": "use a positive number, or drop the field for no limit",
    "missing": "add it",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
}


def format_validation_error(err: ValidationError, file: str, root: yaml.Node | None) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        where = f"{file}:{line}" if line else file
        msg = e["msg"].removeprefix("Value error, ")
        fix = _FIXES.get(e["type"])
        lines.append(f"{where}: field '{field}': {msg}" + (f" (fix: {fix})" if fix else ""))
    return "\n".join(lines)


def load_task(path: str | Path, **overrides: Any) -> TaskSpec:
    """Read and validate a task file. Raises TaskFileError with file, line, field and a fix."""
    path = Path(path)
    if not path.exists():
        raise TaskFileError(f"{path}: no such file (fix: check the path; examples live in examples/)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"{path}: cannot read: {exc}") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and cmark:
            problem += f", {context} that starts at line {cmark.line + 1}"
        raise TaskFileError(
            f"{where}: invalid YAML: {problem} (fix: check indentation and quoting)"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TaskFileError(f"{path}:1: a task file must be a mapping of fields (question:, model:, ...)")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        spec = TaskSpec.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise TaskFileError(format_validation_error(exc, str(path), root)) from None
    check_resources(spec, str(path), root)
    return spec


def check_resources(spec: TaskSpec, file: str = "task", root: yaml.Node | None = None) -> None:
    """Checks that need the file system: the corpus exists, custom tools import."""
    corpus = spec.corpus_path()
    if corpus is not None and not corpus.exists():
        line = _line_of(root, ("corpus",))
        raise TaskFileError(
            f"{file}:{line or 1}: field 'corpus': file not found: {corpus} "
            "(fix: give a path relative to the task file, or builtin:hotpotqa)"
        )
    try:
        builder = get_builder(spec.strategy.name, spec.base_dir)
    except (ValueError, ImportError, AttributeError) as exc:
        line = _line_of(root, ("strategy",))
        raise TaskFileError(f"{file}:{line or 1}: field 'strategy': {exc}") from None
    try:
        parse_options(spec.strategy.name, builder, spec.strategy.options)
    except StrategyOptionsError as exc:
        lines = []
        for issue in exc.issues:
            loc = ("strategy", "options", *issue.loc)
            line = _line_of(root, loc)
            field = ".".join(str(p) for p in loc)
            lines.append(f"{file}:{line or 1}: field '{field}': {issue}")
        raise TaskFileError("\n".join(lines)) from None
    for i, tool in enumerate(spec.tools):
        if ":" in tool.name:
            try:
                import_object(tool.name, spec.base_dir)
            except (ImportError, AttributeError, ValueError) as exc:
                line = _line_of(root, ("tools", i))
                raise TaskFileError(f"{file}:{line or 1}: field 'tools.{i}': {exc}") from None
