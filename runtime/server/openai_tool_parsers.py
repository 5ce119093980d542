"""Tool-call parsers: a model's raw output -> (content, tool calls), one class per format family.

| name       | models                         | a call looks like                                                  |
|------------|--------------------------------|--------------------------------------------------------------------|
| `hermes`   | Qwen 2.5 / Qwen3, Hermes, SmolLM2 (our default; rendered by us) | `<tool_call>\\n{"name": .., "arguments": {..}}\\n</tool_call>` |
| `llama3`   | Llama 3.1 / 3.2 / 3.3 JSON tool calling | `<|python_tag|>`? `{"name": .., "parameters": {..}}` (`;`-separated) |
| `mistral`  | Mistral / Mixtral instruct     | `[TOOL_CALLS] [{"name": .., "arguments": {..}}]` or `[TOOL_CALLS]name[ARGS]{..}` |
| `deepseekv3` | DeepSeek V3 / R1             | `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{..}\\n```<｜tool▁call▁end｜>...` |
| `gpt-oss`  | GPT-OSS (harmony channels)     | `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{..}<|call|>` |

``parse`` leaves text with no call alone (content = the text, no calls). ``call_pieces`` gives
one call as it is written, the arguments left out (``ARGS``), and ``frame`` what goes before,
between and after the calls: openai_tool_constraint.py makes them the constraint of tool_choice
"required" or a named function. ``markers`` are the pieces a model's tokenizer may hold as one
(special) token; the constraint asks for that token rather than its spelling.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

ARGS = None  # in call_pieces: where the arguments' JSON goes
Pieces = tuple[str | None, ...]


@dataclass
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:24])

    def to_openai(self, index: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": "function",
                               "function": {"name": self.name, "arguments": self.arguments}}
        if index is not None:
            out["index"] = index
        return out


def _call_from_obj(obj: Any, args_key: str = "arguments") -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get(args_key, obj.get("arguments", obj.get("parameters", {})))
    if isinstance(args, str):  # some models send arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


def _json_values(text: str) -> list[Any] | None:
    """Every JSON value in ``text`` one after the other (separated by whitespace, `;` or `,`);
    None if anything else is there."""
    dec, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i] in " \t\r\n;,":
            i += 1
        if i == len(text):
            return out
        try:
            value, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return None
        out.append(value)


class ToolParser:
    name = ""
    start = ""  # where the calls begin: text before it is content
    needs_special_tokens = False  # its markers are special tokens: keep them in the output
    markers: tuple[str, ...] = ()
    frame: tuple[Pieces, Pieces, Pieces] = ((), ("\n",), ())  # before, between and after the calls

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """(content, complete calls); an unfinished or malformed call is left in the content."""
        at = text.find(self.start) if self.start else -1
        if at < 0:
            return text, []
        calls = self._calls(text[at:])
        if not calls:
            return text, []
        return text[:at].rstrip(), calls

    def may_start(self, text: str) -> int:
        """Where a call may begin in ``text`` (a marker, or a prefix of one at the end); -1 if
        none. Streaming holds text from here back until the calls parse."""
        at = text.find(self.start)
        if at >= 0:
            return at
        for k in range(min(len(self.start) - 1, len(text)), 0, -1):
            if self.start.startswith(text[-k:]):
                return len(text) - k
        return -1

    def _calls(self, text: str) -> list[ToolCall]:
        raise NotImplementedError

    def call_pieces(self, name: str) -> Pieces:
        raise NotImplementedError


class HermesParser(ToolParser):
    name, start = "hermes", "<tool_call>"
    _CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)

    def _calls(self, text: str) -> list[ToolCall]:
        calls = []
        for body in self._CALL.findall(text):
            try:
                call = _call_from_obj(json.loads(body))
            except json.JSONDecodeError:
                call = None
            if call is not None:
                calls.append(call)
        return calls

    def call_pieces(self, name: str) -> Pieces:
        return '<tool_call>\n{"name":' + json.dumps(name) + ',"arguments":', ARGS, "}\n</tool_call>"


class Llama3Parser(ToolParser):
    name, start = "llama3", "{"

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        body = text.strip()
        if body.startswith("<|python_tag|>"):
            body = body[len("<|python_tag|>"):]
        if not body.startswith("{"):
            return text, []
        values = _json_values(body)
        calls = [c for c in (_call_from_obj(v, "parameters") for v in values or []) if c is not None]
        if not values or len(calls) != len(values):
            return text, []  # a plain JSON answer is content
        return "", calls

    def may_start(self, text: str) -> int:
        stripped = text.lstrip()
        if not stripped:
            return 0 if text else -1
        return len(text) - len(stripped) if stripped[0] in "{<" else -1

    def call_pieces(self, name: str) -> Pieces:
        return '{"name":' + json.dumps(name) + ',"parameters":', ARGS, "}"


class MistralParser(ToolParser):
    name, start, needs_special_tokens = "mistral", "[TOOL_CALLS]", True
    markers = ("[TOOL_CALLS]",)
    frame = (("[TOOL_CALLS]", "["), (", ",), ("]",))

    def call_pieces(self, name: str) -> Pieces:
        return '{"name":' + json.dumps(name) + ',"arguments":', ARGS, "}"

    def _calls(self, text: str) -> list[ToolCall]:
        body = text[len(self.start):].strip()
        if "[ARGS]" in body:  # newer form: NAME[ARGS]{...} per call
            calls = []
            for part in body.split(self.start):
                name, _, args = part.strip().partition("[ARGS]")
                values = _json_values(args)
                if values and len(values) == 1 and name:
                    call = _call_from_obj({"name": name.strip(), "arguments": values[0]})
                    if call is not None:
                        calls.append(call)
            return calls
        values = _json_values(body)
        if not values or not isinstance(values[0], list):
            return []
        return [c for c in (_call_from_obj(v) for v in values[0]) if c is not None]


class DeepSeekV3Parser(ToolParser):
    name, start, needs_special_tokens = "deepseekv3", "<｜tool▁calls▁begin｜>", True
    _CALL = re.compile(r"<｜tool▁call▁begin｜>(?:function)?<｜tool▁sep｜>(.*?)\n```(?:json)?\n(.*?)\n```"
                       r"\s*<｜tool▁call▁end｜>", re.S)
    markers = ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>",
               "<｜tool▁calls▁end｜>")
    frame = (("<｜tool▁calls▁begin｜>",), ("\n",), ("<｜tool▁calls▁end｜>",))

    def call_pieces(self, name: str) -> Pieces:
        return ("<｜tool▁call▁begin｜>", "function", "<｜tool▁sep｜>", name + "\n```json\n", ARGS, "\n```",
                "<｜tool▁call▁end｜>")

    def _calls(self, text: str) -> list[ToolCall]:
        calls = []
        for name, args in self._CALL.findall(text):
            try:
                call = _call_from_obj({"name": name.strip(), "arguments": json.loads(args)})
            except json.JSONDecodeError:
                call = None
            if call is not None:
                calls.append(call)
        return calls


class GptOssParser(ToolParser):
    """Harmony: calls are `commentary` messages addressed `to=functions.NAME`; the answer is the
    `final` channel; `analysis` is the reasoning (reasoning.py takes it)."""

    name, start, needs_special_tokens = "gpt-oss", "<|channel|>", True
    _CALL = re.compile(r"<\|channel\|>commentary to=functions\.([\w.-]+)\s*(?:<\|constrain\|>\w+)?"
                       r"<\|message\|>(.*?)<\|call\|>", re.S)
    _FINAL = re.compile(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|return\|>|<\|end\|>|$)", re.S)
    markers = ("<|channel|>", "<|constrain|>", "<|message|>", "<|call|>", "<|start|>")
    frame = ((), ("<|start|>", "assistant"), ())

    def call_pieces(self, name: str) -> Pieces:
        return ("<|channel|>", f"commentary to=functions.{name} ", "<|constrain|>", "json", "<|message|>", ARGS,
                "<|call|>")

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        calls = []
        for name, args in self._CALL.findall(text):
            try:
                call = _call_from_obj({"name": name, "arguments": json.loads(args)})
            except json.JSONDecodeError:
                call = None
            if call is not None:
                calls.append(call)
        final = self._FINAL.search(text)
        if final is not None:
            return final.group(1), calls
        return ("" if calls or self.start in text else text), calls


PARSERS: dict[str, type[ToolParser]] = {p.name: p for p in (HermesParser, Llama3Parser, MistralParser,
                                                            DeepSeekV3Parser, GptOssParser)}
PARSERS.update({"qwen25": HermesParser, "qwen": HermesParser, "llama4": Llama3Parser, "deepseek": DeepSeekV3Parser})


def get_parser(name: str) -> ToolParser:
    if name not in PARSERS:
        raise ValueError(f"--tool-call-parser {name!r} is not known; use one of {sorted(PARSERS)}")
    return PARSERS[name]()


def detect_parser(chat_template: str | None, model_type: str = "") -> ToolParser:
    """The parser for a model, from the markers its chat template uses (else its model type);
    hermes where nothing says (our own tool prompt then teaches it: openai_tools.py)."""
    t = chat_template or ""
    for marker, name in (("<|channel|>", "gpt-oss"), ("tool▁calls▁begin", "deepseekv3"),
                         ("[TOOL_CALLS]", "mistral"), ("<tool_call>", "hermes"),
                         ("<|python_tag|>", "llama3"), ("ipython", "llama3")):
        if marker in t:
            return get_parser(name)
    return get_parser({"mistral": "mistral", "deepseek_v3": "deepseekv3", "gpt_oss": "gpt-oss"}.get(model_type, "hermes"))
