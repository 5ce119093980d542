"""The language's intermediate representation: frozen nodes a program appends to its state.

Nodes are immutable values with identity semantics (``eq=False``): the interpreter executes
them, the tracer records them as a graph. Public constructors (``api.py``) validate arguments;
the nodes themselves only hold them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Built-in regexes for ``gen(dtype=...)`` (the same strings SGLang uses).
REGEX_INT = r"[-+]?[0-9]+[ \n]*"
REGEX_FLOAT = r"[-+]?[0-9]*\.?[0-9]+[ \n]*"
REGEX_STR = r"\"[\w\d\s]*\""
REGEX_BOOL = r"(True|False)"

# dtype -> (regex, extra stop strings)
DTYPE_REGEX: dict[Any, tuple[str, tuple[str, ...]]] = {
    int: (REGEX_INT, (" ", "\n")),
    float: (REGEX_FLOAT, (" ", "\n")),
    str: (REGEX_STR, ()),
    bool: (REGEX_BOOL, ()),
}
for _t in list(DTYPE_REGEX):
    DTYPE_REGEX[_t.__name__] = DTYPE_REGEX[_t]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one ``gen``; ``None`` means "inherit from the run's defaults"."""

    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    n: int | None = None
    stop: tuple[str, ...] | None = None
    stop_token_ids: tuple[int, ...] | None = None
    stop_regex: tuple[str, ...] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    ignore_eos: bool | None = None
    return_logprob: bool | None = None
    logprob_start_len: int | None = None
    top_logprobs_num: int | None = None
    return_text_in_logprobs: bool | None = None
    dtype: Any = None
    regex: str | None = None
    json_schema: str | None = None
    ebnf: str | None = None  # a GBNF or Lark grammar (beyond SGLang's frontend; its server's field)
    token_healing: bool | None = None  # back off the prompt's last token (beyond SGLang; our engine's field)

    def override(self, other: SamplingParams) -> SamplingParams:
        """A copy where every non-None field of ``other`` replaces ours."""
        changes = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(other)
            if getattr(other, f.name) is not None
        }
        return dataclasses.replace(self, **changes)

    def with_extra_stop(self, extra: Sequence[str]) -> SamplingParams:
        if not extra:
            return self
        return dataclasses.replace(self, stop=tuple(self.stop or ()) + tuple(extra))

    def resolve_dtype(self) -> SamplingParams:
        """Turn ``dtype`` into its built-in regex (and stops); ``dtype`` wins over ``regex``."""
        if self.dtype is None:
            return self
        regex, stops = DTYPE_REGEX[self.dtype]
        return dataclasses.replace(self, dtype=None, regex=regex).with_extra_stop(stops)

    def to_engine(self) -> dict[str, Any]:
        """The engine's ``sampling_params`` dict (only fields that are set)."""
        keys = (
            "max_new_tokens", "min_new_tokens", "n", "stop", "stop_token_ids", "stop_regex",
            "temperature", "top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty",
            "ignore_eos", "regex", "json_schema", "ebnf", "token_healing",
        )  # fmt: skip
        out: dict[str, Any] = {}
        for k in keys:
            v = getattr(self, k)
            if v is None:
                continue
            out[k] = list(v) if isinstance(v, tuple) else v
        if out.get("n") == 1:
            del out["n"]
        return out

    def logprob_kwargs(self) -> dict[str, Any]:
        """The engine's logprob keyword arguments (only those that are set)."""
        keys = ("return_logprob", "logprob_start_len", "top_logprobs_num", "return_text_in_logprobs")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class Expr:
    """Base of every node. ``a + b`` concatenates into an ``ExprList``."""

    def __add__(self, other: object) -> ExprList:
        return ExprList((self, as_expr(other)))

    def __radd__(self, other: object) -> ExprList:
        return ExprList((as_expr(other), self))


def as_expr(x: object) -> Expr:
    """A str becomes ``ConstantText``; an ``Expr`` stays; anything else is an error."""
    if isinstance(x, Expr):
        return x
    if isinstance(x, str):
        return ConstantText(x)
    if x is None:
        raise ValueError("Tried to append None to a program state; append a str or an sgl expression.")
    raise TypeError(
        f"Cannot append a {type(x).__name__} to a program state; append a str or an sgl "
        "expression (gen, select, image, a role, ...). Use str(x) for other values."
    )


@dataclass(frozen=True, eq=False)
class ExprList(Expr):
    items: tuple[Expr, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(as_expr(x) for x in self.items))


