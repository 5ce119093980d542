"""ProgramState (what a program's ``s`` is) and the group of states a fork returns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sgl.executor import StreamExecutor
from sgl.ir import ConcateAndAppend, Expr, ExprList, RoleBegin, RoleEnd, VarScopeBegin, VarScopeEnd
from sgl.stream_meta import accumulate, has_rows


class ProgramState:
    """The state of one running program: text, variables, messages. Reads block until the
    value exists; ``s += expr`` submits and returns at once."""

    def __init__(self, stream_executor: StreamExecutor) -> None:
        self.stream_executor = stream_executor
        self.ret_value: Any = None

    # ---- roles -----------------------------------------------------------------------------

    def _role(self, role: str, expr: object = None):
        if expr is not None:
            self.stream_executor.submit(ExprList((RoleBegin(role), expr, RoleEnd(role))))
            return None

        @contextmanager
        def scope():
            self.stream_executor.submit(RoleBegin(role))
            yield
            self.stream_executor.submit(RoleEnd(role))

        return scope()

    def system(self, expr: object = None):
        return self._role("system", expr)

    def user(self, expr: object = None):
        return self._role("user", expr)

    def assistant(self, expr: object = None):
        return self._role("assistant", expr)

    @contextmanager
    def var_scope(self, name: str):
        """Capture the text appended inside the block as variable ``name``."""
        self.stream_executor.submit(VarScopeBegin(name))
        yield
        self.stream_executor.submit(VarScopeEnd(name))

    # ---- fork ------------------------------------------------------------------------------

    def fork(self, size: int = 1) -> ProgramStateGroup:
        return ProgramStateGroup([ProgramState(x) for x in self.stream_executor.fork(size)], self)

    @contextmanager
    def copy(self):
        """``with s.copy() as c:`` — a fork of one, joined (gathering variables) on exit."""
        group = self.fork(1)
        try:
            yield group[0]
        finally:
            group.join()

    # ---- reads -----------------------------------------------------------------------------

    def text(self) -> str:
        return self.stream_executor.text()

    def messages(self) -> list[dict[str, Any]]:
        return self.stream_executor.messages()

    def sync(self) -> None:
        self.stream_executor.sync()

    def error(self) -> BaseException | None:
        return self.stream_executor.error()

    def get_var(self, name: str) -> Any:
        return self.stream_executor.get_var(name)

    def set_var(self, name: str, value: Any) -> None:
        self.stream_executor.set_var(name, value)

    def get_meta_info(self, name: str) -> Any:
        return self.stream_executor.get_meta_info(name)

    def text_iter(self, var: str | None = None) -> Iterator[str]:
        """Pieces of the whole text (or of variable ``var``) as they are generated."""
        ex = self.stream_executor
        if not ex.stream:
            yield self.text() if var is None else self.get_var(var)
            return

        def current() -> str:
            value = ex.text_ if var is None else ex.variables.get(var, "")
            return value if isinstance(value, str) else ""

        def done() -> bool:
            if var is None or ex.is_finished:
                return ex.is_finished
            event = ex.variable_event.get(var)
            return event is not None and event.is_set()

        prev = 0
        while True:
            with ex.cond:
                ex.cond.wait_for(lambda p=prev: len(current()) > p or done())
                cur, finished = current(), done()
            if len(cur) > prev:
                yield cur[prev:]
                prev = len(cur)
            if finished:
                return

    def meta_iter(self, var: str) -> Iterator[tuple[str, Any]]:
        """(piece, meta_info) of variable ``var`` as it streams. Each meta_info is SGLang's
        streamed one: the logprob rows of the tokens new in that piece, with
        ``output_token_logprobs_length`` the count so far (sgl.stream_meta). Backend chunks that
        arrived between two reads, or that added no text, are merged into the next piece, so
        the rows of all pieces concatenate to the non-streamed rows; a last piece may be ""
        when only rows are left (a stop token adds no text)."""
        ex = self.stream_executor
        if not ex.stream:
            yield self.get_var(var), self.get_meta_info(var)
            return

        def done() -> bool:
            event = ex.variable_event.get(var)
            return ex.is_finished or (event is not None and event.is_set())

        seen, piece, pending = 0, "", []
        while True:
            with ex.cond:
                ex.cond.wait_for(lambda n=seen: len(ex.stream_chunks.get(var, ())) > n or done())
                chunks, finished = ex.stream_chunks.get(var), done()
            if chunks is None:  # not a streamed gen (a select, a var_scope): its value, once
                if finished and isinstance(ex.variables.get(var), str):
                    yield ex.variables[var], ex.meta_info.get(var)
                if finished:
                    return
                continue
            for p, meta in chunks[seen:]:
                piece += p
                pending.append(meta)
            seen = len(chunks)
            merged = pending[0] if len(pending) == 1 else _fold(pending)
            if piece or (finished and has_rows(merged)):
                yield piece, merged
                piece, pending = "", []
            if finished:
                return

    async def text_async_iter(
        self, var: str | None = None, return_meta_data: bool = False
    ) -> AsyncIterator[Any]:
        """``text_iter`` for asyncio; blocking waits run in the loop's executor. With
        ``return_meta_data`` and a variable, yields (piece, meta_info) pairs from ``meta_iter``."""
        loop = asyncio.get_running_loop()
        with_meta = return_meta_data and var is not None
        it: Iterator[Any] = self.meta_iter(var) if with_meta else self.text_iter(var)  # type: ignore[arg-type]
        end = object()
        while True:
            item = await loop.run_in_executor(None, next, it, end)
            if item is end:
                return
            if return_meta_data and not with_meta:
                yield item, None
            else:
                yield item

    # ---- operators -------------------------------------------------------------------------

    def __iadd__(self, other: object) -> ProgramState:
        self.stream_executor.submit(other)
        return self

    def __getitem__(self, name: str) -> Any:
        return self.get_var(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set_var(name, value)

    def __contains__(self, name: str) -> bool:
        return name in self.stream_executor.variables

    def __del__(self) -> None:
        ex = self.__dict__.get("stream_executor")
        if ex is not None:
            ex.end()

    def __repr__(self) -> str:
        return f"ProgramState({self.text()!r})"


def _fold(metas: list[Any]) -> Any:
    """One meta_info for several chunks, without touching theirs."""
    total = None
    for meta in metas:
        total = accumulate(total, meta)
    return total


class ProgramStateGroup:
    """The states ``s.fork(n)`` returns; ``join`` merges them back into the parent."""

    def __init__(self, states: list[ProgramState], src_state: ProgramState) -> None:
        self.states = states
        self.src_state = src_state

    def join(self, mode: str = "gather_variable") -> None:
        """``gather_variable``: each variable new in the children becomes, in the parent, the
        list of the children's values (child order); the parent's text is unchanged.
        ``concate_and_append``: append each child's new text to the parent, in order."""
        if mode == "gather_variable":
            parent = self.src_state.stream_executor
            parent.sync()
            before = set(parent.variables)
            for child in self.states:
                child.stream_executor.sync()
                for k, v in child.stream_executor.variables.items():
                    if k in before:
                        continue
                    parent.variables.setdefault(k, []).append(v)
                    parent.meta_info.setdefault(k, []).append(child.stream_executor.meta_info.get(k))
        elif mode == "concate_and_append":
            self.src_state += ConcateAndAppend(tuple(self.states))
            # NOTE: sync before ending the children; the append reads their text
            self.src_state.sync()
        else:
            raise ValueError(f"join mode must be 'gather_variable' or 'concate_and_append', got {mode!r}")
        for s in self.states:
            s.stream_executor.end()

    def __getitem__(self, i: int) -> ProgramState:
        return self.states[i]

    def __setitem__(self, i: int, value: ProgramState) -> None:
        # `forks[i] += x` reads, appends in place, then assigns the same state back
        if value is not self.states[i]:
            raise TypeError("fork states cannot be replaced; use forks[i] += expr")

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[ProgramState]:
        return iter(self.states)

    def __iadd__(self, other: Callable[[int], object] | object) -> ProgramStateGroup:
        """Three forms: a callable of the child index, a list (one expression per child), or
        one expression broadcast to every child."""
        if isinstance(other, (list, tuple)):
            if len(other) != len(self.states):
                raise ValueError(f"forks += list needs {len(self.states)} items, got {len(other)}")
            for s, x in zip(self.states, other):
                s += x
        elif callable(other) and not isinstance(other, Expr):
            for i, s in enumerate(self.states):
                s += other(i)
        else:
            for s in self.states:
                s += other
        return self
