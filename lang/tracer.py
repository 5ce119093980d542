"""Tracing: run a program's Python code against a recording state instead of a backend.

Arguments not given are ``Argument`` placeholders; reads of variables give ``Variable``
placeholders. The result is a printable program graph, and its leading constant text is the
prefix that ``run_batch`` / ``cache`` prefill once for every program.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sgl.chat_template import ChatTemplate, get_chat_template
from sgl.ir import (
    Argument,
    ArgumentNotConcrete,
    ConstantText,
    Expr,
    RoleBegin,
    RoleEnd,
    Variable,
    VarScopeBegin,
    VarScopeEnd,
    as_expr,
    describe,
    iter_leaves,
)

if TYPE_CHECKING:
    from sgl.function import SglFunction

_current: contextvars.ContextVar[TracerProgramState | None] = contextvars.ContextVar("sgl_tracer", default=None)


def current_tracer() -> TracerProgramState | None:
    return _current.get()


class StopTracing(Exception):
    """Raised in prefix-only mode at the first expression that is not constant text."""


@dataclass
class TraceNode:
    expr: Expr
    text: str | None = None  # the constant text this node appends, when it is constant
    children: list[TracerProgramState] = field(default_factory=list)  # for a fork


class TracerProgramState:
    def __init__(self, chat_template: ChatTemplate, arguments: dict[str, Any], only_trace_prefix: bool = False) -> None:
        self.chat_template = chat_template
        self.arguments = arguments
        self.only_trace_prefix = only_trace_prefix
        self.nodes: list[TraceNode] = []
        self.variables: dict[str, Any] = {}
        self.messages_: list[dict[str, str]] = []
        self.cur_role: str | None = None
        self.stopped: str | None = None  # why tracing stopped early, if it did
        self.ret_value: Any = None

    # ---- recording -------------------------------------------------------------------------

    def _record(self, expr: Expr, text: str | None = None) -> None:
        if self.only_trace_prefix and text is None:
            raise StopTracing
        self.nodes.append(TraceNode(expr, text))

    def __iadd__(self, other: object) -> TracerProgramState:
        for leaf in iter_leaves(as_expr(other)):
            if isinstance(leaf, ConstantText):
                self._record(leaf, leaf.value)
            elif isinstance(leaf, RoleBegin):
                self._role_begin(leaf)
            elif isinstance(leaf, RoleEnd):
                _, suffix = self.chat_template.get_prefix_and_suffix(leaf.role, self.messages_)
                self.messages_.append({"role": leaf.role, "content": ""})
                self.cur_role = None
                self._record(leaf, suffix)
            else:
                self._record(leaf)
                name = getattr(leaf, "name", None)
                if name is not None and not isinstance(leaf, (Argument, Variable)):
                    self.variables[name] = Variable(name, leaf)
        return self

    def _role_begin(self, expr: RoleBegin) -> None:
        if not self.messages_ and expr.role != "system" and self.chat_template.default_system_prompt:
            self += RoleBegin("system") + self.chat_template.default_system_prompt + RoleEnd("system")
        self.cur_role = expr.role
        prefix, _ = self.chat_template.get_prefix_and_suffix(expr.role, self.messages_)
        self._record(expr, prefix)

    def _role(self, role: str, expr: object = None):
        if expr is not None:
            self += RoleBegin(role) + as_expr(expr) + RoleEnd(role)
            return None

        @contextmanager
        def scope():
            self.__iadd__(RoleBegin(role))
            yield
            self.__iadd__(RoleEnd(role))

        return scope()

    def system(self, expr: object = None):
        return self._role("system", expr)

    def user(self, expr: object = None):
        return self._role("user", expr)

    def assistant(self, expr: object = None):
        return self._role("assistant", expr)

    @contextmanager
    def var_scope(self, name: str):
        self._record(VarScopeBegin(name))
        yield
        self._record(VarScopeEnd(name))
        self.variables[name] = Variable(name)

    def fork(self, size: int = 1) -> TracerGroup:
        if self.only_trace_prefix:
            raise StopTracing
        children = [TracerProgramState(self.chat_template, self.arguments) for _ in range(int(size))]
        for c in children:
            c.variables = dict(self.variables)
            c.messages_ = list(self.messages_)
            c.cur_role = self.cur_role
        self.nodes.append(TraceNode(ConstantText(f"<fork {size}>"), None, children))
        return TracerGroup(children, self)

    @contextmanager
    def copy(self):
        group = self.fork(1)
        yield group[0]
        group.join()

    def __getitem__(self, name: str) -> Any:
        if self.only_trace_prefix:
            raise StopTracing
        return self.variables.get(name, Variable(name))

    def __setitem__(self, name: str, value: Any) -> None:
        self.variables[name] = value

    def __contains__(self, name: str) -> bool:
        return name in self.variables

    def get_var(self, name: str) -> Any:
        return self[name]

    def get_meta_info(self, name: str) -> None:
        return None

    def text(self) -> str:
        return "".join(n.text if n.text is not None else f"{{{describe(n.expr)}}}" for n in self.nodes)

    def messages(self) -> list[dict[str, str]]:
        return list(self.messages_)

    def error(self) -> None:
        return None

    def sync(self) -> None:
        return None

    # ---- results ---------------------------------------------------------------------------

    def prefix(self) -> str:
        """The leading constant text."""
        out = []
        for n in self.nodes:
            if n.text is None:
                break
            out.append(n.text)
        return "".join(out)

    def graph_lines(self, indent: str = "") -> list[str]:
        lines = []
        for i, n in enumerate(self.nodes):
            if n.children:
                lines.append(f"{indent}[{i}] fork({len(n.children)})")
                for j, c in enumerate(n.children):
                    lines.append(f"{indent}    child {j}:")
                    lines.extend(c.graph_lines(indent + "        "))
            else:
                lines.append(f"{indent}[{i}] {describe(n.expr)}")
        if self.stopped:
            lines.append(f"{indent}(trace stopped: {self.stopped})")
        return lines

    def __str__(self) -> str:
        return "\n".join(["program graph:", *self.graph_lines("  ")])

    __repr__ = __str__


class TracerGroup:
    def __init__(self, states: list[TracerProgramState], parent: TracerProgramState) -> None:
        self.states = states
        self.parent = parent

    def __getitem__(self, i: int) -> TracerProgramState:
        return self.states[i]

    def __setitem__(self, i: int, value: TracerProgramState) -> None:
        pass  # `forks[i] += x` assigns the same state back

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self):
        return iter(self.states)

    def __iadd__(self, other: Any) -> TracerGroup:
        for i, s in enumerate(self.states):
            if isinstance(other, (list, tuple)):
                s += other[i]
            elif callable(other) and not isinstance(other, Expr):
                s += other(i)
            else:
                s += other
        return self

    def join(self, mode: str = "gather_variable") -> None:
        self.parent.nodes.append(TraceNode(ConstantText(f"<join {mode}>")))
        for c in self.states:
            for k in c.variables:
                self.parent.variables.setdefault(k, Variable(k))


def _trace(program: SglFunction, backend: Any, kwargs: dict[str, Any], only_prefix: bool) -> TracerProgramState:
    template = backend.get_chat_template() if backend is not None else get_chat_template("default")
    arguments: dict[str, Any] = {name: Argument(name) for name in program.arg_names}
    arguments.update(kwargs)
    arguments.update(program.bind_arguments)
    tracer = TracerProgramState(template, arguments, only_trace_prefix=only_prefix)
    token = _current.set(tracer)
    try:
        tracer.ret_value = program.func(tracer, **arguments)
    except StopTracing:
        tracer.stopped = "first non-constant expression"
    except ArgumentNotConcrete as e:
        tracer.stopped = f"argument {e} used as a Python value"
    except Exception as e:  # NOTE: tracing is best effort; code that needs real values stops it
        tracer.stopped = f"{type(e).__name__}: {e}"
    finally:
        _current.reset(token)
    return tracer


def trace_program(program: SglFunction, kwargs: dict[str, Any], backend: Any) -> TracerProgramState:
    return _trace(program, backend, kwargs, only_prefix=False)


def extract_prefix_by_tracing(program: SglFunction, backend: Any) -> str:
    return _trace(program, backend, {}, only_prefix=True).prefix()