@dataclass(frozen=True, eq=False)
class ConstantText(Expr):
    value: str


@dataclass(frozen=True, eq=False)
class Gen(Expr):
    name: str | None
    sampling: SamplingParams


@dataclass(frozen=True, eq=False)
class Select(Expr):
    name: str | None
    choices: tuple[str, ...]
    temperature: float
    choices_method: Callable[..., Any]


@dataclass(frozen=True, eq=False)
class SeparateReasoning(Expr):
    """Split the thinking out of the ``Gen``/``Select`` values of ``expr`` (already executed, just
    before this node): ``name`` keeps the answer, ``name + "_reasoning_content"`` the thinking."""

    model_type: str
    expr: Expr

    @property
    def targets(self) -> tuple[Gen | Select, ...]:
        return tuple(x for x in iter_leaves(self.expr) if isinstance(x, (Gen, Select)) and x.name is not None)

    @property
    def name(self) -> str | None:
        """The reasoning variable of the last target (SGLang's ``SglSeparateReasoning.name``)."""
        names = self.reasoning_names
        return names[-1] if names else None

    @property
    def reasoning_names(self) -> tuple[str, ...]:
        return tuple(reasoning_name(x.name) for x in self.targets)  # type: ignore[arg-type]


def reasoning_name(name: str) -> str:
    """The variable that holds ``name``'s thinking (SGLang's naming)."""
    return f"{name}_reasoning_content"


@dataclass(frozen=True, eq=False)
class Image(Expr):
    """An image source: a path, a URL / data URI, raw bytes, or a PIL image."""

    source: Any


@dataclass(frozen=True, eq=False)
class Video(Expr):
    path: str
    num_frames: int


@dataclass(frozen=True, eq=False)
class RoleBegin(Expr):
    role: str


@dataclass(frozen=True, eq=False)
class RoleEnd(Expr):
    role: str


@dataclass(frozen=True, eq=False)
class VarScopeBegin(Expr):
    name: str


@dataclass(frozen=True, eq=False)
class VarScopeEnd(Expr):
    name: str


@dataclass(frozen=True, eq=False)
class CommitLazy(Expr):
    """Send the current text to the backend so it is cached (before a fork)."""


@dataclass(frozen=True, eq=False)
class ConcateAndAppend(Expr):
    """Append the new text of each forked state, in order (``join("concate_and_append")``)."""

    states: tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class Argument(Expr):
    """A placeholder for a program argument while tracing."""

    name: str

    def __str__(self) -> str:
        # NOTE: formatting a placeholder into text would cache a wrong prefix; stop tracing.
        raise ArgumentNotConcrete(self.name)

    def __format__(self, spec: str) -> str:
        raise ArgumentNotConcrete(self.name)


@dataclass(frozen=True, eq=False)
class Variable(Expr):
    """A placeholder for ``s["name"]`` read while tracing."""

    name: str
    source: Any = field(default=None, repr=False)


class ArgumentNotConcrete(Exception):
    """Raised when traced code needs the value of an argument placeholder."""


def iter_leaves(expr: Expr):
    """Depth-first leaves of an expression (``ExprList`` flattened)."""
    if isinstance(expr, ExprList):
        for x in expr.items:
            yield from iter_leaves(x)
    else:
        yield expr


def describe(expr: Expr) -> str:
    """A short human name for a node, used in errors and the trace graph."""
    if isinstance(expr, Gen):
        return f"gen({expr.name!r})"
    if isinstance(expr, Select):
        return f"select({expr.name!r}, choices={list(expr.choices)!r})"
    if isinstance(expr, ConstantText):
        v = expr.value if len(expr.value) <= 40 else expr.value[:37] + "..."
        return f"text({v!r})"
    if isinstance(expr, (RoleBegin, RoleEnd)):
        return f"{type(expr).__name__}({expr.role!r})"
    if isinstance(expr, (VarScopeBegin, VarScopeEnd, Argument, Variable)):
        return f"{type(expr).__name__}({expr.name!r})"
    if isinstance(expr, SeparateReasoning):
        return f"separate_reasoning({[x.name for x in expr.targets]!r}, model_type={expr.model_type!r})"
    if isinstance(expr, Video):
        return f"video({expr.path!r}, {expr.num_frames})"
    if isinstance(expr, Image):
        src = expr.source if isinstance(expr.source, str) else type(expr.source).__name__
        return f"image({str(src)[:40]!r})"
    return type(expr).__name__
