"""`separate_reasoning(expr, model_type)` as the executor runs it: each target's value split into
(thinking, answer) by the reasoning parser of the server's own routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sgl.executor import StreamExecutor
    from sgl.ir import SeparateReasoning


def separate_reasoning(executor: StreamExecutor, expr: SeparateReasoning) -> None:
    """Each target's value -> (thinking, answer); the answer replaces the value and, where the
    value is still the end of the text, its text there (SGLang drops the thinking from the
    state's text too). Streamed states get the same once the gen has ended."""
    from sgl.runtime.server.openai_reasoning import get_reasoning_parser

    parser = get_reasoning_parser(expr.model_type, "separate_reasoning(model_type=...):")
    for target, reasoning in zip(expr.targets, expr.reasoning_names):
        name = target.name
        value = executor.variables[name]
        many = isinstance(value, list)  # n > 1: one split per sample; the text has the first
        pairs = [parser.split(v) for v in (value if many else [value])]
        thought = [t for t, _ in pairs] if many else pairs[0][0]
        answer = [a for _, a in pairs] if many else pairs[0][1]
        with executor.cond:
            start, end = executor.spans.get(name, (-1, -1))
            if end == len(executor.text_) and start >= 0:
                executor.text_ = executor.text_[:start] + pairs[0][1]
                executor.spans[name] = (start, len(executor.text_))
            executor.variables[name] = answer
            executor.cond.notify_all()
        executor._set_var(reasoning, thought, None)
