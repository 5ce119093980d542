"""A chat completion's raw text -> OpenAI message parts: `reasoning_content`, `content`,
`tool_calls`; whole (``split_message``) or as stream deltas (``DeltaSplitter``).

Streaming: reasoning is streamed as it comes; content is streamed except from where a tool call
may begin (the parser's marker, or a prefix of it at the end), which is held back until the call
is complete, then sent as OpenAI sends calls: one delta with the call's index, id, type and
name (arguments ""), then one with its arguments. Held text that turns out not to be a call is
sent as content at the end.
"""

from __future__ import annotations

from typing import Any

from .openai_reasoning import ReasoningParser
from .openai_tool_parsers import ToolCall, ToolParser


def split_message(text: str, tools: ToolParser | None, reasoning: ReasoningParser | None) -> tuple[
        dict[str, Any], bool]:
    """(message, whether it holds tool calls)."""
    message: dict[str, Any] = {"role": "assistant"}
    if reasoning is not None:
        thought, text = reasoning.split(text)
        message["reasoning_content"] = thought
    calls: list[ToolCall] = []
    if tools is not None:
        text, calls = tools.parse(text)
    message["content"] = text if (text or not calls) else None
    if calls:
        message["tool_calls"] = [c.to_openai() for c in calls]
    return message, bool(calls)


class DeltaSplitter:
    """Cumulative text in, OpenAI `delta` dicts out. Feed every chunk's full text so far."""

    def __init__(self, tools: ToolParser | None, reasoning: ReasoningParser | None) -> None:
        self.tools, self.reasoning = tools, reasoning
        self.thought_sent = 0  # chars of reasoning sent
        self.content_sent = 0  # chars of the answer text sent as content
        self.calls_sent = 0
        self.has_calls = False

    def feed(self, text: str, final: bool = False) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = []
        answer = text
        if self.reasoning is not None:
            thought, answer, done = self.reasoning.split_partial(text, final)
            if len(thought) > self.thought_sent:
                deltas.append({"reasoning_content": thought[self.thought_sent:]})
                self.thought_sent = len(thought)
            if not done:
                return deltas
        if self.tools is None:
            if len(answer) > self.content_sent:
                deltas.append({"content": answer[self.content_sent:]})
                self.content_sent = len(answer)
            return deltas
        hold = self.tools.may_start(answer)
        visible = answer if hold < 0 else answer[:hold]
        if self.calls_sent == 0 and len(visible) > self.content_sent:
            deltas.append({"content": visible[self.content_sent:]})
            self.content_sent = len(visible)
        if hold >= 0:
            _, calls = self.tools.parse(answer)
            complete = calls if final else calls[:-1] if not _ends_cleanly(answer, self.tools) else calls
            for i in range(self.calls_sent, len(complete)):
                call = complete[i]
                head = call.to_openai(i)
                head["function"]["arguments"] = ""
                deltas.append({"tool_calls": [head]})
                deltas.append({"tool_calls": [{"index": i, "function": {"arguments": call.arguments}}]})
                self.calls_sent, self.has_calls = i + 1, True
        if final and not self.has_calls and len(answer) > self.content_sent:
            deltas.append({"content": answer[self.content_sent:]})  # held text was no call
            self.content_sent = len(answer)
        return deltas


def _ends_cleanly(text: str, tools: ToolParser) -> bool:
    """True when the last parsed call is closed (a hermes `</tool_call>` ends the text), so it
    will not change with more text; other formats wait for the end of the stream."""
    return tools.name == "hermes" and text.rstrip().endswith("</tool_call>")
