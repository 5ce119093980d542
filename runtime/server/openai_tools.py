"""OpenAI tool calling on /v1/chat/completions: tools into the prompt, tool_choice into a
constraint, the model's output back into `tool_calls`.

- The model's own chat template renders `tools`, assistant `tool_calls` and `tool` messages when
  it knows them (it mentions `tools`); a template that does not (SmolLM2's) gets the Hermes tool
  prompt (as Qwen 2.5's template writes it) in the system message, assistant calls as
  `<tool_call>` text and tool results as `<tool_response>` user turns.
- `tool_choice`: "none" (tools not shown, no parsing), "auto" (shown, the output parsed),
  "required" or `{"type": "function", "function": {"name"}}`: the output is constrained to calls
  in the parser's format whose arguments match the function's JSON schema (our own JSON-schema
  path, so a schema behaves the same here as in `response_format`; openai_tool_constraint.py,
  special-token markers included). `parallel_tool_calls: false` allows exactly one call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import APIError
from .openai_tool_constraint import TokenId, calls_constraint
from .openai_tool_parsers import ToolParser

_HERMES_PROMPT = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n"
                  "</tools>\n\nFor each function call, return a json object with function name and arguments "
                  "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                  '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>')


@dataclass
class ToolPlan:
    tools: list[dict[str, Any]]  # OpenAI tool objects shown to the model ([] with "none")
    parse: bool  # parse the output for calls
    constraint: tuple[str, str] | None  # (sampling field, text) of "required" / a named function


def check_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for i, t in enumerate(tools or []):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise APIError(400, f"`tools.{i}` must be {{\"type\": \"function\", \"function\": {{...}}}}", f"tools.{i}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise APIError(400, f"`tools.{i}.function.name` must be a non-empty string", f"tools.{i}.function.name")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise APIError(400, f"`tools.{i}.function.parameters` must be a JSON schema object",
                           f"tools.{i}.function.parameters")
        out.append({"type": "function", "function": {**fn, "parameters": params}})
    return out


def plan_tools(tools: list[dict[str, Any]] | None, tool_choice: Any, parallel: bool,
               parser: ToolParser, token_id: TokenId | None = None) -> ToolPlan:
    """``token_id``: the tokenizer's single token for a format marker (openai_tool_constraint)."""
    tools = check_tools(tools)
    if tool_choice is None:
        tool_choice = "auto" if tools else "none"
    if not tools:
        if tool_choice not in ("none", "auto"):
            raise APIError(400, "`tool_choice` needs `tools`", "tool_choice")
        return ToolPlan([], False, None)
    if tool_choice == "none":
        return ToolPlan([], False, None)
    if tool_choice == "auto":
        return ToolPlan(tools, True, None)
    if tool_choice == "required":
        chosen = tools
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "function" \
            and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        chosen = [t for t in tools if t["function"]["name"] == name]
        if not chosen:
            raise APIError(400, f"`tool_choice.function.name` {name!r} is none of the `tools` "
                                f"({[t['function']['name'] for t in tools]})", "tool_choice.function.name")
    else:
        raise APIError(400, "`tool_choice` must be \"none\", \"auto\", \"required\" or "
                            "{\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice")
    return ToolPlan(tools, True, calls_constraint(chosen, parallel, parser, token_id))


def chat_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]], template: str) -> tuple[
        list[dict[str, Any]], dict[str, Any]]:
    """(messages, extra apply_chat_template kwargs) for the model's template."""
    if "tools" in template or "tool_calls" in template:  # the template knows tools: let it render
        native = []
        for m in messages:
            m = dict(m)
            if m.get("tool_calls"):
                m["tool_calls"] = [_with_dict_arguments(c) for c in m["tool_calls"]]
            native.append(m)
        return native, ({"tools": tools} if tools else {})
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = [_with_dict_arguments(c)["function"] for c in m["tool_calls"]]
            content = "\n".join([content] * bool(content) + [
                "<tool_call>\n" + json.dumps({"name": c["name"], "arguments": c["arguments"]}) + "\n</tool_call>"
                for c in calls])
        elif role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        out.append({"role": role, "content": content})
    if tools:
        prompt = _HERMES_PROMPT.format(tools="\n".join(json.dumps(t) for t in tools))
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + prompt}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out, {}


def _with_dict_arguments(call: dict[str, Any]) -> dict[str, Any]:
    fn = dict(call.get("function") or {})
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            fn["arguments"] = json.loads(args) if args else {}
        except json.JSONDecodeError:
            raise APIError(400, "`messages`: a tool call's `function.arguments` is not valid JSON",
                           "messages") from None
    return {**call, "type": "function", "function": fn}
